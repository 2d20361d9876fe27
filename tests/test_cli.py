"""fastnet-train and fastnet-eval, driven as a user drives them: ``main(argv)`` in
this process, or the command in a subprocess (for Ctrl-C), on small subsets of MNIST."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from fastnet import cli
from fastnet.model import MLP

# A quick run: 2000 samples, a small network, 2 epochs.
QUICK = ["--limit", "2000", "--hidden", "32", "--epochs", "2"]


@pytest.fixture
def env(mnist_dir, monkeypatch, tmp_path):
    """FASTNET_DATA pointing at the local MNIST, no downloads, and a scratch working folder."""
    monkeypatch.setenv("FASTNET_DATA", str(mnist_dir.parent))
    monkeypatch.setenv("FASTNET_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_main(capsys, *argv, entry=cli.main):
    """``entry(argv)``: the exit code, stdout and stderr (SystemExit from argparse caught)."""
    try:
        code = entry(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err, prog="fastnet-train"):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def params_of(path):
    return MLP.load(path).params


# --- options -------------------------------------------------------------------------------


def test_help_lists_every_option_with_its_default(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for option in ["--dataset", "--data", "--limit", "--val-split", "--offline", "--hidden", "--dtype",
                   "--engine", "--epochs", "--batch-size", "--lr", "--optimizer", "--momentum",
                   "--weight-decay", "--schedule", "--seed", "--threads", "--save", "--resume",
                   "--metrics-json", "--plot", "--quiet"]:
        assert option in out, option
    flat = " ".join(out.split())
    # The defaults are TrainConfig's, shown as they are.
    d = cli.TrainConfig()
    assert f"(default: {d.epochs})" in flat
    assert f"(default: {d.lr})" in flat
    assert f"(default: {d.optimizer})" in flat
    assert f"(default: {d.batch_size})" in flat
    assert f"(default: {','.join(map(str, d.hidden))})" in flat
    assert "fastnet-model.npz" in flat  # where the model goes without --save


def test_parser_defaults_are_trainconfigs():
    args = cli.build_parser().parse_args([])
    d = cli.TrainConfig()
    assert args.hidden == d.hidden and args.batch_size == d.batch_size and args.epochs == d.epochs
    assert args.lr == d.lr and args.weight_decay == d.weight_decay and args.schedule == d.schedule


@pytest.mark.parametrize("text, widths", [("256", (256,)), ("512,256", (512, 256))])
def test_hidden_takes_one_or_more_widths(text, widths):
    assert cli.build_parser().parse_args(["--hidden", text]).hidden == widths


def test_batch_size_full_means_the_whole_set():
    assert cli.build_parser().parse_args(["--batch-size", "full"]).batch_size is None


@pytest.mark.parametrize("argv, names", [
    (["--hidden", "12,x"], "--hidden"),
    (["--hidden", "0"], "--hidden"),
    (["--batch-size", "half"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--momentum", "1.5"], "--momentum"),
    (["--val-split", "1.5"], "--val-split"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--threads", "100000"], "--threads"),
])
def test_a_bad_option_value_is_one_line_and_exit_2(capsys, argv, names):
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert names in one_error_line(err)


# --- training --------------------------------------------------------------------------------


def test_a_run_prints_epochs_test_accuracy_confusion_and_saved_path(env, capsys):
    code, out, err = run_main(capsys, *QUICK, "--save", "model.npz")
    assert code == 0, err
    assert err == ""  # no progress bar: stderr is not a terminal here
    lines = out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        assert "loss " in line and "train " in line and " s " in line and "samples/s" in line
    assert any(line.startswith("compiled the kernels in ") for line in lines)
    assert any(line.startswith("test accuracy ") for line in lines)
    assert "confusion matrix" in out
    assert lines[-1] == "saved the model (and its checkpoint) to model.npz"
    model = MLP.load(env / "model.npz")
    assert model.sizes == (784, 32, 10)
    assert not [p for p in os.listdir(env) if p.endswith(".tmp")]  # no temporary file left behind


def test_on_a_terminal_a_notice_shows_while_the_kernels_compile(env, capsys, monkeypatch):
    """The notice goes to stderr and is erased once compiling is done; stdout is unchanged.
    (It shows when the background warm-up is still going once the data is read.)"""
    import sys

    from fastnet.prewarm import Prewarm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(Prewarm, "done", lambda self: False)
    code, out, err = run_main(capsys, "--limit", "500", "--hidden", "8", "--epochs", "1", "--no-save")
    assert code == 0, err
    assert err.startswith("compiling the kernels (once: later runs load them from Numba's cache)")
    assert "\r\033[K" in err
    assert any(line.startswith("compiled the kernels in ") for line in out.splitlines())


def test_the_notice_counts_the_seconds_of_a_long_compile(env, capsys, monkeypatch):
    import sys
    import time

    from fastnet.train import Trainer

    real = Trainer.warmup

    def slow(self, *, execute=True):
        if not execute:  # the background warm-up: as if it were compiling
            time.sleep(4)
        return real(self, execute=execute)

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(Trainer, "warmup", slow)
    code, out, err = run_main(capsys, "--limit", "500", "--hidden", "8", "--epochs", "1", "--no-save")
    assert code == 0, err
    assert re.search(r"Numba's cache\)\.\.\. [1-4] s", err), err  # seconds since the warm-up began
    assert "\r\033[K" in err


def test_no_notice_when_the_kernels_were_ready_before_the_data(env, capsys, monkeypatch):
    import sys

    from fastnet.prewarm import Prewarm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(Prewarm, "done", lambda self: True)
    code, out, err = run_main(capsys, "--limit", "500", "--hidden", "8", "--epochs", "1", "--no-save")
    assert code == 0, err
    assert "compiling the kernels" not in err


def test_without_save_the_model_goes_to_the_default_path(env, capsys):
    code, out, err = run_main(capsys, "--limit", "500", "--hidden", "8", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert (env / cli.DEFAULT_SAVE).is_file()
    assert out.splitlines()[-1].endswith(cli.DEFAULT_SAVE)


def test_quiet_prints_the_result_only(env, capsys):
    code, out, err = run_main(capsys, *QUICK, "--no-save", "--quiet")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("test accuracy ")
    assert not os.listdir(env)


def test_validation_split_shows_validation_accuracy(env, capsys):
    code, out, err = run_main(capsys, *QUICK, "--val-split", "0.1", "--no-save")
    assert code == 0, err
    assert "1800 training + 200 validation samples" in out
    assert all(" val " in line for line in out.splitlines() if line.startswith("epoch "))


def test_full_batch_classic(env, capsys):
    code, out, err = run_main(capsys, "--batch-size", "full", "--optimizer", "sgd", "--lr", "0.1",
                              "--hidden", "10", "--epochs", "5", "--schedule", "constant",
                              "--weight-decay", "0", "--limit", "2000", "--no-save")
    assert code == 0, err
    assert "full batch" in out
    assert len([line for line in out.splitlines() if line.startswith("epoch ")]) == 5


def test_numpy_engine_runs_the_reference(env, capsys):
    code, out, err = run_main(capsys, "--limit", "500", "--hidden", "16", "--epochs", "1",
                              "--engine", "numpy", "--threads", "1", "--no-save")
    assert code == 0, err
    assert "numpy engine, 1 thread" in out


def test_metrics_json(env, capsys):
    code, _, err = run_main(capsys, *QUICK, "--val-split", "200", "--no-save", "--metrics-json", "m/metrics.json")
    assert code == 0, err
    doc = json.loads((env / "m" / "metrics.json").read_text())
    assert doc["config"]["hidden"] == [32] and doc["config"]["limit"] == 2000
    assert len(doc["epochs"]) == 2
    for epoch in doc["epochs"]:
        for key in ("loss", "train_accuracy", "val_accuracy", "seconds", "samples_per_second"):
            assert isinstance(epoch[key], float), key
        assert 0 <= epoch["train_accuracy"] <= 1 and 0 <= epoch["val_accuracy"] <= 1
        assert epoch["seconds"] > 0
    assert doc["compile_seconds"] >= 0
    assert 0.5 < doc["test_accuracy"] <= 1  # a fraction, not a percentage
    assert set(doc["versions"]) >= {"fastnet", "numba", "numpy"}
    assert np.sum(doc["confusion_matrix"]) == 10000


def test_plot_writes_pngs(env, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = run_main(capsys, *QUICK, "--no-save", "--plot", "plots")
    assert code == 0, err
    for name in ("curves.png", "confusion.png", "misclassified.png"):
        data = (env / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_plot_without_matplotlib_fails_before_training(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run_main(capsys, *QUICK, "--plot", "plots", "--data", str(env))
    assert code == 2
    line = one_error_line(err)
    assert 'pip install "fastnet[plot]"' in line
    assert out == "" and not (env / "plots").exists()


# --- errors --------------------------------------------------------------------------------


def test_missing_data_offline_is_one_line(env, capsys, monkeypatch):
    empty = env / "empty"
    empty.mkdir()
    monkeypatch.setenv("FASTNET_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))  # no cached copy either
    code, out, err = run_main(capsys, "--offline", "--no-save")
    assert code == 1
    line = one_error_line(err)
    assert "could not find the mnist data set" in line and "--data" in line and "FASTNET_DATA" in line


def test_data_folder_without_the_files_is_one_line(env, capsys):
    code, _, err = run_main(capsys, "--data", str(env), "--offline")
    assert code == 1
    line = one_error_line(err)
    assert str(env) in line and "train-images-idx3-ubyte" in line


def test_corrupt_idx_file_is_one_line(env, mnist_dir, capsys):
    data = env / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (data / name).symlink_to(mnist_dir / name)
    good = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(good[: len(good) // 2])  # a truncated download
    code, _, err = run_main(capsys, "--data", str(data), *QUICK)
    assert code == 1
    line = one_error_line(err)
    assert "t10k-labels-idx1-ubyte.gz" in line and "replace it" in line


def test_nan_loss_is_one_line(env, capsys):
    code, _, err = run_main(capsys, *QUICK, "--lr", "1e6", "--no-save")
    assert code == 1
    line = one_error_line(err)
    assert "epoch 1" in line and "--lr" in line


def test_resume_refuses_to_change_the_runs_settings(env, capsys):
    assert run_main(capsys, "--limit", "500", "--hidden", "8", "--epochs", "1", "--save", "c.npz")[0] == 0
    code, _, err = run_main(capsys, "--resume", "c.npz", "--lr", "0.5")
    assert code == 2
    assert "--lr" in one_error_line(err)


def test_resume_from_a_file_that_is_not_a_model(env, capsys):
    (env / "junk.npz").write_text("not a model\n")
    code, _, err = run_main(capsys, "--resume", "junk.npz")
    assert code == 1
    assert "junk.npz" in one_error_line(err)


# --- fastnet-eval --------------------------------------------------------------------------


def test_eval_prints_the_saved_models_accuracy(env, capsys):
    code, out, err = run_main(capsys, *QUICK, "--save", "model.npz", "--quiet")
    assert code == 0, err
    trained = out.splitlines()[0].split()[2]  # "test accuracy 91.23% (...)"
    code, out, err = run_main(capsys, "model.npz", entry=cli.eval_main)
    assert code == 0, err
    assert f"test accuracy {trained} " in out
    assert "confusion matrix" in out


@pytest.mark.parametrize("content", [b"hello\n", None])
def test_eval_of_a_file_that_is_not_a_model(env, capsys, content):
    path = env / "thing.npz"
    if content is None:
        np.savez(path, weights=np.zeros(3))
    else:
        path.write_bytes(content)
    code, _, err = run_main(capsys, str(path), entry=cli.eval_main)
    assert code == 1
    line = one_error_line(err, "fastnet-eval")
    assert "not a fastnet model" in line


def test_eval_of_a_missing_file(env, capsys):
    code, _, err = run_main(capsys, "nowhere.npz", entry=cli.eval_main)
    assert code == 1
    assert "no such file" in one_error_line(err, "fastnet-eval")


# --- Ctrl-C and --resume -----------------------------------------------------------------------

# Long enough to interrupt after its first epoch line: 6 epochs of 20000 samples.
LONG = ["--limit", "20000", "--hidden", "64", "--batch-size", "32", "--epochs", "6", "--seed", "3"]


def test_sigint_saves_and_resume_gives_the_uninterrupted_weights(env, capsys):
    """A user presses Ctrl-C after the first epoch, then resumes: the final weights are
    bit for bit those of a run that never stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastnet.cli", *LONG, "--save", "run.npz"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=env,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out + err
    assert "Traceback" not in err
    assert "fastnet-train --resume run.npz" in err
    assert "test accuracy" not in out  # it stopped before the end

    code, out, err = run_main(capsys, "--resume", "run.npz")
    assert code == 0, err
    resumed = re.search(r"resuming run.npz (?:at|in) epoch (\d+)", out)
    assert resumed and int(resumed.group(1)) >= 2, out
    assert len([line for line in out.splitlines() if line.startswith("epoch ")]) <= 5

    code, _, err = run_main(capsys, *LONG, "--save", "straight.npz", "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(params_of(env / "run.npz"), params_of(env / "straight.npz"))


def test_sigint_mid_epoch_then_resume_is_bit_identical(env, capsys, monkeypatch):
    """The same in this process, with the signal sent at a known batch in the middle of epoch 2."""
    argv = ["--limit", "3000", "--hidden", "16", "--epochs", "3", "--seed", "5"]
    assert run_main(capsys, *argv, "--save", "straight.npz", "--quiet")[0] == 0

    original = cli._Progress.on_progress

    def on_progress(self, done, total):
        original(self, done, total)
        if self.trainer.epoch == 1 and done == total // 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli._Progress, "on_progress", on_progress)
    code, out, err = run_main(capsys, *argv, "--save", "run.npz")
    assert code == 130, err
    assert "interrupted in epoch 2 after batch" in err
    monkeypatch.setattr(cli._Progress, "on_progress", original)

    code, out, err = run_main(capsys, "--resume", "run.npz")
    assert code == 0, err
    assert "resuming run.npz in epoch 2 at batch" in out
    np.testing.assert_array_equal(params_of(env / "run.npz"), params_of(env / "straight.npz"))


def test_console_scripts_are_installed():
    for name in ("fastnet-train", "fastnet-eval"):
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not on PATH (fastnet not installed with pip install -e .)")
        result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith(f"usage: {name}")
