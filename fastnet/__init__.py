"""fastnet: a from-scratch multilayer perceptron trainer for IDX image sets.

Hand-written Numba kernels (:mod:`fastnet.kernels`), their NumPy twins
(:mod:`fastnet.reference`), a Cython IDX reader (:mod:`fastnet.data`), a
training loop (:mod:`fastnet.train`) behind the ``fastnet-train`` command,
and :class:`MLPClassifier` (:mod:`fastnet.estimator`) for scikit-learn users.

``fastnet.MLPClassifier`` loads its module on first use, so that ``import
fastnet`` imports neither scikit-learn (an optional extra) nor Numba.
"""
import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_WHERE = {"MLPClassifier": "estimator"}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__():
    return sorted([*globals(), *_WHERE])
