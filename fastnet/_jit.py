"""The one place where fastnet sets its Numba compilation options, and where
every workaround for Numba's behaviour lives (each says the Numba version it
was checked on).

``FASTMATH`` is an explicit flag set, not ``fastmath=True``: it lets LLVM
reassociate sums (so reductions vectorise) and contract multiply-adds into
FMAs, but keeps the "no NaN" and "no inf" assumptions off, so a NaN guard
downstream still sees a NaN the kernels produced.

Compiled machine code is cached (Numba's ``cache=True``), under
``NUMBA_CACHE_DIR`` if it is set, else beside the sources, else in the
user's cache folder, so a second process starts without recompiling. The
cache never breaks a run: a corrupt or unreadable entry is deleted and
compiled again, with a one-line warning, and where no folder is writable
fastnet runs uncached after a one-line notice (:class:`_Cache`).
"""
import os
import sys

from numba import njit

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: For kernels whose grouping of terms carries their accuracy: the loss
#: ``log(sum) - (logit - max)`` must not be regrouped as ``(log(sum) + max) - logit``.
FASTMATH_ORDERED = FASTMATH - {"reassoc"}

#: Options of every serial kernel (``cache=True`` is :func:`jit`'s, through :class:`_Cache`).
SERIAL = dict(nogil=True, fastmath=FASTMATH, error_model="numpy", boundscheck=False)
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
        return lambda f: _cached(_with_slp(njit(**options)(f)))
    return _cached(_with_slp(njit(**options)(fn)))


# --- LLVM's SLP vectorizer, on for fastnet's own compiles (checked on Numba 0.68) ---------
#
# Numba runs LLVM without its SLP (straight-line) vectorizer unless
# NUMBA_SLP_VECTORIZE=1. The register-blocked kernels (kernels/blocked.py) are
# written as rows of scalar sums that only that pass turns into vectors: without
# it they run at a third of the speed. Rather than switch it on for every Numba
# function in the process, each of fastnet's dispatchers switches it on while it
# compiles (holding Numba's compiler lock, so no other compile sees it), and an
# explicit NUMBA_SLP_VECTORIZE in the environment is left alone.

def _with_slp(dispatcher):
    if "NUMBA_SLP_VECTORIZE" in os.environ:
        return dispatcher
    compile_plain = dispatcher.compile

    def compile(sig):
        from numba.core import config
        from numba.core.compiler_lock import global_compiler_lock

        with global_compiler_lock:
            before = config.SLP_VECTORIZE
            config.SLP_VECTORIZE = 1
            try:
                return compile_plain(sig)
            finally:
                config.SLP_VECTORIZE = before

    dispatcher.compile = compile
    return dispatcher


# --- cache freshness -----------------------------------------------------------
#
# Numba keys a cached function on its own source file only. A compiled caller
# (engine.train_batches) holds its callees (the kernels) compiled into it, so
# after a kernel changes, a stale caller would still run the old kernel -- with
# the old kernel's idea of its arguments. For fastnet's own functions the stamp
# below covers every source file whose code or constants Numba compiles (the
# kernels, the engine's passes, this module, and config's names the engine
# numbers its update rules by), so a change to any of them recompiles
# everything; editing the commands, the trainer or the estimator does not.
# (Users embedding the kernels: see docs/kernels.md.)

#: The sources that compiled code is made of, relative to the package.
COMPILED_SOURCES = ("_jit.py", "config.py", "engine.py", "kernels/*.py")


def _package_stamp():
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    paths = sorted({path for pattern in COMPILED_SOURCES for path in root.glob(pattern)})
    for path in paths:
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


# --- a cache that never breaks a run (checked on Numba 0.68) --------------------------
#
# Numba's own cache raises from deep inside a compile when an index or data file
# is corrupt (UnpicklingError, EOFError, ...), which then breaks every later run
# until someone deletes the file; and ``cache=True`` raises at import ("no locator
# available") when no cache folder is writable. fastnet installs its own subclass
# of Numba's FunctionCache on each of its dispatchers instead.

_told = set()


def _say_once(key, message):
    if key not in _told:
        _told.add(key)
        print(f"fastnet: {message}", file=sys.stderr, flush=True)


def _cache_class():
    from numba.core.caching import FunctionCache

    class Cache(FunctionCache):
        """Numba's per-function cache, with failures turned into recompiles."""

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as exc:  # noqa: BLE001 -- whatever the file held, compiling again is right
                path = self._cache_file._index_path
                _say_once(("corrupt", path), f"discarded a broken entry of Numba's cache, {path} "
                                             f"({type(exc).__name__}); compiling it again")
                self._discard()
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception as exc:  # noqa: BLE001 -- an unsaved entry costs a compile next time, no more
                self._discard()
                try:
                    super().save_overload(sig, data)
                except Exception:  # noqa: BLE001
                    _say_once(("unsaved", self._cache_path),
                              f"cannot write Numba's cache in {self._cache_path} "
                              f"({type(exc).__name__}: {exc}); this run's kernels will compile again next time")

        def _discard(self):
            try:
                os.unlink(self._cache_file._index_path)
            except OSError:
                pass

    return Cache


def _cached(dispatcher):
    """Give ``dispatcher`` fastnet's cache, or none (after a notice) where no folder is writable."""
    global _Cache
    if _Cache is None:
        _Cache = _cache_class()
    try:
        dispatcher._cache = _Cache(dispatcher.py_func)
    except RuntimeError as exc:  # Numba: "cannot cache function ...: no locator available"
        _say_once("uncached", "no writable folder for Numba's cache (the package's __pycache__ and the "
                              "user cache folder are read-only); running uncached, so every run compiles. "
                              f"Set NUMBA_CACHE_DIR to a folder only you can write. ({exc})")
    return dispatcher


_Cache = None


# --- the threading layer, started on import (checked on Numba 0.68) ---------------------
#
# Starting it (a few milliseconds) makes known the symbols that compiled parallel loops call.
# Numba's cache can hold a caller of fastnet's parallel kernels (the engine's
# training loop, or a user's cached function) without the hook that starts the
# layer: the hook is dropped when the kernels themselves came from the cache as
# the caller compiled. Loaded before any parallel loop had run, such a caller
# crashed the process ("LLVM ERROR: Symbol not found: allocate_sched", or a
# segmentation fault). tests/test_cache.py holds the recipe.

def _start_threading_layer():
    import numba

    numba.get_num_threads()


_start_threading_layer()
