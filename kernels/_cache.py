"""Where numba caches the kernels, and when that cache is stale.

The problem
-----------
numba's ``cache=True`` keys a function's cache entry on the contents of the
file that *defines* it (plus its bytecode). The kernels are built from
intrinsics defined in another file (``atomics.py``, ``futex.py``) whose code
is inlined into every caller, so editing ``atomics.py`` alone left the
callers in ``seqlock.py`` loading stale machine code from the cache: a fixed
memory-ordering bug would silently survive in every process that had a warm
cache.

The fix
-------
:class:`KernelCacheLocator` is a numba cache locator that claims every
function defined in a ``.py`` file of this package (and nothing else) and

* stamps it with :func:`source_stamp`: a SHA-256 over the names and contents
  of *all* ``.py`` files of the package, the numba, llvmlite and Python
  versions and the machine architecture, computed once when the package is
  imported (the code being compiled is the code imported then);
* puts the cache in a directory named after that stamp:

  1. ``$NUMBA_CACHE_DIR/arrowshm-<stamp>`` if ``NUMBA_CACHE_DIR`` is set,
  2. else ``$XDG_CACHE_HOME/arrowshm/numba/<stamp>`` (``~/.cache`` when
     ``XDG_CACHE_HOME`` is unset),
  3. else, if that is not writable,
     ``<tempdir>/arrowshm-numba-<uid>/<stamp>``, a directory created ``0700``
     and used only if it is owned by this user and not writable by others
     (a cache is machine code: a directory someone else can write to would
     let them run code in our processes).

Any edit to any kernel file changes the stamp, hence the directory: a stale
entry cannot even be found, let alone loaded. (Old directories are left
behind; they are small and ``rm -r`` is safe at any time.)

:func:`install_cache_locator` inserts the locator first in numba's list of
locator classes. It must run before the first ``@njit(cache=True)`` of the
package is decorated, because numba picks the locator at decoration time;
``arrowshm/kernels/__init__.py`` calls it before importing any kernel module.

Known limits: setting ``NUMBA_CACHE_LOCATOR_CLASSES`` replaces numba's
locator list and bypasses this one. ``@njit(cache=True)`` code *outside* this
package that calls the kernels has the original problem again (its own cache
keys on its own file only): keep cached njit code in this package, or do not
cache callers elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import llvmlite
import numba
import numpy as np
from numba.core import caching, config, sigutils

__all__ = [
    "PACKAGE_DIR",
    "KernelCacheLocator",
    "KernelFunctionCache",
    "cache_dir",
    "install_cache_locator",
    "preload",
    "source_stamp",
    "use_kernel_cache",
]

PACKAGE_DIR = Path(__file__).resolve().parent
"""The directory whose ``.py`` files the locator claims and hashes."""


def source_stamp(package_dir: Path = PACKAGE_DIR) -> str:
    """Hex digest (16 chars) identifying the kernels' source and toolchain.

    Hashes the relative path and bytes of every ``*.py`` file under
    ``package_dir`` (sorted, so the order of the filesystem does not matter),
    then the numba, llvmlite and Python versions and the machine type.
    """
    h = hashlib.sha256()
    for token in (numba.__version__, llvmlite.__version__, sys.version, platform.machine()):
        h.update(token.encode())
        h.update(b"\0")
    for path in sorted(package_dir.rglob("*.py")):
        data = path.read_bytes()
        h.update(path.relative_to(package_dir).as_posix().encode())
        h.update(b"\0")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


_STAMP = source_stamp()


def _usable(path: Path) -> bool:
    """Create ``path`` if needed and check a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _private_tmp_root() -> Path | None:
    """``<tempdir>/arrowshm-numba-<uid>``, created 0700; None if not safely ours."""
    root = Path(tempfile.gettempdir()) / f"arrowshm-numba-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        st = root.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return root


def _numba_cache_dir() -> str:
    """numba's view of ``NUMBA_CACHE_DIR`` ("" when unset)."""
    return str(getattr(config, "CACHE_DIR", "") or "")


def _candidates(stamp: str) -> list[Path]:
    if _numba_cache_dir():
        return [Path(_numba_cache_dir()) / f"arrowshm-{stamp}"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [Path(xdg) / "arrowshm" / "numba" / stamp]


@functools.cache
def _chosen_dir(stamp: str, numba_cache_dir: str) -> Path | None:
    del numba_cache_dir  # part of the memo key only
    for path in _candidates(stamp):
        if _usable(path):
            return path
    root = _private_tmp_root()
    if root is not None and _usable(root / stamp):
        return root / stamp
    return None


def cache_dir() -> Path | None:
    """The directory kernels are cached in by this process (None: caching impossible)."""
    return _chosen_dir(_STAMP, _numba_cache_dir())


def _is_kernel_source(py_file: str) -> bool:
    try:
        path = Path(py_file).resolve()
    except (OSError, RuntimeError):
        return False
    return path.suffix == ".py" and PACKAGE_DIR in path.parents


class KernelCacheLocator(caching._CacheLocator):
    """numba cache locator for functions defined in ``arrowshm.kernels``.

    Stamp: :func:`source_stamp` of the whole package at import time.
    Directory: :func:`cache_dir`. Functions defined elsewhere are left to
    numba's own locators (``from_function`` returns None for them).
    """

    def __init__(self, py_func: Any, py_file: str, path: Path) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(path)

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return _STAMP

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> KernelCacheLocator | None:
        if not _is_kernel_source(py_file):
            return None
        path = cache_dir()
        if path is None:
            return None
        return cls(py_func, py_file, path)


class KernelFunctionCache(caching.FunctionCache):
    """numba's function cache, loading a cached kernel without a full target refresh.

    numba's ``Cache.load_overload`` first calls ``target_context.refresh()``, which
    the first time in a process imports and installs every typing and lowering
    registry numba has (linalg, random, typed containers, ...): about 200 ms, half
    of ``import numba`` again, spent by the first kernel loaded even though
    loading compiled code needs none of it. Loading needs the code generator and
    the NRT runtime's symbols (numba's array unboxing calls them), so this cache
    initializes exactly those (``rtsys.initialize``) and then loads as numba does.
    Compiling — a cache miss, or a kernel inlined into a new caller — goes through
    numba's compiler, which refreshes the contexts itself, so nothing that
    compiles ever runs with a partial context.
    """

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        from numba.core.runtime import nrt

        nrt.rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)  # type: ignore[no-untyped-call]
        return None  # an I/O error the guard swallowed: numba compiles instead


def use_kernel_cache(dispatcher: Any) -> Any:
    """Give *dispatcher* a :class:`KernelFunctionCache` (if caching is on for it)."""
    if isinstance(getattr(dispatcher, "_cache", None), caching.FunctionCache):
        dispatcher._cache = KernelFunctionCache(dispatcher.py_func)  # type: ignore[no-untyped-call]
    return dispatcher


def install_cache_locator() -> None:
    """Put :class:`KernelCacheLocator` first in numba's locator list (idempotent)."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")  # noqa: B009
    classes: list[Any] = impl._locator_classes
    if KernelCacheLocator not in classes:
        classes.insert(0, KernelCacheLocator)


def _from_python(args: tuple[Any, ...]) -> bool:
    """Whether a call from Python can have these argument types (no literals)."""
    return not any(isinstance(a, numba.types.Literal) for a in args)


def preload(dispatchers: Iterable[Any],
            accept: Callable[[tuple[Any, ...]], bool] = _from_python) -> int:
    """Load the overloads the cache holds for *dispatchers*; compile nothing.

    A lazily compiled kernel (``@kernel``) is otherwise loaded from the cache at
    its first call, which then costs milliseconds (reading the index and the
    object code, linking it, and numba typing the arguments — whose first typing
    of an array in Python imports ``numpy.ma``). Calling this once when a process
    attaches moves that off the first call. Only overloads whose cache key
    (signature, codegen magic, bytecode hash) matches are loaded, so a stale or
    missing cache simply loads nothing: the kernels then compile on first call as
    before. A kernel with fixed signatures (``kernel_with_signatures``) keeps them
    pending: a call that none of the loaded overloads matches exactly compiles or
    loads all of them first, as ``njit(signatures)`` would have at import.

    Parameters
    ----------
    dispatchers
        numba dispatchers of this package.
    accept
        Which cached argument types to load (default: any a call from Python can
        have — the index also holds the literal specialisations of calls from
        other ``@njit`` code, which Python never dispatches to).

    Returns
    -------
    int
        How many overloads were loaded.

    Raises
    ------
    Nothing: a cache that cannot be read is skipped (the first call loads or
    compiles as usual).
    """
    # numba's C dispatch types an array kind it has not seen in Python, and the
    # first such typing imports numpy.ma: do it now
    numba.typeof(np.empty(1, np.uint64))  # type: ignore[no-untyped-call]
    loaded = 0
    for disp in dispatchers:
        use_kernel_cache(disp)  # (a kernel decorated with numba.njit directly)
        cache: Any = getattr(disp, "_cache", None)
        cache_file: Any = getattr(cache, "_cache_file", None)
        if cache is None or cache_file is None:  # NullCache: caching disabled for it
            continue
        try:
            index = cache_file._load_index()
            codegen = disp.targetctx.codegen()
            for key in list(index):
                sig = key[0]
                args, _ = sigutils.normalize_signature(sig)  # type: ignore[no-untyped-call]
                if (key != cache._index_key(sig, codegen) or tuple(args) in disp.overloads
                        or not accept(tuple(args))):
                    continue
                disp.compile(sig)  # a cache hit by construction of the key
                loaded += 1
        except Exception:  # warming is best effort: the first call loads or compiles
            continue
    return loaded
