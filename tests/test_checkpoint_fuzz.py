"""Fuzzing checkpoints: 5,000 mutated checkpoints through Trainer.from_checkpoint
and a run, and 1,500 more through ``fastnet-train --resume``, in a child process
whose address space is capped.

Each case must either resume (and train to finite weights) or be refused
with a one-line error: from the API a ModelFormatError, a ValueError (a
ConfigError) or a MemoryError of fastnet's own estimate, each of which the
command turns into one line and exit code 1; from the command, exit code 0,
or 1 with one line on stderr. No other exception, no signal (a read out of
bounds), no MemoryError from an allocation the file asked for.

The network is tiny (6-5-3, 48 training samples of 6 uint8 features, so the
default compiled loop serves it) and the run is stopped after a few dozen
batches, so the whole fuzz takes about a minute. The mutations are in
fuzzing.py, seeded: a failing case prints its number and what was changed.
"""
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 15
N_API = 5000
N_CLI = 1500
#: The child's address space: room for Python, NumPy, Numba and LLVM, and not for what a hostile
#: file declares (1e12 elements, 2**62 bytes).
MEMORY_CAP = 3 << 30


def make_base(folder):
    """A data file and a checkpoint of a run stopped in its second epoch, after the
    third of six batches (so it holds an order, a batch, a best epoch and its weights)."""
    from fastnet.config import TrainConfig
    from fastnet.train import Trainer

    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, size=(66, 6), dtype=np.uint8)
    y = rng.integers(0, 3, size=66)
    data = folder / "data.npz"
    np.savez(data, x_train=x[:54], y_train=y[:54], x_test=x[54:], y_test=y[54:])
    config = TrainConfig(hidden=(5,), epochs=2, batch_size=8, val_split=6, patience=3, seed=1, optimizer="adam",
                         dropout=0.1)
    trainer = Trainer(config, x[:54], y[:54])
    trainer.data_info = {"source": str(data), "label_column": None}
    trainer.run(should_stop=lambda: trainer.epoch == 1 and trainer.batch == 3)
    assert (trainer.epoch, trainer.batch) == (1, 3) and trainer.best["params"] is not None
    trainer.save_checkpoint(folder / "base.npz")
    return data, folder / "base.npz"


def one_line(text):
    return text.strip() != "" and "\n" not in text.strip() and "Traceback" not in text


def run_api_case(path, x, y):
    """'resumed' or 'refused', or raise AssertionError saying what went wrong."""
    from fastnet.config import ConfigError
    from fastnet.model import ModelFormatError
    from fastnet.train import Trainer, TrainingDiverged

    batches = [0]

    def should_stop():
        batches[0] += 1
        return batches[0] > 40

    try:
        trainer = Trainer.from_checkpoint(path, x, y)
        trainer.run(should_stop=should_stop)
    except (ModelFormatError, ConfigError, ValueError, TrainingDiverged) as exc:
        assert one_line(str(exc)), f"{type(exc).__name__} of more than one line: {exc}"
        return "refused"
    except MemoryError as exc:
        assert "of memory available" in str(exc), f"an allocation the file asked for: {exc}"
        return "refused"
    assert np.isfinite(trainer.model.params).all(), "resumed to weights that are not finite"
    return "resumed"


def run_cli_case(path, data):
    from fastnet import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["--resume", str(path), "--data", str(data), "--epochs", "2", "--no-save", "--quiet"])
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("fastnet-train: note:")]
    if rc == 0:
        assert not lines, f"rc 0 with {lines}"
        return "resumed"
    assert rc == 1, f"exit code {rc}: {err.getvalue()}"
    assert len(lines) == 1 and lines[0].startswith("fastnet-train: error: "), f"not one line: {err.getvalue()}"
    return "refused"


def fuzz(folder, n_api, n_cli):
    """The child's work: returns a JSON-able summary."""
    import fuzzing

    folder = Path(folder)
    data, base = make_base(folder)
    with np.load(data) as npz:
        x, y = npz["x_train"], npz["y_train"]
    arrays, schema = fuzzing.take_apart(base)
    counts = {"resumed": 0, "refused": 0, "cli_resumed": 0, "cli_refused": 0}
    failures = []
    progress = folder / "progress.txt"
    for i in range(n_api + n_cli):
        blob, what = fuzzing.mutated(arrays, schema, SEED, i, n_hint=48)
        path = folder / f"case-{i % 2}.npz"
        path.write_bytes(blob)
        progress.write_text(f"case {i}: {what}\n")
        try:
            if i < n_api:
                counts[run_api_case(path, x, y)] += 1
            else:
                counts["cli_" + run_cli_case(path, data)] += 1
        except BaseException as exc:  # noqa: BLE001 -- every escape is a finding
            lines = traceback.format_exception(exc)
            failures.append(f"case {i} ({what}): {type(exc).__name__}: {str(exc)[:300]} | {lines[-2].strip()[:200]}")
    return {"counts": counts, "failures": failures[:20], "n_failures": len(failures)}


def run_capped(script, folder, timeout=600):
    """Run ``script`` in a child Python whose address space is capped at MEMORY_CAP;
    returns the JSON it prints last."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    done = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, preexec_fn=cap,
                          capture_output=True, text=True, timeout=timeout, check=False)
    progress = Path(folder) / "progress.txt"
    last = progress.read_text() if progress.exists() else "(none)"
    assert done.returncode == 0, (f"the child died (rc {done.returncode}) at {last}\n"
                                  f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mutated_checkpoints_resume_or_are_refused_in_one_line(tmp_path):
    script = (f"import json, test_checkpoint_fuzz as t; "
              f"print(json.dumps(t.fuzz({str(tmp_path)!r}, {N_API}, {N_CLI})))")
    summary = run_capped(script, tmp_path)
    counts = summary["counts"]
    print(counts)
    assert summary["n_failures"] == 0, "\n".join(summary["failures"])
    assert sum(counts.values()) == N_API + N_CLI
    # the mutations are not all refused (the fuzz reaches the run) nor all accepted
    assert counts["resumed"] > 50 and counts["refused"] > 2000, counts
    assert counts["cli_refused"] > 200, counts
