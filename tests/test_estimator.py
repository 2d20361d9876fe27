"""fastnet.MLPClassifier: scikit-learn's own estimator checks, the same steps as
scikit-learn's MLPClassifier, and the estimator inside scikit-learn's tools.

Every fit here is small (a few hundred samples, a hidden layer of at most 16
units), so the file's time is mostly Numba loading the float32 and float64
training loops from its cache, which the rest of the suite compiles too.
"""
import io
import os
import pickle
import subprocess
import sys
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="pip install 'fastnet[sklearn]'")

import joblib  # comes with scikit-learn
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnet.estimator import MLPClassifier
from fastnet.model import MLP

#: Checks expected to fail, each with its reason, passed to scikit-learn's
#: ``parametrize_with_checks(expected_failed_checks=...)``: since scikit-learn
#: 1.6 that is where an estimator's known failures are declared (the
#: ``_xfail_checks`` tag it replaced is gone). None so far.
EXPECTED_FAILED_CHECKS = {}

#: Small and quick, yet accurate enough for check_classifiers_train (> 83% on 3 blobs).
#: One thread: on problems this small a second one only adds a barrier per kernel,
#: which costs far more than the work when another process is busy on the cores.
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=60, random_state=0, n_threads=1),
    MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.05, max_iter=60, random_state=0,
                  n_threads=1),
]


@pytest.fixture(autouse=True)
def _quiet_convergence():
    """The small fits here stop at max_iter on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blobs(rng, n=300, d=6, k=3, dtype=np.float64):
    centres = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(dtype), y


def small(**params):
    defaults = dict(hidden_layer_sizes=(8,), learning_rate_init=0.02, max_iter=20, random_state=0, n_threads=1)
    return MLPClassifier(**{**defaults, **params})


# --- the package ------------------------------------------------------------------


def test_import_fastnet_does_not_import_sklearn(tmp_path):
    code = ("import sys, fastnet; assert 'sklearn' not in sys.modules and 'numba' not in sys.modules; "
            "from fastnet.estimator import MLPClassifier; assert fastnet.MLPClassifier is MLPClassifier")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed fastnet


# --- the same steps as scikit-learn ---------------------------------------------------

SOLVERS = [
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    # Adam's epsilon enters after the bias correction in fastnet, before it in scikit-learn:
    # a tiny one keeps that difference out of the comparison
    dict(solver="adam", learning_rate_init=0.01, epsilon=1e-14),
]


@pytest.mark.parametrize("solver", SOLVERS, ids=["sgd", "momentum", "nesterov", "adam"])
def test_takes_sklearns_steps_from_the_same_weights(rng, solver):
    """From the same start weights, three epochs of fastnet (float64) and of scikit-learn
    end on the same weights: the update rules and alpha mean the same. 96 samples in
    batches of 32, in order: scikit-learn's last batch would otherwise be shorter, and
    scale its L2 penalty by its own size (see fastnet.estimator)."""
    X, y = blobs(rng, n=96, d=5)
    params = dict(hidden_layer_sizes=(7,), learning_rate_init=0.05, batch_size=32, alpha=0.01,
                  shuffle=False, random_state=0, max_iter=1, warm_start=True, tol=0.0)
    params.update(solver)
    ours = MLPClassifier(dtype="float64", n_threads=1, **params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)  # to create its coefs_, overwritten next
    for mine, its in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        its[...] = mine
    ours.set_params(max_iter=3).fit(X, y)  # warm start: a new optimizer state, in both
    theirs.set_params(max_iter=3).fit(X, y)
    for i, (mine, its) in enumerate(zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_)):
        np.testing.assert_allclose(mine, its, rtol=1e-6, atol=1e-9, err_msg=f"parameter {i}")
    # loss_ adds the penalty on the epoch's last weights, scikit-learn on each batch's
    np.testing.assert_allclose(ours.loss_curve_[-3:], theirs.loss_curve_[-3:], rtol=1e-3)
    assert ours.n_iter_ == theirs.n_iter_ == 3 and ours.t_ == theirs.t_


def test_alpha_is_weight_decay_over_batch_size(rng):
    X, y = blobs(rng, n=100)
    est = small(alpha=0.4, batch_size=20, solver="sgd", momentum=0.0, max_iter=1)
    seen = {}
    import fastnet.estimator as module

    real = module.Trainer

    class Spy(real):
        def __init__(self, config, *args, **kwargs):
            seen["config"] = config
            super().__init__(config, *args, **kwargs)

    module.Trainer = Spy
    try:
        est.fit(X, y)
    finally:
        module.Trainer = real
    assert seen["config"].weight_decay == pytest.approx(0.4 / 20)
    assert seen["config"].optimizer == "sgd" and seen["config"].batch_size == 20


# --- fitted attributes ------------------------------------------------------------------


def test_fitted_attributes(rng):
    X, y = blobs(rng, d=6, k=3)
    est = small(hidden_layer_sizes=(8, 5)).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(6, 8), (8, 5), (5, 3)]
    assert [b.shape for b in est.intercepts_] == [(8,), (5,), (3,)]
    assert all(c.dtype == np.float32 for c in est.coefs_ + est.intercepts_)
    assert np.shares_memory(est.coefs_[0], est.model_.params), "coefs_ are the model's weights, not copies"
    assert (est.n_layers_, est.n_outputs_, est.out_activation_, est.n_features_in_) == (4, 3, "softmax", 6)
    assert est.n_iter_ == len(est.loss_curve_) == 20 and est.t_ == 20 * 300
    assert est.loss_ == est.loss_curve_[-1] and est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])


def test_binary_has_two_softmax_outputs(rng):
    X, y = blobs(rng, k=2)
    est = small().fit(X, y)
    assert est.n_outputs_ == 2 and est.coefs_[-1].shape == (8, 2)
    proba = est.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert est.score(X, y) > 0.95


def test_string_labels_and_the_model_file(rng, tmp_path):
    X, y = blobs(rng)
    names = np.array(["cat", "dog", "emu"])[y]
    est = small().fit(X, names)
    np.testing.assert_array_equal(est.classes_, ["cat", "dog", "emu"])
    assert set(est.predict(X)) <= {"cat", "dog", "emu"} and est.score(X, names) > 0.95
    est.save(tmp_path / "m.npz")
    model = MLP.load(tmp_path / "m.npz")  # what fastnet-eval and fastnet-predict read
    np.testing.assert_array_equal(model.classes, ["cat", "dog", "emu"])
    again = MLPClassifier.load(tmp_path / "m.npz")
    assert again.get_params() == est.get_params()
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    assert again.loss_curve_ == pytest.approx(est.loss_curve_) and again.n_iter_ == est.n_iter_


def test_float_labels_survive_the_model_file(rng, tmp_path):
    X, y = blobs(rng)
    labels = np.array([-1.0, 2.0, 5.0])[y]  # floats: the model file keeps unit numbers, the schema these
    est = small().fit(X, labels)
    est.save(tmp_path / "m.npz")
    again = MLPClassifier.load(tmp_path / "m.npz")
    assert again.classes_.dtype == np.float64
    np.testing.assert_array_equal(again.classes_, [-1.0, 2.0, 5.0])
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


def test_loads_a_model_fastnet_train_wrote(rng, tmp_path):
    MLP((6, 5, 3), seed=1).save(tmp_path / "m.npz")
    est = MLPClassifier.load(tmp_path / "m.npz")
    assert est.hidden_layer_sizes == (5,) and est.n_features_in_ == 6 and est.dtype == "float32"
    assert est.predict(rng.standard_normal((4, 6))).shape == (4,)


# --- training behaviour -------------------------------------------------------------------


def test_stops_when_the_loss_stops_falling(rng):
    X, y = blobs(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = small(tol=1e6, n_iter_no_change=3, max_iter=50).fit(X, y)
    # epoch 1 improves on inf; epochs 2.. do not, and the 4th of those (> 3) stops the run
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 5


def test_warns_at_max_iter(rng):
    X, y = blobs(rng)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        small(max_iter=3).fit(X, y)


def test_early_stopping_keeps_the_best_epoch(rng):
    X, y = blobs(rng, n=400)
    est = small(early_stopping=True, validation_fraction=0.2, n_iter_no_change=2, max_iter=40).fit(X, y)
    assert len(est.validation_scores_) == est.n_iter_ and est.best_loss_ is None
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.t_ == est.n_iter_ * 320


def test_same_random_state_same_model(rng):
    X, y = blobs(rng)
    for params in (dict(), dict(shuffle=False), dict(dropout=0.2)):
        a = small(**params).fit(X, y).predict_proba(X)
        b = small(**params).fit(X, y).predict_proba(X)
        np.testing.assert_array_equal(a, b, err_msg=str(params))
    assert not np.array_equal(small().fit(X, y).coefs_[0], small(shuffle=False).fit(X, y).coefs_[0])


def test_partial_fit(rng):
    X, y = blobs(rng)
    est = small()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        est.partial_fit(X, y)
    losses = []
    for i in range(0, 300, 100):
        est.partial_fit(X[i:i + 100], y[i:i + 100], classes=[0, 1, 2])
        assert est.n_iter_ == 1
        losses.append(est.loss_)
    assert est.t_ == 300 and len(est.loss_curve_) == 3
    for _ in range(5):
        est.partial_fit(X, y)
    assert est.loss_ < losses[0]
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X[:5], np.array([0, 1, 2, 3, 1]))
    with pytest.raises(ValueError, match="early_stopping"):
        small(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_keeps_the_optimizer_state(rng):
    """Two partial_fit calls take the same steps as one fit of two epochs (in order,
    Adam's moments and step count carried over)."""
    X, y = blobs(rng, n=100)
    params = dict(shuffle=False, batch_size=25, solver="adam", max_iter=2)
    whole = small(**params).fit(X, y)
    parts = small(**params)
    parts.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y)
    for a, b in zip(whole.coefs_, parts.coefs_):
        np.testing.assert_array_equal(a, b)


def test_warm_start_continues(rng):
    X, y = blobs(rng)
    est = small(warm_start=True, max_iter=2).fit(X, y)
    first = est.coefs_[0].copy()
    est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 4 and est.t_ == 4 * 300
    assert not np.array_equal(first, est.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used"):
        est.fit(X[y < 2], y[y < 2])


def test_verbose_prints_as_sklearn(rng):
    X, y = blobs(rng)
    out = io.StringIO()
    with redirect_stdout(out):
        small(verbose=True, max_iter=2).fit(X, y)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Iteration 1, loss = ")


def test_default_threads_follow_joblib_workers(rng):
    """In joblib's worker processes NUMBA_NUM_THREADS is cores // n_jobs (joblib sets
    it), and n_threads=None trains on that many: the workers use each core once."""
    X, y = blobs(rng, n=100)
    expected = int(os.environ.get("NUMBA_NUM_THREADS", max(joblib.cpu_count() // 2, 1)))
    got = joblib.Parallel(n_jobs=2)(joblib.delayed(_threads_of_a_fit)(X, y) for _ in range(2))
    assert got == [expected, expected]


def _threads_of_a_fit(X, y):
    return MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit(X, y).n_threads_


def test_n_threads(rng):
    import numba

    X, y = blobs(rng, n=100)
    assert small(n_threads=1, max_iter=1).fit(X, y).n_threads_ == 1
    assert small(n_threads=1000, max_iter=1).fit(X, y).n_threads_ == numba.config.NUMBA_NUM_THREADS
    assert small(n_threads=None, max_iter=1).fit(X, y).n_threads_ == numba.get_num_threads()


# --- pickles --------------------------------------------------------------------------------


def test_pickle_and_joblib_predict_the_same_bits(rng, tmp_path):
    X, y = blobs(rng)
    est = small().fit(X, y)
    expected = est.predict_proba(X)
    copies = [pickle.loads(pickle.dumps(est))]
    joblib.dump(est, tmp_path / "est.joblib")
    copies.append(joblib.load(tmp_path / "est.joblib"))
    copies.append(joblib.load(tmp_path / "est.joblib", mmap_mode="r"))
    for copy in copies:
        np.testing.assert_array_equal(copy.predict_proba(X), expected)
        assert np.shares_memory(copy.coefs_[0], copy.model_.params)
        copy.partial_fit(X, y)  # trains on in place, memory-mapped or not


# --- in scikit-learn's tools ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def test_pipeline_on_digits(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                                          max_iter=30, random_state=0))
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.9


def test_grid_search_with_two_jobs(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(learning_rate_init=0.01, max_iter=15, random_state=0))
    grid = {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)], "mlpclassifier__alpha": [1e-4, 1e-2]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    assert set(search.best_params_) == set(grid)
    assert search.best_score_ > 0.85
    assert isinstance(search.best_estimator_[-1], MLPClassifier)


def test_cross_val_score(digits):
    X, y = digits
    est = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=20, random_state=0)
    scores = cross_val_score(est, X / 16, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_clone(rng):
    X, y = blobs(rng)
    est = small(dropout=0.1, schedule="cosine").fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "coefs_")
    np.testing.assert_array_equal(copy.fit(X, y).predict_proba(X), est.predict_proba(X))


def test_feature_names_from_a_dataframe(rng):
    pd = pytest.importorskip("pandas")
    X, y = blobs(rng, d=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = small().fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    np.testing.assert_array_equal(est.predict(df), est.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        est.predict(df[["c", "b", "a"]])


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(rng):
    import scipy.sparse

    X, y = blobs(rng)
    with pytest.raises(NotFittedError):
        small().predict(X)
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small().fit(bad, y)
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        small().fit(bad, y)
    est = small().fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 6 features"):
        est.predict(X[:, :5])
    with pytest.raises(TypeError, match="[Ss]parse"):
        small().fit(scipy.sparse.csr_matrix(X), y)
    with pytest.raises(ValueError, match="class"):
        small().fit(X, np.zeros(300, int))
    with pytest.raises(ValueError, match="continuous"):
        small().fit(X, X[:, 0])
    with pytest.raises(ValueError, match=r"stopped being finite in epoch 1, batch \d+: lower learning_rate_init"):
        small(solver="sgd").fit(X * 1e30, y)


BAD_PARAMS = [
    ("hidden_layer_sizes", (0,)), ("hidden_layer_sizes", 2.5), ("hidden_layer_sizes", "8"),
    ("solver", "lbfgs"), ("learning_rate_init", 0), ("batch_size", 0), ("batch_size", "full"),
    ("max_iter", 0), ("alpha", -1.0), ("momentum", 1.0), ("nesterovs_momentum", "yes"), ("beta_1", 1.0),
    ("beta_2", -0.1), ("epsilon", 0.0), ("early_stopping", 1), ("validation_fraction", 0.0),
    ("n_iter_no_change", 0), ("tol", -1.0), ("shuffle", None), ("warm_start", "no"), ("dtype", "float16"),
    ("n_threads", 0), ("schedule", "invscaling"), ("dropout", 1.0),
]


@pytest.mark.parametrize("name, value", BAD_PARAMS, ids=[f"{n}={v!r}" for n, v in BAD_PARAMS])
def test_bad_parameter_named_at_fit(rng, name, value):
    X, y = blobs(rng, n=30)
    est = small(**{name: value})  # accepted as it is: scikit-learn checks at fit
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        est.fit(X, y)
