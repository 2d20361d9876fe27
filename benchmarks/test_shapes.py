"""Whole epochs at every shape the issue names: fastnet against its NumPy engine and PyTorch,
in paired rounds.

One group per network, batch and dtype, ``shape-<network>-b<batch>[-f64]``, for the
networks of :data:`NETWORKS` at batches of 32, 128 and 512: in float32 against the
NumPy engine and PyTorch, in float64 against PyTorch. Each engine's epoch is one
pass over the first :data:`SAMPLES` MNIST training digits (shuffle, gather and
scale the uint8 pixels, forward, loss, backward, update), from the same weights,
with Nesterov momentum and the same threads on every side (see ``test_epoch.py``,
whose harness this shares).

**Paired rounds.** A round runs one epoch of every engine, one after the other,
in an order that turns by one engine each round, after a pause of :data:`PAUSE`
seconds (the previous engine's BLAS or OpenMP threads spin for a while after
their last call, then sleep). Each engine's epoch is timed on its own and kept in
``extra_info["times"]``; ``report.py`` takes each engine's median, and for each
ratio the median of the per-round ratios. Why: on these shared 2-core virtual
machines the speed of two threads drifts by up to 2x over minutes (2026-12-01:
the same fastnet epoch took 0.39 s in one minute and 0.82 s a few minutes
later), so engines timed one after the other, minutes apart, could be compared
across a drift; an engine's epoch and the others' epochs of the same round are
seconds apart. The benchmark's own statistics time whole rounds.

``extra_info`` also holds the epoch's dense-equivalent FLOPs, which ``report.py``
sets beside the matmul peak.

With ``--benchmark-disable`` (CI) only the first network runs, at batch 32, on
512 samples, in each dtype, one round: the code path, not the timings. Without
PyTorch its engine is left out.
"""
import dataclasses
import math

import numpy as np
import pytest

from benchmarks._common import FastnetEpoch, PairedRounds, TorchEpoch, epoch_flops, train_config
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
#: Timed rounds (each one epoch of every engine), after one untimed round.
ROUNDS = {"rounds": 5, "iterations": 1, "warmup_rounds": 1}
#: Seconds of rest before each epoch: longer than OpenBLAS's threads spin after a call (about 0.1 s).
PAUSE = 0.15

CASES = [(net, batch, dtype) for dtype in ("float32", "float64") for net in NETWORKS for batch in BATCHES]


def engines(request, config, images, labels, dtype):
    """``{engine: run}``: fastnet's Numba engine, its NumPy engine (float32 only) and PyTorch
    (when installed), each ready to replay the same epoch."""
    runs = {"numba": FastnetEpoch(config, images, labels)}
    if dtype == "float32":
        runs["numpy"] = FastnetEpoch(dataclasses.replace(config, engine="numpy"), images, labels)
    try:
        torch = request.getfixturevalue("torch")
    except pytest.skip.Exception:
        return runs
    sizes = runs["numba"].trainer.model.sizes
    runs["torch"] = TorchEpoch(torch, config, MLP(sizes, dtype=dtype, seed=config.seed), images, labels)
    return runs


@pytest.mark.parametrize("net, batch, dtype", CASES, ids=[f"{n}-b{b}-{d}" for n, b, d in CASES])
def test_shape(benchmark, request, mnist, net, batch, dtype):
    if not benchmark.enabled and (net != next(iter(NETWORKS)) or batch != BATCHES[0]):
        pytest.skip("timings only: run with benchmarks enabled")
    n = SAMPLES if benchmark.enabled else SMOKE_SAMPLES
    images, labels = mnist.train_images[:n], mnist.train_labels[:n]
    config = train_config("numba", batch, hidden=NETWORKS[net], dtype=dtype)
    runs = engines(request, config, images, labels, dtype)
    rounds = PairedRounds(runs, pause=PAUSE if benchmark.enabled else 0.0)

    benchmark.group = f"shape-{net}-b{batch}" + ("-f64" if dtype == "float64" else "")
    benchmark.pedantic(rounds, **ROUNDS)

    benchmark.extra_info.update(flops=epoch_flops(runs["numba"].trainer.model.sizes, n), samples=n,
                                batch_size=batch, dtype=dtype, paired=True,
                                times=rounds.last(ROUNDS["rounds"] if benchmark.enabled else 1),
                                loss={name: v[-1] for name, v in rounds.results.items()})
    for name, losses in rounds.results.items():
        assert all(math.isfinite(loss) for loss in losses), name
        np.testing.assert_allclose(losses, losses[0], rtol=1e-4, err_msg=f"{name}: rounds should replay the same epoch")
