"""benchmarks/report.py: the tables it prints from pytest-benchmark's JSON, paired rounds included."""
import pytest

report = pytest.importorskip("benchmarks.report")


def paired_entry(group, times, **extra):
    return {"group": group, "name": f"test[{group}]", "params": {}, "stats": {"median": 1.0},
            "extra_info": {"paired": True, "times": times, **extra}}


def entry(group, which, median):
    return {"group": group, "name": f"test[{which}]", "params": {"which": which}, "stats": {"median": median},
            "extra_info": {}}


def test_paired_ratios_are_medians_of_the_rounds_ratios():
    # round 2 ran in a slow minute for every engine: its ratio is like the others', its times are not
    times = {"numba": [1.0, 2.0, 1.1], "numpy": [4.0, 8.0, 4.0], "torch": [2.0, 4.0, 2.5]}
    groups = report.by_group([paired_entry("shape-784-128-10-b32", times)])
    t, r = report.shape_times(groups, "shape-784-128-10-b32")
    assert t == {"numba": 1.1, "numpy": 4.0, "torch": 2.5}
    assert r["numpy"] == pytest.approx(0.25)  # median of 0.25, 0.25, 0.275
    assert r["torch"] == pytest.approx(0.5)  # median of 0.5, 0.5, 0.44


def test_the_shapes_table_judges_each_target_on_the_paired_ratio():
    groups = report.by_group([
        paired_entry("shape-784-128-10-b32", {"numba": [1.0, 1.0, 1.0], "numpy": [2.0, 3.0, 2.0],
                                              "torch": [2.0, 2.0, 2.0]}),
        paired_entry("shape-784-800-10-b128", {"numba": [1.0, 1.0, 1.0], "numpy": [9.0, 9.0, 9.0],
                                               "torch": [1.2, 1.1, 1.3]}),
    ])
    rows = {line.split(" | ")[0].strip("| "): line for line in report.shapes_table(groups, None).splitlines()[2:]}
    assert rows["784-128-10-b32"].endswith("| no |")  # 0.5x NumPy: more than 0.4x
    assert rows["784-800-10-b128"].endswith("| no |")  # 0.83x PyTorch: more than 0.8x
    assert "0.83×" in rows["784-800-10-b128"]


def test_a_run_before_paired_rounds_still_reads():
    groups = report.by_group([entry("shape-784-128-10-b512", "numba", 1.0), entry("shape-784-128-10-b512", "numpy", 2.0),
                              entry("shape-784-128-10-b512", "torch", 1.6)])
    t, r = report.shape_times(groups, "shape-784-128-10-b512")
    assert t["numba"] == 1.0 and r == {"numba": 1.0, "numpy": 0.5, "torch": 0.625}
    line = report.shapes_table(groups, None).splitlines()[2]
    assert line.endswith("| yes |")


def test_contention_compares_settings_round_by_round():
    busy = paired_entry("contention-busy1", {"default": [1.0, 2.0, 1.0], "threads1": [1.0, 1.9, 0.9],
                                             "threads2": [3.0, 6.0, 3.0]}, thread_windows={"1": 12})
    quiet = paired_entry("contention-busy0", {"default": [1.0, 1.04, 1.1], "threads1": [1.5, 1.5, 1.5],
                                              "threads2": [1.0, 1.0, 1.0]})
    lines = report.contention_table(report.by_group([busy, quiet])).splitlines()[2:]
    assert "+4.0% time vs 2 threads" in lines[0] and lines[0].endswith("| yes | – |")  # no windows recorded
    assert "0.95× of --threads 1" in lines[1] and "| yes |" in lines[1] and "1 thread: 12" in lines[1]
