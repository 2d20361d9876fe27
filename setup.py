"""Build fastnet's compiled parts: the Cython IDX reader, and the training loop
compiled into Numba's cache beside the package (``fastnet/_precompile.py``).

All metadata lives in pyproject.toml; this file only declares the extension
and runs the precompile after it is built, for ``pip install .`` (the cache
goes into the wheel) and ``pip install -e .`` (into the source tree) alike.
Set ``FASTNET_PRECOMPILE=0`` to skip it: the loop then compiles on first use.
"""
import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - depends on the build environment
    raise SystemExit(
        "fastnet needs Cython (>= 3.0) to build its IDX reader, fastnet/data/_idx.pyx. "
        "pip installs it automatically from pyproject.toml's [build-system]; if you "
        "build without isolation (--no-build-isolation), run `pip install cython` first."
    ) from exc


class BuildExtAndPrecompile(build_ext):
    """Build the extension, then compile the training loop into Numba's cache."""

    def run(self):
        super().run()
        if os.environ.get("FASTNET_PRECOMPILE", "1") == "0":
            return
        editable = self.inplace or getattr(self, "editable_mode", False)
        root = os.path.abspath(os.path.dirname(__file__) if editable else self.build_lib)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("NUMBA_CACHE_DIR", None)  # the cache must land beside the package that is installed
        done = subprocess.run([sys.executable, "-m", "fastnet._precompile"], cwd=root, env=env)
        if done.returncode != 0:
            print("fastnet: the precompile failed; the training loop will compile on first use", file=sys.stderr)


setup(
    cmdclass={"build_ext": BuildExtAndPrecompile},
    ext_modules=cythonize(
        ["fastnet/data/_idx.pyx"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
