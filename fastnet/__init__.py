"""fastnet: a from-scratch multilayer perceptron trainer for IDX image sets.

Hand-written Numba kernels (:mod:`fastnet.kernels`), their NumPy twins
(:mod:`fastnet.reference`), a Cython IDX reader (:mod:`fastnet.data`), and a
training loop (:mod:`fastnet.train`) behind the ``fastnet-train`` command.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
