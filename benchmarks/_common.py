"""Helpers shared by the benchmarks: dense-equivalent FLOP counts, a fastnet
:class:`~fastnet.train.Trainer` that can replay its first epoch, and the same
training loop in PyTorch."""
import time

import numba
import numpy as np

from fastnet.config import TrainConfig
from fastnet.train import Trainer

#: Threads given to every engine (fewer if Numba was started with fewer).
THREADS = min(2, numba.config.NUMBA_NUM_THREADS)

#: The network of every epoch benchmark.
HIDDEN = (128,)


def linear_flops(B, D, H):
    """Multiply-adds of one dense ``(B, D) @ (D, H)`` pass, counted as 2 FLOPs each."""
    return 2 * B * D * H


def step_flops(sizes, B):
    """Dense-equivalent FLOPs of one training step on ``B`` samples: for every layer
    a forward pass and a weight-gradient pass, and an input-gradient pass for all
    but the first (whose input needs no gradient). Zeros skipped by the sparse
    kernels still count, so this compares engines doing different amounts of work."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * linear_flops(B, D, H) for D, H in layers) + sum(linear_flops(B, D, H) for D, H in layers[1:])


def epoch_flops(sizes, n):
    """Dense-equivalent FLOPs of one epoch over ``n`` samples (per-sample cost times ``n``)."""
    return step_flops(sizes, 1) * n


def train_config(engine, batch_size, hidden=HIDDEN, dtype="float32", epochs=1, threads=THREADS):
    """One epoch of fastnet's default run (Nesterov momentum, lr, weight decay), no validation.

    ``threads``: :data:`THREADS`, as the session fixture sets them for every engine; ``None``
    leaves them to the run (which then adapts them to the load: :mod:`fastnet._threads`)."""
    return TrainConfig(engine=engine, batch_size=batch_size, hidden=hidden, dtype=dtype, epochs=epochs,
                       val_split=0, threads=threads)


class FastnetEpoch:
    """A Trainer, compiled, that replays the same first epoch on every call of :meth:`rewind` + :meth:`run`.

    Rewinding restores the initial weights, optimizer state and shuffling RNG in
    place, so every round does the same work on buffers already touched (no page
    faults of a fresh workspace in the timed region)."""

    def __init__(self, config, images, labels):
        self.trainer = Trainer(config, images, labels)
        self.trainer.warmup()
        self.initial = self.trainer.model.params.copy()

    def rewind(self):
        t = self.trainer
        t.model.params[:] = self.initial
        t.moments.m[:] = 0
        t.moments.v[:] = 0
        t.rng = np.random.default_rng([t.config.seed, 1])
        t.epoch = t.step = 0
        t.history.clear()

    def run(self):
        """One epoch: shuffle, every batch's gather, forward, backward and update. Returns its loss."""
        result = self.trainer.run()
        return result.history[-1].loss


class TorchEpoch:
    """The same network, start weights, data, batches and update rule in PyTorch.

    Data stays a uint8 tensor and each batch is gathered and scaled to the
    run's dtype in the timed loop, as fastnet does. Like fastnet, each step also sums the
    loss and counts correct predictions (one ``.item()`` each)."""

    def __init__(self, torch, config, model, images, labels):
        self.torch = torch
        self.config = config
        self.images = torch.from_numpy(np.ascontiguousarray(images.reshape(len(images), -1)))
        self.labels = torch.from_numpy(labels.astype(np.int64))  # cross_entropy wants int64; converted once
        self.batch_size = config.batch_size or len(images)
        nn = torch.nn
        self.dtype = getattr(torch, config.dtype)
        layers = []
        for w, b in zip(model.weights, model.biases):
            linear = nn.Linear(*w.shape, dtype=self.dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))  # fastnet stores (D, H), torch (H, D)
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])
        self.initial = {k: v.clone() for k, v in self.net.state_dict().items()}
        self.rewind()

    def rewind(self):
        torch, c = self.torch, self.config
        self.net.load_state_dict(self.initial)
        weights = [p for name, p in self.net.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in self.net.named_parameters() if name.endswith("bias")]
        # fastnet decays the weights only
        groups = [{"params": weights, "weight_decay": c.weight_decay}, {"params": biases, "weight_decay": 0.0}]
        if c.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=c.lr)
        elif c.optimizer in ("momentum", "nesterov"):
            self.optimizer = torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.optimizer == "nesterov")
        else:
            self.optimizer = torch.optim.Adam(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
        self.generator = torch.Generator().manual_seed(c.seed)

    def run(self):
        """One epoch, as :meth:`FastnetEpoch.run`. Returns its mean loss."""
        torch, B = self.torch, self.batch_size
        n = len(self.images)
        order = torch.arange(n) if B == n else torch.randperm(n, generator=self.generator)
        loss_fn = torch.nn.functional.cross_entropy
        loss_sum = 0.0
        correct = 0
        for start in range(0, n, B):
            rows = order[start:start + B]
            x = self.images[rows].to(self.dtype).mul_(1 / 255)
            y = self.labels[rows]
            logits = self.net(x)
            loss = loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(rows)
            correct += int((logits.argmax(1) == y).sum())
        return loss_sum / n


class PairedRounds:
    """Call it once per round: one :meth:`run` of every run in ``runs`` (``{name: run}``, each with
    ``rewind`` and ``run``), in an order that turns by one each round, each after ``pause`` seconds.

    Each run is timed on its own (``times[name]``, one entry per round, warm-up rounds included) and its
    result kept (``results[name]``). Comparing runs within a round, not across minutes, keeps the
    machine's drift out of their ratios (``test_shapes.py``)."""

    def __init__(self, runs, pause=0.0):
        self.runs = runs
        self.names = list(runs)
        self.pause = pause
        self.times = {name: [] for name in self.names}
        self.results = {name: [] for name in self.names}
        self.rounds = 0

    def __call__(self):
        turn = self.rounds % len(self.names)
        for name in self.names[turn:] + self.names[:turn]:
            run = self.runs[name]
            run.rewind()
            time.sleep(self.pause)
            start = time.perf_counter()
            result = run.run()
            self.times[name].append(time.perf_counter() - start)
            self.results[name].append(result)
        self.rounds += 1

    def last(self, rounds):
        """``{name: times of the last rounds}``: the timed rounds, without the warm-up before them."""
        return {name: t[len(t) - rounds:] for name, t in self.times.items()}
