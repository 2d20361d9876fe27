"""Training: settings, validation split, the Trainer on a slice of MNIST, checkpoints.

Most tests train a small network (32 hidden units) on the first 2000
training images for 2-3 epochs; the two ``slow`` tests train on all of
MNIST and check the accuracy the recipes are known to reach.
"""
import dataclasses
import math

import numba
import numpy as np
import pytest

from fastnet import engine, reference
from fastnet.config import ConfigError, TrainConfig
from fastnet.data import load_dataset
from fastnet.model import ModelFormatError
from fastnet.train import Trainer, TrainingDiverged, evaluate, split_validation

# 2000 = 31 batches of 64 and a last one of 16: every run meets a partial batch.
SMALL = dict(limit=2000, batch_size=64, hidden=(32,), epochs=3, lr=0.05, schedule="constant")


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return load_dataset(data_dir=mnist_dir)


def small(**changes):
    return TrainConfig(**{**SMALL, **changes})


def train(mnist, config, **callbacks):
    trainer = Trainer(config, mnist.train_images, mnist.train_labels)
    return trainer, trainer.run(**callbacks)


# --- TrainConfig ----------------------------------------------------------------

BAD_SETTINGS = [
    ("dataset", "cifar10"), ("hidden", (0,)), ("hidden", (12.5,)), ("hidden", (128, -1)),
    ("dtype", "float16"), ("engine", "torch"), ("epochs", 0), ("epochs", 1.5), ("epochs", True),
    ("batch_size", 0), ("batch_size", 32.0), ("lr", 0), ("lr", -0.1), ("lr", math.nan), ("lr", math.inf),
    ("lr", "0.1"), ("optimizer", "rmsprop"), ("momentum", 1.0), ("momentum", -0.1),
    ("weight_decay", -1e-4), ("weight_decay", math.nan), ("schedule", "linear"), ("step_epochs", 0),
    ("step_gamma", 0.0), ("step_gamma", 1.5), ("beta1", 1.0), ("beta2", -0.5), ("eps", 0.0),
    ("val_split", -0.1), ("val_split", 1.5), ("val_split", math.nan), ("patience", 0), ("limit", 0),
    ("seed", -1), ("threads", 0),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS, ids=[f"{n}={v!r}" for n, v in BAD_SETTINGS])
def test_config_refuses_each_bad_setting(name, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: value})
    assert str(info.value).startswith(f"{name}:"), str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("changes", [
    dict(batch_size=None), dict(momentum=0.0), dict(step_gamma=1.0), dict(val_split=0.2),
    dict(val_split=5000), dict(val_split=1.0), dict(patience=1, limit=1, threads=1, seed=0),
    dict(hidden=[256, 128]), dict(weight_decay=0.0),
])
def test_config_accepts_edge_values(changes):
    config = TrainConfig(**changes)
    assert isinstance(config.hidden, tuple)


def test_config_is_frozen_and_round_trips_through_a_dict():
    config = TrainConfig(hidden=[64, 32], lr=0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.replace(epochs=3) == TrainConfig(hidden=(64, 32), lr=0.3, epochs=3)
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(ConfigError, match="^lr:"):
        config.replace(lr=-1)


def test_lr_at_constant():
    config = TrainConfig(schedule="constant", lr=0.3, epochs=4)
    assert [config.lr_at(e) for e in range(4)] == [0.3] * 4


def test_lr_at_step():
    config = TrainConfig(schedule="step", lr=1.0, step_epochs=2, step_gamma=0.5, epochs=6)
    assert [config.lr_at(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_lr_at_cosine():
    config = TrainConfig(schedule="cosine", lr=0.2, epochs=10)
    rates = [config.lr_at(e) for e in range(10)]
    assert rates[0] == 0.2
    assert rates[5] == pytest.approx(0.1)  # halfway: half the rate
    np.testing.assert_allclose(rates, [0.1 * (1 + math.cos(math.pi * e / 10)) for e in range(10)], rtol=1e-15)
    assert all(a > b for a, b in zip(rates, rates[1:])), "decreasing"
    assert rates[-1] > 0, "the last epoch still learns"


# --- split_validation ------------------------------------------------------------


def ids_data(n):
    """Images whose first pixel is their own index, so a split shows which samples went where."""
    images = np.zeros((n, 2), np.int64)
    images[:, 0] = np.arange(n)
    return images, np.arange(n) % 10


@pytest.mark.parametrize("val_split, n_val", [(0.2, 20), (0.25, 25), (7, 7), (7.0, 7), (99, 99)])
def test_split_validation_sizes_and_disjoint(val_split, n_val):
    images, labels = ids_data(100)
    tr_x, tr_y, va_x, va_y = split_validation(images, labels, val_split, seed=3)
    assert len(va_x) == len(va_y) == n_val
    assert len(tr_x) == len(tr_y) == 100 - n_val
    train_ids, val_ids = tr_x[:, 0], va_x[:, 0]
    assert not set(train_ids) & set(val_ids), "disjoint"
    assert sorted([*train_ids, *val_ids]) == list(range(100)), "nothing lost"
    np.testing.assert_array_equal(tr_y, train_ids % 10, err_msg="labels follow their images")
    np.testing.assert_array_equal(va_y, val_ids % 10, err_msg="labels follow their images")


def test_split_validation_is_deterministic_with_seed():
    images, labels = ids_data(100)
    a = split_validation(images, labels, 0.3, seed=1)
    b = split_validation(images, labels, 0.3, seed=1)
    c = split_validation(images, labels, 0.3, seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


def test_split_validation_zero_holds_out_nothing():
    images, labels = ids_data(10)
    tr_x, tr_y, va_x, va_y = split_validation(images, labels, 0.0, seed=0)
    assert tr_x is images and va_x is None and va_y is None


@pytest.mark.parametrize("val_split", [100, 150, 0.999])
def test_split_validation_refuses_holding_out_everything(val_split):
    images, labels = ids_data(100)
    with pytest.raises(ValueError, match="leaving none to train on"):
        split_validation(images, labels, val_split, seed=0)


# --- Trainer on a slice of MNIST ------------------------------------------------


def test_loss_decreases_and_metrics_are_sane(mnist):
    epochs, progress = [], []
    trainer, result = train(mnist, small(), on_epoch=epochs.append,
                            on_progress=lambda done, total: progress.append((done, total)))
    assert result.stop_reason == "completed" and result.best_epoch is None
    assert result.model is trainer.model
    assert [m.epoch for m in epochs] == [1, 2, 3]
    assert result.history == epochs
    losses = [m.loss for m in epochs]
    assert losses[0] > losses[1] > losses[2], losses
    assert losses[0] < math.log(10), "the first epoch already learns something"
    for m in epochs:
        assert 0 <= m.train_accuracy <= 1
        assert m.val_loss is None and m.val_accuracy is None
        assert m.seconds > 0 and m.samples_per_second > 0
        assert m.lr == 0.05
    assert epochs[-1].train_accuracy > 0.8
    # Progress, per epoch, climbs to (32, 32): 31 full batches and the last one of 16.
    assert trainer.batches_per_epoch == 32
    assert progress[-1] == (32, 32)
    assert progress.count((32, 32)) == 3
    per_epoch = [d for d, _ in progress]
    assert all(t == 32 for _, t in progress)
    assert per_epoch[: per_epoch.index(32) + 1] == sorted(per_epoch[: per_epoch.index(32) + 1])
    assert trainer.step == 3 * 32
    # A model that learnt this much predicts the held-out test images well above chance.
    assert evaluate(result.model, mnist.test_images[:1000], mnist.test_labels[:1000]).accuracy > 0.75


def test_full_batch_takes_one_step_per_epoch(mnist):
    progress = []
    trainer, result = train(mnist, small(batch_size=None, limit=1000, epochs=4, lr=0.5, optimizer="sgd"),
                            on_progress=lambda *a: progress.append(a))
    assert trainer.batch_size == 1000 and trainer.batches_per_epoch == 1
    assert progress == [(1, 1)] * 4
    assert trainer.step == 4
    losses = [m.loss for m in result.history]
    assert losses[-1] < losses[0]


def test_full_batch_step_is_plain_gradient_descent(mnist):
    # One full-batch SGD step from the same start: the gradient of the mean loss
    # over all 500 samples, computed here from the textbook formulas.
    config = small(batch_size=None, limit=500, epochs=1, lr=0.5, optimizer="sgd", weight_decay=0.0,
                   dtype="float64", engine="numpy")
    trainer = Trainer(config, mnist.train_images, mnist.train_labels)
    named = {k: v.copy() for k, v in trainer.model.named_parameters().items()}
    trainer.run()
    X = mnist.train_images[:500].reshape(500, -1) / 255.0
    Y = np.eye(10)[mnist.train_labels[:500]]
    Z1 = X @ named["W1"] + named["b1"]
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ named["W2"] + named["b2"]
    P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    dZ2 = (P - Y) / 500
    dZ1 = (dZ2 @ named["W2"].T) * (Z1 > 0)
    expected = {"W1": named["W1"] - 0.5 * X.T @ dZ1, "b1": named["b1"] - 0.5 * dZ1.sum(0),
                "W2": named["W2"] - 0.5 * A1.T @ dZ2, "b2": named["b2"] - 0.5 * dZ2.sum(0)}
    for name, value in trainer.model.named_parameters().items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_numba_and_numpy_engines_agree_in_float64(mnist):
    config = small(limit=640, epochs=2, dtype="float64", optimizer="nesterov")
    _, a = train(mnist, config.replace(engine="numba"))
    _, b = train(mnist, config.replace(engine="numpy"))
    np.testing.assert_allclose(a.model.params, b.model.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([m.loss for m in a.history], [m.loss for m in b.history], rtol=1e-10)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_the_weights(mnist, dtype):
    config = small(dtype=dtype, epochs=2)
    _, one = train(mnist, config.replace(threads=1))
    _, two = train(mnist, config.replace(threads=2))
    np.testing.assert_array_equal(one.model.params.view(np.uint8), two.model.params.view(np.uint8))
    assert [m.loss for m in one.history] == [m.loss for m in two.history]


def test_same_seed_same_weights_other_seed_other_weights(mnist):
    config = small(epochs=2)
    _, a = train(mnist, config)
    _, b = train(mnist, config)
    _, c = train(mnist, config.replace(seed=1))
    np.testing.assert_array_equal(a.model.params.view(np.uint8), b.model.params.view(np.uint8))
    assert not np.array_equal(a.model.params, c.model.params)


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.02), ("nesterov", 0.02), ("adam", 1e-3)])
def test_each_optimizer_lowers_the_loss(mnist, optimizer, lr):
    _, result = train(mnist, small(optimizer=optimizer, lr=lr))
    losses = [m.loss for m in result.history]
    assert losses[-1] < losses[0] < math.log(10) + 0.5, losses
    assert result.history[-1].train_accuracy > 0.8


def test_evaluate_confusion_matrix(mnist):
    _, result = train(mnist, small(epochs=1))
    images, labels = mnist.test_images[:777], mnist.test_labels[:777]
    ev = evaluate(result.model, images, labels)
    assert ev.confusion.shape == (10, 10)
    assert ev.confusion.sum() == 777
    assert np.trace(ev.confusion) / 777 == pytest.approx(ev.accuracy, abs=0)
    np.testing.assert_array_equal(ev.confusion.sum(axis=1), np.bincount(labels, minlength=10))
    np.testing.assert_array_equal(ev.confusion.sum(axis=0), np.bincount(ev.predictions, minlength=10))
    probs = engine.predict_proba(result.model, images)
    np.testing.assert_array_equal(ev.predictions, probs.argmax(axis=1))
    probs = probs.astype(np.float64)
    assert ev.loss == pytest.approx(-np.log(probs[np.arange(777), labels]).mean(), rel=1e-6)
    assert 0 < ev.accuracy <= 1


# --- interrupting and resuming ---------------------------------------------------


def stop_at(trainer, epoch, batch):
    """A should_stop that fires when the trainer is about to run batch ``batch`` of epoch ``epoch`` (from 0)."""
    return lambda: (trainer.epoch, trainer.batch) == (epoch, batch)


@pytest.mark.parametrize("stops", [
    [(0, 5)],            # mid-epoch
    [(0, 31)],           # just before the partial last batch
    [(1, 0)],            # at an epoch boundary, right after the partial last batch
    [(0, 12), (1, 31), (2, 0)],  # three interruptions in one run
], ids=["mid-epoch", "before-partial", "epoch-boundary", "three-times"])
@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_interrupt_and_resume_is_bitwise_identical(mnist, tmp_path, stops, optimizer):
    config = small(optimizer=optimizer, lr=0.05 if optimizer == "nesterov" else 1e-3,
                   schedule="cosine", epochs=3)
    _, straight = train(mnist, config)

    trainer = Trainer(config, mnist.train_images, mnist.train_labels)
    path = tmp_path / "ckpt.npz"
    for epoch, batch in stops:
        result = trainer.run(should_stop=stop_at(trainer, epoch, batch))
        assert result.stop_reason == "interrupted"
        assert (trainer.epoch, trainer.batch) == (epoch, batch)
        trainer.save_checkpoint(path)
        trainer = Trainer.from_checkpoint(path, mnist.train_images, mnist.train_labels)
        assert (trainer.epoch, trainer.batch) == (epoch, batch)
    resumed = trainer.run()

    assert resumed.stop_reason == "completed"
    np.testing.assert_array_equal(resumed.model.params.view(np.uint8), straight.model.params.view(np.uint8))
    assert [(m.epoch, m.loss, m.train_accuracy) for m in resumed.history] == \
        [(m.epoch, m.loss, m.train_accuracy) for m in straight.history]


def test_resume_can_raise_the_epochs(mnist, tmp_path):
    _, straight = train(mnist, small(epochs=3))
    trainer, _ = train(mnist, small(epochs=2))
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt.npz", mnist.train_images, mnist.train_labels, epochs=3)
    result = resumed.run()
    assert len(result.history) == 3
    np.testing.assert_array_equal(result.model.params, straight.model.params)


def test_checkpoint_from_other_data_size_is_refused(mnist, tmp_path):
    trainer = Trainer(small(), mnist.train_images, mnist.train_labels)
    trainer.run(should_stop=stop_at(trainer, 0, 10))
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    with pytest.raises(ModelFormatError) as info:
        Trainer.from_checkpoint(tmp_path / "ckpt.npz", mnist.train_images[:1500], mnist.train_labels[:1500])
    message = str(info.value)
    assert "ckpt.npz" in message and "2000" in message and "1500" in message, message


def test_checkpoint_between_epochs_from_other_data_size_is_refused(mnist, tmp_path):
    trainer, _ = train(mnist, small(epochs=1))
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    with pytest.raises(ModelFormatError):
        Trainer.from_checkpoint(tmp_path / "ckpt.npz", mnist.train_images[:1500], mnist.train_labels[:1500],
                                epochs=2)


def test_a_model_file_is_not_a_checkpoint(mnist, tmp_path):
    trainer, result = train(mnist, small(epochs=1))
    result.model.save(tmp_path / "model.npz")
    with pytest.raises(ModelFormatError, match="not a checkpoint"):
        Trainer.from_checkpoint(tmp_path / "model.npz", mnist.train_images, mnist.train_labels)


# --- divergence -----------------------------------------------------------------


def test_huge_learning_rate_raises_training_diverged(mnist):
    trainer = Trainer(small(lr=1e6, optimizer="sgd"), mnist.train_images, mnist.train_labels)
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    message = str(info.value)
    assert "epoch 1, batch " in message and "of 32" in message, message
    assert "lower learning rate" in message, message
    assert isinstance(info.value, FloatingPointError)


def test_nan_in_the_weights_is_caught_at_the_right_batch(mnist):
    trainer = Trainer(small(), mnist.train_images, mnist.train_labels)
    trainer.run(should_stop=stop_at(trainer, 1, 4))  # 36 steps done: epoch 2, batch 5 is next
    trainer.model.biases[0][:] = np.nan  # every hidden unit, so every sample's loss
    before = trainer.model.params.copy()
    with pytest.raises(TrainingDiverged, match=r"at epoch 2, batch 5 of 32 \(learning rate 0\.05\); "
                                               r"try a lower learning rate"):
        trainer.run()
    # The bad batch took no step.
    np.testing.assert_array_equal(trainer.model.params, before)
    assert (trainer.epoch, trainer.batch, trainer.step) == (1, 4, 36)


def test_nan_loss_is_called_nan(mnist):
    trainer = Trainer(small(), mnist.train_images, mnist.train_labels)
    trainer.model.biases[0][:] = np.nan
    with pytest.raises(TrainingDiverged, match="the loss became nan"):
        trainer.run()


# --- early stopping ---------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch(mnist):
    config = small(epochs=30, patience=2, val_split=0.2, lr=0.2, optimizer="sgd")
    snapshots = {}
    trainer = Trainer(config, mnist.train_images, mnist.train_labels)
    assert trainer.n_train == 1600 and len(trainer.val_images) == 400

    def on_epoch(metrics):
        snapshots[metrics.epoch] = trainer.model.params.copy()

    result = trainer.run(on_epoch=on_epoch)
    assert result.stop_reason == "early_stopping"
    history = result.history
    assert len(history) < config.epochs
    val = [m.val_accuracy for m in history]
    assert all(0 <= v <= 1 for v in val) and all(m.val_loss > 0 for m in history)
    best = int(np.argmax(val)) + 1  # the first epoch with the best accuracy
    assert result.best_epoch == best
    assert len(history) == best + config.patience, "stops after `patience` epochs without a better one"
    np.testing.assert_array_equal(result.model.params, snapshots[best])
    # The restored model scores what the best epoch scored.
    ev = evaluate(result.model, trainer.val_images, trainer.val_labels)
    assert ev.accuracy == history[best - 1].val_accuracy


# --- the whole of MNIST (slow) ------------------------------------------------------


@pytest.mark.slow
def test_default_recipe_reaches_98_percent(mnist):
    _, result = train(mnist, TrainConfig())
    assert result.stop_reason == "completed" and len(result.history) == 15
    accuracy = evaluate(result.model, mnist.test_images, mnist.test_labels).accuracy
    assert accuracy >= 0.980, f"test accuracy {accuracy:.4f}"


@pytest.mark.slow
def test_classic_gradient_descent_on_mnist(mnist):
    # Samples as columns, C-contiguous: the same numbers as the plain transpose, but the
    # BLAS products run ~20% faster on them. (float32 would not help: the reference's
    # float64 weights would upcast X, copying it, in every product.)
    X = np.ascontiguousarray(mnist.train_images.reshape(60000, -1).T / 255.0)
    X_test = np.ascontiguousarray(mnist.test_images.reshape(10000, -1).T / 255.0)
    _, accuracy = reference.classic_gradient_descent(
        X, mnist.train_labels, X_test, mnist.test_labels, init="uniform", seed=0, iterations=500, lr=0.1)
    assert 0.845 <= accuracy <= 0.865, f"test accuracy {accuracy:.4f}"


def _blobs(rng, n, d, k, dtype):
    """``n`` samples of ``d`` float features around ``k`` well separated centres."""
    centres = rng.standard_normal((k, d)) * 3
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, d))).astype(dtype), labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trains_on_float_features_as_they_are(rng, dtype):
    x, y = _blobs(rng, 3000, 20, 3, dtype)
    config = TrainConfig(dtype=dtype, hidden=(16,), epochs=3, batch_size=64)
    trainer = Trainer(config, x, y)
    assert np.shares_memory(trainer.images, x), "a C-contiguous (N, D) float array is trained on in place"
    trainer.run()
    accuracy = evaluate(trainer.model, x, y).accuracy
    assert accuracy >= 0.95, f"train accuracy {accuracy:.3f}"


def test_float_features_are_not_scaled_like_pixels(rng):
    """Float features reach the first layer as they are: neither gathered nor read with 1/255."""
    x, y = _blobs(rng, 64, 5, 3, "float32")
    trainer = Trainer(TrainConfig(hidden=(4,), epochs=1, batch_size=64), x, y)
    gather_scale, scale = trainer._scales
    assert gather_scale == scale == 1.0


@pytest.mark.parametrize("bad, message", [
    (lambda x: x.astype(np.int64), "expected (N, ...) features of uint8, float32, float64, got int64"),
    (lambda x: x[:, 0].copy(), "got float32 (50,)"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 37, np.nan, x).astype(np.float32),
     "sample 7 holds nan; features must be finite"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 9, np.inf, x).astype(np.float32),
     "sample 1 holds inf; features must be finite"),
])
def test_bad_features_are_refused_with_one_line(rng, bad, message):
    x, y = _blobs(rng, 50, 5, 3, "float32")
    with pytest.raises(ValueError, match="training images: ") as e:
        Trainer(TrainConfig(hidden=(4,)), bad(x), y)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
