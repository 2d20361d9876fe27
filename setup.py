"""Build the one compiled part of fastnet: the Cython IDX reader.

All metadata lives in pyproject.toml; this file only declares the extension.
"""
from setuptools import setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - depends on the build environment
    raise SystemExit(
        "fastnet needs Cython (>= 3.0) to build its IDX reader, fastnet/data/_idx.pyx. "
        "pip installs it automatically from pyproject.toml's [build-system]; if you "
        "build without isolation (--no-build-isolation), run `pip install cython` first."
    ) from exc

setup(
    ext_modules=cythonize(
        ["fastnet/data/_idx.pyx"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
