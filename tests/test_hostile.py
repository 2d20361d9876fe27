"""Issue 15: hostile checkpoints, output paths and environments. Each case gives a
one-line error (exit code 1) or does the right thing; nothing crashes, nothing is lost.

The runs are tiny (6 uint8 features, 3 classes, a 6-5-3 network) so that the
default compiled loop serves them.
"""
import json
import os
import shutil

import numba
import numpy as np
import pytest

from fastnet import cli
from fastnet._files import atomic_write_json, remove_stale_temporaries
from fastnet.config import TrainConfig
from fastnet.model import MLP, ModelFormatError
from fastnet.train import Trainer

CONFIG = TrainConfig(hidden=(5,), epochs=2, batch_size=8, val_split=6, patience=3, seed=1, optimizer="adam")


def tiny_data(seed=15):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(66, 6), dtype=np.uint8)
    y = rng.integers(0, 3, size=66)
    return x[:54], y[:54], x[54:], y[54:]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y, xt, yt = tiny_data()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    return tmp_path


def run_main(capsys, *argv, entry=cli.main):
    try:
        code = entry([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err, prog="fastnet-train"):
    lines = [line for line in err.strip().splitlines() if not line.startswith(f"{prog}: note:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


TRAIN = ["--data", "d.npz", "--hidden", "5", "--epochs", "2", "--batch-size", "8", "--quiet"]


# --- defect 1, 7, 9: crafted checkpoints ----------------------------------------------------


def mid_epoch_checkpoint(folder):
    """A run stopped in epoch 2 after batch 3 of 6: it holds an order, a best epoch and its weights."""
    x, y, _, _ = tiny_data()
    trainer = Trainer(CONFIG, x, y)
    trainer.run(should_stop=lambda: trainer.epoch == 1 and trainer.batch == 3)
    trainer.save_checkpoint(folder / "mid.npz")
    return folder / "mid.npz", x, y


def rewrite(path, out, arrays=None, training=None, drop=()):
    """``path`` with some arrays replaced and the run state changed by ``training(meta)``."""
    with np.load(path) as npz:
        files = {name: npz[name] for name in npz.files}
    schema = json.loads(str(files["schema"]))
    if training is not None:
        training(schema["training"])
    files["schema"] = np.array(json.dumps(schema))
    files.update(arrays or {})
    for name in drop:
        files.pop(name)
    np.savez(out, **files)
    return out


def order_of(path):
    with np.load(path) as npz:
        return npz["state_order"].copy()


def set_order(change):
    def make(path):
        order = order_of(path)
        return {"state_order": change(order)}
    return make


CRAFTED = {
    # defect 1: out of bounds, and in range but wrong
    "order index 1e12": (set_order(lambda o: np.concatenate([o[:-1], [10**12]])), None, (), "state_order"),
    "negative order index": (set_order(lambda o: np.concatenate([o[:-1], [-5]])), None, (), "state_order"),
    "duplicate order index": (set_order(lambda o: np.concatenate([o[:-1], o[:1]])), None, (), "state_order"),
    "uint8 order": (set_order(lambda o: o.astype(np.uint8)), None, (), "uint8"),
    "float order": (set_order(lambda o: o.astype(np.float64)), None, (), "float64"),
    "0-d order": (set_order(lambda o: np.array(3)), None, (), "state_order"),
    "order too short": (set_order(lambda o: o[:-1]), None, (), "state_order"),
    "batch -100000": (None, lambda m: m.update(batch=-100000), (), "batch"),
    "batch past the epoch": (None, lambda m: m.update(batch=7), (), "batch"),
    "step off": (None, lambda m: m.update(step=m["step"] + 1), (), "step"),
    "epoch past the run": (None, lambda m: m.update(epoch=5), (), "epoch"),
    # defect 7: malformed fields
    "no state1": (None, None, ("state_state1",), "state1"),
    "no epoch": (None, lambda m: m.pop("epoch"), (), "epoch"),
    "batch as text": (None, lambda m: m.update(batch="3"), (), "batch"),
    "best as text": (None, lambda m: m.update(best="x"), (), "best"),
    "history of numbers": (None, lambda m: m.update(history=[1]), (), "history"),
    "history entry missing a field": (None, lambda m: m["history"][0].pop("loss"), (), "history"),
    "rng as text": (None, lambda m: m.update(rng="x"), (), "rng"),
    "rng state out of range": (None, lambda m: m["rng"]["state"].update(state=-1), (), "rng"),
    "step fractional": (None, lambda m: m.update(step=9.5), (), "step"),
    "config not an object": (None, lambda m: m.update(config=[1]), (), "config"),
    "config lr as text": (None, lambda m: m["config"].update(lr="0.1"), (), "lr"),
    "config hidden as a number": (None, lambda m: m["config"].update(hidden=5), (), "config"),
    "running as text": (None, lambda m: m.update(running="x"), (), "running"),
    # defect 9: extra keys, non-finite state
    "extra key in the run state": (None, lambda m: m.update(extra=1), (), "extra"),
    "extra state array": (lambda p: {"state_extra": np.zeros(3)}, None, (), "state_extra"),
    "nan in the optimizer state": (
        lambda p: {"state_state1": np.full(np.load(p)["state_state1"].shape, np.nan, np.float32)}, None, (), "NaN"),
    "state1 of another dtype": (
        lambda p: {"state_state1": np.load(p)["state_state1"].astype(np.float64)}, None, (), "float64"),
}


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_a_crafted_checkpoint_is_refused_in_one_line_before_any_kernel_runs(tmp_path, case):
    arrays, training, drop, word = CRAFTED[case]
    base, x, y = mid_epoch_checkpoint(tmp_path)
    bad = rewrite(base, tmp_path / "bad.npz", arrays=arrays(base) if arrays else None, training=training,
                  drop=drop)
    with pytest.raises(ModelFormatError) as info:
        Trainer.from_checkpoint(bad, x, y)
    message = str(info.value)
    assert "\n" not in message and str(bad) in message and word in message, message


def test_the_command_refuses_an_out_of_bounds_order_in_one_line(work, capsys):
    """Before: segfault, rc 139."""
    assert run_main(capsys, *TRAIN, "--save", "c.npz")[0] == 0
    with np.load("c.npz") as npz:
        files = {name: npz[name] for name in npz.files}
    schema = json.loads(str(files["schema"]))
    schema["training"]["batch"] = 1
    schema["training"]["step"] += 1
    files["schema"] = np.array(json.dumps(schema))
    files["state_order"] = np.arange(schema["training"]["n_train"], dtype=np.int64)
    files["state_order"][-1] = 10**12
    np.savez("bad.npz", **files)
    code, _, err = run_main(capsys, "--resume", "bad.npz", "--data", "d.npz", "--epochs", "3")
    assert code == 1
    assert "state_order" in one_error_line(err)


def test_an_untouched_checkpoint_still_resumes_to_the_same_weights(tmp_path):
    base, x, y = mid_epoch_checkpoint(tmp_path)
    resumed = Trainer.from_checkpoint(base, x, y).run().model.params
    straight = Trainer(CONFIG, x, y).run().model.params
    np.testing.assert_array_equal(resumed, straight)


# --- defect 2, 3: output paths ---------------------------------------------------------------


@pytest.mark.parametrize("option", ["--save", "--metrics-json"])
def test_an_output_onto_the_training_data_is_refused(work, capsys, option):
    before = (work / "d.npz").read_bytes()
    os.symlink("d.npz", work / "link.npz")
    for target in ("d.npz", "link.npz", "./sub/../d.npz"):
        (work / "sub").mkdir(exist_ok=True)
        code, out, err = run_main(capsys, *TRAIN, option, target)
        assert code == 1, (target, out, err)
        assert "is an input of this run" in one_error_line(err)
    assert (work / "d.npz").read_bytes() == before


def test_save_onto_an_idx_file_of_the_data_set_is_refused(mnist_dir, tmp_path, capsys, monkeypatch):
    """Before: exit 0, and the next run failed with "not an IDX file"."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(mnist_dir, data)
    target = data / "train-images-idx3-ubyte.gz"
    before = target.stat().st_size
    code, _, err = run_main(capsys, "--data", data, "--limit", "100", "--epochs", "1", "--save", target)
    assert code == 1
    assert "is an input of this run" in one_error_line(err)
    assert target.stat().st_size == before


def test_two_outputs_onto_one_file_are_refused(work, capsys):
    code, _, err = run_main(capsys, *TRAIN, "--save", "m.npz", "--metrics-json", "m.npz")
    assert code == 1
    assert "also where --save writes" in one_error_line(err)


@pytest.mark.parametrize("option, path, message", [
    ("--save", "afile/model.npz", "is not a folder"),
    ("--metrics-json", "afile/metrics.json", "is not a folder"),
    ("--save", "adir", "is a folder"),
    ("--metrics-json", "adir", "is a folder"),
    ("--plot", "afile", "is not a folder"),
])
def test_an_unwritable_output_fails_before_training(work, capsys, option, path, message):
    (work / "afile").write_text("x")
    (work / "adir").mkdir()
    code, out, err = run_main(capsys, "--data", "d.npz", "--hidden", "5", "--epochs", "2", option, path)
    assert code == 1
    assert message in one_error_line(err)
    assert "epoch" not in out  # nothing was trained


def test_an_output_in_a_read_only_folder_fails_before_training(work, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)
    try:
        code, _, err = run_main(capsys, *TRAIN, "--save", "ro/m.npz")
    finally:
        (work / "ro").chmod(0o755)
    assert code == 1 and "cannot write in" in one_error_line(err)


# --- defect 4: temporary files ---------------------------------------------------------------


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def dead_pid():
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_temporary_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f".m.npz.{dead_pid()}-abc123.tmp"
    dead_part = tmp_path / f".m.npz.{dead_pid()}-xyz.part"
    live = tmp_path / f".m.npz.{os.getppid()}-def456.tmp"
    other = tmp_path / f".other.npz.{dead_pid()}-abc.tmp"
    for p in (dead, dead_part, live, other):
        p.write_bytes(b"half a file")
    MLP((4, 3)).save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.npz", live.name, other.name])
    remove_stale_temporaries(tmp_path / "other.npz")
    assert not other.exists()


# --- defect 5, 12: resuming ------------------------------------------------------------------


def test_a_checkpoint_with_more_threads_than_allowed_resumes_with_one_line(work, capsys, monkeypatch):
    """Before: a ValueError traceback."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads to write the checkpoint")
    assert run_main(capsys, *TRAIN, "--threads", "2", "--epochs", "1", "--save", "c.npz")[0] == 0
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)
    code, _, err = run_main(capsys, "--resume", "c.npz", "--data", "d.npz", "--epochs", "2", "--quiet")
    assert code == 0, err
    note = ("fastnet-train: note: the checkpoint ran with --threads 2; this machine allows 1 "
            "(NUMBA_NUM_THREADS): using 1")
    assert err.strip().splitlines() == [note]


def test_resume_accepts_the_same_options_again_and_names_each_that_differs(work, capsys):
    assert run_main(capsys, *TRAIN, "--seed", "3", "--epochs", "1", "--save", "c.npz")[0] == 0
    code, _, err = run_main(capsys, *TRAIN, "--seed", "3", "--resume", "c.npz")
    assert code == 0, err
    code, _, err = run_main(capsys, *TRAIN, "--seed", "4", "--hidden", "6", "--epochs", "3", "--resume", "c.npz")
    assert code == 2
    line = one_error_line(err)
    assert "--seed 4 (the checkpoint's: 3)" in line and "--hidden 6 (the checkpoint's: 5)" in line
    assert "--batch-size" not in line  # equal to the checkpoint's


# --- defect 6, 8: models and fastnet-eval --------------------------------------------------------


def test_eval_of_a_model_with_fewer_classes_than_the_labels_is_one_line(work, capsys):
    """Before: an IndexError traceback."""
    model = MLP((6, 4, 2))
    model.save(work / "two.npz")
    code, _, err = run_main(capsys, "two.npz", "--data", "d.npz", entry=cli.eval_main)
    assert code == 1
    assert "label 2" in one_error_line(err, "fastnet-eval")


def lying_member(name, shape, descr="<f8"):
    """npy bytes whose header declares ``shape`` but that hold 16 bytes of data."""
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": shape})
    return name, head.getvalue() + bytes(16)


def with_member(path, out, member):
    import zipfile

    shutil.copy(path, out)
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr(f"{member[0]}.npy", member[1])
    return out


def test_eval_reads_no_training_state_and_headers_are_checked_before_reading(work, capsys):
    """Before: a 3.9 MB file holding a 3 GiB state array made fastnet-eval use 3.3 GB; an
    npy header claiming 1e12 elements gave a MemoryError traceback."""
    assert run_main(capsys, *TRAIN, "--epochs", "1", "--save", "c.npz")[0] == 0
    with_member("c.npz", "huge.npz", lying_member("state_extra", (10**12,)))
    code, _, err = run_main(capsys, "huge.npz", "--data", "d.npz", entry=cli.eval_main)
    assert code == 0, err  # eval never reads the optimizer state
    code, _, err = run_main(capsys, "--resume", "huge.npz", "--data", "d.npz", "--epochs", "2")
    assert code == 1 and "state_extra" in one_error_line(err)
    with pytest.raises(ModelFormatError, match="of memory available"):
        MLP.load("huge.npz", with_state=True)


def test_a_hidden_layer_too_wide_for_memory_is_one_line(work, capsys):
    """Before: a MemoryError traceback."""
    code, _, err = run_main(capsys, "--data", "d.npz", "--hidden", "100000000000", "--epochs", "1")
    assert code == 1
    line = one_error_line(err)
    assert "6-100000000000-3" in line and "of memory available" in line


# --- item 10: smaller items ------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--val-split", "1.0"], "--val-split"),
    (["--val-split", "2.5"], "--val-split"),
    (["--patience", "2"], "--patience"),
])
def test_ambiguous_or_ignored_options_are_usage_errors(work, capsys, argv, message):
    code, _, err = run_main(capsys, *TRAIN, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_val_split_1_is_one_sample(work, capsys):
    code, out, err = run_main(capsys, "--data", "d.npz", "--hidden", "5", "--epochs", "1", "--val-split", "1",
                              "--no-save")
    assert code == 0, err
    assert "53 training + 1 validation samples" in out


def test_a_finite_but_exploding_loss_stops_the_run(tmp_path):
    """Before: --lr 100 trained on with a loss of 6.9e7, past the NaN guard."""
    from fastnet.train import EpochMetrics, TrainingDiverged

    x, y, _, _ = tiny_data()
    trainer = Trainer(CONFIG, x, y)
    metrics = EpochMetrics(epoch=1, lr=100.0, loss=6.9e7, train_accuracy=0.1, val_loss=None, val_accuracy=None,
                           seconds=1.0, samples_per_second=1.0)
    with pytest.raises(TrainingDiverged, match=r"grew to 6.9e\+07 in epoch 1 .*lower learning rate"):
        trainer._check_growth(metrics)
    trainer._check_growth(dataclasses_replace(metrics, loss=5.0))  # a poor epoch is not a diverging one


def dataclasses_replace(m, **changes):
    import dataclasses

    return dataclasses.replace(m, **changes)


def test_an_idx_header_of_the_wrong_shape_is_refused_before_decompressing(tmp_path):
    """Before: 1.5 MB of gzip took 1.6 GB before being rejected."""
    import gzip

    from fastnet.data import DatasetError, load_dataset, write_idx

    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28000))
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header)
        f.write(bytes(1 << 20))  # 1 MiB of the 47 GB it claims; nothing past the header is read
    with pytest.raises(DatasetError, match="expected uint8 images of shape Nx28x28, found uint8 of shape "
                                           "60000x28x28000"):
        load_dataset("mnist", folder)


def test_a_second_run_saving_to_the_same_path_is_refused(work, capsys):
    """Before: two runs saving to one path, the last writer won silently."""
    import fcntl

    lock = work / ".m.npz.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"12345")
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process holds it (flock locks are per open file)
    try:
        code, _, err = run_main(capsys, *TRAIN, "--save", "m.npz")
    finally:
        os.close(fd)
    assert code == 1
    assert "another fastnet-train (pid 12345) is saving to it" in one_error_line(err)
    assert not (work / "m.npz").exists()
    code, _, err = run_main(capsys, *TRAIN, "--save", "m.npz")  # once it is gone
    assert code == 0, err
    assert sorted(p.name for p in work.iterdir() if p.name.startswith((".m", "m."))) == ["m.npz"]


def test_resuming_on_other_data_of_the_same_size_is_refused(tmp_path):
    base, x, y = mid_epoch_checkpoint(tmp_path)
    other = x.copy()
    other[7, 2] ^= 1
    with pytest.raises(ModelFormatError, match="saved from other training data"):
        Trainer.from_checkpoint(base, other, y)
    # a checkpoint written before fingerprints were kept still resumes
    old = rewrite(base, tmp_path / "old.npz", training=lambda m: m.pop("fingerprint"))
    Trainer.from_checkpoint(old, x, y)
    bad = rewrite(base, tmp_path / "bad.npz", training=lambda m: m.update(fingerprint=7))
    with pytest.raises(ModelFormatError, match="fingerprint: expected 32 hex digits"):
        Trainer.from_checkpoint(bad, x, y)
