"""The commands: ``fastnet-train`` trains and saves a model, ``fastnet-eval`` tests a saved one,
``fastnet-predict`` asks a saved one about new samples.

Each builds its parser in a function and returns an exit code from
``main(argv=None)``: 0 done, 1 a runtime error (data missing, a corrupt file,
a diverging loss), 2 a usage error, 130 interrupted by Ctrl-C. A user error
is one line on stderr, ``fastnet-train: error: ...``, saying what is wrong
and what to do; never a traceback.

Results go to stdout (a line per epoch, the test accuracy, the confusion
matrix), the progress bar to stderr, and only when stderr is a terminal.
"""
import argparse
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from .config import (
    DATASETS,
    DTYPES,
    ENGINES,
    OPTIMIZERS,
    SCHEDULES,
    ConfigError,
    TrainConfig,
)

DEFAULT_SAVE = "fastnet-model.npz"
#: The share of a data file without a test set that is held out to test on.
DEFAULT_TEST_SPLIT = 0.1

#: Settings a checkpoint does not fix: ``--epochs`` may raise the number of epochs,
#: ``--threads`` changes no result. ``--resume`` refuses every other setting.
_FREE_ON_RESUME = ("epochs", "threads")

_DEFAULTS = TrainConfig()
#: The files ``--plot DIR`` writes (see :func:`fastnet.plots.write_all`).
PLOT_FILES = ("curves.png", "confusion.png", "misclassified.png")


class CommandError(Exception):
    """A runtime error to report as one line (exit code 1)."""


# --- parsing -------------------------------------------------------------------------


def _hidden(text):
    """``"256"`` or ``"512,256"`` -> a tuple of widths."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"expected one positive width per hidden layer, comma-separated, like 256 or 512,256; got {text!r}"
        )
    return widths


def _batch_size(text):
    """A whole number, or ``full`` for the whole training set in every step."""
    if text.strip().lower() == "full":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'full', got {text!r}") from None


def _count_or_fraction(text):
    """A fraction in [0, 1), or a whole count of samples."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.1 or a count like 5000, got {text!r}") from None
    if value >= 1 and any(c in text for c in ".eE"):  # "1.0" reads as a fraction: all of it, not one sample
        raise argparse.ArgumentTypeError(f"expected a fraction below 1 like 0.1, or a whole count of samples "
                                         f"like 5000, got {text!r}")
    return int(value) if value >= 1 and value.is_integer() else value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: ...)" to each option's help, unless the help already says
    its default or the option is a plain flag."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = getattr(action, "shown_default", action.default)  # see _parse
        if "default" in text or any(default is v for v in (None, False, argparse.SUPPRESS)) or not action.option_strings:
            return text
        return text + (" (default: %(shown_default)s)" if hasattr(action, "shown_default") else " (default: %(default)s)")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: what is wrong, and where to look."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    """The ``fastnet-train`` parser; its defaults are :class:`~fastnet.config.TrainConfig`'s."""
    d = _DEFAULTS
    parser = _Parser(
        prog="fastnet-train",
        description="Train a multilayer perceptron with hand-written Numba kernels, on MNIST-like IDX data\n"
                    "or on your own features and labels (.npz or CSV).",
        epilog=(
            "After every epoch the model and the training state are written to the --save file\n"
            "(atomically: a temporary file, then a rename). Ctrl-C stops after saving it (exit code\n"
            "130); `fastnet-train --resume FILE` continues the run to the same final weights.\n"
            "Data: --data DIR|FILE, else $FASTNET_DATA/<dataset>, else ~/.cache/fastnet/<dataset>, else a\n"
            "download (not with --offline or FASTNET_OFFLINE=1). A FILE without a test set has\n"
            "--test-split of it held out, stratified by class, as the test set."
        ),
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="the data set to train and test on")
    data.add_argument("--data", metavar="PATH", default=None,
                      help="a folder holding the data set's four IDX files (.gz or raw); or your own data: "
                           "an .npz of x_train, y_train[, x_test, y_test], or a CSV file of one sample per "
                           "row (CSV needs pyarrow: pip install \"fastnet[csv]\"); "
                           "by default $FASTNET_DATA/<dataset> or the download cache")
    data.add_argument("--label-column", metavar="NAME|INDEX", default=None,
                      help="CSV: the column holding the labels, by header name or index from 0 "
                           "(negative counts from the end); default: the last column")
    data.add_argument("--test-split", metavar="F", type=float, default=DEFAULT_TEST_SPLIT,
                      help="an .npz or CSV file without a test set: hold out this fraction of it, "
                           "stratified by class, as the test set")
    data.add_argument("--limit", metavar="N", type=_positive_int, default=d.limit,
                      help="train on the first N training samples only (quick runs); default: all")
    data.add_argument("--val-split", metavar="F", type=_count_or_fraction, default=d.val_split,
                      help="hold out this fraction (or count) of the training samples for validation")
    data.add_argument("--offline", action="store_true", help="never download; fail if the data is not on disk")

    model = parser.add_argument_group("model")
    model.add_argument("--hidden", metavar="H[,H...]", type=_hidden, default=",".join(map(str, d.hidden)),
                       help="widths of the hidden layers, e.g. 256 or 512,256")
    model.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="floating-point type of parameters and math")
    model.add_argument("--engine", choices=ENGINES, default=d.engine,
                       help="numba: the compiled kernels; numpy: their NumPy reference twins, to compare")
    model.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=d.standardize,
                       help="scale each feature to mean 0 and std 1 on the training set; the model keeps "
                            "the means and stds and applies them to whatever it predicts "
                            "(default: for float features, unless they all lie in [-1, 1] already; "
                            "not for uint8 pixels, which are scaled by 1/255)")
    model.add_argument("--dropout", metavar="P", type=float, default=d.dropout,
                       help="drop each hidden unit with probability P in training (inverted dropout; "
                            "off in evaluation and prediction)")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_positive_int, default=d.epochs, help="passes over the training set")
    train.add_argument("--batch-size", metavar="B", type=_batch_size,
                       default="full" if d.batch_size is None else str(d.batch_size),
                       help="samples per step, or 'full' for the whole training set in every step")
    train.add_argument("--lr", type=float, default=d.lr, help="learning rate (at the start of the schedule)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="update rule")
    train.add_argument("--momentum", type=float, default=d.momentum, help="momentum of momentum and nesterov")
    train.add_argument("--weight-decay", metavar="WD", type=float, default=d.weight_decay,
                       help="L2 weight decay (on weights, not biases)")
    train.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                       help=f"learning-rate schedule over the epochs (step: x{d.step_gamma:g} "
                            f"every {d.step_epochs} epochs)")
    train.add_argument("--patience", metavar="N", type=_positive_int, default=d.patience,
                       help="with --val-split: stop after N epochs without a better validation "
                            "accuracy and keep the best epoch's weights; default: never stop early")
    train.add_argument("--shift", metavar="N", type=_non_negative_int, default=d.shift,
                       help="augment image data: move each training image by a random whole-pixel offset "
                            "in -N..N rows and columns, drawn anew every epoch (pixels moved in are 0; "
                            "training only; 0: off)")
    train.add_argument("--flip", action="store_true", default=d.flip,
                       help="augment image data: mirror each training image left to right half of the time, "
                            "drawn anew every epoch (for pictures of things, not for digits or letters)")
    train.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights, shuffling and split")
    train.add_argument("--threads", metavar="N", type=_positive_int, default=d.threads,
                       help="Numba threads (and BLAS threads for --engine numpy); default: all cores")

    out = parser.add_argument_group("output")
    out.add_argument("--save", metavar="PATH", default=None,
                     help=f"where to write the model and checkpoint after every epoch; default: "
                          f"./{DEFAULT_SAVE}, or the --resume file when resuming")
    out.add_argument("--no-save", action="store_true", help="write no model and no checkpoint")
    out.add_argument("--resume", metavar="PATH", default=None,
                     help="continue the run saved in this checkpoint (with its settings; --epochs may raise "
                          "the number of epochs)")
    out.add_argument("--metrics-json", metavar="PATH", default=None,
                     help="write the settings, per-epoch metrics, test accuracy and versions as JSON")
    out.add_argument("--plot", metavar="DIR", default=None,
                     help='write curves.png, confusion.png and misclassified.png here (needs matplotlib: '
                          'pip install "fastnet[plot]")')
    out.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar, no per-epoch lines, no confusion matrix: just the result")
    return parser


def build_eval_parser():
    """The ``fastnet-eval`` parser."""
    parser = _Parser(
        prog="fastnet-eval",
        description="Print a saved fastnet model's accuracy and confusion matrix on a test set.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a model or checkpoint written by fastnet-train")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="the data set to test on; default: the one the model was trained on (else mnist)")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="a folder holding the data set's four IDX files, or an .npz or CSV file: its test "
                             "set, else the share fastnet-train held out of it (the model remembers it)")
    parser.add_argument("--label-column", metavar="NAME|INDEX", default=None,
                        help="CSV: the column holding the labels; default: as in training, else the last")
    parser.add_argument("--offline", action="store_true", help="never download; fail if the data is not on disk")
    parser.add_argument("--engine", choices=ENGINES, default=_DEFAULTS.engine, help="which kernels run the model")
    parser.add_argument("--threads", metavar="N", type=_positive_int, default=None,
                        help="Numba (and BLAS) threads; default: all cores")
    return parser


def build_predict_parser():
    """The ``fastnet-predict`` parser."""
    parser = _Parser(
        prog="fastnet-predict",
        description="Predict the class of each sample with a saved fastnet model.\n\n"
                    "INPUT: .npy arrays of samples (N, ...); .npz files of x_train, y_train[, x_test, "
                    "y_test] (their x_test, else x_train); CSV files of feature rows (header optional); "
                    "images (PNG, JPEG, ...: prepared as MNIST's digits were, for 28x28 models; needs "
                    "Pillow). uint8 arrays are pixels (scaled by 1/255 as in training); float arrays are "
                    "used as they are.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a model or checkpoint written by fastnet-train")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="files of samples to predict")
    parser.add_argument("--output", "-o", metavar="FILE", default=None,
                        help="write a CSV (id, label, one probability column per class) instead of printing "
                             "the top 3 classes of each sample")
    parser.add_argument("--engine", choices=ENGINES, default=_DEFAULTS.engine, help="which kernels run the model")
    parser.add_argument("--threads", metavar="N", type=_positive_int, default=None,
                        help="Numba (and BLAS) threads; default: all cores")
    return parser


def _parse(parser, argv):
    """Parse ``argv``; returns ``(args, given)``: every option's value (its default
    where it was not given) and the set of options given on the command line.

    The options' defaults are swapped for ``argparse.SUPPRESS`` while parsing,
    so that only the given ones land in the namespace; ``--help`` still shows
    the real defaults (``shown_default``, read by :class:`_HelpFormatter`)."""
    options = [a for a in parser._actions if a.option_strings and a.default is not argparse.SUPPRESS]
    for action in options:
        action.shown_default, action.default = action.default, argparse.SUPPRESS
    try:
        args = parser.parse_args(argv)
    finally:
        for action in options:
            action.default = action.shown_default
    given = set(vars(args))
    for action in options:
        if action.dest not in given:
            value = action.default
            if isinstance(value, str) and action.type is not None:
                value = action.type(value)  # as argparse treats a string default
            setattr(args, action.dest, value)
    return args, given


def _option(name):
    return "--" + name.replace("_", "-")


def _config_message(exc):
    """A ConfigError's message with the setting named as its option (``batch_size`` -> ``--batch-size``)."""
    text = str(exc)
    name, sep, rest = text.partition(":")
    if sep and name in {f.name for f in fields(TrainConfig)}:
        return f"{_option(name)}:{rest}"
    return text


def _check_threads(parser, threads):
    if threads is None:
        return
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        parser.error(f"--threads: at most {numba.config.NUMBA_NUM_THREADS} on this machine "
                     f"(NUMBA_NUM_THREADS), got {threads}")


# --- errors ----------------------------------------------------------------------------


def _data_error(exc, dataset):
    """One line for the data set ``dataset`` that could not be found or read."""
    from .data import ChecksumError, DatasetError, DatasetNotFoundError, IdxFormatError

    if isinstance(exc, DatasetNotFoundError):
        first = str(exc).splitlines()[0].rstrip(".")
        if exc.data_dir is not None:
            return (f"--data {first[len('data_dir '):]}; pass a folder that holds all four "
                    "(or drop --data to use $FASTNET_DATA or the download cache)")
        folders = [str(folder) for folder, _ in exc.searched]
        where = f" in {', '.join(folders)}" if folders else ""
        why = "--offline" if exc.why_no_download == "offline=True" else exc.why_no_download
        if why:
            reason = f" and downloading is off ({why})"
        elif exc.attempts:
            more = f" and {len(exc.attempts) - 1} more" if len(exc.attempts) > 1 else ""
            reason = f" and the download failed ({exc.attempts[0]}{more})"
        else:
            reason = " and the download failed"
        return (f"{first}{where}{reason}; pass --data DIR (a folder holding its four IDX files) "
                f"or set FASTNET_DATA to a folder that holds {dataset}/")
    if isinstance(exc, IdxFormatError):
        return f"{exc}; the file is damaged: replace it with a good copy (or delete it to download it again)"
    if isinstance(exc, ChecksumError):
        if exc.belongs_to is not None and exc.belongs_to[0] != dataset:
            return f"{exc}: pass --dataset {exc.belongs_to[0]}, or put {dataset}'s own files there"
        return (f"{exc}; replace it with a good copy, or set FASTNET_VERIFY=0 to use it as it is "
                f"(your own data in {dataset}'s format)")
    if isinstance(exc, DatasetError):
        return f"{exc}; replace the data set's files with good copies"
    return str(exc)


def _model_error(exc, path):
    from .model import ModelFormatError

    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file; pass the path of a model written by fastnet-train --save"
    if isinstance(exc, ModelFormatError):
        return f"{exc}; pass a model written by fastnet-train --save"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a folder; pass the path of a model file"
    return f"{path}: cannot read it ({exc})"


def _closed_stdout():
    """stdout went away (``fastnet-train | head``): stop quietly, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush fails no more
    return 1


def _fail(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 1


def _load_data(dataset, data_dir, offline):
    from .data import DatasetError, DatasetNotFoundError, IdxFormatError, load_dataset

    try:
        return load_dataset(dataset, data_dir, offline=offline)
    except (DatasetNotFoundError, IdxFormatError, DatasetError) as exc:
        raise CommandError(_data_error(exc, dataset)) from None
    except OSError as exc:  # reading the files, or writing the download cache
        raise CommandError(f"cannot read or write the {dataset} files: {exc}") from None


class RunData:
    """The samples a command works on, wherever they came from: ``train_*`` and
    ``test_*`` arrays, ``name`` (what the output calls them), ``classes`` (a
    data set's fixed class labels, or None: the training labels decide),
    ``split`` (how the test set was held out of a file, or None) and ``note``
    (a line saying so)."""

    def __init__(self, train_images, train_labels, test_images, test_labels, *, name, classes=None,
                 class_names=None, split=None, note=None):
        self.train_images, self.train_labels = train_images, train_labels
        self.test_images, self.test_labels = test_images, test_labels
        self.name, self.classes, self.class_names = name, classes, class_names
        self.split, self.note = split, note


def _is_data_file(path):
    """Whether ``--data path`` names a file of samples (not a folder of IDX files)."""
    return path is not None and (Path(path).is_file() or Path(path).suffix.lower() in (".npz", ".csv"))


def _read_run_data(dataset, path, *, offline, label_column=None, test_split=DEFAULT_TEST_SPLIT, seed=0):
    """The data a run trains and tests on: the IDX data set ``dataset`` (from the
    folder ``path``, or found or downloaded), or the .npz or CSV file ``path``.
    A file without a test set has ``test_split`` of it held out, stratified by
    class, drawn with ``seed``."""
    if not _is_data_file(path):
        from .data.tables import DATASETS as TABLE

        data = _load_data(dataset, path, offline)
        spec = TABLE[dataset]
        return RunData(data.train_images, data.train_labels, data.test_images, data.test_labels, name=dataset,
                       classes=np.arange(spec.n_classes), class_names=list(spec.classes))
    from .data import readers

    if label_column is not None and label_column.lstrip("-").isdigit():
        label_column = int(label_column)
    try:
        table = readers.read_data(path, label_column)
    except ImportError as exc:
        raise CommandError(f"{path}: {exc}") from None
    except ValueError as exc:  # readers.DataError, missing files included
        raise CommandError(str(exc)) from None
    if table.x_test is not None:
        return RunData(table.x_train, table.y_train, table.x_test, table.y_test, name=path)
    try:
        x_train, y_train, x_test, y_test = readers.stratified_split(table.x_train, table.y_train, test_split,
                                                                    [seed, 3])
    except ValueError as exc:
        raise CommandError(f"{path}: cannot hold out a test set: {exc}") from None
    split = {"test_split": test_split, "seed": seed}
    note = (f"{path} has no test set: held out {len(y_test)} of its {len(table.y_train)} samples "
            f"({100 * test_split:g}%, stratified by class) to test on (--test-split)")
    return RunData(x_train, y_train, x_test, y_test, name=path, split=split, note=note)


# --- output ----------------------------------------------------------------------------


def _percent(x):
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def format_epoch(m, epochs):
    """One line for :class:`~fastnet.train.EpochMetrics` ``m``."""
    width = len(str(epochs))
    parts = [f"epoch {m.epoch:>{width}}/{epochs}", f"lr {m.lr:.4g}", f"loss {m.loss:.4f}",
             f"train {_percent(m.train_accuracy)}"]
    if m.val_accuracy is not None:
        parts.append(f"val {_percent(m.val_accuracy)}")
    parts.append(f"{m.seconds:.2f} s")
    sps = m.samples_per_second
    parts.append(f"{sps:,.0f} samples/s" if math.isfinite(sps) else "- samples/s")
    return "  ".join(parts)


def format_confusion(confusion, classes=None):
    """The confusion matrix as text: rows true class, columns predicted, each
    headed by its class label (``classes``, default ``0..K-1``)."""
    k = confusion.shape[0]
    names = [str(c) for c in (range(k) if classes is None else classes)]
    width = max(len(str(int(confusion.max(initial=0)))), *map(len, names)) + 1
    lead = max(4, *map(len, names))
    lines = ["confusion matrix (rows: true class, columns: predicted):",
             f"{'true':<{lead}} " + "".join(f"{n:>{width}}" for n in names)]
    for i in range(k):
        lines.append(f"{names[i]:>{lead}} " + "".join(f"{int(v):>{width}}" for v in confusion[i]))
    return "\n".join(lines)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _write_metrics(path, document):
    from ._files import atomic_write_json

    try:
        atomic_write_json(path, _finite_or_none(document))
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}; pass --metrics-json a writable path") from None


def metrics_document(trainer, result, compile_seconds, evaluation, saved, stop_reason):
    """The ``--metrics-json`` document."""
    import numba
    import numpy

    from . import __version__

    return {
        "config": trainer.config.to_dict(),
        "epochs": [asdict(m) for m in trainer.history],
        "compile_seconds": compile_seconds,
        "train_seconds": sum(m.seconds for m in trainer.history),
        "stop_reason": stop_reason,
        "best_epoch": result.best_epoch if result is not None else None,
        "test_accuracy": evaluation.accuracy if evaluation is not None else None,
        "test_loss": evaluation.loss if evaluation is not None else None,
        "confusion_matrix": evaluation.confusion.tolist() if evaluation is not None else None,
        "model": str(saved) if saved else None,
        "data": trainer.data_info,
        "versions": {"fastnet": __version__, "numba": numba.__version__, "numpy": numpy.__version__,
                     "python": sys.version.split()[0]},
    }


class _Progress:
    """The callbacks that show a run: a tqdm bar per epoch (stderr, terminals only, and only
    when an epoch takes more than one step) and a line per epoch (stdout)."""

    def __init__(self, trainer, *, quiet, checkpoint):
        self.trainer = trainer
        self.quiet = quiet
        self.checkpoint = checkpoint
        self.show_bar = (not quiet and sys.stderr is not None and sys.stderr.isatty()
                         and trainer.batches_per_epoch > 1)
        self.bar = None

    def on_progress(self, done, total):
        if not self.show_bar:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            c = self.trainer.config
            self.bar = tqdm(total=total, initial=0, desc=f"epoch {self.trainer.epoch + 1}/{c.epochs}",
                            unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch(self, metrics):
        self.close_bar()
        if self.checkpoint is not None:
            self.checkpoint()
        if not self.quiet:
            print(format_epoch(metrics, self.trainer.config.epochs), flush=True)


class _StopOnSigint:
    """First Ctrl-C: ask the run to stop at the next chunk of batches; second: abort now."""

    def __init__(self, prog):
        self.prog = prog
        self.requested = False

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self.prog}: stopping after the current batch and saving a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    @contextmanager
    def installed(self):
        try:
            previous = signal.signal(signal.SIGINT, self)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


# --- fastnet-train ---------------------------------------------------------------------------


def main(argv=None):
    """``fastnet-train``: returns the exit code."""
    parser = build_parser()
    args, given = _parse(parser, argv)
    return _run(parser.prog, lambda: _train(parser, args, given))


def _validate(parser, args, given):
    """Check the options that argparse alone cannot; returns the TrainConfig of a new run (None with --resume)."""
    if args.no_save and "save" in given:
        parser.error("--save and --no-save: choose one")
    if args.plot is not None:
        from .plots import PlotDependencyError, require_matplotlib

        try:
            require_matplotlib()
        except PlotDependencyError as exc:
            parser.error(f"--plot: {exc}")
    _check_threads(parser, args.threads)
    if not 0 < args.test_split < 1:
        parser.error(f"--test-split: expected a fraction between 0 and 1, got {args.test_split:g}")
    for name in ("label_column", "test_split"):
        if name in given and not _is_data_file(args.data):
            parser.error(f"{_option(name)}: applies to --data FILE (.npz or CSV) only")
    if args.resume is not None:
        return None  # the options given are compared with the checkpoint's settings once it is read
    if args.patience is not None and not args.val_split:
        parser.error("--patience: early stopping watches the validation accuracy; give --val-split F too")
    try:
        return TrainConfig(**{name: getattr(args, name) for name in _config_fields() if hasattr(args, name)})
    except ConfigError as exc:
        parser.error(_config_message(exc))


def _config_fields():
    """The names of :class:`~fastnet.config.TrainConfig`'s settings (the options of the same names set them)."""
    return [f.name for f in fields(TrainConfig)]


def _read_checkpoint_config(path):
    """The TrainConfig stored in the checkpoint ``path`` and what it says of its data
    (a dict), every field checked, or a CommandError saying why not."""
    from .model import ModelFormatError
    from .train import read_checkpoint

    try:
        _, meta, config = read_checkpoint(path)
    except (OSError, ModelFormatError) as exc:
        if "not a checkpoint (no training state" in str(exc):
            raise CommandError(f"{exc}; --resume needs a file saved by fastnet-train during training") from None
        raise CommandError(_model_error(exc, path)) from None
    return config, meta.get("data") or {}


def _shown_setting(name, value):
    """A setting's value as its option takes it."""
    if name == "hidden":
        return ",".join(map(str, value))
    if name == "batch_size" and value is None:
        return "full"
    return "default" if value is None else str(value)


def _check_resume_options(parser, given, args, config):
    """Options given beside ``--resume`` must equal the checkpoint's settings (but for
    --epochs and --threads): re-running a command with --resume added is fine."""
    differ = [f"{_option(name)} {_shown_setting(name, getattr(args, name))} "
              f"(the checkpoint's: {_shown_setting(name, getattr(config, name))})"
              for name in _config_fields()
              if name in given and name not in _FREE_ON_RESUME and getattr(args, name) != getattr(config, name)]
    if differ:
        parser.error(f"{'; '.join(differ)}: cannot be changed when resuming; the checkpoint holds the run's "
                     "settings (drop these options or give its values; --epochs and --threads may change)")


def _check_threads_on_resume(prog, given, args, config):
    """The checkpoint's settings with --threads if given; else a checkpoint's --threads
    beyond what this machine allows becomes what it allows, and a line says so."""
    import numba

    if "threads" in given:
        return config.replace(threads=args.threads)
    most = numba.config.NUMBA_NUM_THREADS
    if config.threads is None or config.threads <= most:
        return config
    print(f"{prog}: note: the checkpoint ran with --threads {config.threads}; this machine allows {most} "
          f"(NUMBA_NUM_THREADS): using {most}", file=sys.stderr, flush=True)
    return config.replace(threads=most)


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (through symlinks and hard links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def _check_writable(option, path, *, folder=False):
    """CommandError unless ``path`` (a file, or with ``folder`` a folder) could be written:
    what exists is of the right kind and the nearest existing folder is writable."""
    p = Path(path).absolute()
    if p.is_dir() != folder and p.exists():
        raise CommandError(f"{option} {path}: is {'not a folder' if folder else 'a folder'}; pass "
                           f"{'a folder' if folder else 'a file path'}")
    parent = p if folder else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path}: cannot write in {parent} (permission denied or a read-only "
                           "file system); pass a writable path")


def _outputs(args, save):
    """``[(option, path)]``: every file this run will write."""
    outputs = [("--save", save)] if save is not None else []
    if args.metrics_json:
        outputs.append(("--metrics-json", Path(args.metrics_json)))
    if args.plot:
        outputs += [("--plot", Path(args.plot) / name) for name in PLOT_FILES]
    return outputs


def _check_outputs(args, save):
    """Before anything is read: each output can be written, and no two outputs are one file."""
    if save is not None:
        _check_writable("--save", save)
    if args.metrics_json:
        _check_writable("--metrics-json", args.metrics_json)
    if args.plot:
        _check_writable("--plot", args.plot, folder=True)
    outputs = _outputs(args, save)
    for i, (option, path) in enumerate(outputs):
        for other, other_path in outputs[:i]:
            if option != other and _same_file(path, other_path):
                raise CommandError(f"{option} {path}: is also where {other} writes; pass another path")


def _check_outputs_spare_inputs(args, save, config, file_data):
    """No output may be an input: the data's files, or (but for --save) the checkpoint resumed."""
    if file_data:
        inputs = [Path(args.data)]
    else:
        from .data.datasets import dataset_files

        inputs = dataset_files(config.dataset, args.data)
    for option, path in _outputs(args, save):
        for given in inputs + ([Path(args.resume)] if args.resume and option != "--save" else []):
            if given.exists() and _same_file(path, given):
                raise CommandError(f"{option} {path}: is an input of this run ({given}); writing there would "
                                   "destroy it: pass another path")


def _train(parser, args, given):
    """``fastnet-train`` after parsing: set up the run, train it, report it."""
    config = _validate(parser, args, given)
    out = _Output(args.quiet)
    if args.resume is not None:
        config, data_info = _read_checkpoint_config(args.resume)
        _check_resume_options(parser, given, args, config)
        config = _check_threads_on_resume(parser.prog, given, args, config)
        # a file's test set is held out as it was, unless told otherwise
        for name in ("label_column", "test_split"):
            if name not in given and data_info.get(name) is not None:
                setattr(args, name, data_info[name])
    save = None if args.no_save else Path(args.save or args.resume or DEFAULT_SAVE)
    _check_outputs(args, save)
    with _save_lock(save):
        return _train_run(parser, args, given, config, out, save)


@contextmanager
def _save_lock(save):
    """Hold an exclusive lock on ``.NAME.lock`` beside the ``--save`` file for the run:
    a second run saving to the same path is refused (naming the first's pid) instead
    of overwriting its checkpoints, the last writer silently winning. The lock goes
    with the process, however it ends; the file is removed on the way out."""
    if save is None:
        yield
        return
    from ._files import pid_lock

    lock = save.parent / f".{save.name}.lock"
    with pid_lock(lock,
                  cannot_create=lambda exc: CommandError(f"--save {save}: cannot create {lock} "
                                                         f"({exc.strerror or exc}); pass a writable path"),
                  busy=lambda pid: CommandError(f"--save {save}: another fastnet-train (pid {pid}) is saving "
                                                "to it; wait for it to end, or pass another --save")):
        yield


def _train_run(parser, args, given, config, out, save):
    """``fastnet-train`` once the outputs are checked (and ``save`` locked): read, train, report."""
    from .prewarm import Prewarm

    # Numba loads (or compiles) the run's functions on a thread of its own while the data is
    # read (zlib releases the GIL): see fastnet/prewarm.py. A file's dtype is known once it is read.
    file_data = _is_data_file(args.data)
    prewarm = None if file_data else Prewarm(config).start()
    data = _read_run_data(config.dataset, args.data, offline=args.offline, label_column=args.label_column,
                          test_split=args.test_split, seed=config.seed)
    _check_outputs_spare_inputs(args, save, config, file_data)
    if prewarm is None:
        prewarm = Prewarm(config, stored=np.asarray(data.train_images).dtype.name).start()
    trainer = _new_or_resumed_trainer(parser, args, given, config, data)
    trainer.data_info = {"source": data.name if file_data else None, "label_column": args.label_column,
                         **(data.split or {})}
    out.line(_describe(trainer, args, data))
    if data.note:
        out.line(data.note)

    from .train import TrainingDiverged, evaluate, thread_limit

    def save_checkpoint():
        if save is None:
            return
        try:
            trainer.save_checkpoint(save)
        except OSError as exc:
            raise CommandError(f"cannot write the checkpoint {save}: {exc.strerror or exc}; "
                               "pass --save a writable path") from None

    stop = _StopOnSigint(parser.prog)
    progress = _Progress(trainer, quiet=args.quiet, checkpoint=save_checkpoint)
    with thread_limit(trainer.config.threads):
        compile_seconds = _wait_for_compile(prewarm, trainer, quiet=args.quiet)
        out.line(f"{'compiled the kernels' if trainer.config.engine == 'numba' else 'warmed up the numpy engine'} "
                 f"in {compile_seconds:.2f} s (begun while the data was read; not counted in the epoch times)")
        try:
            with stop.installed():
                result = trainer.run(on_epoch=progress.on_epoch, on_progress=progress.on_progress,
                                     should_stop=lambda: stop.requested)
        except TrainingDiverged as exc:
            raise CommandError(str(exc)) from None
        finally:
            progress.close_bar()
        save_checkpoint()
        if result.stop_reason == "interrupted":
            return _interrupted(parser.prog, args, trainer, result, save, compile_seconds)
        if result.stop_reason == "early_stopping":
            out.line(f"stopped early: no better validation accuracy for {trainer.config.patience} epochs; "
                     f"keeping the weights of epoch {result.best_epoch}")
        try:
            evaluation = evaluate(trainer.model, data.test_images, data.test_labels, engine=trainer.config.engine)
        except ValueError as exc:  # a test label the model was not trained on, or features of another width
            raise CommandError(f"{data.name}: cannot test the model on its test set: {exc}") from None
    _report(args, out, trainer, result, evaluation, data, save, compile_seconds)
    return 0


class _Output:
    """stdout, unless ``--quiet``; every line flushed at once, so a pipe sees the run as it goes."""

    def __init__(self, quiet):
        self.quiet = quiet

    def line(self, text):
        if not self.quiet:
            print(text, flush=True)


def _new_or_resumed_trainer(parser, args, given, config, data):
    from .model import ModelFormatError
    from .train import Trainer

    if args.resume is None:
        try:
            return Trainer(config, data.train_images, data.train_labels, classes=data.classes)
        except ConfigError as exc:
            parser.error(_config_message(exc))
        except ValueError as exc:  # the data: one class only, labels outside the data set's classes
            raise CommandError(f"{data.name}: {exc}") from None
    try:
        trainer = Trainer.from_checkpoint(args.resume, data.train_images, data.train_labels,
                                          epochs=args.epochs if "epochs" in given else None)
    except (OSError, ModelFormatError) as exc:
        raise CommandError(_model_error(exc, args.resume)) from None
    except (ValueError, ConfigError) as exc:
        raise CommandError(f"{args.resume}: cannot resume: {_config_message(exc)}") from None
    if trainer.config.threads != config.threads:  # --threads given, or clamped to this machine's
        trainer.config = trainer.config.replace(threads=config.threads)
    return trainer


def _describe(trainer, args, data):
    """The run's first lines: what trains on what, and where a resumed run picks up."""
    import numba

    from . import __version__

    config = trainer.config
    threads = config.threads or numba.get_num_threads()
    sizes = "-".join(map(str, trainer.model.sizes))
    n_val = 0 if trainer.val_images is None else trainer.val_images.shape[0]
    batch = "full batch" if trainer.batch_size == trainer.n_train else f"batches of {trainer.batch_size}"
    extras = [name for name, on in (("standardized", trainer.model.standardized),
                                     (f"dropout {config.dropout:g}", config.dropout > 0),
                                     (f"shifts of up to {config.shift} pixels", config.shift > 0),
                                     ("mirrored images", config.flip)) if on]
    text = (f"fastnet {__version__}: {data.name}, {trainer.n_train} training"
            f"{f' + {n_val} validation' if n_val else ''} samples, {sizes} {config.dtype}, {batch}, "
            f"{config.optimizer}{''.join(', ' + e for e in extras)}, {config.engine} engine, "
            f"{threads} thread{'s' * (threads != 1)}")
    if args.resume is not None:
        where = f"at epoch {trainer.epoch + 1}"
        if trainer.batch:
            where = f"in epoch {trainer.epoch + 1} at batch {trainer.batch + 1} of {trainer.batches_per_epoch}"
        if trainer.epoch >= config.epochs:
            text += f"\nresuming {args.resume}: all {config.epochs} epochs are done (--epochs N to train further)"
        else:
            text += f"\nresuming {args.resume} {where}"
    return text


def _wait_for_compile(prewarm, trainer, *, quiet):
    """Wait for the background warm-up, then let the trainer compile whatever it
    still needs (nothing, unless its argument types differ); returns the seconds
    both took. On a terminal, a counting notice says why nothing happens."""
    notice = (not quiet and trainer.config.engine == "numba" and not prewarm.done()
              and sys.stderr is not None and sys.stderr.isatty())
    if notice:
        text = "compiling the kernels (once: later runs load them from Numba's cache)..."
        print(text, end="", file=sys.stderr, flush=True)
        while prewarm.wait(timeout=1.0) is None:  # count the seconds, so the wait visibly moves
            print(f"\r{text} {time.perf_counter() - prewarm.started:.0f} s", end="", file=sys.stderr, flush=True)
    seconds = prewarm.wait() + trainer.warmup()
    if notice:
        print("\r\033[K", end="", file=sys.stderr, flush=True)  # erase the notice
    return seconds


def _interrupted(prog, args, trainer, result, save, compile_seconds):
    """Ctrl-C: say where the run stopped and how to go on; exit code 130."""
    if trainer.batch:
        where = f"in epoch {trainer.epoch + 1} after batch {trainer.batch} of {trainer.batches_per_epoch}"
    else:
        where = f"after epoch {trainer.epoch}"
    if save is not None:
        print(f"{prog}: interrupted {where}; saved the checkpoint to {save}; "
              f"continue with: fastnet-train --resume {save}", file=sys.stderr, flush=True)
    else:
        print(f"{prog}: interrupted {where}; nothing saved (--no-save)", file=sys.stderr, flush=True)
    if args.metrics_json:
        _write_metrics(args.metrics_json, metrics_document(trainer, result, compile_seconds, None, save, "interrupted"))
    return 130


def _report(args, out, trainer, result, evaluation, data, save, compile_seconds):
    """The end of a run: test accuracy, confusion matrix, metrics, plots, where the model went."""
    train_seconds = sum(m.seconds for m in trainer.history)
    correct = int(evaluation.confusion.trace())
    print(f"test accuracy {_percent(evaluation.accuracy)} ({correct} of {len(data.test_labels)}), "
          f"after {trainer.epoch} epochs in {train_seconds:.2f} s of training "
          f"(+ {compile_seconds:.2f} s compiling)", flush=True)
    out.line(format_confusion(evaluation.confusion, trainer.model.classes))
    if args.metrics_json:
        _write_metrics(args.metrics_json,
                       metrics_document(trainer, result, compile_seconds, evaluation, save, result.stop_reason))
        out.line(f"wrote metrics to {args.metrics_json}")
    if args.plot:
        from .plots import write_all

        try:
            paths = write_all(args.plot, history=trainer.history, evaluation=evaluation,
                              test_images=data.test_images, test_labels=trainer.model.encode(data.test_labels),
                              names=data.class_names or [str(c) for c in trainer.model.classes])
        except OSError as exc:
            raise CommandError(f"cannot write plots to {args.plot}: {exc.strerror or exc}") from None
        out.line(f"wrote plots: {', '.join(str(p) for p in paths)}")
    if save is not None:
        print(f"saved the model (and its checkpoint) to {save}", flush=True)


# --- fastnet-eval ---------------------------------------------------------------------------


def eval_main(argv=None):
    """``fastnet-eval MODEL``: print a saved model's test accuracy and confusion matrix."""
    parser = build_eval_parser()
    args = parser.parse_args(argv)
    _check_threads(parser, args.threads)
    return _run(parser.prog, lambda: _evaluate(args))


def _run(prog, command):
    """Run ``command()`` and turn the ways it can end into exit codes: an error
    that was our user's to fix (one line, 1), Ctrl-C (130), a closed stdout."""
    try:
        return command()
    except CommandError as exc:
        return _fail(prog, exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        return _closed_stdout()
    except MemoryError as exc:  # fastnet's own estimates name what and how much (a network too wide)
        return _fail(prog, str(exc) or "out of memory")


def _evaluate(args):
    from .model import MLP, ModelFormatError
    from .train import check_checkpoint_meta, evaluate, thread_limit

    try:
        model, meta = MLP.load(args.model, with_meta=True)
    except (OSError, ModelFormatError) as exc:
        raise CommandError(_model_error(exc, args.model)) from None
    meta = meta or {}
    dataset, trained_on = args.dataset or "mnist", {}
    if "config" in meta:  # a checkpoint: it says what it was trained on
        try:
            config = check_checkpoint_meta(meta)
        except (TypeError, ValueError) as exc:
            raise CommandError(f"{args.model}: its training state is not valid: {exc}; "
                               "pass a model written by fastnet-train --save") from None
        dataset, trained_on = args.dataset or config.dataset, meta.get("data") or {}
    if args.label_column is not None and not _is_data_file(args.data):
        raise CommandError("--label-column: applies to --data FILE (.npz or CSV) only")
    data = _read_run_data(dataset, args.data, offline=args.offline,
                          label_column=args.label_column or trained_on.get("label_column"),
                          test_split=trained_on.get("test_split") or DEFAULT_TEST_SPLIT,
                          seed=trained_on.get("seed") or 0)
    dataset = data.name
    n_pixels = data.test_images[0].size
    if model.sizes[0] != n_pixels:
        what = f"{dataset}'s images have {n_pixels} pixels" if not _is_data_file(args.data) else \
            f"{dataset}'s samples have {n_pixels} features"
        raise CommandError(f"{args.model}: the model takes {model.sizes[0]} inputs, but {what}; "
                           f"pass the data set it was trained on (--dataset, --data)")
    if data.note:
        print(data.note.replace("to test on (--test-split)", "to test on, as fastnet-train did"))
    t0 = time.perf_counter()
    with thread_limit(args.threads):
        try:
            evaluation = evaluate(model, data.test_images, data.test_labels, engine=args.engine)
        except ValueError as exc:  # a label the model never saw
            raise CommandError(f"{dataset}: {exc}") from None
    seconds = time.perf_counter() - t0
    correct = int(evaluation.confusion.trace())
    print(f"{args.model}: {'-'.join(map(str, model.sizes))} {model.dtype}, {dataset} test set")
    print(f"test accuracy {_percent(evaluation.accuracy)} ({correct} of {len(data.test_labels)}), "
          f"loss {evaluation.loss:.4f}, {seconds:.2f} s")
    print(format_confusion(evaluation.confusion, model.classes))
    return 0


def predict_main(argv=None):
    """``fastnet-predict MODEL INPUT...``: each sample's predicted class and the class probabilities."""
    parser = build_predict_parser()
    args = parser.parse_args(argv)
    _check_threads(parser, args.threads)
    return _run(parser.prog, lambda: _predict(args))


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def _read_samples(path):
    """``[(id, sample array)]`` of one INPUT file: ``name`` for an image,
    ``name:row`` (rows from 1) for the rows of an array or CSV file."""
    from .data import readers

    suffix = Path(path).suffix.lower()
    try:
        if suffix in _IMAGE_SUFFIXES:
            from .data.images import read_image

            return [(path, read_image(path))]
        if suffix == ".npy":
            rows = readers.read_npy(path)
        elif suffix == ".npz":
            data = readers.read_npz(path)
            rows = data.x_train if data.x_test is None else data.x_test
        elif suffix == ".csv":
            rows = readers.read_csv(path, labels=False)
        else:
            raise CommandError(f"{path}: expected .npy, .npz, .csv or an image ({', '.join(_IMAGE_SUFFIXES)}), "
                               f"found {suffix or 'no suffix'}")
    except (ValueError, ImportError) as exc:  # readers.DataError and images' errors (missing files too)
        raise CommandError(str(exc)) from None
    return [(f"{path}:{i}", row) for i, row in enumerate(rows, start=1)]


def _samples_matrix(model, samples):
    """Stack ``samples`` into one ``(N, D)`` array for ``model``: uint8 pixels if all are
    uint8, else floats in the model's dtype, with any uint8 pixels among them scaled by
    1/255 as :func:`~fastnet.engine.predict_proba` scales a uint8 array."""
    D = model.sizes[0]
    for name, x in samples:
        if x.size != D:
            raise CommandError(f"{name}: the model takes {D} values per sample, found {x.size} "
                               f"(shape {x.shape})")
    if all(x.dtype == np.uint8 for _, x in samples):
        return np.stack([x.reshape(D) for _, x in samples])
    return np.stack([(x * (1 / 255) if x.dtype == np.uint8 else x).reshape(D).astype(model.dtype)
                     for _, x in samples])


def _predict(args):
    from ._files import atomic_write
    from .engine import predict_proba
    from .model import MLP, ModelFormatError
    from .train import prediction_batch, thread_limit

    try:
        model = MLP.load(args.model)
    except (OSError, ModelFormatError) as exc:
        raise CommandError(_model_error(exc, args.model)) from None
    output = None if args.output is None else Path(args.output)
    if output is not None:
        for given in (args.model, *args.inputs):
            if Path(given).exists() and output.resolve() == Path(given).resolve():
                raise CommandError(f"--output {args.output}: is one of the inputs; pass another file")
        if not output.resolve().parent.is_dir():
            raise CommandError(f"--output {args.output}: no such folder {output.parent}")
    samples = [sample for path in args.inputs for sample in _read_samples(path)]
    if not samples:
        raise CommandError(f"{', '.join(args.inputs)}: no samples")
    x = _samples_matrix(model, samples)
    with thread_limit(args.threads):
        probs = predict_proba(model, x, engine=args.engine, batch_size=prediction_batch(model))
    names = [str(c) for c in model.classes]
    labels = probs.argmax(axis=1)
    if output is None:
        for (name, _), p in zip(samples, probs):
            top = np.argsort(-p, kind="stable")[:3]
            print(f"{name}: " + ", ".join(f"{names[k]} ({p[k]:.3f})" for k in top))
        return 0
    lines = ["id,label," + ",".join(_csv_field(f"p_{n}") for n in names)]
    lines += [f"{_csv_field(name)},{_csv_field(names[k])}," + ",".join(f"{v:.6g}" for v in p)
              for (name, _), k, p in zip(samples, labels, probs)]
    try:
        with atomic_write(output) as f:
            f.write(("\n".join(lines) + "\n").encode())
    except OSError as exc:
        raise CommandError(f"--output {args.output}: cannot write it ({exc.strerror or exc})") from None
    print(f"wrote {len(samples)} predictions to {args.output}")
    return 0


def _csv_field(text):
    """``text`` as one CSV field (quoted if it holds a comma, a quote or a line break)."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


if __name__ == "__main__":
    sys.exit(main())
