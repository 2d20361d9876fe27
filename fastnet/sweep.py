"""``fastnet-sweep``: a hyperparameter search over fastnet runs, on a Dask cluster, by Optuna.

The parts, and who owns what:

- **The search space** (:class:`Param`, :func:`parse_param`, :func:`read_space`): each
  setting of :class:`~fastnet.config.TrainConfig` a sweep varies, as choices
  (``hidden=[128],[256],[512,256]``), a range (``dropout=0..0.5``, with a step
  ``batch_size=32..256:32``) or a log-uniform range (``lr=log(0.01,0.5)``); a single
  value fixes a setting for every trial. Every choice and end is checked against
  TrainConfig when the command is parsed: a bad spec is one line naming the param.
- **The search** is Optuna's: its samplers (random, grid, TPE), its MedianPruner, and
  its study kept in a JournalStorage file in the results folder. Only the driver (the
  ``fastnet-sweep`` process) talks to the study: it asks for a trial's parameters,
  reports each epoch's validation accuracy, asks the pruner, and tells the result.
- **The execution** is Dask's: each trial is one task (:func:`run_trial`) on a worker of
  a ``distributed`` cluster, a LocalCluster sized to the machine or one given by
  ``--scheduler``. A worker reports each epoch as a Dask event (``Worker.log_event``),
  which the driver receives through ``Client.subscribe_topic``; a pruned trial's worker
  is told with ``Client.run`` (a flag the trial's ``should_stop`` reads). A worker that
  dies mid-trial has its task rerun elsewhere by the scheduler (its ``allowed-failures``).
- **The data** is read once, by the driver, and scattered to every worker with
  ``broadcast=True`` before the first trial: each worker holds one copy in memory and
  every trial's task refers to it, so it is never pickled again per trial. (Reading
  from a shared path would need one on every machine; scattering needs nothing.)
- **The results** (:class:`Results`): ``trials.jsonl`` gets one line per finished trial,
  written before the study is told, so each trial is recorded once whatever stops the
  sweep; ``--resume DIR`` reruns only the trials the study still has running.

Selection uses the validation split only (``--val-split``, drawn with ``--seed``, the
same samples for every trial). The best configuration is then trained again (by
default on the training samples and the validation samples together, ``--refit all``;
``--refit train`` keeps the validation samples out), tested once on the test set and
saved as a fastnet checkpoint that ``fastnet-eval`` reads.

Dask and Optuna are imported only when a sweep runs, so ``import fastnet`` stays light;
without them the command says ``pip install "fastnet[sweep]"``.
"""
import json
import math
import os
import queue
import re
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .cli import (
    DEFAULT_TEST_SPLIT,
    CommandError,
    _count_or_fraction,
    _finite_or_none,
    _HelpFormatter,
    _is_data_file,
    _Parser,
    _percent,
    _positive_int,
    _read_run_data,
)
from .config import DATASETS, ConfigError, TrainConfig

PROG = "fastnet-sweep"
DEFAULT_OUT = "fastnet-sweep"
DEFAULT_TRIALS = 20
DEFAULT_VAL_SPLIT = 0.1
#: Trials that must complete before the pruner stops any (Optuna's MedianPruner default).
DEFAULT_PRUNE_AFTER = 5
#: The first epoch after which a trial may be pruned.
DEFAULT_PRUNE_FROM = 2
INSTALL_HINT = 'pip install "fastnet[sweep]"'

#: The results folder's files.
SWEEP_FILE, STUDY_FILE, TRIALS_FILE, TABLE_FILE = "sweep.json", "study.journal", "trials.jsonl", "trials.csv"
BEST_MODEL, BEST_FILE, LOCK_FILE = "best-model.npz", "best.json", ".lock"
STUDY_NAME = "fastnet-sweep"

# --- the search space --------------------------------------------------------------------

#: Settings a sweep does not search: they are its own options (the validation split and
#: the seed must be the same for every trial, or their accuracies could not be compared).
NOT_SEARCHED = {"dataset": "--dataset", "limit": "--limit", "val_split": "--val-split", "seed": "--seed",
                "threads": "--threads", "engine": None}
#: Whole-number settings (their ranges are searched over integers).
INTS = ("epochs", "batch_size", "step_epochs", "patience", "shift")
#: Settings that take choices only, never a range.
CHOICES_ONLY = ("hidden", "dtype", "optimizer", "schedule", "standardize", "flip")
SEARCHABLE = tuple(f.name for f in fields(TrainConfig) if f.name not in NOT_SEARCHED)


class SpecError(ValueError):
    """A search-space spec that cannot be used; the message names the param and says why."""


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) setting: ``choices`` (values as TrainConfig takes them),
    or a range from ``low`` to ``high``, log-uniform with ``log``, on a grid of ``step``."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def fixed(self):
        return self.choices is not None and len(self.choices) == 1

    def spec(self):
        """The spec text that :func:`parse_spec` turns back into this param."""
        if self.choices is not None:
            if self.name == "hidden":
                return ",".join("[" + ",".join(map(str, c)) + "]" for c in self.choices)
            return ",".join(_shown(self.name, c) for c in self.choices)
        if self.log:
            return f"log({self.low!r},{self.high!r})"
        return f"{self.low!r}..{self.high!r}" + (f":{self.step!r}" if self.step is not None else "")

    def suggest(self, trial):
        """The value Optuna's ``trial`` picks, as TrainConfig takes it."""
        if self.choices is not None:
            return decode(self.name, trial.suggest_categorical(self.name, [encode(self.name, c)
                                                                           for c in self.choices]))
        if self.name in INTS:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid(self):
        """Every value of the param on a grid (Optuna's encoding), or SpecError."""
        if self.choices is not None:
            return [encode(self.name, c) for c in self.choices]
        if self.log or (self.step is None and self.name not in INTS):
            raise SpecError(f"{self.name}={self.spec()}: --sampler grid needs choices (like "
                            f"{self.name}={self.low!r},{self.high!r}) or a range with a step "
                            f"(like {self.name}={self.low!r}..{self.high!r}:STEP)")
        step = self.step or 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) for v in values] if self.name in INTS else [round(v, 12) for v in values]


def encode(name, value):
    """A setting's value as an Optuna categorical choice (None, bool, int, float or str)."""
    if name == "hidden":
        return ",".join(map(str, value))
    if name == "batch_size" and value is None:
        return "full"
    return value


def decode(name, value):
    """The inverse of :func:`encode`."""
    if name == "hidden":
        return tuple(int(w) for w in str(value).split(","))
    if name == "batch_size" and value == "full":
        return None
    return value


def _shown(name, value):
    if name == "hidden":
        return "[" + ",".join(map(str, value)) + "]"
    if name == "batch_size" and value is None:
        return "full"
    if name == "standardize":
        return "auto" if value is None else str(value).lower()
    if name == "flip":
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")


def _number(name, text, what):
    text = text.strip()
    if name in INTS:
        if not _INT.fullmatch(text):
            raise SpecError(f"{what}: expected a whole number, got {text!r}")
        return int(text)
    if not _NUMBER.fullmatch(text):
        raise SpecError(f"{what}: expected a number, got {text!r}")
    return float(text)


def _split_top(text):
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise SpecError("a ']' without its '['")
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SpecError("a '[' without its ']'")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _choice(name, text):
    """One choice's text as the value TrainConfig takes."""
    if name == "hidden":
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
        widths = _INT.fullmatch
        if inner is None or not inner.strip() or not all(widths(w.strip()) for w in inner.split(",")):
            raise SpecError(f"expected each choice as a bracketed list of widths, like [128] or [512,256], "
                            f"got {text!r}")
        return tuple(int(w) for w in inner.split(","))
    if "[" in text or "]" in text:
        raise SpecError(f"brackets are for hidden's choices only, got {text!r}")
    if not text:
        raise SpecError("an empty choice")
    if name == "batch_size" and text.lower() == "full":
        return None
    if name == "standardize":
        value = {"true": True, "false": False, "auto": None}.get(text.lower(), text)
        if isinstance(value, str):
            raise SpecError(f"expected true, false or auto, got {text!r}")
        return value
    if name == "flip":
        value = {"true": True, "false": False}.get(text.lower())
        if value is None:
            raise SpecError(f"expected true or false, got {text!r}")
        return value
    if name in ("dtype", "optimizer", "schedule"):
        return text
    return _number(name, text, "a choice")


def _check_name(name):
    name = name.strip().lstrip("-").replace("-", "_")
    if name in NOT_SEARCHED:
        option = NOT_SEARCHED[name]
        raise SpecError(f"{name}: is not searched" + (f"; it is the sweep's own option {option}" if option else ""))
    if name not in SEARCHABLE:
        raise SpecError(f"{name or '(empty)'}: not a setting; expected one of {', '.join(SEARCHABLE)}")
    return name


def _check_value(name, value, what):
    """SpecError unless TrainConfig takes ``value`` for ``name``."""
    try:
        TrainConfig(**{name: value})
    except ConfigError as exc:
        raise SpecError(f"{what}: {str(exc).partition(': ')[2] or exc}") from None
    except TypeError as exc:
        raise SpecError(f"{what}: {exc}") from None


def make_param(name, *, choices=None, low=None, high=None, log=False, step=None):
    """A :class:`Param` after every check: SpecError saying what is wrong (not naming the param)."""
    if choices is not None:
        if not choices:
            raise SpecError("no choices")
        for value in choices:
            _check_value(name, value, f"choice {_shown(name, value)}")
        if len(set(map(lambda v: encode(name, v), choices))) != len(choices):
            raise SpecError("a choice is given twice")
        return Param(name, choices=tuple(choices))
    if name in CHOICES_ONLY:
        raise SpecError("takes choices only (like " + ("[128],[256],[512,256]" if name == "hidden" else "a,b")
                        + "), not a range")
    for end, value in (("low", low), ("high", high)):
        _check_value(name, value, f"the {end} end {value!r}")
    if not low < high:
        raise SpecError(f"the low end {low!r} must be below the high end {high!r}")
    if log and low <= 0:
        raise SpecError(f"a log range must start above 0, got {low!r}")
    if step is not None:
        if log:
            raise SpecError("a log range takes no step")
        if not (step > 0 and step <= high - low):
            raise SpecError(f"the step {step!r} must be above 0 and at most high - low ({high - low!r})")
    return Param(name, low=low, high=high, log=log, step=step)


def parse_spec(name, spec):
    """The :class:`Param` of ``name=spec``: ``log(A,B)``, ``A..B``, ``A..B:STEP``, or choices
    ``a,b,c`` (``[w,...],[w,...]`` for hidden; a bare ``512,256`` is one network, as
    ``fastnet-train --hidden`` takes it). SpecError, without the param's name."""
    text = spec.strip()
    if not text:
        raise SpecError("an empty spec")
    m = re.fullmatch(r"log\s*\((.*)\)", text)
    if m:
        ends = m.group(1).split(",")
        if len(ends) != 2:
            raise SpecError(f"expected log(LOW,HIGH), got {text!r}")
        return make_param(name, low=_number(name, ends[0], "log's low end"),
                          high=_number(name, ends[1], "log's high end"), log=True)
    m = re.fullmatch(r"(.+?)\.\.([^:]+)(?::(.+))?", text)
    if m and "[" not in text:
        step = None if m.group(3) is None else _number(name, m.group(3), "the step")
        return make_param(name, low=_number(name, m.group(1), "the low end"),
                          high=_number(name, m.group(2), "the high end"), step=step)
    if name == "hidden" and "[" not in text:
        return make_param(name, choices=[_choice(name, f"[{text}]")])
    return make_param(name, choices=[_choice(name, part) for part in _split_top(text)])


def parse_param(text):
    """``--param NAME=SPEC`` as a :class:`Param`; SpecError naming the param."""
    name, sep, spec = text.partition("=")
    if not sep:
        raise SpecError(f"{text!r}: expected NAME=SPEC, like lr=log(0.01,0.5) or hidden=[128],[256]")
    try:
        name = _check_name(name)
    except SpecError as exc:
        raise SpecError(f"--param {text}: {exc}") from None
    try:
        return parse_spec(name, spec)
    except SpecError as exc:
        raise SpecError(f"--param {text}: {exc}") from None


def _toml_value(name, value):
    """A TOML file's value for ``name`` as a :class:`Param`: a spec string, an array of
    choices (for hidden, each a width or an array of widths), a table {low, high, log,
    step}, or one value that fixes the setting."""
    if isinstance(value, str) and name not in ("dtype", "optimizer", "schedule"):
        return parse_spec(name, value)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"low", "high", "log", "step"})
        if unknown or "low" not in value or "high" not in value:
            raise SpecError("a range table takes low, high and optionally log, step"
                            + (f"; found {', '.join(unknown)}" if unknown else ""))
        ends = [value["low"], value["high"], value.get("step")]
        for end in ends:
            if end is not None and (isinstance(end, bool) or not isinstance(end, (int, float))):
                raise SpecError(f"expected numbers for low, high and step, found {end!r}")
        if name in INTS and not all(e is None or isinstance(e, int) for e in ends):
            raise SpecError("expected whole numbers for low, high and step")
        if not isinstance(value.get("log", False), bool):
            raise SpecError(f"log: expected true or false, found {value['log']!r}")
        cast = int if name in INTS else float
        return make_param(name, low=cast(value["low"]), high=cast(value["high"]), log=value.get("log", False),
                          step=None if value.get("step") is None else cast(value["step"]))
    values = value if isinstance(value, list) else [value]
    choices = []
    for v in values:
        if name == "hidden":
            v = (v,) if isinstance(v, int) and not isinstance(v, bool) else v
            if not (isinstance(v, (list, tuple)) and v and all(isinstance(w, int) and not isinstance(w, bool)
                                                               for w in v)):
                raise SpecError(f"expected widths, like [128, [512, 256]], found {v!r}")
            v = tuple(v)
        elif name == "batch_size" and v == "full":
            v = None
        elif name in ("standardize",) and v == "auto":
            v = None
        elif isinstance(v, (list, dict)):
            raise SpecError(f"expected a value, found {v!r}")
        choices.append(v)
    return make_param(name, choices=choices)


def read_space(path):
    """The params of a TOML file: a key per setting (see :func:`_toml_value`), at the top
    level or in a ``[space]`` table. SpecError naming the file and the param."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise SpecError(f"{path}: reading TOML needs Python 3.11, or tomli (pip install tomli)") from None
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    table = document
    if "space" in document:
        table = document["space"]
        if not isinstance(table, dict) or len(document) > 1:
            raise SpecError(f"{path}: expected the settings in one [space] table (or all at the top level)")
    params = {}
    for key, value in table.items():
        try:
            name = _check_name(key)
            params[name] = _toml_value(name, value)
        except SpecError as exc:
            text = str(exc)
            raise SpecError(f"{path}: {text if text.startswith(key) else f'{key}: {text}'}") from None
    return params


# --- the trial, on a worker ----------------------------------------------------------------

#: Trials the driver asked to stop (pruned), by key: read by the running trial's should_stop.
_STOP = set()
_STOP_LOCK = threading.Lock()


class SweepData:
    """The samples every trial trains on, scattered to each worker once: ``images``,
    ``labels`` (the first ``--limit`` training samples; each trial holds out the same
    validation split of them) and ``classes`` (a data set's fixed labels, or None)."""

    def __init__(self, images, labels, classes):
        self.images, self.labels, self.classes = images, labels, classes


def request_stop(key):
    """Run on a worker by the driver (``Client.run``): stop the trial ``key`` at its next chunk of batches."""
    with _STOP_LOCK:
        _STOP.add(key)


def _compiles(trainer):
    """How many times this process has compiled the run's functions (Numba cache misses)."""
    total = 0
    for fn, _ in trainer.warmup_calls():
        stats = getattr(fn, "stats", None)
        if stats is not None:
            total += sum(stats.cache_misses.values())
    return total


def _log_event(topic, msg):
    try:
        from distributed import get_worker

        get_worker().log_event(topic, msg)
    except (ImportError, ValueError):  # not on a Dask worker (called directly)
        pass


def run_trial(data, config, number, key, topic):
    """Train one trial of ``config`` (a TrainConfig as a dict) on ``data`` (a
    :class:`SweepData`), reporting each epoch to the driver as a Dask event under
    ``topic``. Returns the trial's record: never raises for what the trial itself did
    (a diverging loss, a setting the data cannot take), so that Dask reruns a task only
    when its worker died."""
    from .train import Trainer, TrainingDiverged

    worker, host = _worker_address(), socket.gethostname()
    with _STOP_LOCK:
        _STOP.discard(key)
    _log_event(topic, {"kind": "started", "trial": number, "worker": worker})
    t0 = time.perf_counter()
    record = {"trial": number, "status": "complete", "value": None, "reason": None, "epochs": [],
              "worker": worker, "host": host, "pid": os.getpid(), "compile_seconds": None, "compiled": None}
    trainer = None
    try:
        trainer = Trainer(TrainConfig.from_dict(config), data.images, data.labels, classes=data.classes)
        before = _compiles(trainer)
        from .train import thread_limit

        with thread_limit(trainer.config.threads):
            record["compile_seconds"] = trainer.warmup()
        record["compiled"] = _compiles(trainer) - before

        def on_epoch(metrics):
            record["epochs"].append(asdict(metrics))
            _log_event(topic, {"kind": "epoch", "trial": number, "worker": worker, "epoch": metrics.epoch,
                               "val_accuracy": metrics.val_accuracy})

        result = trainer.run(on_epoch=on_epoch, should_stop=lambda: key in _STOP)
        if result.stop_reason == "interrupted":
            record["status"] = "pruned"
            record["reason"] = f"pruned after epoch {trainer.epoch}"
        history = result.history
        if history:
            best = trainer.best["val_accuracy"] if trainer.config.patience is not None else None
            record["value"] = best if best is not None and best >= 0 else history[-1].val_accuracy
    except TrainingDiverged as exc:  # the epochs up to it, the diverged one included when it ended
        record.update(status="failed", reason=f"diverged: {exc}", epochs=[asdict(m) for m in trainer.history])
    except (ConfigError, ValueError, MemoryError) as exc:
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    finally:
        with _STOP_LOCK:
            _STOP.discard(key)
    record["seconds"] = time.perf_counter() - t0
    return _finite_or_none(record)


def _worker_address():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def refit(data, test_images, test_labels, config, data_info):
    """Train ``config`` on ``data`` (the best trial's settings) and test it once on the test
    set. Returns the checkpoint's bytes (the file ``fastnet-train --save`` writes), the
    history and the test evaluation."""
    from .train import Trainer, evaluate, thread_limit

    t0 = time.perf_counter()
    trainer = Trainer(TrainConfig.from_dict(config), data.images, data.labels, classes=data.classes)
    trainer.data_info = data_info
    with thread_limit(trainer.config.threads):
        trainer.warmup()
        trainer.run()
        evaluation = evaluate(trainer.model, test_images, test_labels, engine=trainer.config.engine)
    with tempfile.TemporaryDirectory(prefix="fastnet-sweep-") as tmp:
        path = Path(tmp) / BEST_MODEL
        trainer.save_checkpoint(path)
        checkpoint = path.read_bytes()
    return {"checkpoint": checkpoint, "epochs": [asdict(m) for m in trainer.history], "n_train": trainer.n_train,
            "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss,
            "confusion": evaluation.confusion.tolist(), "worker": _worker_address(),
            "seconds": time.perf_counter() - t0}


def worker_info():
    """What the driver's report says of a worker's machine (run on it by ``Client.run``)."""
    import importlib.metadata

    try:
        fastnet = importlib.metadata.version("fastnet")
    except importlib.metadata.PackageNotFoundError:
        fastnet = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"host": socket.gethostname(), "cores": cores, "fastnet": fastnet}


# --- the command ----------------------------------------------------------------------------


def build_parser():
    """The ``fastnet-sweep`` parser."""
    d = TrainConfig()
    parser = _Parser(
        prog=PROG,
        description="Search fastnet's training settings with Optuna, each trial a task on a Dask cluster.\n\n"
                    "SPEC: choices a,b,c (hidden: [128],[256],[512,256]); a range LOW..HIGH, on a grid "
                    "LOW..HIGH:STEP;\na log-uniform range log(LOW,HIGH); one value fixes the setting. "
                    "Examples:\n"
                    "  --param hidden=[128],[256],[512,256] --param lr='log(0.01,0.5)' --param dropout=0..0.5",
        epilog=(
            "Every trial is judged on the validation split (--val-split); the best configuration is\n"
            "then trained again (--refit), tested once on the test set and saved as DIR/best-model.npz.\n"
            "DIR holds sweep.json (the settings), study.journal (Optuna's study), trials.jsonl (a line\n"
            "per finished trial) and trials.csv; `fastnet-sweep --resume DIR` continues a sweep.\n"
            'Needs dask[distributed] and optuna: pip install "fastnet[sweep]". See docs/sweep.md.'
        ),
        formatter_class=_HelpFormatter,
    )
    space = parser.add_argument_group("search")
    space.add_argument("--space", metavar="FILE", default=None,
                       help="a TOML file of the search space: a key per setting, its value a SPEC string, "
                            "an array of choices, a table {low, high, log, step} or one value")
    space.add_argument("--param", metavar="NAME=SPEC", action="append", default=[],
                       help="search (or fix) one setting; repeat it; overrides --space's NAME")
    space.add_argument("--trials", metavar="N", type=_positive_int, default=None,
                       help=f"trials in all (with --resume: in all, the finished ones included); "
                            f"default: {DEFAULT_TRIALS}, or the grid's size with --sampler grid")
    space.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe",
                       help="Optuna's sampler")
    space.add_argument("--no-prune", action="store_true",
                       help="never stop a weak trial early (by default Optuna's MedianPruner stops a trial "
                            "whose validation accuracy after an epoch is below the median of the finished "
                            "trials' after the same epoch)")
    space.add_argument("--prune-after", metavar="N", type=_positive_int, default=DEFAULT_PRUNE_AFTER,
                       help="trials that must finish before any is pruned")
    space.add_argument("--prune-from", metavar="EPOCH", type=_positive_int, default=DEFAULT_PRUNE_FROM,
                       help="the first epoch after which a trial may be pruned (the first epoch's accuracy "
                            "says little of where a trial ends)")
    space.add_argument("--epochs", type=_positive_int, default=d.epochs, help="epochs of each trial")
    space.add_argument("--val-split", metavar="F", type=_count_or_fraction, default=DEFAULT_VAL_SPLIT,
                       help="the fraction (or count) of the training samples every trial is judged on")
    space.add_argument("--seed", type=int, default=d.seed,
                       help="seed of the sampler, the validation split and every trial's weights")
    space.add_argument("--refit", choices=("all", "train"), default="all",
                       help="train the best configuration again on all the training samples (the "
                            "validation split included), or on the trials' training part only")

    data = parser.add_argument_group("data (as fastnet-train's)")
    data.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="the data set to train and test on")
    data.add_argument("--data", metavar="PATH", default=None,
                      help="a folder of the data set's IDX files, or an .npz or CSV file")
    data.add_argument("--label-column", metavar="NAME|INDEX", default=None,
                      help="CSV: the column holding the labels; default: the last")
    data.add_argument("--test-split", metavar="F", type=float, default=DEFAULT_TEST_SPLIT,
                      help="a file without a test set: hold out this fraction as the test set")
    data.add_argument("--limit", metavar="N", type=_positive_int, default=None,
                      help="use the first N training samples only; default: all")
    data.add_argument("--offline", action="store_true", help="never download")

    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--scheduler", metavar="ADDRESS", default=None,
                         help="attach to a running Dask scheduler, like tcp://HOST:8786; default: start a "
                              "LocalCluster on this machine")
    cluster.add_argument("--workers", metavar="N", type=_positive_int, default=None,
                         help="the LocalCluster's workers (one trial at a time each); default: cores / --threads")
    cluster.add_argument("--threads", metavar="N", type=_positive_int, default=1,
                         help="fastnet (Numba) threads of each trial")

    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default=None,
                     help=f"the results folder (a new or empty one); default: ./{DEFAULT_OUT}")
    out.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the sweep in DIR with its settings: finished trials are kept, trials "
                          "that were running are run again; --trials may raise the total")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no line per trial")
    return parser


#: Options ``--resume`` accepts beside it: where and how the trials run, not what they are.
RESUME_OPTIONS = ("trials", "scheduler", "workers", "threads", "data", "offline", "quiet", "resume")


def main(argv=None):
    """``fastnet-sweep``: returns the exit code (0 done, 1 a runtime error, 2 a usage error, 130 Ctrl-C)."""
    parser = build_parser()
    from .cli import _parse

    args, given = _parse(parser, argv)
    try:
        settings = _settings(parser, args, given)
    except SpecError as exc:
        parser.error(str(exc))
    try:
        return Sweep(settings, args).run()
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        where = f"; continue with: {PROG} --resume {settings['out']}"
        print(f"{PROG}: interrupted{where}", file=sys.stderr, flush=True)
        return 130


def _settings(parser, args, given):
    """The sweep's settings (what sweep.json holds): from the options, or with ``--resume``
    from DIR/sweep.json, checked. SpecError or a usage error."""
    if args.resume is not None:
        extra = sorted(name for name in given if name not in RESUME_OPTIONS)
        if extra:
            parser.error(f"{', '.join('--' + n.replace('_', '-') for n in extra)}: the sweep's settings are in "
                         f"{Path(args.resume) / SWEEP_FILE}; --resume takes only "
                         f"{', '.join('--' + n for n in RESUME_OPTIONS if n != 'resume')}")
        path = Path(args.resume) / SWEEP_FILE
        try:
            settings = json.loads(path.read_text())
            space = {p["name"]: parse_spec(p["name"], p["spec"]) for p in settings["space"]}
        except FileNotFoundError:
            parser.error(f"--resume {args.resume}: no {SWEEP_FILE} in it; pass the results folder of a sweep")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--resume {args.resume}: cannot read {path}: {exc}")
        settings["space"], settings["out"] = space, str(args.resume)
        if args.trials is not None:
            settings["trials"] = args.trials
        if args.data is not None:
            settings["data"]["data"] = args.data
        settings["data"]["offline"] = args.offline or settings["data"].get("offline", False)
        settings["threads"] = args.threads if "threads" in given else settings["threads"]
        return settings
    space = read_space(args.space) if args.space else {}
    for text in args.param:
        param = parse_param(text)
        space[param.name] = param
    if args.workers is not None and args.scheduler is not None:
        parser.error("--workers: sizes the LocalCluster; an attached cluster (--scheduler) has its own workers")
    if not 0 < args.test_split < 1:
        parser.error(f"--test-split: expected a fraction between 0 and 1, got {args.test_split:g}")
    if not args.val_split:
        parser.error("--val-split: every trial is judged on a validation split; give a fraction like 0.1")
    base = _base_config(parser, args, space)
    searched = {name: p for name, p in space.items() if not p.fixed}
    if not searched:
        parser.error("nothing to search: give --param NAME=SPEC with two or more choices or a range "
                     "(or --space FILE)")
    trials = args.trials
    if args.sampler == "grid":
        size = 1
        for param in searched.values():
            size *= len(param.grid())
        trials = size if trials is None else min(trials, size)
    return {"space": space, "base": base.to_dict(), "sampler": args.sampler, "prune": not args.no_prune,
            "prune_after": args.prune_after, "prune_from": args.prune_from, "trials": trials or DEFAULT_TRIALS, "refit": args.refit,
            "threads": args.threads,
            "data": {"dataset": args.dataset, "data": args.data, "label_column": args.label_column,
                     "test_split": args.test_split, "offline": args.offline},
            "out": args.out or DEFAULT_OUT}


def _base_config(parser, args, space):
    """The TrainConfig every trial starts from: the sweep's options and the fixed params."""
    base = {"dataset": args.dataset, "epochs": args.epochs, "val_split": args.val_split, "seed": args.seed,
            "limit": args.limit, "threads": args.threads}
    base.update({name: p.choices[0] for name, p in space.items() if p.fixed})
    try:
        config = TrainConfig(**base)
    except ConfigError as exc:
        from .cli import _config_message

        parser.error(_config_message(exc))
    if config.val_split >= 1 and args.limit is not None and config.val_split >= args.limit:
        parser.error(f"--val-split {args.val_split}: holds out all of the --limit {args.limit} samples")
    return config


def _import_extras():
    """dask.distributed and optuna, or a CommandError naming the extra."""
    try:
        import distributed  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"fastnet-sweep needs dask[distributed] and optuna ({exc}): {INSTALL_HINT}") from None


class Results:
    """The results folder: sweep.json, the study's journal, trials.jsonl (a line per
    finished trial, appended and flushed before the study is told), trials.csv and the
    best model. Held under an exclusive lock while a sweep runs in it."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.records = {}  # trial number -> record

    def path(self, name):
        return self.folder / name

    @contextmanager
    def locked(self):
        from ._files import pid_lock

        with pid_lock(self.path(LOCK_FILE), remove=False,
                      cannot_create=lambda exc: CommandError(
                          f"{self.folder}: cannot create the results folder ({exc.strerror or exc}); "
                          "pass --out a writable folder"),
                      busy=lambda pid: CommandError(
                          f"{self.folder}: another fastnet-sweep (pid {pid}) is running in it")):
            yield self

    def load(self):
        """Read trials.jsonl (a torn last line, from a driver killed mid-write, is dropped)."""
        try:
            lines = self.path(TRIALS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            self.records.setdefault(record["trial"], record)

    def append(self, record):
        if record["trial"] in self.records:
            return False
        with open(self.path(TRIALS_FILE), "a") as f:
            f.write(json.dumps(_finite_or_none(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["trial"]] = record
        return True

    def write_json(self, name, document):
        from ._files import atomic_write_json

        atomic_write_json(self.path(name), _finite_or_none(document))

    def write_table(self, names):
        """trials.csv: a row per trial, its params, status and figures."""
        from ._files import atomic_write
        from .cli import _csv_field

        head = ["trial", "status", "val_accuracy", *names, "epochs", "seconds", "worker", "attempts", "reason"]
        rows = [",".join(head)]
        for n in sorted(self.records):
            r = self.records[n]
            cells = [n, r["status"], "" if r.get("value") is None else f"{r['value']:.6f}",
                     *[_param_text(name, r.get("params", {}).get(name)) for name in names],
                     len(r.get("epochs") or []), f"{r.get('seconds') or 0:.3f}", r.get("worker") or "",
                     r.get("attempts") or "", r.get("reason") or ""]
            rows.append(",".join(_csv_field(str(c)) for c in cells))
        with atomic_write(self.path(TABLE_FILE)) as f:
            f.write(("\n".join(rows) + "\n").encode())


def _param_text(name, value):
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class _Lost(Exception):
    """The connection to the scheduler is gone."""


class Sweep:
    """One run of ``fastnet-sweep``: set up the study, the cluster and the data, run the
    trials, refit the best, write the results."""

    def __init__(self, settings, args):
        self.settings = settings
        self.args = args
        self.space = settings["space"]
        self.searched = {name: p for name, p in self.space.items() if not p.fixed}
        self.base = settings["base"]
        self.results = Results(settings["out"])
        self.session = os.urandom(4).hex()
        self.topic = f"fastnet-sweep-{self.session}"
        self.events = queue.SimpleQueue()
        self.started = {}  # trial number -> [worker addresses], in this session
        self.reported = {}  # trial number -> {epoch}
        self.trials = {}  # trial number -> optuna Trial
        self.running = {}  # trial number -> (future, params, config)
        self.bar = None
        self.quiet = args.quiet

    # --- output ---

    def line(self, text):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def note(self, text):
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    # --- the run ---

    def run(self):
        self.t_begin = time.perf_counter()
        _import_extras()
        resume = self.args.resume is not None
        folder = self.results.folder
        if not resume and folder.exists() and any(p.name != LOCK_FILE for p in folder.iterdir()):
            raise CommandError(f"--out {folder}: holds files already; continue its sweep with --resume {folder}, "
                               "or pass another --out")
        with self.results.locked(), _quiet_dask_logs():
            if not resume:
                self._write_settings()
            self.results.load()
            t0 = time.perf_counter()
            data = self._read_data()
            self.timings = {"read_seconds": time.perf_counter() - t0}
            study = self._study()
            t0 = time.perf_counter()
            with self._cluster() as client:
                self.timings["cluster_seconds"] = time.perf_counter() - t0  # until a worker is there
                return self._run(client, study, data)

    def _write_settings(self):
        from . import __version__

        document = dict(self.settings)
        document["space"] = [{"name": p.name, "spec": p.spec()} for p in self.space.values()]
        document["created"] = _now()
        document["fastnet"] = __version__
        self.results.write_json(SWEEP_FILE, document)

    def _read_data(self):
        d = self.settings["data"]
        if d.get("label_column") is not None and not _is_data_file(d.get("data")):
            raise CommandError("--label-column: applies to --data FILE (.npz or CSV) only")
        offline = d.get("offline") or None
        data = _read_run_data(self.base["dataset"], d.get("data"), offline=bool(offline),
                              label_column=d.get("label_column"), test_split=d.get("test_split", DEFAULT_TEST_SPLIT),
                              seed=self.base["seed"])
        limit = self.base["limit"]
        images = data.train_images if limit is None else data.train_images[:limit]
        labels = data.train_labels if limit is None else data.train_labels[:limit]
        self.data_info = {"source": data.name if _is_data_file(d.get("data")) else None,
                          "label_column": d.get("label_column"), **(data.split or {})}
        self.data_name = data.name
        return data, SweepData(np.ascontiguousarray(images), np.asarray(labels), data.classes)

    def _study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        if s["sampler"] == "grid":
            try:
                grid = {name: p.grid() for name, p in self.searched.items()}
            except SpecError as exc:
                raise CommandError(str(exc)) from None
            class Grid(optuna.samplers.GridSampler):
                def after_trial(self, study, trial, state, values):
                    """Nothing: Optuna's stops ``study.optimize`` once the grid is done, which this
                    ask-and-tell loop has no use for (it runs exactly the grid's trials)."""

            sampler = Grid(grid, seed=self.base["seed"])
        elif s["sampler"] == "random":
            sampler = optuna.samplers.RandomSampler(seed=self.base["seed"])
        else:
            sampler = optuna.samplers.TPESampler(seed=self.base["seed"], constant_liar=True)
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=s["prune_after"],
                                              n_warmup_steps=s.get("prune_from", DEFAULT_PRUNE_FROM))
                  if s["prune"] else optuna.pruners.NopPruner())
        return optuna.create_study(study_name=STUDY_NAME, storage=_journal(self.results.path(STUDY_FILE)), direction="maximize",
                                   sampler=sampler, pruner=pruner, load_if_exists=True)

    @contextmanager
    def _cluster(self):
        """A Client: to the --scheduler given, or to a LocalCluster of workers x --threads <= cores."""
        import logging

        from distributed import Client, LocalCluster

        address = self.args.scheduler
        if address is not None:
            try:
                client = Client(address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise CommandError(f"--scheduler {address}: cannot connect ({exc}); is `dask scheduler` "
                                   "running there?") from None
            try:
                yield client
            finally:
                _close(client)
            return
        cores = _cores()
        threads = self.settings["threads"]
        if threads > cores:
            raise CommandError(f"--threads {threads}: this machine has {cores} cores")
        workers = self.args.workers or max(1, cores // threads)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"},  # no dashboard, no port 8787
                               silence_logs=logging.CRITICAL)
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                _close(client)
        finally:
            cluster.close()

    def _describe_cluster(self, client):
        """The report's cluster lines: workers x trials at a time x fastnet threads against each host's cores."""
        threads = self.settings["threads"]
        nthreads = client.nthreads()
        info = client.run(worker_info, on_error="return")
        hosts = {}
        for address, n in nthreads.items():
            i = info.get(address)
            if isinstance(i, BaseException) or i is None:
                continue
            if i["fastnet"] is None:
                raise CommandError(f"worker {address} on {i['host']} cannot import fastnet; install it on every "
                                   f"worker: {INSTALL_HINT}")
            h = hosts.setdefault(i["host"], {"workers": 0, "slots": 0, "cores": i["cores"]})
            h["workers"] += 1
            h["slots"] += n
        kind = f"attached to {self.args.scheduler}" if self.args.scheduler else "a LocalCluster"
        lines = [f"cluster: {kind}, {len(nthreads)} worker{'s' * (len(nthreads) != 1)} on "
                 f"{len(hosts)} host{'s' * (len(hosts) != 1)}"]
        for host, h in sorted(hosts.items()):
            used = h["slots"] * threads
            verdict = "not oversubscribed" if used <= h["cores"] else "OVERSUBSCRIBED"
            lines.append(f"  {host}: {h['workers']} worker{'s' * (h['workers'] != 1)}, {h['slots']} trial"
                         f"{'s' * (h['slots'] != 1)} at a time x {threads} fastnet thread{'s' * (threads != 1)} = "
                         f"{used} threads on {h['cores']} cores: {verdict}")
            if used > h["cores"]:
                self.note(f"warning: {host} runs {used} threads on {h['cores']} cores; lower --threads or the "
                          "workers' --nthreads")
        return "\n".join(lines)

    def _run(self, client, study, loaded):
        from tqdm.auto import tqdm

        data, sweep_data = loaded
        t_start = time.perf_counter()
        self.address = client.scheduler.address
        try:
            client.wait_for_workers(1, timeout=60)
        except (TimeoutError, OSError) as exc:
            raise CommandError(f"no Dask worker joined the scheduler within 60 s ({exc})") from None
        self.timings["cluster_seconds"] += time.perf_counter() - t_start
        self.line(f"fastnet-sweep: {self.data_name}, {len(sweep_data.labels)} training samples "
                  f"({_shown_split(self.base['val_split'])} held out for validation), {self.settings['trials']} trials, "
                  f"{self.settings['sampler']} sampler, {'median pruning' if self.settings['prune'] else 'no pruning'}, "
                  f"results in {self.results.folder}")
        self.line(self._describe_cluster(client))
        self.line("searching: " + ", ".join(f"{n}={p.spec()}" for n, p in self.searched.items()))
        t0 = time.perf_counter()
        future_data = client.scatter(sweep_data, broadcast=True, hash=False)
        scatter_seconds = time.perf_counter() - t0
        self.line(f"scattered the data to every worker once ({sweep_data.images.nbytes / 1e6:.1f} MB) in "
                  f"{scatter_seconds:.2f} s")
        client.subscribe_topic(self.topic, lambda event: self.events.put(("event", event[1])))

        self._reconcile(study)
        total = self.settings["trials"]
        todo = self._unfinished(study)
        done_before = len(self.results.records)
        if done_before or todo:
            self.line(f"resuming: {done_before} trials finished, {len(todo)} to run again")
        capacity = max(1, sum(client.nthreads().values()))
        self.bar = tqdm(total=total, initial=min(done_before, total), unit="trial", desc="trials",
                        dynamic_ncols=True, file=sys.stderr,
                        disable=self.quiet or sys.stderr is None or not sys.stderr.isatty())
        self._update_best()
        asked = len(study.trials)
        t_trials = time.perf_counter()
        try:
            while True:
                while len(self.running) < capacity and (todo or asked < total):
                    if todo:
                        self._submit(client, future_data, *todo.pop(0))
                    else:
                        self._ask_and_submit(client, study, future_data)
                        asked += 1
                if not self.running:
                    break
                self._next_event(client, study)
        except _Lost:
            self._close_bar()
            finished = len(self.results.records)
            raise CommandError(f"lost the connection to the scheduler {self.address}; {finished} finished trials "
                               f"are recorded in {self.results.folder}; continue with: {PROG} --resume "
                               f"{self.results.folder}") from None
        except KeyboardInterrupt:
            self._close_bar()
            for future, *_ in self.running.values():
                future.cancel()
            raise
        trials_seconds = time.perf_counter() - t_trials
        self._close_bar()
        self.results.write_table(list(self.searched))
        summary = self._summary(trials_seconds)
        self.line(summary)
        best = self._best()
        if best is None:
            raise CommandError(f"no trial completed; see {self.results.path(TRIALS_FILE)}")
        self._refit(client, future_data, data, best, t_start, scatter_seconds, trials_seconds)
        return 0

    # --- trials ---

    def _reconcile(self, study):
        """After a driver stopped: trials recorded in trials.jsonl but still running in the
        study (stopped between the two writes) are told now."""
        from optuna.trial import TrialState

        for t in study.trials:
            if t.state == TrialState.RUNNING and t.number in self.results.records:
                self._tell(study, self.results.records[t.number])

    def _unfinished(self, study):
        """``[(number, params, config)]`` of the study's trials still running: a previous
        driver stopped before they were recorded. They run again under their numbers."""
        from optuna.trial import TrialState

        todo = []
        for t in study.trials:
            if t.state == TrialState.RUNNING and t.number not in self.results.records:
                params = {name: decode(name, value) for name, value in t.params.items()}
                todo.append((t.number, t.params, self._config(params)))
        return todo

    def _config(self, params):
        config = dict(self.base)
        config.update(params)
        config["threads"] = self.settings["threads"]
        if "hidden" in config:
            config["hidden"] = list(config["hidden"])
        return config

    def _ask_and_submit(self, client, study, future_data):
        trial = study.ask()
        params = {name: p.suggest(trial) for name, p in self.searched.items()}
        self.trials[trial.number] = trial
        self._submit(client, future_data, trial.number, trial.params, self._config(params))

    def _submit(self, client, future_data, number, shown_params, config):
        try:
            TrainConfig.from_dict(config)
        except ConfigError as exc:  # a combination the space allowed but TrainConfig does not
            self._finish({"trial": number, "status": "failed", "value": None, "reason": f"ConfigError: {exc}",
                          "epochs": [], "worker": None, "seconds": 0.0}, shown_params, config)
            return
        key = f"{self.session}:{number}"
        future = client.submit(run_trial, future_data, config, number, key, self.topic,
                               key=f"fastnet-trial-{self.session}-{number}", pure=False)
        future.add_done_callback(lambda f: self.events.put(("done", f)))
        self.running[number] = (future, shown_params, config)

    def _next_event(self, client, study):
        try:
            kind, payload = self.events.get(timeout=0.5)
        except queue.Empty:
            if client.status != "running":
                raise _Lost(f"the client is {client.status}") from None
            return
        if kind == "done":
            self._done(study, payload)
        else:
            self._event(client, study, payload)

    def _event(self, client, study, msg):
        number = msg.get("trial")
        if number not in self.running:
            return
        if msg["kind"] == "started":
            self.started.setdefault(number, []).append(msg["worker"])
            return
        value, epoch = msg.get("val_accuracy"), msg.get("epoch")
        if value is None or not self.settings["prune"]:
            return
        trial = self._trial(study, number)
        steps = self.reported.setdefault(number, set())
        if epoch not in steps:
            steps.add(epoch)
            trial.report(value, epoch)
        if epoch < self.running[number][2]["epochs"] and trial.should_prune():
            try:
                client.run(request_stop, f"{self.session}:{number}", workers=[msg["worker"]], on_error="ignore")
            except Exception:  # noqa: BLE001 -- the worker is gone: its rerun will be judged again
                pass

    def _trial(self, study, number):
        if number not in self.trials:
            import optuna

            frozen = study.trials[number]
            self.trials[number] = optuna.trial.Trial(study, frozen._trial_id)
        return self.trials[number]

    def _done(self, study, future):
        number = next((n for n, (f, *_) in self.running.items() if f is future), None)
        if number is None:
            return
        _, shown_params, config = self.running[number]
        status = future.status
        if status == "finished":
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 -- the result could not be fetched
                record = {"trial": number, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        elif status == "error":
            exc = future.exception()
            from distributed import KilledWorker

            if isinstance(exc, KilledWorker):
                reason = f"its worker died on every try (KilledWorker: {exc})"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            record = {"trial": number, "status": "failed", "reason": reason}
        else:  # cancelled or lost: the scheduler is gone (or Ctrl-C); the trial stays running in the study
            raise _Lost(f"trial {number}'s task was {status}")
        self._finish(record, shown_params, config)
        self._tell(study, self.results.records[number])

    def _finish(self, record, shown_params, config):
        number = record["trial"]
        self.running.pop(number, None)
        workers = self.started.get(number, [])
        record.setdefault("value", None)
        record.setdefault("epochs", [])
        record.update(params=shown_params, config=config, attempts=len(workers) or None, workers_tried=workers,
                      finished=_now())
        if record["status"] == "complete" and record["value"] is None:
            record.update(status="failed", reason="no validation accuracy")
        self.results.append(record)
        self._show(record)
        if self.bar is not None:
            self.bar.update(1)
        self._update_best()

    def _tell(self, study, record):
        from optuna.trial import TrialState

        trial = self._trial(study, record["trial"])
        for name in ("status", "reason", "worker", "seconds", "attempts"):
            if record.get(name) is not None:
                trial.set_user_attr(name, record[name])
        if self.settings["prune"] and record["status"] == "pruned":
            for m in record["epochs"]:
                if m.get("val_accuracy") is not None and m["epoch"] not in self.reported.get(record["trial"], ()):
                    trial.report(m["val_accuracy"], m["epoch"])
        if record["status"] == "complete":
            study.tell(record["trial"], record["value"])
        elif record["status"] == "pruned":
            study.tell(record["trial"], state=TrialState.PRUNED)
        else:
            study.tell(record["trial"], state=TrialState.FAIL)

    def _show(self, r):
        params = " ".join(f"{n}={_param_text(n, v)}" for n, v in (r.get("params") or {}).items())
        if r["status"] == "failed":
            what = f"failed      {r.get('reason')}"
        else:
            what = (f"{r['status']:<9}   val {_percent(r['value'])}  {len(r['epochs'])} epochs"
                    f"  {r.get('seconds') or 0:.1f} s")
        tries = f" ({r['attempts']} tries)" if (r.get("attempts") or 1) > 1 else ""
        self.line(f"trial {r['trial']:>3}  {what}  {params}  on {r.get('worker') or '-'}{tries}")

    def _best(self):
        complete = [r for r in self.results.records.values() if r["status"] == "complete" and r["value"] is not None]
        return max(complete, key=lambda r: (r["value"], -r["trial"]), default=None)

    def _update_best(self):
        best = self._best()
        if self.bar is not None and best is not None:
            self.bar.set_postfix_str(f"best val {_percent(best['value'])} (trial {best['trial']})")

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _summary(self, seconds):
        records = self.results.records.values()
        counts = {s: sum(r["status"] == s for r in records) for s in ("complete", "pruned", "failed")}
        lines = [f"{len(self.results.records)} trials recorded ({counts['complete']} complete, {counts['pruned']} "
                 f"pruned, {counts['failed']} failed); this run's trials took {seconds:.1f} s"]
        top = sorted((r for r in records if r["status"] == "complete"), key=lambda r: -r["value"])[:5]
        if top:
            lines.append("best trials (validation accuracy):")
            for r in top:
                params = " ".join(f"{n}={_param_text(n, v)}" for n, v in r["params"].items())
                lines.append(f"  trial {r['trial']:>3}  val {_percent(r['value'])}  {params}")
        return "\n".join(lines)

    def _refit(self, client, future_data, data, best, t_start, scatter_seconds, trials_seconds):
        config = dict(best["config"])
        if self.settings["refit"] == "all":
            config["val_split"] = 0.0
        where = "training + validation" if self.settings["refit"] == "all" else "training"
        self.line(f"refitting trial {best['trial']}'s settings on the {where} samples, then testing once on the "
                  f"{len(data.test_labels)} test samples")
        future = client.submit(refit, future_data, data.test_images, data.test_labels, config, self.data_info,
                               key=f"fastnet-refit-{self.session}", pure=False)
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 -- a diverging refit, a lost scheduler
            if client.status != "running":
                raise CommandError(f"lost the connection to the scheduler while refitting ({exc}); the trials are recorded in "
                                   f"{self.results.folder}; refit with: {PROG} --resume {self.results.folder}") \
                    from None
            raise CommandError(f"refitting trial {best['trial']}'s settings failed: {type(exc).__name__}: {exc}") \
                from None
        from ._files import atomic_write

        with atomic_write(self.results.path(BEST_MODEL)) as f:
            f.write(out["checkpoint"])
        document = {"trial": best["trial"], "params": best["params"], "val_accuracy": best["value"],
                    "config": config, "refit": self.settings["refit"], "refit_samples": out["n_train"],
                    "refit_epochs": out["epochs"], "test_accuracy": out["test_accuracy"],
                    "test_loss": out["test_loss"], "confusion_matrix": out["confusion"],
                    "model": BEST_MODEL, "refit_worker": out["worker"], "refit_seconds": out["seconds"],
                    **self.timings, "scatter_seconds": scatter_seconds, "trials_seconds": trials_seconds,
                    "wall_seconds": time.perf_counter() - self.t_begin, "finished": _now()}
        self.results.write_json(BEST_FILE, document)
        correct = int(np.trace(np.asarray(out["confusion"])))
        print(f"best: trial {best['trial']}, val {_percent(best['value'])}; refit on {out['n_train']} samples: "
              f"test accuracy {_percent(out['test_accuracy'])} ({correct} of {len(data.test_labels)}); saved "
              f"{self.results.path(BEST_MODEL)}", flush=True)
        self.line(f"{document['wall_seconds']:.1f} s in all: cluster {document['cluster_seconds']:.1f} s, data "
                  f"{document['read_seconds']:.1f} s, scatter {scatter_seconds:.2f} s, trials {trials_seconds:.1f} s, "
                  f"refit {out['seconds']:.1f} s; results in {self.results.folder}")


@contextmanager
def _quiet_dask_logs():
    """Dask's client logs a traceback per reconnection try when the scheduler goes away; the
    sweep says what happened in one line instead (and a worker's own logs stay on the worker)."""
    import logging

    import distributed  # noqa: F401 -- its logging configuration first, then ours over it

    names = ["distributed", *(name for name in logging.root.manager.loggerDict if name.startswith("distributed."))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _journal(path):
    """Optuna's JournalStorage in the file ``path`` (its file backend, with its own lock)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _shown_split(v):
    return f"{100 * v:g}%" if v < 1 else f"{int(v)}"


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _close(client):
    try:
        client.close(timeout=5)
    except Exception:  # noqa: BLE001 -- a client whose scheduler is gone
        pass


if __name__ == "__main__":  # python -m fastnet.sweep: run the imported module, whose functions workers can import
    from fastnet.sweep import main as _main

    sys.exit(_main())
