"""The one place where fastnet sets its Numba compilation options.

``FASTMATH`` is an explicit flag set, not ``fastmath=True``: it lets LLVM
reassociate sums (so reductions vectorise) and contract multiply-adds into
FMAs, but keeps the "no NaN" and "no inf" assumptions off, so a NaN guard
downstream still sees a NaN the kernels produced.

``cache=True`` writes compiled machine code next to the sources (or under
``NUMBA_CACHE_DIR``), so a second process starts without recompiling.
"""
from numba import njit

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: For kernels whose grouping of terms carries their accuracy: the loss
#: ``log(sum) - (logit - max)`` must not be regrouped as ``(log(sum) + max) - logit``.
FASTMATH_ORDERED = FASTMATH - {"reassoc"}

#: Options of every serial kernel.
SERIAL = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
#: Options of every kernel that splits its work with ``prange``.
PARALLEL = dict(SERIAL, parallel=True)


def jit(fn=None, *, parallel=False, reassoc=True):
    """Compile ``fn`` with fastnet's options: ``@jit``, ``@jit(parallel=True)``;
    ``reassoc=False`` keeps the order of floating-point operations as written."""
    options = dict(PARALLEL if parallel else SERIAL)
    if not reassoc:
        options["fastmath"] = FASTMATH_ORDERED
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)
