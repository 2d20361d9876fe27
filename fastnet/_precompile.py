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
argument types the loop passes them (:func:`kernel_signatures`); then the
training loop compiles, finding every kernel in the cache, and with it the
prediction pass. (Two processes never compile the same function: each would
rewrite its cache index, and one's entry could be lost.) A
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

#: The two processes' shares of the kernels' compiles, as (kernel, which of its signatures in
#: :func:`kernel_signatures`): about equal in time, the costliest (the sparse kernels, one
#: signature for the data as stored and one for activations) split between them.
GROUPS = (
    (("sparse_linear_forward", 0), ("sparse_linear_backward_params", 1), ("classifier_forward", 0),
     ("relu_forward", 0), ("relu_backward", 0), ("sgd_update", 0), ("momentum_update", 0), ("adam_update", 0),
     ("dropout_key", 0), ("dropout_forward", 0), ("dropout_backward", 0), ("blocked_linear_relu_forward", 0),
     ("blocked_linear_backward_input_relu", 0), ("blocked_linear_backward_params", 1)),
    (("sparse_linear_forward", 1), ("sparse_linear_backward_params", 0), ("classifier_backward", 0),
     ("blocked_linear_relu_forward", 1), ("blocked_linear_backward_input", 0), ("blocked_linear_backward_params", 0),
     ("gather_batch", 0), ("standardize_batch", 0)),
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
        "blocked_linear_relu_forward": [(a(2), a(1), a(2, x), a(2), a(1), f) for x in inputs],
        "blocked_linear_backward_input": [(a(2), a(1), a(2), a(2))],
        "blocked_linear_backward_input_relu": [(a(2), a(1), a(2), a(2), a(2))],
        "blocked_linear_backward_params": [(a(2), a(1), a(1), a(2), a(2, x), f) for x in inputs],
        "relu_forward": [(a(2), a(2))],
        "relu_backward": [(a(2), a(2), a(2))],
        "classifier_forward": [(a(2), a(1), a(3), a(2), a(2), a(1), i32, f)],
        "classifier_backward": [(a(2), a(2), a(1), a(3), a(2), a(2), a(2), i32, f)],
        "sgd_update": [(a(1), a(1), f, f)],
        "momentum_update": [(a(1), a(1), a(1), f, f, f, b)],
        "adam_update": [(a(1), a(1), a(1), a(1), f, f, f, f, f, i64)],
        "gather_batch": [(a(2, stored), i32, a(2, stored), i32, a(1, "int64"), i64, f)],
        "standardize_batch": [(a(2, stored), a(1), a(1))],
        "dropout_key": [(i64, i64, i64)],
        "dropout_forward": [(a(2), i64, f)],
        "dropout_backward": [(a(2), a(2), a(2), f)],
    }


def compile_kernels(group, dtype="float32", stored="uint8"):
    """Compile (or load from the cache) the kernels of ``group`` (a :data:`GROUPS` entry)
    for the loop's argument types."""
    from . import kernels

    signatures = kernel_signatures(dtype, stored)
    for name, which in group:
        getattr(kernels, name).compile(signatures[name][which])


def compile_loop(dtype="float32"):
    """Compile (or load) the training loop as a run of ``dtype`` on uint8 images
    calls it; the prediction pass (:func:`fastnet.engine.forward`, inlined in
    the loop) is compiled and cached with it."""
    import numpy as np

    from .config import TrainConfig
    from .train import Trainer

    stand_in = Trainer(TrainConfig(dtype=dtype, hidden=(8,), batch_size=8), np.zeros((8, 16), np.uint8),
                       np.arange(8) % 2)
    for fn, args in stand_in.warmup_calls():
        stand_in.ops.prepare(fn, *args)


def _kernels_in_two_processes():
    """Compile :data:`GROUPS` [0] here while a second process compiles :data:`GROUPS` [1]."""
    worker = subprocess.Popen([sys.executable, "-m", "fastnet._precompile", "--group", "1"])
    try:
        compile_kernels(GROUPS[0])
    finally:
        if worker.wait() != 0:
            print(f"fastnet: a compile process failed (exit code {worker.returncode}); "
                  "its kernels compile with the loop", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnet._precompile", description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, choices=range(len(GROUPS)), default=None,
                        help="compile one group of kernels only (the second process's share)")
    args = parser.parse_args(argv)
    if args.group is not None:
        compile_kernels(GROUPS[args.group])
        return 0
    t0 = time.perf_counter()
    print("fastnet: compiling the training loop into Numba's cache (once)...", flush=True)
    _kernels_in_two_processes()
    t1 = time.perf_counter()
    compile_loop()
    t2 = time.perf_counter()
    print(f"fastnet: compiled in {t2 - t0:.1f} s (kernels {t1 - t0:.1f} s in two processes, loop {t2 - t1:.1f} s)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
