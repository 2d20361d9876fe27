"""fastnet.plots on small made-up inputs: each function writes a PNG, edge cases included."""
import sys

import numpy as np
import pytest

from fastnet import plots

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def history(n, with_val):
    return [
        {"epoch": i + 1, "loss": 1.0 / (i + 1), "train_accuracy": 0.8 + 0.01 * i,
         "val_loss": 1.1 / (i + 1) if with_val else None, "val_accuracy": 0.79 + 0.01 * i if with_val else None}
        for i in range(n)
    ]


@pytest.mark.parametrize("n, with_val", [(1, False), (3, True), (60, True)])
def test_curves(tmp_path, n, with_val):
    path = plots.plot_curves(history(n, with_val), tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "kmnist"])
def test_confusion(tmp_path, rng, dataset):
    confusion = rng.integers(0, 50, (10, 10)) + np.diag(rng.integers(500, 1000, 10))
    confusion[3] = 0  # a class with no test samples must not divide by zero
    path = plots.plot_confusion(confusion, tmp_path / "c.png", dataset=dataset)
    assert path.read_bytes()[:8] == PNG


@pytest.mark.parametrize("n_wrong", [0, 1, 7, 100])
def test_misclassified(tmp_path, rng, n_wrong):
    images = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 120)
    predictions = labels.copy()
    predictions[:n_wrong] = (labels[:n_wrong] + 1) % 10
    path = plots.plot_misclassified(images.reshape(120, -1), labels, predictions, tmp_path / "m.png")
    assert path.read_bytes()[:8] == PNG


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plots.PlotDependencyError, match=r'pip install "fastnet\[plot\]"'):
        plots.require_matplotlib()
