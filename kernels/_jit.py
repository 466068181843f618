"""Typed decorators shared by the kernel modules.

numba ships without type information, so ``numba.njit`` and
``numba.extending.intrinsic`` look like ``Any`` to mypy and would erase the
signature of every kernel. The two wrappers here keep the Python-level
signature visible to the type checker (and to the higher layers that call the
kernels) while applying exactly the numba options this package relies on:

* :func:`kernel` is ``@njit(nogil=True, cache=True)``. ``nogil`` because every
  kernel may spin or sleep on a shared word and must not hold the GIL while it
  does; ``cache`` so that a new process loads machine code instead of paying
  seconds of compilation (the cache is located and invalidated by
  :mod:`arrowshm.kernels._cache`).
* :func:`kernel_with_signatures` is the same with an explicit list of
  signatures, compiled (or loaded from the cache) at import.
* :func:`as_int64` reinterprets any integer as ``int64`` inside ``@njit`` code
  (wrapping, like a C cast), typed as ``int`` for mypy where ``np.int64(x)``
  would be typed as a numpy scalar.
* :func:`int_intrinsic` and :func:`void_intrinsic` wrap
  ``numba.extending.intrinsic`` and declare what the intrinsic returns when it
  is called from ``@njit`` code. Intrinsics cannot be called from pure Python.

The array aliases name the only argument shapes kernels accept: 1-D,
C-contiguous ``uint64`` words (cursors, sequences, payload) and ``uint32``
words (futex words, which the kernel compares as 32-bit values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import njit, types
from numba.core import typeinfer
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

from ._cache import install_cache_locator, use_kernel_cache

# Every kernel module imports this one before its first ``@njit``, and numba binds
# a function to its cache locator when ``@njit`` runs: register ours now.
install_cache_locator()

__all__ = [
    "U32Array",
    "U64Array",
    "Word",
    "WordArray",
    "as_int64",
    "int_intrinsic",
    "kernel",
    "kernel_with_signatures",
    "void_intrinsic",
]

U64Array = npt.NDArray[np.uint64]
"""1-D C-contiguous view of shared memory as 64-bit words."""

U32Array = npt.NDArray[np.uint32]
"""1-D C-contiguous view of shared memory as 32-bit (futex) words."""

WordArray = U64Array | U32Array
"""Either word width: the generic atomics accept both."""

Word = int | np.integer[Any]
"""A word value a Python caller passes: an ``int`` or a numpy integer (``np.uint64``
for values that must stay unsigned in a lazily compiled kernel)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def kernel(fn: _F) -> _F:
    """Compile ``fn`` with ``@njit(nogil=True, cache=True)``, keeping its signature.

    The dispatcher loads cached code through :class:`arrowshm.kernels._cache.
    KernelFunctionCache` (no full numba target refresh for a cache hit).
    """
    return cast(_F, use_kernel_cache(njit(nogil=True, cache=True)(fn)))


class _FixedSignatureDispatcher(CPUDispatcher):
    """A dispatcher compiled for exactly its declared signatures, on first use.

    ``njit(signatures)`` compiles (or loads from the cache) every signature when
    the module is imported; for the Python-facing wrappers that is a dozen
    overloads loaded by every process whether it calls them or not. This class
    defers that to the first use — a call from Python, typing a call from other
    ``@njit`` code, or introspection (``signatures``) — and then does exactly what
    ``njit(signatures)`` does: compile every declared signature and disable
    compilation, so a call never specialises on the caller's argument types.
    """

    _pending: list[Any] | None = None

    def _materialize(self) -> None:
        if self._pending is None and not self._can_compile:  # type: ignore[attr-defined]
            return  # done
        # (pending, or another thread is materializing: wait for it on the lock,
        # which is re-entrant and which compile() takes too)
        with global_compiler_lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                try:
                    with typeinfer.register_dispatcher(self):
                        for sig in pending:
                            self.compile(sig)
                except BaseException:
                    self._pending = pending  # (a compile error: the next use retries)
                    raise
                self.disable_compile()

    def _compile_for_args(self, *args: Any, **kws: Any) -> Any:
        # numba's C dispatch calls this only while compiling is on, i.e. before the
        # signatures are materialized (or while another thread does it): afterwards
        # compiling is off, and dispatching again resolves the call exactly as
        # njit(signatures) would (conversions, or numba's "no matching definition")
        self._materialize()
        if self._can_compile:  # type: ignore[attr-defined]  # (cannot happen)
            return super()._compile_for_args(*args, **kws)  # type: ignore[misc]
        return self

    def get_call_template(self, args: Any, kws: Any) -> Any:
        self._materialize()
        return super().get_call_template(args, kws)

    @property
    def signatures(self) -> list[Any]:
        self._materialize()
        return list(super().signatures)

    @property
    def nopython_signatures(self) -> list[Any]:
        self._materialize()
        return list(super().nopython_signatures)


def kernel_with_signatures(signatures: list[Any]) -> Callable[[_F], _F]:
    """Like :func:`kernel` but compiled for exactly ``signatures``.

    Used for the Python-facing wrappers: numba's lazy dispatcher types a
    Python ``int`` argument as ``int64`` once an ``int64`` specialisation
    exists, so a later call with a value >= 2**63 fails with
    ``OverflowError`` depending on call order. Fixed unsigned signatures make
    every value in ``[0, 2**64)`` work, always. Every signature is compiled (or
    loaded from the cache) at the kernel's first use, not at import
    (:class:`_FixedSignatureDispatcher`).
    """

    def wrap(fn: _F) -> _F:
        disp = use_kernel_cache(njit(nogil=True, cache=True)(fn))
        if type(disp) is not CPUDispatcher:  # NUMBA_DISABLE_JIT: the Python function
            return cast(_F, disp)
        disp.__class__ = _FixedSignatureDispatcher
        cast(_FixedSignatureDispatcher, disp)._pending = list(signatures)
        return cast(_F, disp)

    return wrap


def int_intrinsic(defn: Callable[..., Any]) -> Callable[..., int]:
    """Register ``defn`` as a numba intrinsic whose call yields an integer."""
    return cast(Callable[..., int], intrinsic(defn))


def void_intrinsic(defn: Callable[..., Any]) -> Callable[..., None]:
    """Register ``defn`` as a numba intrinsic whose call yields nothing."""
    return cast(Callable[..., None], intrinsic(defn))


@int_intrinsic
def as_int64(typingctx: Any, x: Any) -> Any:
    """Cast integer ``x`` to ``int64`` (two's-complement wrap), ``@njit`` code only."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return context.cast(builder, args[0], sig.args[0], types.int64)

    return types.int64(x), codegen
