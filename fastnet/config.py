"""Training settings: one frozen dataclass, validated when it is created."""
import math
from dataclasses import asdict, dataclass, fields

from .data.tables import DATASETS as _DATASET_TABLE

DATASETS = tuple(_DATASET_TABLE)  #: the data sets ``load_dataset`` knows (its table holds their files and classes)
DTYPES = ("float32", "float64")
ENGINES = ("numba", "numpy")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")


class ConfigError(ValueError):
    """A training setting out of its range; the message names the setting."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, and nothing else.

    The defaults are the recipe ``fastnet-train`` uses: a 784-128-10 network,
    mini-batches of 128, Nesterov momentum with a cosine learning-rate decay.
    """

    dataset: str = "mnist"
    hidden: tuple = (128,)
    dtype: str = "float32"
    engine: str = "numba"
    epochs: int = 15
    batch_size: int | None = 128  #: None: the whole training set in every step
    lr: float = 0.1
    optimizer: str = "nesterov"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_epochs: int = 5  #: schedule "step": multiply the rate by step_gamma every step_epochs epochs
    step_gamma: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    dropout: float = 0.0  #: the probability of dropping each hidden unit in training (inverted dropout)
    #: augmentation, in training only, of images (N, rows, width): each sample moved by a random
    #: whole-pixel offset in -shift..shift along each axis every epoch, zero-filled (0: off)
    shift: int = 0
    flip: bool = False  #: augmentation: mirror each training image left to right half of the time
    #: scale each feature to mean 0, std 1 on the training set (kept in the model);
    #: None: for float features, unless all lie in [-1, 1] already (uint8 pixels are scaled by 1/255)
    standardize: bool | None = None
    val_split: float = 0.0  #: a fraction (< 1) or a count (>= 1) of training samples held out
    patience: int | None = None  #: stop after this many epochs without a better validation accuracy
    limit: int | None = None  #: train on the first `limit` training samples only
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("dtype", self.dtype, DTYPES)
        _one_of("engine", self.engine, ENGINES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        if not all(isinstance(h, int) and h >= 1 for h in self.hidden):
            raise ConfigError(f"hidden: expected positive whole widths, got {self.hidden}")
        _whole("epochs", self.epochs, 1)
        if self.batch_size is not None:
            _whole("batch_size", self.batch_size, 1)
        _whole("step_epochs", self.step_epochs, 1)
        _whole("shift", self.shift, 0)
        if not isinstance(self.flip, bool):
            raise ConfigError(f"flip: expected true or false, got {self.flip!r}")
        _whole("seed", self.seed, 0)
        if self.seed >= 2**63:
            raise ConfigError(f"seed: expected a whole number below 2**63, got {self.seed!r}")
        for name in ("limit", "threads", "patience"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), 1)
        _positive("lr", self.lr)
        _positive("eps", self.eps)
        for name in ("momentum", "beta1", "beta2"):
            _in_unit("[0, 1)", name, getattr(self, name), upper_open=True)
        _in_unit("(0, 1]", "step_gamma", self.step_gamma, lower_open=True)
        _in_unit("[0, 1)", "dropout", self.dropout, upper_open=True)
        if self.standardize is not None and not isinstance(self.standardize, bool):
            raise ConfigError(f"standardize: expected true, false or None (float features only), "
                              f"got {self.standardize!r}")
        if not (_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay: expected a finite number >= 0, got {self.weight_decay}")
        v = self.val_split
        if not (_number(v) and math.isfinite(v) and v >= 0 and (v < 1 or float(v).is_integer())):
            raise ConfigError(
                f"val_split: expected a fraction in [0, 1) or a whole count of samples, got {v!r}"
            )
        # the compiled loop takes these as floats: an int (lr=1) would compile another loop
        for name in _FLOATS:
            object.__setattr__(self, name, float(getattr(self, name)))

    def lr_at(self, epoch):
        """The learning rate of epoch ``epoch`` (counted from 0) under the schedule."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "step":
            return self.lr * self.step_gamma ** (epoch // self.step_epochs)
        return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))

    def to_dict(self):
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes):
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)


#: The settings that are real numbers (an int given for one is taken as a float).
_FLOATS = ("lr", "momentum", "weight_decay", "step_gamma", "beta1", "beta2", "eps", "dropout")


def _number(value):
    """A real number (not a bool) that a float can hold."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e300


def _one_of(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{name}: expected one of {', '.join(allowed)}; got {value!r}")


def _whole(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected a whole number >= {minimum}, got {value!r}")


def _positive(name, value):
    if not (_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")


def _in_unit(label, name, value, lower_open=False, upper_open=False):
    ok = _number(value) and math.isfinite(value)
    ok = ok and (value > 0 if lower_open else value >= 0) and (value < 1 if upper_open else value <= 1)
    if not ok:
        raise ConfigError(f"{name}: expected a number in {label}, got {value!r}")
