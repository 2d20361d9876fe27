"""Run the benchmarks and print their comparison as Markdown tables.

    python benchmarks/report.py                   # run `pytest benchmarks/`, then print
    python benchmarks/report.py -- -k epoch       # pass arguments on to pytest
    python benchmarks/report.py --json FILE       # print the tables of an earlier run

The run writes pytest-benchmark's JSON to ``.benchmarks/report.json`` (or
``--out FILE``). The tables show medians, the ratios the issue sets targets
for, dense-equivalent GFLOP/s beside the machine's float32 matmul peak, the
start-up figures and the peak memory of ``fastnet-train``.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` can make OpenBLAS pick slow
kernels for this CPU; they are removed from the benchmarks' environment
(``--keep-blas-env`` keeps them) and the BLAS that the run saw is printed.
Numba compiles into a fresh, temporary ``NUMBA_CACHE_DIR`` (outside the timed
calls), so the run measures the kernels as they are now, not a cached build.
Run it on a quiet machine: Numba's parallel kernels slow down most when
another process competes for the cores.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ENGINES = ("numba", "numpy", "torch")

#: job -> {other engine: the largest numba/other time ratio that meets the target}
TARGETS = {
    "epoch-b32": {"numpy": 0.4},
    "epoch-b128": {"numpy": 0.5, "torch": 0.3},
    "epoch-b512": {"numpy": 0.7},
    "fullbatch-step": {"numpy": 0.7},
    "epoch-b128-dense": {"numpy": 1.0},
}
COLD_COMPILE_TARGET = 5.0  # seconds
WARM_START_TARGET = 1.0  # seconds
DEPTH_COMPILE_TARGET = 1.2  # a deeper network's cold compile, as a multiple of one hidden layer's


def run_benchmarks(out, pytest_args, keep_blas_env):
    """``pytest benchmarks/ --benchmark-json=out`` in a child process; its exit code."""
    env = dict(os.environ)
    removed = {} if keep_blas_env else {name: env.pop(name) for name in BLAS_ENV if name in env}
    print(f"BLAS environment removed for the run: {removed or 'none was set'}", file=sys.stderr)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f}: the machine is busy, timings will be slow and noisy",
              file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pytest", "benchmarks/", f"--benchmark-json={out}", "-q", *pytest_args]
    print("running:", " ".join(argv), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="fastnet-numba-cache-") as cache:
        # pytest's own output goes to stderr, so that stdout holds the tables alone
        return subprocess.run(argv, cwd=REPO, env=dict(env, NUMBA_CACHE_DIR=cache), stdout=sys.stderr).returncode


# --- formatting -------------------------------------------------------------------


def seconds(t):
    if t is None:
        return "–"
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1e3:.3g} ms" if t >= 1e-3 else f"{t * 1e6:.3g} µs"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


def gflops(flops, t):
    return f"{flops / t / 1e9:.3g}" if flops and t else "–"


def percent(flops, t, peak):
    """Dense-equivalent GFLOP/s of ``flops`` in ``t`` as a share of the matmul ``peak`` (GFLOP/s): the roofline."""
    return f"{100 * flops / t / 1e9 / peak:.0f}%" if flops and t and peak else "–"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- reading the JSON -------------------------------------------------------------


def by_group(benchmarks):
    """``{group: {which: benchmark}}``."""
    groups = {}
    for b in benchmarks:
        which = (b.get("params") or {}).get("which", b["name"])
        groups.setdefault(b["group"], {})[which] = b
    return groups


def median(groups, group, which):
    b = groups.get(group, {}).get(which)
    return b["stats"]["median"] if b else None


def flops_of(groups, group):
    return next((b["extra_info"].get("flops") for b in groups.get(group, {}).values()), None)


def jobs_table(groups, peak):
    rows = []
    for job, targets in TARGETS.items():
        t = {w: median(groups, job, w) for w in ENGINES}
        checks = [t["numba"] / t[w] <= limit for w, limit in targets.items() if t["numba"] and t[w]]
        met = "–" if len(checks) < len(targets) else ("yes" if all(checks) else "no")
        rows.append([job, *(seconds(t[w]) for w in ENGINES), ratio(t["numba"], t["numpy"]),
                     ratio(t["numba"], t["torch"]), gflops(flops_of(groups, job), t["numba"]),
                     percent(flops_of(groups, job), t["numba"], peak),
                     ", ".join(f"≤ {limit}× {w}" for w, limit in targets.items()), met])
    header = ["job", *ENGINES, "numba/numpy", "numba/torch", "numba GFLOP/s", "% of peak", "target", "met?"]
    return table(header, rows)


def kernels_table(groups, peak):
    rows = []
    for group in sorted(g for g in groups if g.startswith("kernel-")):
        tn, tp = median(groups, group, "numba"), median(groups, group, "numpy")
        f = flops_of(groups, group)
        rows.append([group[len("kernel-"):], seconds(tn), seconds(tp), ratio(tn, tp), gflops(f, tn), gflops(f, tp),
                     percent(f, tn, peak), percent(f, tp, peak)])
    return table(["kernel", "numba", "numpy", "numba/numpy", "numba GFLOP/s", "numpy GFLOP/s",
                  "numba % of peak", "numpy % of peak"], rows)


def shape_targets(group):
    """``{other engine: the largest numba/other time ratio allowed}`` for a ``shape-`` group (issue 18)."""
    if group.endswith("-f64"):
        return {"torch": 1.0}
    targets = {"torch": 0.8}
    if group == "shape-784-128-10-b128":
        targets = {"torch": 0.3, "numpy": 0.5}
    if group.endswith("-b32"):
        targets["numpy"] = 0.4
    return targets


def paired_times(groups, group, names):
    """``({name: median time}, {(a, b): median of the rounds' a/b time ratios})`` from the paired
    rounds in a group's ``extra_info["times"]``; from one benchmark per name (ratios of the
    medians) in a run from before the rounds were paired."""
    entries = list(groups.get(group, {}).values())
    paired = next((b["extra_info"]["times"] for b in entries if b["extra_info"].get("paired")), None)
    if paired is None:
        t = {w: median(groups, group, w) for w in names}
        return t, {(a, b): t[a] / t[b] for a in names for b in names if t[a] and t[b]}
    t = {w: float(statistics.median(paired[w])) if paired.get(w) else None for w in names}
    ratios = {(a, b): float(statistics.median(x / y for x, y in zip(paired[a], paired[b])))
              for a in names for b in names if paired.get(a) and paired.get(b)}
    return t, ratios


def shape_times(groups, group):
    """``({engine: median epoch time}, {engine: median of the rounds' numba/engine ratios})`` of a
    ``shape-`` group (:func:`paired_times`)."""
    t, r = paired_times(groups, group, ENGINES)
    return t, {w: r[("numba", w)] for w in ENGINES if ("numba", w) in r}


def shapes_table(groups, peak):
    rows = []
    for group in sorted((g for g in groups if g.startswith("shape-")), key=lambda g: (g.endswith("-f64"), g)):
        t, r = shape_times(groups, group)
        targets = shape_targets(group)
        checks = [r[w] <= limit for w, limit in targets.items() if w in r]
        met = "–" if len(checks) < len(targets) else ("yes" if all(checks) else "no")
        shown = {w: f"{r[w]:.2f}×" if w in r else "–" for w in ("numpy", "torch")}
        rows.append([group[len("shape-"):], *(seconds(t[w]) for w in ENGINES), shown["numpy"], shown["torch"],
                     percent(flops_of(groups, group), t["numba"], peak),
                     ", ".join(f"≤ {limit}× {w}" for w, limit in targets.items()), met])
    if not rows:
        return None
    return table(["network, batch", *ENGINES, "numba/numpy", "numba/torch", "numba % of peak", "target", "met?"],
                 rows)


def contention_table(groups):
    rows = []
    for group in sorted(g for g in groups if g.startswith("contention-busy")):
        busy = int(group[len("contention-busy"):])
        t, r = paired_times(groups, group, ("default", "threads1", "threads2"))
        entry = next(iter(groups[group].values()))
        windows = entry.get("extra_info", {}).get("thread_windows") or {}
        if busy:
            kept = r.get(("threads1", "default"))
            shown, target = (f"{kept:.2f}× of --threads 1" if kept else "–"), "≥ 0.9× of --threads 1"
            met = "–" if kept is None else ("yes" if kept >= 0.9 else "no")
        else:
            loss = r[("default", "threads2")] - 1 if ("default", "threads2") in r else None
            shown, target = (f"{100 * loss:+.1f}% time vs 2 threads" if loss is not None else "–"), "≤ +5%"
            met = "–" if loss is None else ("yes" if loss <= 0.05 else "no")
        counts = ", ".join(f"{n} thread{'s' * (int(n) != 1)}: {w}" for n, w in sorted(windows.items())) or "–"
        rows.append([busy, *(seconds(t[w]) for w in t), shown, target, met, counts])
    if not rows:
        return None
    return table(["busy processes", "default", "--threads 1", "--threads 2", "default keeps", "target", "met?",
                  "default's windows (last round)"], rows)


def startup_table(groups):
    def info(group, key):
        b = groups.get(group, {}).get("numba")
        return b["extra_info"].get(key) if b else None

    def check(value, limit):
        return "–" if value is None else ("yes" if value <= limit else "no")

    cold = info("startup-cold-compile-depth-1", "warmup_median_s")
    depth_rows = []
    for depth in sorted(int(g.rsplit("-", 1)[1]) for g in groups if g.startswith("startup-cold-compile-depth-")):
        t = info(f"startup-cold-compile-depth-{depth}", "warmup_median_s")
        if depth != 1:
            depth_rows.append([f"… with {depth} hidden layers (one compiled loop serves every depth)",
                               f"{seconds(t)} ({ratio(t, cold)} of 1 layer)", f"≤ {DEPTH_COMPILE_TARGET:g}× 1 layer",
                               check(t / cold if t and cold else None, DEPTH_COMPILE_TARGET)])
    warm = info("startup-warm", "since_spawn_median_s")
    parts = [info("startup-warm", f"{k}_median_s") for k in ("import", "load", "warmup", "wait")]
    rss = info("memory-fastnet-train", "peak_rss_mib")
    anon = info("memory-fastnet-train", "anon_rss_mib")
    rows = [
        ["cold compile of a training run (Numba's import and the warm-up, empty cache)", seconds(cold),
         f"≤ {COLD_COMPILE_TARGET:g} s", check(cold, COLD_COMPILE_TARGET)],
        *depth_rows,
        ["warm start: process start to first batch done", seconds(warm),
         f"≤ {WARM_START_TARGET:g} s", check(warm, WARM_START_TARGET)],
        ["… import (no Numba) / load MNIST / warm-up on its thread, during the load / wait after it",
         " / ".join(seconds(p) for p in parts), "", ""],
        ["peak RSS of `fastnet-train --epochs 1` (default model; later epochs add nothing)",
         "–" if rss is None else f"{rss:.0f} MiB", "", ""],
        ["… of which its own memory (RssAnon at the end; the rest is shared libraries' pages)",
         "–" if anon is None else f"{anon:.0f} MiB", "", ""],
    ]
    return table(["start-up and memory (medians)", "value", "target", "met?"], rows)


def other_table(groups):
    shown = ("kernel-", "peak-", "startup-", "memory-", "shape-", "contention-")
    rest = sorted(g for g in groups if not g.startswith(shown) and g not in TARGETS)
    if not rest:
        return None
    columns = list(dict.fromkeys(w for g in rest for w in groups[g]))
    return table(["group", *columns], [[g, *(seconds(median(groups, g, w)) for w in columns)] for g in rest])


def report(data):
    groups = by_group(data["benchmarks"])
    machine = data.get("machine_info", {})
    fastnet = machine.get("fastnet", {})
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} "
                     f"({Path(b.get('filepath') or '?').parent.name})" for b in fastnet.get("blas", [])) or "unknown"
    peak_group = next((g for g in groups if g.startswith("peak-matmul")), None)
    peak = gflops(flops_of(groups, peak_group), median(groups, peak_group, "numpy")) if peak_group else "–"
    peak_value = float(peak) if peak != "–" else None
    commit = data.get("commit_info", {})
    commit = f"{commit.get('id', '?')[:8]}{' (dirty)' if commit.get('dirty') else ''}"
    parts = [
        f"{machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, {fastnet.get('threads', '?')} threads "
        f"for every engine; BLAS: {blas}; BLAS environment: {fastnet.get('env') or 'none'}; "
        f"commit {commit}, {data.get('datetime', '?')[:16]}.",
        f"float32 matmul peak ({peak_group or 'not measured'}, NumPy's BLAS): **{peak} GFLOP/s**. "
        "GFLOP/s are dense-equivalent: zeros the sparse kernels skip still count.",
        "Epochs of 784-128-10 float32 on MNIST (median of one epoch):\n\n" + jobs_table(groups, peak_value),
        ("Kernels (median of one call; % of peak: the roofline):\n\n" + kernels_table(groups, peak_value)),
        startup_table(groups),
    ]
    shapes = shapes_table(groups, peak_value)
    if shapes:
        parts.append("Every shape: one epoch on 20,000 MNIST digits, the engines in paired rounds (each engine's "
                     "median epoch; each ratio the median of the rounds' ratios):\n\n" + shapes)
    contention = contention_table(groups)
    if contention:
        parts.append(("A shared machine: 3 epochs of 784-128-10 on 20,000 digits under busy processes, the "
                      "settings in paired rounds (medians; each ratio the median of the rounds'):\n\n") + contention)
    other = other_table(groups)
    if other:
        parts.append("Other groups (medians):\n\n" + other)
    return "\n\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="FILE", type=Path, help="print the tables of this run; run nothing")
    parser.add_argument("--out", metavar="FILE", type=Path, default=REPO / ".benchmarks" / "report.json",
                        help="where the run writes pytest-benchmark's JSON (default: %(default)s)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help=f"keep {' and '.join(BLAS_ENV)} in the benchmarks' environment")
    parser.add_argument("pytest_args", nargs="*", help="after --: more arguments for pytest")
    args = parser.parse_args(argv)
    path = args.json
    if path is None:
        code = run_benchmarks(args.out, args.pytest_args, args.keep_blas_env)
        if code != 0:
            print(f"pytest exited with {code}", file=sys.stderr)
        if not args.out.is_file():
            return code or 1
        path = args.out
    with open(path) as f:
        print(report(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
