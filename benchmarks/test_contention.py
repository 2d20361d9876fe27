"""Training on a shared machine: the default thread count against ``--threads 1`` under load.

Groups ``contention-busy<N>`` for N = 0, 1, 2 other busy processes (each a
Python loop, started before the group's rounds and stopped after them, by
the benchmark itself). Three thread settings, ``which``:

- ``default``: no thread count given, so the run adapts it to the cores
  the others leave free (:mod:`fastnet._threads`);
- ``threads1``: one thread, as ``--threads 1``;
- ``threads2``: two threads, fixed, as ``--threads 2`` (what the default
  was before it adapted).

Each round trains :data:`EPOCHS` epochs of 784-128-10 on :data:`SAMPLES`
MNIST digits with each setting in turn (the order turning by one each round),
long enough for the thread count to settle: paired rounds, as in
``test_shapes.py``, so that the settings are compared within a round, not
across minutes of drift. Each setting's times are kept in
``extra_info["times"]``; ``report.py`` takes medians, and the median of the
rounds' ratios for the targets. Nine rounds: under two busy processes one
round's ratio ranges from 0.6x to 1.8x (where the scheduler puts the three
running threads on the two cores), and five rounds gave a median of 0.73x in
one run and 1.03x in another. The target
(issue 18): under load, ``default`` keeps at least 0.9x the throughput of
``threads1``; on a quiet machine it loses at most 5% against ``threads2``.

With ``--benchmark-disable`` (CI) one small case per row runs under one
busy process: the code path, not the timings.
"""
import subprocess
import sys
import time

import numba
import pytest

from benchmarks._common import FastnetEpoch, PairedRounds, train_config

SAMPLES = 20000
SMOKE_SAMPLES = 1000
EPOCHS = 3
ROUNDS = {"rounds": 9, "iterations": 1, "warmup_rounds": 1}
THREADS = {"default": None, "threads1": 1, "threads2": 2}


@pytest.fixture
def busy(request):
    """``request.param`` other processes, each spinning on a core, for the test's duration."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(request.param)]
    time.sleep(0.3)  # let them start spinning
    try:
        yield request.param
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("busy", [0, 1, 2], indirect=True)
def test_contention(benchmark, mnist, busy):
    if not benchmark.enabled and busy != 1:
        pytest.skip("timings only: run with benchmarks enabled")
    n = SAMPLES if benchmark.enabled else SMOKE_SAMPLES
    names = [w for w, t in THREADS.items() if not t or t <= numba.config.NUMBA_NUM_THREADS]
    runs = {w: FastnetEpoch(train_config("numba", 128, epochs=EPOCHS, threads=THREADS[w]),
                            mnist.train_images[:n], mnist.train_labels[:n]) for w in names}
    rounds = PairedRounds(runs)

    benchmark.group = f"contention-busy{busy}"
    benchmark.pedantic(rounds, **ROUNDS)
    governor = runs["default"].trainer.governor
    benchmark.extra_info.update(samples=n * EPOCHS, busy=busy, paired=True,
                                times=rounds.last(ROUNDS["rounds"] if benchmark.enabled else 1),
                                thread_windows=dict(governor.counts) if governor is not None else {})
