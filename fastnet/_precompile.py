"""Compile the training loop into Numba's cache ahead of time.

``python -m fastnet._precompile`` compiles what a default run calls (float32
parameters, uint8 data, any depth, every update rule) and leaves it in
Numba's cache beside the package, where every later process loads it
instead of compiling it. ``setup.py`` runs it when it builds fastnet, so that
``pip install .`` and ``pip install -e .`` both ship the compiled loop and
the first ``fastnet-train`` starts at once. Other dtypes compile, once, on
first use.

A compiled caller links its callees' code, so the kernels must be compiled
before the loop. They are independent of each other, so they are split in
two groups and compiled by two processes at once, each for the exact
argument types the loop passes them (:func:`kernel_signatures`); then one
process compiles the training loop and the other the prediction pass, both
finding every kernel in the cache. A
signature missed here costs nothing but time: the loop's compile then
compiles that kernel itself.

The cache is only valid where it was made: Numba keys every entry on the
CPU's name and features, its own version, and (see :mod:`fastnet._jit`) the
source of the whole package, so on another machine, another Numba or edited
sources the kernels compile again instead of loading.
"""
import argparse
import subprocess
import sys
import time

#: The kernels of each group; each group compiles in about the same time.
GROUPS = (
    ("sparse_linear_forward", "linear_backward_input", "relu_forward", "relu_backward", "sgd_update",
     "momentum_update"),
    ("sparse_linear_backward_params", "classifier_forward", "classifier_backward", "adam_update",
     "gather_batch"),
)


def kernel_signatures(dtype="float32", stored="uint8"):
    """``{kernel name: [argument types, ...]}``: what :func:`fastnet.engine.train_batches`
    and :func:`fastnet.engine.predict_proba` pass each kernel for parameters of
    ``dtype`` and data stored as ``stored``."""
    from numba import types

    def a(ndim, t=dtype):
        return types.Array(getattr(types, t), ndim, "C")

    f, i32, i64, b = types.float64, a(1, "int32"), types.int64, types.boolean
    inputs = [stored, dtype]  # the first layer reads the data as stored; later layers, activations
    return {
        "sparse_linear_forward": [(a(2), a(2, "int32"), a(2, x), a(2), a(1), f) for x in inputs],
        "sparse_linear_backward_params": [(a(2), a(1), a(2, "int32"), a(2), a(2, x), f) for x in inputs],
        "linear_backward_input": [(a(2), a(2), a(2))],
        "relu_forward": [(a(2), a(2))],
        "relu_backward": [(a(2), a(2), a(2))],
        "classifier_forward": [(a(2), a(1), a(3), a(2), a(2), a(1), i32, f)],
        "classifier_backward": [(a(2), a(2), a(1), a(3), a(2), a(2), a(2), i32, f)],
        "sgd_update": [(a(1), a(1), f, f)],
        "momentum_update": [(a(1), a(1), a(1), f, f, f, b)],
        "adam_update": [(a(1), a(1), a(1), a(1), f, f, f, f, f, i64)],
        "gather_batch": [(a(2, stored), i32, a(2, stored), i32, a(1, "int64"), i64, f)],
    }


def compile_kernels(names, dtype="float32", stored="uint8"):
    """Compile (or load from the cache) the kernels ``names`` for the loop's argument types."""
    from . import kernels

    signatures = kernel_signatures(dtype, stored)
    for name in names:
        for sig in signatures[name]:
            getattr(kernels, name).compile(sig)


def compile_passes(part, dtype="float32"):
    """Compile (or load) the engine's ``part`` ("train": the training loop;
    "predict": the prediction pass) as a run of ``dtype`` on uint8 images calls it."""
    import numpy as np

    from .config import TrainConfig
    from .train import Trainer

    stand_in = Trainer(TrainConfig(dtype=dtype, hidden=(8,), batch_size=8), np.zeros((8, 16), np.uint8),
                       np.zeros(8, np.int32))
    calls = stand_in.warmup_calls()
    for fn, args in calls[:1] if part == "train" else calls[1:]:
        stand_in.ops.prepare(fn, *args)


def _in_two_processes(task, first, second):
    """Run ``task(first)`` here while a second process runs ``--task task second``."""
    worker = subprocess.Popen([sys.executable, "-m", "fastnet._precompile", "--task", task, second])
    try:
        TASKS[task](first)
    finally:
        if worker.wait() != 0:
            print(f"fastnet: a compile process failed (exit code {worker.returncode}); "
                  "what it had to compile compiles on first use", flush=True)


TASKS = {
    "kernels": lambda group: compile_kernels(GROUPS[int(group)]),
    "passes": compile_passes,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnet._precompile", description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs=2, metavar=("TASK", "PART"), default=None,
                        help="one part of the work (what the second process runs): kernels 0|1, passes train|predict")
    args = parser.parse_args(argv)
    if args.task is not None:
        task, part = args.task
        TASKS[task](part)
        return 0
    t0 = time.perf_counter()
    print("fastnet: compiling the training loop into Numba's cache (once)...", flush=True)
    _in_two_processes("kernels", "0", "1")
    _in_two_processes("passes", "train", "predict")
    print(f"fastnet: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
