"""Whole epochs of 784-128-10 float32 training on MNIST: fastnet's two engines against PyTorch.

Groups (compare rows by ``which`` in numba, numpy, torch):

- ``epoch-b32``, ``epoch-b128``, ``epoch-b512``: one epoch of mini-batches;
- ``fullbatch-step``: one step on all 60000 samples (``batch_size=None``);
- ``epoch-b128-dense``: one epoch on random pixels in 1..255 (no zero to skip)
  with MNIST's labels, the sparse kernels' worst case.

Each round is exactly one epoch of training: shuffle, then for every batch
gather and scale the uint8 pixels, forward, loss, backward and update (fastnet
runs :meth:`Trainer.run` for one epoch with no validation). Every side starts
from the same weights, uses Nesterov momentum with fastnet's default rate and
weight decay (on the weights only), the same threads and float32. Compiling
(``Trainer.warmup``) and one untimed round happen first; before every round the
run is rewound to its start, so all rounds do the same work.

``extra_info`` holds the dense-equivalent FLOPs of the epoch (``report.py``
turns them into GFLOP/s) and the epoch's mean loss.

With ``--benchmark-disable`` (a plain test run, as in CI) each case trains one
epoch on the first :data:`SMOKE_SAMPLES` samples only: the same code on a
tenth of the data, so the whole suite stays quick.
"""
import math

import numpy as np
import pytest

from benchmarks._common import FastnetEpoch, TorchEpoch, epoch_flops, train_config
from fastnet.model import MLP

#: job -> (batch size, None for the whole set; data)
JOBS = {
    "epoch-b32": (32, "mnist"),
    "epoch-b128": (128, "mnist"),
    "epoch-b512": (512, "mnist"),
    "fullbatch-step": (None, "mnist"),
    "epoch-b128-dense": (128, "dense"),
}
ROUNDS = dict(rounds=5, iterations=1, warmup_rounds=1)
SMOKE_SAMPLES = 6000


@pytest.fixture(scope="session")
def dense_images(mnist):
    """Random pixels in 1..255, MNIST's shape: every input non-zero."""
    rng = np.random.default_rng(20261128)
    return rng.integers(1, 256, size=mnist.train_images.shape, dtype=np.uint8)


@pytest.mark.parametrize("which", ["numba", "numpy", "torch"])
@pytest.mark.parametrize("job", list(JOBS))
def test_epoch(benchmark, request, mnist, job, which):
    batch_size, data = JOBS[job]
    images = mnist.train_images if data == "mnist" else request.getfixturevalue("dense_images")
    labels = mnist.train_labels
    if not benchmark.enabled:
        images, labels = images[:SMOKE_SAMPLES], labels[:SMOKE_SAMPLES]
    config = train_config("numba" if which == "torch" else which, batch_size)
    if which == "torch":
        torch = request.getfixturevalue("torch")
        sizes = (images[0].size, *config.hidden, 10)
        run = TorchEpoch(torch, config, MLP(sizes, dtype=config.dtype, seed=config.seed), images, labels)
    else:
        run = FastnetEpoch(config, images, labels)
        sizes = run.trainer.model.sizes

    losses = []
    benchmark.group = job
    benchmark.extra_info.update(flops=epoch_flops(sizes, len(images)), samples=len(images),
                                batch_size=batch_size or len(images))
    benchmark.pedantic(lambda: losses.append(run.run()), setup=run.rewind, **ROUNDS)

    benchmark.extra_info["loss"] = losses[-1]
    assert all(math.isfinite(loss) for loss in losses)
    np.testing.assert_allclose(losses, losses[0], rtol=1e-4, err_msg="rounds should replay the same epoch")
