"""Numba's cache never breaks a run (fastnet._jit): broken entries are compiled
again with a one-line warning, and where no folder is writable fastnet runs
uncached after a one-line notice.

Each test runs fresh processes that call one small kernel, sharing one
``NUMBA_CACHE_DIR``, and reads the kernel's cache hits and misses.
"""
import json
import os
import subprocess
import sys

import pytest

RUN = '''
import json, sys
{patch}
import numpy as np
from fastnet import kernels
x = np.array([[-1.0, 2.0, -3.0, 4.0]])
out = np.empty_like(x)
kernels.relu_forward(out, x)
stats = kernels.relu_forward.stats
print(json.dumps(dict(out=out.tolist(), hits=sum(stats.cache_hits.values()),
                      misses=sum(stats.cache_misses.values()))))
'''

# What Numba sees when every cache folder is read-only: none can be written.
NOTHING_WRITABLE = '''
from numba.core import caching
def refuse(self):
    raise PermissionError(13, "Permission denied", self.get_cache_path())
caching._CacheLocator.ensure_cache_path = refuse
'''

# A disk that fills up (or a folder that turns read-only) after the cache was chosen.
WRITES_FAIL = '''
from numba.core import caching
def refuse(self, name, data):
    raise OSError(28, "No space left on device", name)
caching.IndexDataCacheFile._save_data = refuse
'''


def run(tmp_path, cache_dir, patch=""):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-c", RUN.format(patch=patch)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["out"] == [[0.0, 2.0, 0.0, 4.0]]
    return report, [line for line in done.stderr.splitlines() if line.strip()]


def entries(cache_dir, suffix):
    return sorted(p for p in cache_dir.rglob(f"activation.relu_forward-*{suffix}"))


@pytest.mark.parametrize("damage", ["garbage index", "empty index", "truncated data"])
def test_a_broken_entry_is_compiled_again_with_one_line(tmp_path, damage):
    cache = tmp_path / "cache"
    first, said = run(tmp_path, cache)
    assert first["misses"] == 1 and said == []
    index, data = entries(cache, ".nbi"), entries(cache, ".nbc")
    assert index and data, sorted(p.name for p in cache.rglob("*"))
    if damage == "garbage index":
        index[0].write_bytes(os.urandom(200))
    elif damage == "empty index":
        index[0].write_bytes(b"")
    else:
        data[0].write_bytes(data[0].read_bytes()[:100])

    second, said = run(tmp_path, cache)
    assert second["hits"] == 0 and second["misses"] == 1, second
    assert len(said) == 1, said
    assert said[0].startswith("fastnet: discarded a broken entry of Numba's cache") and "relu_forward" in said[0]

    third, said = run(tmp_path, cache)  # the entry was written again, whole
    assert third["hits"] == 1 and third["misses"] == 0 and said == [], (third, said)


def test_no_writable_cache_folder_runs_uncached_after_one_line(tmp_path):
    report, said = run(tmp_path, tmp_path / "cache", NOTHING_WRITABLE)
    assert report["hits"] == 0
    assert len(said) == 1, said
    assert said[0].startswith("fastnet: no writable folder for Numba's cache") and "NUMBA_CACHE_DIR" in said[0]


def test_a_cache_that_cannot_be_written_costs_a_compile_not_the_run(tmp_path):
    cache = tmp_path / "cache"
    report, said = run(tmp_path, cache, WRITES_FAIL)
    assert report["misses"] == 1
    assert len(said) == 1, said
    assert said[0].startswith("fastnet: cannot write Numba's cache in") and "No space left" in said[0]
    assert not any(p.suffix == ".tmp" or ".tmp." in p.name for p in cache.rglob("*")), sorted(cache.rglob("*"))
