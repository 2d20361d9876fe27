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


def jit(fn=None, *, parallel=False, reassoc=True, inline=False):
    """Compile ``fn`` with fastnet's options: ``@jit``, ``@jit(parallel=True)``;
    ``reassoc=False`` keeps the order of floating-point operations as written;
    ``inline=True`` compiles a helper into each caller (Numba's ``inline="always"``)."""
    options = dict(PARALLEL if parallel else SERIAL)
    if not reassoc:
        options["fastmath"] = FASTMATH_ORDERED
    if inline:
        options["inline"] = "always"
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)


# --- cache freshness -----------------------------------------------------------
#
# Numba keys a cached function on its own source file only. A compiled caller
# (engine.train_batches) holds its callees (the kernels) compiled into it, so
# after a kernel changes, a stale caller would still run the old kernel -- with
# the old kernel's idea of its arguments. For fastnet's own functions the stamp
# below covers every source file of the package, so any change to any of them
# recompiles everything. (Users embedding the kernels: see docs/kernels.md.)

def _package_stamp():
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _install_cache_locators():
    import os

    try:
        from numba.core import caching
    except ImportError:  # a Numba without this module: keep its own behaviour
        return
    root = os.path.dirname(os.path.abspath(__file__)) + os.sep
    stamp = _package_stamp()

    def package_locator(base):
        class Locator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                if not os.path.abspath(py_file).startswith(root):
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return ("fastnet", stamp)

        Locator.__name__ = Locator.__qualname__ = f"Fastnet{base.__name__}"
        return Locator

    bases = [getattr(caching, name, None) for name in
             ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if None in bases or impl is None or not isinstance(getattr(impl, "_locator_classes", None), list):
        return
    ours = [package_locator(base) for base in bases]
    impl._locator_classes[:0] = ours


_install_cache_locators()
