"""Pictures of a training run: learning curves, confusion matrix, misclassified images.

matplotlib is an optional dependency (the ``plot`` extra). It is imported
only inside these functions; :func:`require_matplotlib` says clearly what to
install when it is missing, and the CLI calls it before training starts. The
figures are drawn with matplotlib's object API on an Agg canvas, so no
display and no global pyplot state are involved.
"""
from pathlib import Path

import numpy as np

INSTALL_HINT = 'pip install "fastnet[plot]"'

class PlotDependencyError(ImportError):
    """matplotlib is not installed; the message names the extra to install."""


def require_matplotlib():
    """Import matplotlib with the Agg backend, or raise :class:`PlotDependencyError`."""
    try:
        import matplotlib
    except ImportError:
        raise PlotDependencyError(
            f"plotting needs matplotlib, which is not installed; install it with {INSTALL_HINT}"
        ) from None
    matplotlib.use("Agg")
    return matplotlib


def _figure(width, height):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _names(dataset, n, names=None):
    from .data.tables import DATASETS

    if names is None:
        names = DATASETS[dataset].classes if dataset in DATASETS else ()
    return [names[i] if i < len(names) else str(i) for i in range(n)]


def plot_curves(history, path):
    """Loss and accuracy (train, and validation if any) against the epoch, from
    :class:`~fastnet.train.EpochMetrics` objects or dicts of their fields."""
    rows = [m if isinstance(m, dict) else vars(m) for m in history]
    epochs = [m["epoch"] for m in rows]
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    marker = "o" if len(epochs) <= 30 else None
    ax_loss.plot(epochs, [m["loss"] for m in rows], marker=marker, label="train")
    val_loss = [m.get("val_loss") for m in rows]
    if any(v is not None for v in val_loss):
        ax_loss.plot(epochs, [np.nan if v is None else v for v in val_loss], marker=marker, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [100 * m["train_accuracy"] for m in rows], marker=marker, label="train")
    val_acc = [m.get("val_accuracy") for m in rows]
    if any(v is not None for v in val_acc):
        ax_acc.plot(epochs, [np.nan if v is None else 100 * v for v in val_acc], marker=marker, label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.savefig(path)
    return Path(path)


def plot_confusion(confusion, path, *, dataset="mnist", names=None):
    """The confusion matrix (rows true class, columns predicted) as a heat map with counts;
    classes are named ``names``, else by the data set's table."""
    confusion = np.asarray(confusion)
    k = confusion.shape[0]
    names = _names(dataset, k, names)
    fig = _figure(7.5, 6.5)
    ax = fig.subplots()
    # Colour by the share of each true class, so rare errors still show on the diagonal's scale.
    totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(confusion / totals, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class")
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                share = confusion[i, j] / totals[i, 0]
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45 if len(max(names, key=len)) > 2 else 0, ha="right"
                  if len(max(names, key=len)) > 2 else "center")
    ax.set_yticks(range(k), names)
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (accuracy {100 * accuracy:.2f}%)")
    fig.savefig(path)
    return Path(path)


def plot_misclassified(images, labels, predictions, path, *, dataset="mnist", max_images=36, names=None):
    """A grid of the first ``max_images`` test images the model got wrong,
    each titled with its true and predicted label (``labels`` and
    ``predictions`` count classes from 0; ``names`` names them)."""
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    wrong = np.flatnonzero(predictions != labels)[:max_images]
    cols = 6
    rows = max(1, -(-len(wrong) // cols))
    fig = _figure(1.6 * cols, 1.8 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    names = _names(dataset, int(max(labels.max(initial=0), predictions.max(initial=0))) + 1, names)
    side = int(round(np.sqrt(images[0].size))) if len(images) else 28
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, wrong):
        ax.imshow(np.asarray(images[i]).reshape(side, side), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"true {names[labels[i]]}\npred {names[predictions[i]]}", fontsize=8)
    total = int(np.count_nonzero(predictions != labels))
    if total == 0:
        fig.suptitle("No misclassified test images")
    else:
        fig.suptitle(f"Misclassified test images: first {len(wrong)} of {total}")
    fig.savefig(path)
    return Path(path)


def write_all(folder, *, history, evaluation, test_images, test_labels, dataset="mnist", names=None):
    """Write ``curves.png``, ``confusion.png`` and, when the samples are square
    images, ``misclassified.png`` into ``folder`` (created if needed); returns
    their paths. ``test_labels`` count classes from 0, as the confusion matrix does."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_curves(history, folder / "curves.png"),
        plot_confusion(evaluation.confusion, folder / "confusion.png", dataset=dataset, names=names),
    ]
    size = np.asarray(test_images[0]).size if len(test_images) else 0
    if size and round(size ** 0.5) ** 2 == size:
        paths.append(plot_misclassified(test_images, test_labels, evaluation.predictions,
                                        folder / "misclassified.png", dataset=dataset, names=names))
    return paths
