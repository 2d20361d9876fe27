"""Child process of benchmarks/test_startup.py: start as fastnet-train starts, up to the first batch.

Usage: python _startup_child.py MNIST_DIR THREADS SPAWNED_AT [DEPTH]

As ``fastnet-train`` does: starts compiling (or loading from NUMBA_CACHE_DIR)
everything a default run needs on a background thread
(:class:`fastnet.prewarm.Prewarm`), loads MNIST's training set meanwhile,
builds a Trainer with the default configuration (on ten batches' worth of
it; with ``DEPTH``, that many hidden layers of the default width), waits for the warm-up and runs ``Trainer.warmup()`` (which finds
everything compiled), then trains until the first batch is done.

Prints one JSON line of seconds: ``import`` (fastnet's light modules: Numba
is imported on the background thread), ``load``, ``warmup`` (the background
warm-up's own time plus ``Trainer.warmup()``'s: the time spent compiling,
mostly overlapped with loading), ``wait`` (how long the main thread waited
for the warm-up after loading), ``first_batch`` (from the first line of
this script to the first batch done) and ``since_spawn`` (from
``SPAWNED_AT``, the parent's ``time.time()`` before it started this process,
so Python's own start is included).
"""
import time

t0 = time.perf_counter()
import json  # noqa: E402
import sys  # noqa: E402

from fastnet.config import TrainConfig  # noqa: E402
from fastnet.prewarm import Prewarm  # noqa: E402


def main(mnist_dir, threads, spawned_at, depth=None):
    t_import = time.perf_counter()
    # ten batches, so that the first progress report comes right after the first batch
    config = TrainConfig(threads=int(threads))
    config = config.replace(limit=10 * config.batch_size)
    if depth is not None:
        config = config.replace(hidden=config.hidden[:1] * int(depth))
    prewarm = Prewarm(config).start()
    from fastnet.data import load_dataset  # as fastnet-train: the data modules after the start

    data = load_dataset("mnist", mnist_dir, offline=True)
    t_load = time.perf_counter()
    prewarm.wait()
    t_wait = time.perf_counter()
    if prewarm.error is not None:
        raise prewarm.error
    from fastnet.train import Trainer

    trainer = Trainer(config, data.train_images, data.train_labels)
    warmup = prewarm.seconds + trainer.warmup()
    done = []
    trainer.run(on_progress=lambda *_: done.append((time.perf_counter(), time.time())),
                should_stop=lambda: bool(done))
    if trainer.batch != 1:
        sys.exit(f"expected to stop after the first batch, stopped after {trainer.batch}")
    print(json.dumps({
        "import": t_import - t0, "load": t_load - t_import, "warmup": warmup, "wait": t_wait - t_load,
        "first_batch": done[0][0] - t0, "since_spawn": done[0][1] - float(spawned_at),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
