"""Compile (or load from Numba's cache) a training run's kernels on a
background thread while the main thread reads the data set.

A warm start is mostly two waits that need not follow each other:

- Numba: importing it, loading its typing and lowering registries on the
  first compiled call and loading the run's compiled functions from its
  cache, all Python code holding the GIL; on a cold cache, compiling them;
- the data: decompressing MNIST's gzip files (in zlib, which releases the
  GIL), or downloading them.

(How long each takes is measured in docs/performance.md, "Warm start".)

:class:`Prewarm` runs the first on a daemon thread, through a stand-in
:class:`~fastnet.train.Trainer` of the same configuration on a few zero
images (``warmup(execute=False)``: it compiles, and runs nothing). Numba
compiles for argument types (dtypes, dimensions, layouts), not sizes, so
the real trainer's :meth:`~fastnet.train.Trainer.warmup` then finds
everything compiled. If the stand-in's types differ from the
real run's, or the thread failed, the real warm-up just does the work
itself (and reports any error) as it would have without this.

This module imports nothing heavy, so starting the thread costs nothing:
``fastnet-train`` starts it before it reads the data.
"""
import threading
import time

#: The stand-in's data: a few samples of a few features (any size types alike).
_SAMPLES = 8
_FEATURES = 16
#: The longest a wait goes without returning to Python code (seconds): how late Ctrl-C can be.
_POLL = 0.1


class Prewarm:
    """Warm up ``config``'s kernels on a background thread: ``Prewarm(config).start()``,
    then :meth:`wait` before training. ``stored`` is the dtype the data will come in."""

    def __init__(self, config, stored="uint8"):
        self.config = config
        self.stored = stored
        self.seconds = None  #: how long the warm-up took, set when it is done
        self.error = None  #: the exception that stopped it, if any
        self.started = None
        self._thread = threading.Thread(target=self._run, name="fastnet-prewarm", daemon=True)

    def start(self):
        self.started = time.perf_counter()  #: when the warm-up began (``time.perf_counter()``)
        self._thread.start()
        return self

    def done(self):
        """Whether the warm-up has finished (or failed)."""
        return not self._thread.is_alive()

    def wait(self, timeout=None):
        """Block until the warm-up has finished; return its seconds (0 if it failed:
        the real warm-up then repeats the work and raises the error there). With
        ``timeout`` (seconds), return None if it is still running by then.

        The wait is a loop of short joins, so that Ctrl-C stops it at once even
        when the kernel delivers SIGINT to another thread (one of Numba's
        workers, say): Python's handler then only flags the signal, and the
        main thread runs it when it next returns to Python code, which a join
        without a timeout would not do until the compile ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if step <= 0:
                return None
            self._thread.join(step)
        return self.seconds or 0.0

    def _run(self):
        t0 = time.perf_counter()
        try:
            import numpy as np

            from .train import Trainer

            stand_in = self.config.replace(val_split=0, limit=None, patience=None, batch_size=_SAMPLES)
            images = np.zeros((_SAMPLES, _FEATURES), self.stored)
            labels = np.arange(_SAMPLES) % 2  # two classes: a classifier needs them
            Trainer(stand_in, images, labels).warmup(execute=False)
        except BaseException as exc:  # noqa: BLE001 -- the real warm-up reports it
            self.error = exc
            return
        self.seconds = time.perf_counter() - t0
