"""fastnet.prewarm: the background warm-up compiles exactly what the real run calls."""
import json
import subprocess
import sys
import textwrap

import pytest

from fastnet import train
from fastnet.config import TrainConfig
from fastnet.prewarm import Prewarm

# A fresh process (nothing compiled in it yet) warms up in the background while it
# loads MNIST, then counts what the real trainer's warm-up still had to compile.
_CHILD = textwrap.dedent("""
    import json, sys
    from fastnet.config import TrainConfig
    from fastnet.prewarm import Prewarm
    config = TrainConfig(**json.loads(sys.argv[2]))
    prewarm = Prewarm(config).start()
    from fastnet.data import load_dataset
    data = load_dataset("mnist", sys.argv[1], offline=True)
    seconds = prewarm.wait()
    assert prewarm.error is None, repr(prewarm.error)
    from fastnet.train import Trainer
    trainer = Trainer(config, data.train_images, data.train_labels)
    fns = [trainer.ops.train_batches, trainer.ops.load_batch, trainer.ops.forward]
    before = [list(f.signatures) for f in fns]
    trainer.warmup()
    after = [list(f.signatures) for f in fns]
    print(json.dumps({"seconds": seconds, "before": [len(s) for s in before],
                      "new": [len(a) - len(b) for a, b in zip(after, before)]}))
""")


@pytest.mark.parametrize("settings", [{}, {"optimizer": "adam", "val_split": 0.1, "patience": 2}],
                         ids=["default", "adam-validation"])
def test_the_real_warmup_finds_everything_compiled(mnist_dir, settings):
    done = subprocess.run([sys.executable, "-c", _CHILD, str(mnist_dir), json.dumps(settings)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["seconds"] > 0
    assert report["before"] == [1, 1, 1]  # the prewarm compiled one signature of each
    assert report["new"] == [0, 0, 0]  # and the real run's types matched them


def test_a_failed_prewarm_leaves_the_work_to_the_real_warmup(monkeypatch):
    def broken(self, *, execute=True):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(train.Trainer, "warmup", broken)
    prewarm = Prewarm(TrainConfig(hidden=(8,))).start()
    assert prewarm.wait() == 0.0
    assert prewarm.done()
    assert isinstance(prewarm.error, RuntimeError)


def test_the_numpy_engine_has_nothing_to_compile():
    prewarm = Prewarm(TrainConfig(engine="numpy", hidden=(8,))).start()
    assert prewarm.wait() > 0
    assert prewarm.error is None


def test_ctrl_c_stops_the_wait(monkeypatch):
    """Waiting for a long compile stays interruptible (fastnet-train then exits with 130)."""
    import os
    import signal
    import threading
    import time

    release = threading.Event()

    def slow(self, *, execute=True):
        release.wait(30)

    monkeypatch.setattr(train.Trainer, "warmup", slow)
    prewarm = Prewarm(TrainConfig(hidden=(8,))).start()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            prewarm.wait()
    finally:
        release.set()
        timer.cancel()
    assert time.perf_counter() - t0 < 10
    prewarm.wait()


def test_ctrl_c_stops_the_wait_when_another_thread_takes_the_signal(monkeypatch):
    """Issue 15, item 11: in a full test run SIGINT can land on a worker thread;
    Python's handler then runs only when the main thread returns to Python code.
    Blocking SIGINT in the main thread forces that case here."""
    import os
    import signal
    import threading
    import time

    release = threading.Event()
    monkeypatch.setattr(train.Trainer, "warmup", lambda self, *, execute=True: release.wait(30))
    prewarm = Prewarm(TrainConfig(hidden=(8,))).start()
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()  # both threads start with SIGINT unblocked: one of them takes it
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            prewarm.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        release.set()
        timer.cancel()
    assert time.perf_counter() - t0 < 10
    prewarm.wait()


def test_wait_with_a_timeout_says_none_while_running(monkeypatch):
    import threading

    release = threading.Event()
    monkeypatch.setattr(train.Trainer, "warmup", lambda self, *, execute=True: release.wait(30))
    prewarm = Prewarm(TrainConfig(hidden=(8,))).start()
    assert prewarm.wait(timeout=0.05) is None
    assert not prewarm.done()
    release.set()
    assert prewarm.wait(timeout=30) > 0
