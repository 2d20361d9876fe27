"""Start-up costs and memory, each measured in a fresh Python process.

Groups (``which`` is ``numba``; the timed figure is in ``extra_info``, since
pytest-benchmark's own statistics time the whole child process):

- ``startup-cold-compile-depth-N``: a child with an empty ``NUMBA_CACHE_DIR`` compiles
  everything a default training run needs (on a background thread while it
  loads MNIST, as ``fastnet-train`` does: :mod:`fastnet.prewarm`), for 1, 3,
  10 and 50 hidden layers (``depth``: one compiled loop serves every depth,
  so the four should take the same time); ``extra_info["warmup_s"]`` lists
  the child's warmup seconds, one per round. Run as plain tests
  (``--benchmark-disable``, as CI does) these are skipped: each costs a whole
  compile, and the child they run is the warm start's, with an empty folder
  as its cache.
- ``startup-warm``: the same child with the cache ``fastnet-train`` reads (the
  one filled when fastnet was installed, or ``NUMBA_CACHE_DIR``'s), after one
  run of the child has added anything it lacked; from its process
  start to its first batch done (``extra_info["first_batch_s"]``, Python's
  start included); the import, load, warmup (overlapping the load) and wait
  parts are listed beside it.
- ``memory-fastnet-train``: peak resident memory of ``fastnet-train`` training
  the default model for one epoch on MNIST (later epochs allocate nothing new)
  and testing it, with a warm cache: ``extra_info["peak_rss_mib"]`` (VmHWM),
  and ``extra_info["anon_rss_mib"]``, its own memory at the end (RssAnon: the
  data, model, workspace, compiled code and Python's heap). The rest of the
  peak is pages of shared libraries, which count only once the process has
  touched them or the kernel maps them in around a page fault from the page
  cache: ``libllvmlite.so`` alone is 170 MiB on disk, and importing llvmlite
  took 135 MiB of RSS just after the file was written and 55 MiB once it had
  been dropped from the page cache.

See ``_startup_child.py`` for what the child does.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._common import THREADS

CHILD = Path(__file__).with_name("_startup_child.py")


def _run_child(mnist_dir, cache_dir=None, depth=None):
    """Run the child with ``cache_dir`` as Numba's cache (default: the one fastnet-train
    reads), and ``depth`` hidden layers; its JSON report as a dict."""
    env = dict(os.environ) if cache_dir is None else dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    argv = [sys.executable, str(CHILD), str(mnist_dir), str(THREADS), repr(time.time())]
    if depth is not None:
        argv.append(str(depth))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"startup child failed:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def warm_cache(mnist_dir):
    """Fills the cache fastnet-train reads with anything one run of the child lacks
    (nothing, when fastnet was installed with its compiled loop)."""
    _run_child(mnist_dir)


def _record(benchmark, reports, keys):
    for key in keys:
        benchmark.extra_info[f"{key}_s"] = [r[key] for r in reports]
        benchmark.extra_info[f"{key}_median_s"] = statistics.median(r[key] for r in reports)


@pytest.mark.parametrize("depth", [1, 3, 10, 50])
@pytest.mark.parametrize("which", ["numba"])
def test_cold_compile(benchmark, mnist_dir, tmp_path_factory, which, depth):
    if benchmark.disabled:
        pytest.skip("a whole compile, timed only when benchmarking (the child runs in the warm start's test)")
    reports = []

    def fresh_cache():
        return (tmp_path_factory.mktemp("numba-cache-cold"),), {}

    benchmark.group = f"startup-cold-compile-depth-{depth}"
    benchmark.pedantic(lambda folder: reports.append(_run_child(mnist_dir, folder, depth)), setup=fresh_cache,
                       rounds=3)
    _record(benchmark, reports, ["warmup", "first_batch"])
    assert all(r["warmup"] > 0 for r in reports)


@pytest.mark.parametrize("which", ["numba"])
def test_warm_start(benchmark, mnist_dir, warm_cache, which):
    reports = []
    benchmark.group = "startup-warm"
    benchmark.pedantic(lambda: reports.append(_run_child(mnist_dir)), rounds=5)
    _record(benchmark, reports, ["since_spawn", "first_batch", "import", "load", "warmup", "wait"])
    assert all(0 < r["warmup"] < r["first_batch"] < r["since_spawn"] for r in reports)


_PEAK_CHILD = (
    "import sys\n"
    "from fastnet.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "# VmHWM: this process's own peak (ru_maxrss would start from the forking parent's size);\n"
    "# RssAnon: its own memory at the end, without the pages of shared libraries it maps\n"
    "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
    "print('VmHWM', status['VmHWM'].split()[0], file=sys.stderr)\n"
    "print('RssAnon', status['RssAnon'].split()[0], file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
@pytest.mark.parametrize("which", ["numba"])
def test_peak_memory(benchmark, mnist_dir, warm_cache, tmp_path, which):
    """``fastnet-train --epochs 1`` in a child, which reports its own peak RSS (VmHWM)."""
    argv = [sys.executable, "-c", _PEAK_CHILD,
            "--data", str(mnist_dir), "--offline", "--epochs", "1", "--threads", str(THREADS),
            "--no-save", "--quiet"]
    found = {}

    def train():
        done = subprocess.run(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=600)
        assert done.returncode == 0, f"fastnet-train exited with {done.returncode}:\n{done.stderr}"
        for line in done.stderr.splitlines():
            key, _, kib = line.partition(" ")
            if key in ("VmHWM", "RssAnon"):
                found[key] = int(kib) / 1024

    benchmark.group = "memory-fastnet-train"
    benchmark.pedantic(train, rounds=1)
    benchmark.extra_info.update(peak_rss_mib=found["VmHWM"], anon_rss_mib=found["RssAnon"],
                                command="fastnet-train --epochs 1 (default model, MNIST)")
    assert 0 < found["RssAnon"] <= found["VmHWM"]
