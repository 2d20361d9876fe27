"""Fuzzing model files: 1,500 mutated models (a plain model and a checkpoint, see
fuzzing.py), each through ``fastnet-eval`` and ``fastnet-predict`` in-process,
in a child process whose address space is capped (as test_checkpoint_fuzz.py).

Each command must end with exit code 0, or 1 and one line on stderr: no
exception escapes, no signal, no MemoryError from an allocation the file
asked for.
"""
import contextlib
import io
from pathlib import Path

import numpy as np
from test_checkpoint_fuzz import SEED, make_base, run_capped

N_MODELS = 1500


def run_command(entry, prog, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = entry(argv)
    lines = err.getvalue().splitlines()
    if rc == 0:
        assert not lines, f"rc 0 with {lines}"
        return "ran"
    assert rc == 1, f"{prog}: exit code {rc}: {err.getvalue()}"
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), f"{prog}: not one line: {err.getvalue()}"
    return "refused"


def fuzz(folder, n):
    import fuzzing

    from fastnet import cli
    from fastnet.model import MLP

    folder = Path(folder)
    data, checkpoint = make_base(folder)
    plain = folder / "plain.npz"
    MLP((6, 5, 3), seed=3).save(plain)
    samples = folder / "samples.npy"
    np.save(samples, np.random.default_rng(SEED).integers(0, 256, size=(5, 6), dtype=np.uint8))
    bases = [fuzzing.take_apart(plain), fuzzing.take_apart(checkpoint)]
    counts = {"eval_ran": 0, "eval_refused": 0, "predict_ran": 0, "predict_refused": 0}
    failures = []
    progress = folder / "progress.txt"
    for i in range(n):
        arrays, schema = bases[i % 2]
        blob, what = fuzzing.mutated(arrays, schema, SEED + 1, i, n_hint=53)
        path = folder / "case.npz"
        path.write_bytes(blob)
        progress.write_text(f"case {i}: {what}\n")
        for prog, entry, argv in (("fastnet-eval", cli.eval_main, [str(path), "--data", str(data)]),
                                  ("fastnet-predict", cli.predict_main, [str(path), str(samples)])):
            try:
                counts[f"{prog[8:]}_{run_command(entry, prog, argv)}"] += 1
            except BaseException as exc:  # noqa: BLE001 -- every escape is a finding
                failures.append(f"case {i} ({what}) {prog}: {type(exc).__name__}: {str(exc)[:300]}")
    return {"counts": counts, "failures": failures[:20], "n_failures": len(failures)}


def test_mutated_model_files_evaluate_predict_or_are_refused_in_one_line(tmp_path):
    script = (f"import json, test_model_fuzz as t; "
              f"print(json.dumps(t.fuzz({str(tmp_path)!r}, {N_MODELS})))")
    summary = run_capped(script, tmp_path)
    counts = summary["counts"]
    print(counts)
    assert summary["n_failures"] == 0, "\n".join(summary["failures"])
    assert counts["eval_ran"] + counts["eval_refused"] == N_MODELS
    assert counts["predict_ran"] + counts["predict_refused"] == N_MODELS
    assert counts["eval_ran"] > 50 and counts["eval_refused"] > 500, counts
