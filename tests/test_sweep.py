"""fastnet-sweep: the search space, a LocalCluster of 2 worker processes, a real
``dask scheduler`` with two ``dask worker`` processes (started here on 127.0.0.1, on
free ports) attached with --scheduler, a worker SIGKILLed mid-trial, a diverging
trial, a scheduler that disappears, resuming; and GridSearchCV over
fastnet.MLPClassifier under joblib's Dask backend.

Small data throughout (2,000 MNIST samples, 2-3 epochs, 16-32 hidden units, one
fastnet thread per trial): the cluster start-ups take most of the time."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")
pytest.importorskip("optuna")

from fastnet import sweep  # noqa: E402
from fastnet.sweep import SpecError, main, parse_param, parse_spec, read_space  # noqa: E402

DASK = Path(sys.executable).parent / "dask"


def _data_args(mnist_dir, limit=2000, epochs=2):
    return ["--data", str(mnist_dir), "--offline", "--limit", str(limit), "--epochs", str(epochs),
            "--threads", "1", "--quiet"]


def _records(folder):
    return [json.loads(line) for line in (Path(folder) / "trials.jsonl").read_text().splitlines()]


# --- the search space -------------------------------------------------------------------


def test_specs_parse_to_params_and_back():
    hidden = parse_param("hidden=[128],[256],[512,256]")
    assert hidden.choices == ((128,), (256,), (512, 256))
    lr = parse_param("lr=log(0.01,0.5)")
    assert (lr.low, lr.high, lr.log) == (0.01, 0.5, True)
    dropout = parse_param("dropout=0..0.5")
    assert (dropout.low, dropout.high, dropout.log, dropout.step) == (0.0, 0.5, False, None)
    batch = parse_param("batch-size=32..256:32")
    assert (batch.low, batch.high, batch.step) == (32, 256, 32) and all(isinstance(v, int) for v in batch.grid())
    assert batch.grid() == [32, 64, 96, 128, 160, 192, 224, 256]
    assert parse_param("hidden=512,256").choices == ((512, 256),)  # as fastnet-train --hidden: one network
    assert parse_param("optimizer=adam,nesterov").choices == ("adam", "nesterov")
    assert parse_param("batch_size=64,full").choices == (64, None)
    for param in (hidden, lr, dropout, batch, parse_param("batch_size=64,full")):
        assert parse_spec(param.name, param.spec()) == param


def test_a_toml_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('hidden = [[128], [512, 256]]\nlr = "log(0.01, 0.5)"\n'
                    'weight_decay = {low = 1e-6, high = 1e-3, log = true}\ndropout = "0..0.5"\n'
                    'optimizer = "adam"\n')
    space = read_space(path)
    assert space["hidden"].choices == ((128,), (512, 256))
    assert space["lr"].log and space["weight_decay"].log and space["weight_decay"].low == 1e-6
    assert space["optimizer"].fixed and space["optimizer"].choices == ("adam",)
    (tmp_path / "bad.toml").write_text('dropout = "0..1.5"\n')
    with pytest.raises(SpecError, match=r"bad.toml: dropout: the high end 1.5"):
        read_space(tmp_path / "bad.toml")


@pytest.mark.parametrize("argv, expected", [
    (["--param", "lr=log(0.5,0.01)"], "--param lr=log(0.5,0.01): the low end 0.5 must be below the high end 0.01"),
    (["--param", "lr=log(0,0.5)"], "--param lr=log(0,0.5): the low end 0.0"),
    (["--param", "dropout=0..1"], "--param dropout=0..1: the high end 1.0: expected a number in [0, 1)"),
    (["--param", "hidden=[128],[0]"], "--param hidden=[128],[0]: choice"),
    (["--param", "hidden=[128"], "--param hidden=[128: a '[' without its ']'"),
    (["--param", "hidden=0..5"], "--param hidden=0..5: takes choices only"),
    (["--param", "optimizer=adam,rmsprop"], "--param optimizer=adam,rmsprop: choice rmsprop: expected one of"),
    (["--param", "batch_size=1.5..8"], "--param batch_size=1.5..8: the low end: expected a whole number"),
    (["--param", "lr"], "'lr': expected NAME=SPEC"),
    (["--param", "learning_rate=0.1,0.2"], "--param learning_rate=0.1,0.2: learning_rate: not a setting"),
    (["--param", "seed=1,2"], "--param seed=1,2: seed: is not searched; it is the sweep's own option --seed"),
    (["--param", "lr=0.1,0.1"], "--param lr=0.1,0.1: a choice is given twice"),
    (["--param", "lr=0.1"], "nothing to search"),
    (["--param", "lr=log(0.01,0.5)", "--sampler", "grid"], "lr=log(0.01,0.5): --sampler grid needs choices"),
])
def test_bad_specs_are_one_line_naming_the_param(argv, expected, capsys, tmp_path):
    out = ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(argv + out)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastnet-sweep: error: ") and expected in err, err


def test_without_the_extra_it_names_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert main(["--param", "lr=0.1,0.2", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "fastnet[sweep]"' in err


def test_resume_refuses_settings(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--resume", str(tmp_path), "--param", "lr=0.1,0.2"])
    assert exc.value.code == 2
    assert "--param: the sweep's settings are in" in capsys.readouterr().err


# --- a LocalCluster of 2 worker processes -------------------------------------------------


def _assert_compiled_at_most_once_per_worker(records):
    by_process = {}
    for r in records:
        if r.get("compiled") is not None:
            by_process.setdefault((r["host"], r["pid"]), []).append(r["compiled"])
    for process, compiled in by_process.items():
        assert sum(1 for c in compiled if c) <= 1, (process, compiled)
        assert all(not c for c in compiled[1:]), (process, compiled)  # later trials reuse the compiled loop


def test_sweep_on_a_local_cluster_of_2_workers(mnist_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--param", "hidden=[16],[32]", "--param", "lr=0.05,1000", "--sampler", "grid", "--workers", "2",
            "--out", str(out), *_data_args(mnist_dir)]
    argv.remove("--quiet")
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "a LocalCluster, 2 workers on 1 host" in stdout
    assert "2 trials at a time x 1 fastnet thread = 2 threads on" in stdout and "not oversubscribed" in stdout
    records = _records(out)
    assert sorted(r["trial"] for r in records) == [0, 1, 2, 3]  # the grid, each trial once
    for r in records:
        assert r["attempts"] == 1 and r["worker"].startswith("tcp://127.0.0.1:") and r["seconds"] > 0
        if r["params"]["lr"] == 1000:  # diverges: recorded as failed with the reason, the sweep goes on
            assert r["status"] == "failed" and r["reason"].startswith("diverged: the loss")
        else:
            assert r["status"] == "complete" and 0.5 < r["value"] <= 1
            assert [m["epoch"] for m in r["epochs"]] == [1, 2] and r["epochs"][-1]["val_accuracy"] == r["value"]
    _assert_compiled_at_most_once_per_worker(records)
    table = (out / "trials.csv").read_text().splitlines()
    assert table[0].startswith("trial,status,val_accuracy,hidden,lr,") and len(table) == 5
    best = json.loads((out / "best.json").read_text())
    winner = max((r for r in records if r["status"] == "complete"), key=lambda r: r["value"])
    assert best["trial"] == winner["trial"] and best["refit_samples"] == 2000  # training + validation
    assert f"test accuracy {100 * best['test_accuracy']:.2f}%" in stdout
    # the saved model is a fastnet checkpoint: fastnet-eval reads it and finds the same accuracy
    from fastnet.cli import eval_main

    assert eval_main([str(out / "best-model.npz"), "--data", str(mnist_dir), "--threads", "1"]) == 0
    assert f"test accuracy {100 * best['test_accuracy']:.2f}%" in capsys.readouterr().out
    # a new sweep will not write over this one's results
    assert main(argv + ["--quiet"]) == 1
    assert f"--out {out}: holds files already; continue its sweep with --resume" in capsys.readouterr().err


# --- a real dask scheduler and two dask workers --------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each in a session of
    its own (so that stopping one stops its nanny's worker too); logs in ``folder``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self.address = None

    def _start(self, name, args):
        log = open(self.folder / f"{name}.log", "wb")
        proc = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def scheduler(self):
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler_proc = self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                                                       "--no-dashboard"])
        return self

    def worker(self, name):
        self._start(name, ["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                           "--worker-port", str(_free_port()), "--nanny-port", str(_free_port()),
                           "--no-dashboard", "--name", name, "--death-timeout", "20"])
        return self

    def client(self, workers, timeout=60):
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(self.address, timeout="5s")
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.wait_for_workers(workers, timeout=timeout)
        return client

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    if not DASK.exists():
        pytest.skip(f"no dask command beside {sys.executable}")
    processes = DaskProcesses(tmp_path_factory.mktemp("dask")).scheduler().worker("w0").worker("w1")
    try:
        processes.client(2).close()
        yield processes
    finally:
        processes.stop()


def test_attached_to_a_scheduler_and_resumed(mnist_dir, dask_cluster, tmp_path, capsys):
    out = tmp_path / "sweep"
    common = ["--scheduler", dask_cluster.address]
    first = ["--param", "hidden=[16],[24],[32]", "--param", "lr=log(0.02,0.3)", "--param", "dropout=0..0.3",
             "--sampler", "random", "--trials", "3", "--out", str(out), *common, *_data_args(mnist_dir)]
    first.remove("--quiet")
    assert main(first) == 0
    before = _records(out)
    assert sorted(r["trial"] for r in before) == [0, 1, 2]
    client = dask_cluster.client(2)
    assert {r["worker"] for r in before} <= set(client.nthreads())
    client.close()
    assert "attached to " + dask_cluster.address in capsys.readouterr().out
    # resuming: the finished trials are kept, not run again; --trials raises the total
    assert main(["--resume", str(out), "--trials", "5", *common, "--quiet"]) == 0
    after = _records(out)
    assert after[:3] == before and sorted(r["trial"] for r in after[3:]) == [3, 4]
    for r in after:
        assert 0.02 <= r["params"]["lr"] <= 0.3 and 0 <= r["params"]["dropout"] <= 0.3
        assert r["params"]["hidden"] in ("16", "24", "32") and r["config"]["hidden"] == [int(r["params"]["hidden"])]
    _assert_compiled_at_most_once_per_worker(after)
    import optuna

    study = optuna.load_study(study_name="fastnet-sweep", storage=sweep._journal(out / "study.journal"))
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state.is_finished() for t in study.trials)


def test_a_weak_trial_is_pruned(mnist_dir, dask_cluster, tmp_path):
    # The grid runs its points in an order drawn with --seed: with seed 4 the two strong
    # learning rates come first (checked below), so the weak ones meet a median to fall under.
    out = tmp_path / "sweep"
    argv = ["--param", "lr=0.2,0.1,0.0001,0.00005", "--sampler", "grid", "--prune-after", "2", "--seed", "4",
            "--param", "hidden=[64]", "--scheduler", dask_cluster.address, "--out", str(out),
            *_data_args(mnist_dir, limit=10000, epochs=6)]  # epochs long enough for a decision to arrive
    assert main(argv) == 0
    records = {r["trial"]: r for r in _records(out)}
    assert [records[n]["params"]["lr"] for n in (0, 1)] in ([0.2, 0.1], [0.1, 0.2]), "the grid's order changed"
    pruned = [r for r in records.values() if r["status"] == "pruned"]
    assert pruned and all(r["params"]["lr"] < 0.01 for r in pruned)
    assert all(2 <= len(r["epochs"]) < 6 and r["reason"].startswith("pruned after epoch") for r in pruned)


def _trial_running(client, deadline):
    """``(worker address, trial number)`` of a trial that has trained an epoch on a worker and
    is still running there: its task's key names the sweep's event topic and the trial."""
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            for key in map(str, keys):
                if not key.startswith("fastnet-trial-"):
                    continue
                session, number = key[len("fastnet-trial-"):].rsplit("-", 1)
                events = client.get_events(f"fastnet-sweep-{session}")
                if any(msg.get("kind") == "epoch" and msg["trial"] == int(number) and msg["worker"] == worker
                       for _, msg in events):
                    return worker, int(number)
        time.sleep(0.05)
    raise AssertionError("no trial began within the time allowed")


def _driver(argv):
    return subprocess.Popen([sys.executable, "-m", "fastnet.sweep", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "FASTNET_OFFLINE": "1"})


def test_a_worker_killed_mid_trial_reruns_it_elsewhere(mnist_dir, dask_cluster, tmp_path):
    out = tmp_path / "sweep"
    client = dask_cluster.client(2)
    driver = _driver(["--param", "hidden=[96],[128]", "--param", "lr=log(0.05,0.2)", "--sampler", "random",
                      "--trials", "4", "--no-prune", "--scheduler", dask_cluster.address, "--out", str(out),
                      *[a for a in _data_args(mnist_dir, limit=20000, epochs=4) if a != "--quiet"]])
    try:
        worker, trial = _trial_running(client, time.monotonic() + 60)
        pid = client.run(os.getpid, workers=[worker])[worker]
        os.kill(pid, signal.SIGKILL)  # after its first epoch, during the second
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    print(stdout, stderr)
    assert driver.returncode == 0, stderr
    records = _records(out)
    assert sorted(r["trial"] for r in records) == [0, 1, 2, 3]  # every trial recorded exactly once
    killed = next(r for r in records if r["trial"] == trial)
    assert killed["status"] == "complete" and killed["attempts"] == 2 and killed["workers_tried"][0] == worker
    assert killed["worker"] != worker and len(killed["epochs"]) == 4
    assert f"trial {trial:>3}  complete" in stdout and "(2 tries)" in stdout
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    client.close()


def test_the_scheduler_disappearing_is_one_line_and_resumable(mnist_dir, dask_cluster, tmp_path):
    own = DaskProcesses(tmp_path / "dask").scheduler().worker("lone")
    out = tmp_path / "sweep"
    try:
        own.client(1).close()
        driver = _driver(["--param", "hidden=[32],[48],[64]", "--param", "lr=log(0.05,0.2)", "--sampler", "random",
                          "--trials", "6", "--no-prune", "--scheduler", own.address, "--out", str(out),
                          *_data_args(mnist_dir, limit=8000, epochs=3)])
        deadline = time.monotonic() + 60
        while not ((out / "trials.jsonl").exists() and (out / "trials.jsonl").read_text().count("\n") >= 2):
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.05)
        os.killpg(own.scheduler_proc.pid, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        own.stop()
    print(stdout, stderr)
    assert driver.returncode == 1
    assert stderr.count("\n") == 1 and stderr.startswith(f"fastnet-sweep: error: lost the connection to the scheduler {own.address}; ")
    assert f"continue with: fastnet-sweep --resume {out}" in stderr
    kept = _records(out)
    assert 2 <= len(kept) < 6
    # resumed on another cluster, the sweep ends with every trial recorded once
    assert main(["--resume", str(out), "--scheduler", dask_cluster.address, "--quiet"]) == 0
    records = _records(out)
    assert records[:len(kept)] == kept and sorted(r["trial"] for r in records) == list(range(6))


# --- GridSearchCV over fastnet.MLPClassifier under joblib's Dask backend -------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 epochs, on purpose
def test_grid_search_cv_under_joblib_dask_backend():
    pytest.importorskip("sklearn")
    import joblib
    from distributed import Client, LocalCluster, get_task_stream
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from fastnet import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    grid = {"learning_rate_init": [0.01, 0.1], "hidden_layer_sizes": [(16,), (32,)]}
    estimator = MLPClassifier(solver="sgd", max_iter=5, batch_size=64, random_state=0, n_threads=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"}) as cluster, \
            Client(cluster) as client:
        with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            search = GridSearchCV(estimator, grid, cv=3, n_jobs=-1).fit(X, y)
        workers = {task["worker"] for task in stream.data}
    assert len(stream.data) >= 12 and workers <= set(cluster.scheduler_info["workers"]) | workers
    serial = GridSearchCV(estimator, grid, cv=3, n_jobs=1).fit(X, y)
    assert search.best_params_ == serial.best_params_
    assert list(search.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
