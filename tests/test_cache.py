"""Numba's cache with fastnet's kernels embedded in a user's cached function.

Each test writes a user module into ``tmp_path`` and runs it in fresh
subprocesses sharing one ``NUMBA_CACHE_DIR``, reading the dispatchers'
``stats`` (``cache_hits`` / ``cache_misses`` per signature, numba 0.68).
"""
import json
import os
import subprocess
import sys

USER_MODULE = '''
import numpy as np
from numba import njit
from fastnet import kernels as K


@njit(cache=True)
def step(x, y, W, b, z, probs, losses, dz, dx, dW, db, params, grads):
    K.linear_forward(z, x, W, b)
    K.softmax_cross_entropy_forward(probs, losses, z, y)
    K.softmax_cross_entropy_backward(dz, probs, y)
    K.linear_backward(dx, dW, db, dz, x, W)
    K.relu_forward(dx, dx)
    K.sgd_update(params, grads, 0.1, 0.0)
    return losses.sum()
'''

RUN = '''
import json
import numpy as np
import user
from fastnet import kernels

B, D, K = 4, 6, 3
rng = np.random.default_rng(0)
x = rng.standard_normal((B, D))
y = np.arange(B) % K
params, grads = np.zeros(D * K + K), np.zeros(D * K + K)
W, b = params[:D * K].reshape(D, K), params[D * K:]
dW, db = grads[:D * K].reshape(D, K), grads[D * K:]
W[:] = rng.standard_normal((D, K))
z, probs, dz = np.empty((B, K)), np.empty((B, K)), np.empty((B, K))
losses, dx = np.empty(B), np.empty((B, D))
loss = user.step(x, y, W, b, z, probs, losses, dz, dx, dW, db, params, grads)
stats = user.step.stats
print(json.dumps(dict(
    loss=float(loss),
    hits=sum(stats.cache_hits.values()),
    misses=sum(stats.cache_misses.values()),
    # kernels typed or loaded in this process, besides the cached caller
    kernel_signatures=sum(len(getattr(kernels, name).signatures) for name in kernels.__all__),
)))
'''


def run(tmp_path, script, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_loads_embedded_kernels_from_cache(tmp_path):
    (tmp_path / "user.py").write_text(USER_MODULE)
    cache = tmp_path / "numba-cache"

    first = run(tmp_path, RUN, cache)
    assert first["misses"] == 1 and first["hits"] == 0, first
    assert first["kernel_signatures"] > 0, first          # the kernels were compiled for the caller
    assert any(p.suffix == ".nbc" and p.name.startswith("user.step") for p in cache.rglob("*")), \
        sorted(p.name for p in cache.rglob("*"))

    second = run(tmp_path, RUN, cache)
    assert second["hits"] == 1 and second["misses"] == 0, second
    # Loaded from the cache, the caller carries the kernels' machine code in
    # itself: no kernel is compiled, nor even loaded, in the second process.
    assert second["kernel_signatures"] == 0, second
    assert second["loss"] == first["loss"]


LIB_V1 = '''
from numba import njit, prange


@njit(cache=True, parallel=True)
def fill(out):
    for i in prange(out.shape[0]):
        out[i] = 1.0
'''

CALLER = '''
from numba import njit
from lib import fill


@njit(cache=True)
def total(out):
    fill(out)
    return out.sum()
'''

RUN_CALLER = '''
import json
import numpy as np
import caller, lib
out = np.zeros(4)
via_caller = caller.total(out)
direct = np.zeros(4)
lib.fill(direct)
print(json.dumps(dict(via_caller=float(via_caller), direct=float(direct.sum()),
                      hits=sum(caller.total.stats.cache_hits.values()))))
'''


def test_cached_caller_keeps_the_old_callee_after_the_callee_changes(tmp_path):
    """The caveat docs/kernels.md warns about: a cached caller is keyed on its
    own source file only, so after the library it calls is upgraded it keeps
    running the old callee, until its cache is cleared."""
    (tmp_path / "lib.py").write_text(LIB_V1)
    (tmp_path / "caller.py").write_text(CALLER)
    cache = tmp_path / "numba-cache"
    assert run(tmp_path, RUN_CALLER, cache) == dict(via_caller=4.0, direct=4.0, hits=0)

    (tmp_path / "lib.py").write_text(LIB_V1.replace("1.0", "20.0"))   # "upgrade" the library
    stale = run(tmp_path, RUN_CALLER, cache)
    assert stale == dict(via_caller=4.0, direct=80.0, hits=1), stale  # the caller still runs fill v1

    for path in cache.rglob("caller.total*"):                          # clear the caller's cache
        path.unlink()
    assert run(tmp_path, RUN_CALLER, cache) == dict(via_caller=80.0, direct=80.0, hits=0)



PARALLEL_CALLER = '''
from numba import njit
from fastnet import kernels as K


@njit(cache=True)
def update(params, grads):
    K.sgd_update(params, grads, 0.5, 0.0)
'''

CALL = '''
import json, sys
import numpy as np
from fastnet import kernels as K

params, grads = np.ones(64), np.ones(64)
if sys.argv[1] == "kernel":
    K.sgd_update(params, grads, 0.5, 0.0)
else:
    import user
    user.update(params, grads)
print(json.dumps(dict(first=float(params[0]))))
'''


def test_a_cached_caller_of_a_parallel_kernel_loaded_from_the_cache_loads_again(tmp_path):
    # Numba drops a parallel kernel's "start the threading layer" hook from a
    # caller compiled while the kernel itself came from the cache; loading that
    # caller first thing in a fresh process then aborted ("LLVM ERROR: Symbol
    # not found: allocate_sched") until fastnet.kernels started the layer on import.
    (tmp_path / "user.py").write_text(PARALLEL_CALLER)
    cache = tmp_path / "numba-cache"
    for what in ("kernel", "caller", "caller"):  # kernel cached; caller compiled around it; caller loaded
        assert run(tmp_path, CALL.replace("sys.argv[1]", repr(what)), cache) == {"first": 0.5}
