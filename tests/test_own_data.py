"""A user's own data: float features of any width, any number of classes with
any labels, standardization kept in the model, dropout; through the Python
API and through ``fastnet-train --data FILE``, ``fastnet-eval`` and
``fastnet-predict``.

The data sets are small and made here: three Gaussian blobs in 37
dimensions (``blobs``), written out as ``.npz`` and CSV files when a command
needs them, and scikit-learn's 8x8 digits when scikit-learn is installed.
"""
import csv
import re

import numba
import numpy as np
import pytest

from fastnet import cli, engine
from fastnet.config import TrainConfig
from fastnet.model import MLP
from fastnet.train import Trainer, evaluate, feature_stats
from test_cli import one_error_line, run_main  # the commands, driven as tests/test_cli.py drives them

QUICK = dict(epochs=3, hidden=(16,))


def blobs(n=3000, d=37, k=3, seed=0, labels=None, dtype=np.float32):
    """``n`` samples of ``k`` Gaussian blobs in ``d`` dimensions, centres 3 apart
    on average: (x, y), y drawn from ``labels`` (default 0..k-1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3 / np.sqrt(2 * d) * np.sqrt(d), (k, d)) / np.sqrt(d) * 2
    units = rng.integers(0, k, n)
    x = (centres[units] + rng.standard_normal((n, d))).astype(dtype)
    names = np.arange(k) if labels is None else np.asarray(labels)
    return x, names[units]


def split(x, y, n_test=500):
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


# --- any number of classes, any labels ------------------------------------------------------


def test_three_classes_of_37_float_features_train_to_95_percent_with_the_defaults():
    x_train, y_train, x_test, y_test = split(*blobs())
    trainer = Trainer(TrainConfig(), x_train, y_train)
    trainer.run()
    assert trainer.model.sizes == (37, 128, 3)
    assert evaluate(trainer.model, x_test, y_test).accuracy >= 0.95


def test_scikit_learns_digits_train_to_95_percent_with_the_defaults():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x, y = digits.data, digits.target  # (1797, 64) float64, 0..16
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    trainer = Trainer(TrainConfig(), x[:1500], y[:1500])
    trainer.run()
    assert trainer.model.sizes == (64, 128, 10)
    assert evaluate(trainer.model, x[1500:], y[1500:]).accuracy >= 0.95


@pytest.mark.parametrize("labels", [[3, 7, 42], ["cat", "dog", "emu"], [-5, 0, 10**12]],
                         ids=["ints", "strings", "wide-ints"])
def test_the_model_keeps_the_labels_and_predicts_them(labels, tmp_path):
    x_train, y_train, x_test, y_test = split(*blobs(labels=labels))
    trainer = Trainer(TrainConfig(**QUICK), x_train, y_train)
    trainer.run()
    model = trainer.model
    assert model.sizes[-1] == 3
    assert list(model.classes) == sorted(labels)
    predicted = engine.predict(model, x_test)
    assert set(predicted.tolist()) <= set(labels)
    assert np.mean(predicted == y_test) == evaluate(model, x_test, y_test).accuracy > 0.9
    model.save(tmp_path / "m.npz")
    again = MLP.load(tmp_path / "m.npz")
    assert again.classes.tolist() == sorted(labels)
    np.testing.assert_array_equal(engine.predict(again, x_test), predicted)


def test_one_class_is_a_clear_error():
    x, _ = blobs(n=50)
    with pytest.raises(ValueError, match=r"^training labels: a classifier needs at least 2 classes, found 1 \(7\)$"):
        Trainer(TrainConfig(**QUICK), x, np.full(50, 7))


def test_a_label_the_model_never_saw_is_named_at_evaluation():
    x, y = blobs(n=200, labels=[3, 7, 42])
    trainer = Trainer(TrainConfig(**{**QUICK, "epochs": 1}), x, y)
    y_bad = y.copy()
    y_bad[17] = 5
    with pytest.raises(ValueError, match=r"label 5 \(sample 17\) is not one of the model's classes \[3, 7, 42\]"):
        evaluate(trainer.model, x, y_bad)
    with pytest.raises(ValueError, match=r"'cat'"):
        evaluate(trainer.model, x[:1], np.array(["cat"]))


def test_given_classes_fix_the_output_layer_even_when_a_class_is_missing():
    x, y = blobs(n=300)
    keep = y != 2
    trainer = Trainer(TrainConfig(**QUICK), x[keep], y[keep], classes=[0, 1, 2, 3])
    assert trainer.model.sizes[-1] == 4
    with pytest.raises(ValueError, match=r"label 2 \(sample \d+\) is not one of"):
        Trainer(TrainConfig(**QUICK), x, y, classes=[0, 1])


def test_mnist_style_labels_keep_ten_outputs_and_the_old_bits(rng):
    """Labels 0..9 give the ten outputs they always had: the same model as before."""
    x = rng.integers(0, 256, (256, 20), dtype=np.uint8)
    y = np.arange(256) % 10
    trainer = Trainer(TrainConfig(**{**QUICK, "epochs": 1}), x, y)
    assert trainer.model.sizes == (20, 16, 10)
    assert trainer.model.classes.tolist() == list(range(10))


# --- float features -------------------------------------------------------------------------


def test_float32_features_are_trained_on_without_a_copy():
    x, y = blobs(n=400)
    trainer = Trainer(TrainConfig(**QUICK), x, y)
    assert np.shares_memory(trainer.images, x)


# --- standardization ------------------------------------------------------------------------


def test_feature_stats_match_numpy_in_chunks(rng):
    x = (rng.standard_normal((1000, 7)) * 5 + 1e4).astype(np.float32)
    mean, std = feature_stats(x, chunk=64)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=0), rtol=1e-9)


def test_standardize_keeps_the_training_sets_mean_and_std_in_the_model(tmp_path):
    x, y = blobs(n=600)
    x = x * np.arange(1, 38, dtype=np.float32) + 100  # features on very different scales
    x[:, 5] = 3.0  # a constant feature: its std is taken as 1
    trainer = Trainer(TrainConfig(**QUICK, standardize=True), x, y)
    trainer.run()
    model = trainer.model
    np.testing.assert_allclose(model.mean, x.astype(np.float64).mean(axis=0), rtol=1e-9)
    want_std = x.astype(np.float64).std(axis=0)
    want_std[5] = 1.0
    np.testing.assert_allclose(model.std, want_std, rtol=1e-6)
    # every prediction path standardizes: the same numbers as a plain model given standardized data
    plain = MLP(model.sizes, params=model.params.copy(), classes=model.classes)
    standardized = ((x - model.mean) / model.std).astype(np.float32)
    np.testing.assert_allclose(engine.predict_proba(model, x), engine.predict_proba(plain, standardized),
                               rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "s.npz")
    again = MLP.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(engine.predict_proba(again, x), engine.predict_proba(model, x))
    assert evaluate(again, x, y).accuracy > 0.9


def test_standardized_pixels_use_the_pixel_scale(rng):
    x = rng.integers(0, 256, (300, 12), dtype=np.uint8)
    y = np.arange(300) % 3
    trainer = Trainer(TrainConfig(**QUICK, standardize=True), x, y)
    np.testing.assert_allclose(trainer.model.mean, x.mean(axis=0) / 255, rtol=1e-9)
    trainer.run()
    for eng in ("numba", "numpy"):
        np.testing.assert_allclose(engine.predict_proba(trainer.model, x, engine=eng),
                                   engine.predict_proba(trainer.model, x / 255, engine=eng), rtol=1e-5, atol=1e-6)


# --- dropout --------------------------------------------------------------------------------


def _train_params(x, y, **changes):
    trainer = Trainer(TrainConfig(**{**QUICK, "hidden": (24, 16), **changes}), x, y)
    trainer.run()
    return trainer.model.params.copy()


def test_dropout_is_deterministic_and_the_same_bits_on_1_and_2_threads():
    x, y = blobs(n=700)
    base = _train_params(x, y, dropout=0.3, threads=1)
    np.testing.assert_array_equal(_train_params(x, y, dropout=0.3, threads=1), base)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        np.testing.assert_array_equal(_train_params(x, y, dropout=0.3, threads=2), base)
    assert not np.array_equal(_train_params(x, y, dropout=0.0, threads=1), base)
    assert not np.array_equal(_train_params(x, y, dropout=0.3, seed=1, threads=1), base)


def test_dropout_kernels_and_reference_train_alike():
    x, y = blobs(n=500)
    numba_params = _train_params(x, y, dropout=0.25)
    numpy_params = _train_params(x, y, dropout=0.25, engine="numpy")
    np.testing.assert_allclose(numba_params, numpy_params, rtol=1e-4, atol=1e-5)


def test_dropout_is_off_in_prediction():
    x, y = blobs(n=500)
    trainer = Trainer(TrainConfig(**QUICK, dropout=0.5), x, y)
    trainer.run()
    first = engine.predict_proba(trainer.model, x)
    np.testing.assert_array_equal(engine.predict_proba(trainer.model, x), first)
    m = trainer.model
    plain = MLP(m.sizes, params=m.params, classes=m.classes, mean=m.mean, std=m.std)  # no training state
    np.testing.assert_array_equal(engine.predict_proba(plain, x), first)


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_csv(path, x, y, *, header=True, label_first=False):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        names = [f"f{j}" for j in range(x.shape[1])]
        if header:
            w.writerow(["species", *names] if label_first else [*names, "species"])
        for row, label in zip(x, y):
            values = [f"{v:.6g}" for v in row]
            w.writerow([label, *values] if label_first else [*values, label])
    return path


def test_train_on_an_npz_with_a_test_set(work, capsys):
    x_train, y_train, x_test, y_test = split(*blobs(labels=[3, 7, 42]))
    np.savez(work / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    code, out, err = run_main(capsys, "--data", "d.npz", "--epochs", "3", "--hidden", "16", "--save", "m.npz")
    assert code == 0, err
    assert "d.npz, 2500 training samples, 37-16-3 float32" in out
    assert "held out" not in out
    assert "test accuracy" in out and " of 500), " in out
    header = next(line for line in out.splitlines() if line.startswith("true"))
    assert header.split() == ["true", "3", "7", "42"]  # the labels head the confusion matrix
    model = MLP.load(work / "m.npz")
    assert model.classes.tolist() == [3, 7, 42]


def test_train_on_a_csv_holds_out_a_stratified_test_set_and_eval_finds_it_again(work, capsys):
    x, y = blobs(n=1000, labels=["setosa", "versicolor", "virginica"])
    write_csv(work / "d.csv", x, y, label_first=True)
    code, out, err = run_main(capsys, "--data", "d.csv", "--label-column", "species", "--test-split", "0.2",
                              "--epochs", "3", "--hidden", "16", "--standardize", "--dropout", "0.1",
                              "--save", "m.npz")
    assert code == 0, err
    assert "d.csv has no test set: held out 200 of its 1000 samples (20%, stratified by class)" in out
    assert "800 training samples, 37-16-3 float32" in out and "standardized, dropout 0.1" in out
    accuracy = out.split("test accuracy ")[1].split()[0]
    model = MLP.load(work / "m.npz")
    assert model.classes.tolist() == ["setosa", "versicolor", "virginica"] and model.standardized
    code, out, err = run_main(capsys, "m.npz", "--data", "d.csv", entry=cli.eval_main)
    assert code == 0, err
    assert f"test accuracy {accuracy} " in out
    assert "setosa" in out


def test_csv_label_column_defaults_to_the_last(work, capsys):
    x, y = blobs(n=400)
    write_csv(work / "d.csv", x, y, header=False)
    code, out, err = run_main(capsys, "--data", "d.csv", "--epochs", "1", "--hidden", "8", "--no-save")
    assert code == 0, err
    assert "37-8-3" in out and "held out 40 of its 400 samples (10%" in out


BAD_FILES = [
    ("ragged.csv", "1,2,3\n4,5\n", r"ragged\.csv.*(row|line) 2"),
    ("text.csv", "1,2,a\n1,x,b\n", r"text\.csv.*(column|row)"),
    ("nan.csv", "1,2,a\nnan,2,b\n", r"nan\.csv.*(row|column)"),
    ("empty.csv", "", r"empty\.csv"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_data_is_one_line_exit_1_and_nothing_written(work, capsys, name, content, message):
    (work / name).write_text(content)
    code, out, err = run_main(capsys, "--data", name, "--epochs", "1", "--save", "m.npz")
    assert code == 1, (out, err)
    assert re.search(message, one_error_line(err)), err
    assert not (work / "m.npz").exists()
    assert sorted(p.name for p in work.iterdir()) == [name]


def test_bad_npz_data_is_one_line(work, capsys):
    np.savez(work / "short.npz", x_train=np.zeros((10, 3), np.float32), y_train=np.zeros(9, np.int64))
    code, _, err = run_main(capsys, "--data", "short.npz", "--epochs", "1")
    assert code == 1
    assert "short.npz" in one_error_line(err)
    x, _ = blobs(n=20)
    np.savez(work / "one.npz", x_train=x, y_train=np.zeros(20, np.int64))
    code, _, err = run_main(capsys, "--data", "one.npz", "--epochs", "1")
    assert code == 1
    assert "one.npz" in one_error_line(err) and "at least 2 classes" in err
    assert not (work / "fastnet-model.npz").exists()


def test_a_missing_label_column_is_one_line(work, capsys):
    x, y = blobs(n=50)
    write_csv(work / "d.csv", x, y)
    code, _, err = run_main(capsys, "--data", "d.csv", "--label-column", "colour", "--epochs", "1")
    assert code == 1
    assert "colour" in one_error_line(err) and "d.csv" in err


@pytest.mark.parametrize("option", [["--label-column", "0"], ["--test-split", "0.2"]])
def test_file_options_without_a_file_are_usage_errors(work, capsys, option):
    code, _, err = run_main(capsys, *option, "--epochs", "1")
    assert code == 2
    assert "applies to --data FILE" in one_error_line(err)


def test_test_split_out_of_range_is_a_usage_error(work, capsys):
    code, _, err = run_main(capsys, "--data", "d.csv", "--test-split", "1.5")
    assert code == 2 and "--test-split" in one_error_line(err)


def test_predict_names_the_classes(work, capsys):
    x, y = blobs(n=600, labels=["cat", "dog", "emu"])
    np.savez(work / "d.npz", x_train=x, y_train=y)
    assert run_main(capsys, "--data", "d.npz", "--epochs", "2", "--hidden", "8", "--save", "m.npz")[0] == 0
    np.save(work / "new.npy", x[:4])
    code, out, err = run_main(capsys, "m.npz", "new.npy", entry=cli.predict_main)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("new.npy:1: ")
    assert all(any(name in line for name in ("cat", "dog", "emu")) for line in lines)
    code, out, err = run_main(capsys, "m.npz", "new.npy", "-o", "p.csv", entry=cli.predict_main)
    assert code == 0, err
    rows = list(csv.reader(open(work / "p.csv")))
    assert rows[0] == ["id", "label", "p_cat", "p_dog", "p_emu"]
    assert [r[1] for r in rows[1:]] == engine.predict(MLP.load(work / "m.npz"), x[:4]).tolist()


def test_the_default_standardizes_float_features_unless_already_in_unit_range(rng):
    x, y = blobs(n=300)
    assert Trainer(TrainConfig(**QUICK), x, y).model.standardized
    pixels = (rng.integers(0, 256, (300, 20)) / 255).astype(np.float32)  # MNIST-like floats: left as they are
    assert not Trainer(TrainConfig(**QUICK), pixels, y).model.standardized
    assert not Trainer(TrainConfig(**QUICK), (pixels * 255).astype(np.uint8), y).model.standardized
    assert Trainer(TrainConfig(**QUICK, standardize=True), pixels, y).model.standardized
    assert not Trainer(TrainConfig(**QUICK, standardize=False), x, y).model.standardized


def test_float64_features_beyond_float32s_range_are_refused_in_a_float32_run():
    x, y = blobs(n=100, dtype=np.float64)
    x[42, 3] = 1e300  # finite in float64, inf once converted for a float32 run
    with pytest.raises(ValueError, match=r"^training images: sample 42 holds inf; features must be finite$"):
        Trainer(TrainConfig(**QUICK), x, y)
    trainer = Trainer(TrainConfig(**QUICK), x[:40], y[:40])
    assert trainer.images.dtype == np.float32  # converted once, to the run's dtype
