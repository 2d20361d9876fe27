"""Whole epochs at every shape the issue names: fastnet against its NumPy engine and PyTorch.

Groups ``shape-<network>-b<batch>[-f64]`` (rows by ``which``: numba, numpy,
torch), for the networks of :data:`NETWORKS` at batches of 32, 128 and 512,
in float32; and in float64 against PyTorch. Each round is one epoch on the
first :data:`SAMPLES` MNIST training digits (shuffle, gather and scale the
uint8 pixels, forward, loss, backward, update), from the same weights, with
Nesterov momentum and the same threads on every side (see ``test_epoch.py``,
whose harness this shares). ``extra_info`` holds the epoch's dense-equivalent
FLOPs, which ``report.py`` sets beside the matmul peak.

With ``--benchmark-disable`` (CI) only the first network runs, at batch 32,
on 512 samples, in each dtype: the code path, not the timings.
"""
import math

import numpy as np
import pytest

from benchmarks._common import FastnetEpoch, TorchEpoch, epoch_flops, train_config
from fastnet.model import MLP

#: The hidden widths of each network (784 inputs, 10 classes).
NETWORKS = {
    "784-128-10": (128,),
    "784-800-10": (800,),
    "784-2048-10": (2048,),
    "784-512-256-10": (512, 256),
    "784-256-256-256-10": (256, 256, 256),
    "784-1024-1024-10": (1024, 1024),
}
BATCHES = (32, 128, 512)
SAMPLES = 20000
SMOKE_SAMPLES = 512
ROUNDS = {"rounds": 3, "iterations": 1, "warmup_rounds": 1}

CASES = [(net, batch, dtype, which)
         for dtype in ("float32", "float64")
         for net in NETWORKS for batch in BATCHES
         for which in (("numba", "numpy", "torch") if dtype == "float32" else ("numba", "torch"))]


@pytest.mark.parametrize("net, batch, dtype, which", CASES,
                         ids=[f"{n}-b{b}-{d}-{w}" for n, b, d, w in CASES])
def test_shape(benchmark, request, mnist, net, batch, dtype, which):
    if not benchmark.enabled and (net != next(iter(NETWORKS)) or batch != BATCHES[0]):
        pytest.skip("timings only: run with benchmarks enabled")
    n = SAMPLES if benchmark.enabled else SMOKE_SAMPLES
    images, labels = mnist.train_images[:n], mnist.train_labels[:n]
    config = train_config("numba" if which == "torch" else which, batch, hidden=NETWORKS[net], dtype=dtype)
    if which == "torch":
        torch = request.getfixturevalue("torch")
        sizes = (images[0].size, *config.hidden, 10)
        run = TorchEpoch(torch, config, MLP(sizes, dtype=dtype, seed=config.seed), images, labels)
    else:
        run = FastnetEpoch(config, images, labels)
        sizes = run.trainer.model.sizes

    losses = []
    benchmark.group = f"shape-{net}-b{batch}" + ("-f64" if dtype == "float64" else "")
    benchmark.extra_info.update(flops=epoch_flops(sizes, n), samples=n, batch_size=batch, dtype=dtype)
    benchmark.pedantic(lambda: losses.append(run.run()), setup=run.rewind, **ROUNDS)

    benchmark.extra_info["loss"] = losses[-1]
    assert all(math.isfinite(loss) for loss in losses)
    np.testing.assert_allclose(losses, losses[0], rtol=1e-4, err_msg="rounds should replay the same epoch")
