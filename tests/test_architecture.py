"""The structure the code must keep: layers, owners of each byte format, no cycles.

These tests read the source, not the running code: they fail the moment a
change makes a hub, a cycle or a second writer of a format, before anything
misbehaves (docs/ARCHITECTURE.md explains the rules).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# import name -> folder, as pyproject.toml's package-dir maps them
FOLDERS = {"arrowshm": ROOT / "arrowshm", "arrowshm.kernels": ROOT / "kernels",
           "arrowshm.service": ROOT / "service"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported arrowshm module, at function level?) for every import statement of a
    module, wherever it is (function bodies and ``if TYPE_CHECKING`` blocks included)."""
    tree = ast.parse(path.read_text())
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for a in child.names:  # `from pkg import module` names a module
                    sub = f"{target}.{a.name}"
                    found.append((sub if sub in MODULES else target, nested))
            visit(child, nested)

    visit(tree, False)
    return [(t, f) for t, f in found if t == "arrowshm" or t.startswith("arrowshm.")]


def test_the_module_map_is_what_the_tests_walk() -> None:
    for name in ["arrowshm._shm.registry", "arrowshm._shm.header", "arrowshm._datasets.put",
                 "arrowshm._streams.reader", "arrowshm.kernels.ring", "arrowshm.service.main"]:
        assert name in MODULES, name


def test_the_modules_form_no_import_cycle() -> None:
    graph = {name: {t for t, _ in _imports(name, path) if t != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# function-level imports of arrowshm's own modules are allowed only where they keep a
# command from importing what it does not need (numba, pyarrow, the service), in the
# package itself, which loads its data plane and optional parts on demand, and in the
# doctor, whose every check imports the part of the data plane it inspects so that a
# part that cannot load (a broken numba cache, a kernel that fails to compile) is
# reported as that check's FAIL instead of the whole report failing
LAZY_IMPORTERS = {"arrowshm", "arrowshm._cli", "arrowshm.service.cli", "arrowshm._doctor"}


def test_function_level_imports_of_own_modules_only_in_the_command_line() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items() if name not in LAZY_IMPORTERS
        for target, in_function in _imports(name, path) if in_function
    )
    assert offenders == []


def _source(name: str) -> str:
    return MODULES[name].read_text()


@pytest.mark.parametrize(("pattern", "owners", "what"), [
    (r"\bL\.R_(?!FLAG_)[A-Z_]+",
     {"arrowshm._shm.record", "arrowshm._shm.registry", "arrowshm._shm.layout"},
     "registry record words"),
    (r"\bL\.[EH]_[A-Z_]+",
     # (quota owns the header's reservation table, spares its spare table)
     {"arrowshm._shm.registry", "arrowshm._shm.quota", "arrowshm._shm.spares",
      "arrowshm._shm.layout"},
     "registry entry and header words"),
    (r"\bL\.S_[A-Z_]+", {"arrowshm._shm.header", "arrowshm._shm.layout"},
     "data-segment header words"),
    (r"\bL\.ST_[A-Z_]+", {"arrowshm._streams.geometry", "arrowshm._shm.layout"},
     "stream header words"),
])
def test_each_byte_format_has_one_owner(pattern: str, owners: set[str], what: str) -> None:
    users = sorted(name for name in MODULES if name not in owners
                   and re.search(pattern, _source(name)))
    assert users == [], f"{what} used outside {sorted(owners)}: {users}"


def test_the_service_uses_the_public_api_and_at_most_the_registry_module() -> None:
    allowed = {"arrowshm", "arrowshm._shm.registry"}
    bad = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items() if name.startswith("arrowshm.service")
        for target, _ in _imports(name, path)
        if not target.startswith("arrowshm.service") and target not in allowed
    )
    assert bad == []


def test_nothing_but_the_testing_helpers_writes_the_environment() -> None:
    write = re.compile(r"os\.environ\[[^]]+\]\s*=[^=]|os\.environ\.(update|setdefault|pop)\("
                       r"|os\.putenv\(|os\.unsetenv\(")
    writers = sorted(name for name in MODULES
                     if name != "arrowshm.testing" and write.search(_source(name)))
    assert writers == []


def test_pyproject_installs_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    packages = {name for name in MODULES if _is_package(name)}
    assert packages == listed
