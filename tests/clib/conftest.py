"""Build libarrowshm's test drivers once per session, into a temporary directory.

The C driver (``reader.c``) and the C++ driver (``reader_cpp.cpp``, on the Arrow C++
of the installed pyarrow wheel) are compiled from ``clib/`` and this folder the first
time a session needs them; a build is kept under the system's temporary directory,
keyed by the hash of every source and of the compilers, so a later session with the
same sources reuses it. Tests skip (saying why) only when no C or C++ compiler exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIB = ROOT / "clib"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Drivers:
    c: Path  # reader.c
    cpp: Path | None  # reader_cpp.cpp, when a C++ compiler and libarrow exist
    dir: Path  # also holds fuzz (fuzz.c), example_c and example_cpp (clib/examples)


def c_compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def cxx_compiler() -> str | None:
    for cxx in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cxx and shutil.which(cxx):
            return cxx
    return None


def libarrow() -> Path | None:
    """The Arrow C++ shared library inside the pyarrow wheel (``libarrow.so.N``)."""
    found = sorted(Path(pa.get_library_dirs()[0]).glob("libarrow.so*"), key=lambda p: len(p.name))
    return found[0] if found else None


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
    for f in sorted([*CLIB.glob("arrowshm.[ch]*"), *CLIB.glob("examples/*"), *HERE.glob("*.c"),
                     *HERE.glob("*.cpp")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build(flags: tuple[str, ...] = ("-O2",), tag: str = "opt", *, cpp: bool = True) -> Drivers:
    """Compile the drivers with *flags* (reused when already built from these sources);
    the C++ one only with *cpp*."""
    cc = c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine: libarrowshm untested")
    cxx, lib = (cxx_compiler(), libarrow()) if cpp else (None, None)
    key = _key(cc, cxx or "", str(lib), pa.__version__, " ".join(flags), tag)
    out = Path(tempfile.gettempdir()) / f"arrowshm-clib-{tag}-{key}"
    done = out / "ok"
    if not done.exists():
        work = Path(tempfile.mkdtemp(prefix="arrowshm-clib-build-"))
        cflags = [*flags, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{CLIB}"]
        _run([cc, *cflags, "-c", str(CLIB / "arrowshm.c"), "-o", str(work / "arrowshm.o")])
        for src, prog in ((HERE / "reader.c", "reader"), (HERE / "fuzz.c", "fuzz"),
                          (CLIB / "examples" / "example.c", "example_c")):
            _run([cc, *cflags, str(src), str(work / "arrowshm.o"), "-lpthread",
                  "-o", str(work / prog)])
        if cxx is not None and lib is not None:
            for src, prog in ((HERE / "reader_cpp.cpp", "reader_cpp"),
                              (CLIB / "examples" / "example.cpp", "example_cpp")):
                _run([cxx, *flags, "-std=c++20", f"-I{CLIB}", f"-I{pa.get_include()}",
                      str(src), str(work / "arrowshm.o"), str(lib), f"-Wl,-rpath,{lib.parent}",
                      "-lpthread", "-o", str(work / prog)])
        (work / "ok").write_text("built\n")
        try:
            work.rename(out)
        except OSError:  # another session built it meanwhile
            shutil.rmtree(work, ignore_errors=True)
    cpp_path = out / "reader_cpp"
    return Drivers(out / "reader", cpp_path if cpp_path.exists() else None, out)


@pytest.fixture(scope="session")
def drivers() -> Drivers:
    return build()


@pytest.fixture(scope="session")
def cpp_driver(drivers: Drivers) -> Path:
    if drivers.cpp is None:
        pytest.skip("no C++ compiler (or no libarrow in the pyarrow wheel): C++ reader untested")
    return drivers.cpp
