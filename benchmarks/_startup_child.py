"""Child process of benchmarks/test_startup.py: start as fastnet-train starts, up to the first batch.

Usage: python _startup_child.py MNIST_DIR THREADS SPAWNED_AT

Imports fastnet, loads MNIST's training set, builds a Trainer with the default
configuration (on ten batches' worth of it), compiles (or loads from NUMBA_CACHE_DIR) everything the run
needs with ``Trainer.warmup()``, then trains until the first batch is done.
Prints one JSON line of seconds: ``import``, ``load``, ``warmup``,
``first_batch`` (from the first line of this script to the first batch done)
and ``since_spawn`` (from ``SPAWNED_AT``, the parent's ``time.time()`` before
it started this process, so Python's own start is included).
"""
import time

t0 = time.perf_counter()
import json  # noqa: E402
import sys  # noqa: E402

from fastnet.config import TrainConfig  # noqa: E402
from fastnet.data import load_dataset  # noqa: E402
from fastnet.train import Trainer  # noqa: E402


def main(mnist_dir, threads, spawned_at):
    t_import = time.perf_counter()
    data = load_dataset("mnist", mnist_dir, offline=True)
    t_load = time.perf_counter()
    # ten batches, so that the first progress report comes right after the first batch
    config = TrainConfig(threads=int(threads))
    config = config.replace(limit=10 * config.batch_size)
    trainer = Trainer(config, data.train_images, data.train_labels)
    warmup = trainer.warmup()
    done = []
    trainer.run(on_progress=lambda *_: done.append((time.perf_counter(), time.time())),
                should_stop=lambda: bool(done))
    if trainer.batch != 1:
        sys.exit(f"expected to stop after the first batch, stopped after {trainer.batch}")
    print(json.dumps({
        "import": t_import - t0, "load": t_load - t_import, "warmup": warmup,
        "first_batch": done[0][0] - t0, "since_spawn": done[0][1] - float(spawned_at),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
