"""Augmentation by random shifts and mirror images (``--shift N``, ``--flip``).

- ``augment_batch`` against its NumPy twin, bit for bit: shapes with B=1, an
  odd width, non-square images, every shift up to past the image's size.
- Each image is moved by one (dx, dy) in -shift..shift, every such offset
  drawn; pixels moved in are 0; ``flip`` mirrors about half of the images;
  shift 0 without flip is a plain copy.
- The moves depend on (key, position in the epoch) alone: the same for any
  chunking, at 1 and 2 threads, and other keys draw other moves.
- The trainer: off by default (and a run with shift 0 gives the very bits
  of a run on the same pixels given flat); on, the same bits at 1 and 2
  threads and after a resume; a clear error on data that are not images.
"""
import numba
import numpy as np
import pytest

from fastnet import kernels, reference
from fastnet.config import ConfigError, TrainConfig
from fastnet.train import Trainer
from numba_threads import with_threads

IMPLS = [pytest.param(kernels, id="kernels"), pytest.param(reference, id="reference")]
KEY = -5647682728569471504


def images_of(rng, N, R, W):
    """uint8 images (N, R*W) with no zero pixel, so that exactly the pixels moved in are 0."""
    return rng.integers(1, 256, (N, R * W), dtype=np.uint8)


def augment(impl, images, labels, order, start, B, width, shift, flip, key=KEY):
    x = np.full((B, images.shape[1]), 77, images.dtype)  # garbage: every value must be overwritten
    y = np.full(B, -1, np.int32)
    impl.augment_batch(x, y, images, labels, order, start, width, shift, flip, key)
    return x, y


def offset_of(moved, image):
    """The (dy, dx, mirrored) that turns ``image`` (R, W) into ``moved``: found by trying them all."""
    R, W = image.shape
    for mirrored in (False, True):
        source = image[:, ::-1] if mirrored else image
        for dy in range(-R + 1, R):
            for dx in range(-W + 1, W):
                want = np.zeros_like(image)
                want[max(dy, 0):R + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
                    source[max(-dy, 0):R - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
                if np.array_equal(moved, want):
                    return dy, dx if not mirrored else -dx, mirrored
    raise AssertionError("no offset explains the moved image")


# --- the kernel ------------------------------------------------------------------------


@pytest.mark.parametrize("B, R, W, start", [(1, 4, 5, 0), (6, 7, 5, 3), (9, 6, 6, 11), (32, 28, 28, 0)])
@pytest.mark.parametrize("shift, flip", [(0, False), (0, True), (1, False), (2, True), (7, True)])
def test_augment_batch_matches_reference(rng, B, R, W, start, shift, flip):
    N = start + B + 4
    images = images_of(rng, N, R, W)
    labels = rng.integers(0, 10, N).astype(np.int32)
    order = rng.permutation(N)
    got = augment(kernels, images, labels, order, start, B, W, shift, flip)
    want = augment(reference, images, labels, order, start, B, W, shift, flip)
    np.testing.assert_array_equal(got[0], want[0], err_msg=f"augment_batch x, shift {shift} flip {flip}")
    np.testing.assert_array_equal(got[1], want[1], err_msg="augment_batch y")
    np.testing.assert_array_equal(got[1], labels[order[start:start + B]], err_msg="augment_batch y")


@pytest.mark.parametrize("impl", IMPLS)
def test_each_image_is_moved_by_one_offset_within_shift(rng, impl):
    R, W, B, shift = 6, 5, 200, 2
    images = images_of(rng, B, R, W)
    order = np.arange(B)
    x, _ = augment(impl, images, np.zeros(B, np.int32), order, 0, B, W, shift, False)
    offsets = set()
    for b in range(B):
        dy, dx, mirrored = offset_of(x[b].reshape(R, W), images[b].reshape(R, W))
        assert not mirrored and abs(dy) <= shift and abs(dx) <= shift, f"sample {b}: moved by {(dy, dx)}"
        offsets.add((dy, dx))
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}, "some offsets never drawn"


def test_a_pixel_lands_where_its_offset_says_and_the_rest_is_zero_filled(rng):
    """One image of all 255 but a lone 9 at (3, 4): after the move the 9 is at
    (3 + dy, 4 + dx), the |dy| rows and |dx| columns moved in are 0, the rest 255."""
    R, W, shift = 7, 8, 3
    image = np.full((R, W), 255, np.uint8)
    image[3, 4] = 9
    B = 64
    images = np.repeat(image.reshape(1, -1), B, axis=0)
    x, _ = augment(kernels, images, np.zeros(B, np.int32), np.arange(B), 0, B, W, shift, False)
    for b in range(B):
        moved = x[b].reshape(R, W)
        (r,), (c,) = np.nonzero(moved == 9)
        dy, dx = r - 3, c - 4
        assert abs(dy) <= shift and abs(dx) <= shift
        zero_rows = np.arange(R) < dy if dy > 0 else np.arange(R) >= R + dy
        zero_cols = np.arange(W) < dx if dx > 0 else np.arange(W) >= W + dx
        zero = zero_rows[:, None] | zero_cols[None, :]
        assert np.all(moved[zero] == 0), f"sample {b}: not zero where pixels moved in ({dy}, {dx})"
        kept = ~zero
        kept[r, c] = False
        assert np.all(moved[kept] == 255), f"sample {b}: a pixel of the image lost ({dy}, {dx})"


@pytest.mark.parametrize("impl", IMPLS)
def test_shift_zero_without_flip_is_a_plain_gather(rng, impl):
    images = images_of(rng, 20, 4, 5)
    labels = rng.integers(0, 10, 20).astype(np.int32)
    order = rng.permutation(20)
    x, y = augment(impl, images, labels, order, 5, 7, 5, 0, False)
    np.testing.assert_array_equal(x, images[order[5:12]])
    np.testing.assert_array_equal(y, labels[order[5:12]])


@pytest.mark.parametrize("impl", IMPLS)
def test_flip_mirrors_about_half_of_the_images(rng, impl):
    R, W, B = 3, 5, 400
    images = images_of(rng, B, R, W)
    x, _ = augment(impl, images, np.zeros(B, np.int32), np.arange(B), 0, B, W, 0, True)
    mirrored = 0
    for b in range(B):
        image = images[b].reshape(R, W)
        moved = x[b].reshape(R, W)
        assert np.array_equal(moved, image) or np.array_equal(moved, image[:, ::-1])
        mirrored += not np.array_equal(moved, image)
    assert 160 < mirrored < 240, f"{mirrored} of {B} mirrored"


def test_a_shift_past_the_image_leaves_zeros_only_where_it_moved_out(rng):
    """A width of 1 (D values in one column), shift 3 of an image 2 rows high:
    rows moved by 2 or more are all 0; the kernel never reads outside the image."""
    R, W, B = 2, 1, 50
    images = images_of(rng, B, R, W)
    x, _ = augment(kernels, images, np.zeros(B, np.int32), np.arange(B), 0, B, W, 3, True)
    want, _ = augment(reference, images, np.zeros(B, np.int32), np.arange(B), 0, B, W, 3, True)
    np.testing.assert_array_equal(x, want)
    assert np.any(np.all(x == 0, axis=1)) and np.any(np.all(x != 0, axis=1))


# --- determinism ----------------------------------------------------------------------


def test_moves_depend_on_key_and_position_alone(rng):
    """Any chunking of an epoch's batch draws the same moves; another key draws others."""
    R, W, N = 5, 6, 40
    images = images_of(rng, N, R, W)
    labels = rng.integers(0, 10, N).astype(np.int32)
    order = rng.permutation(N)
    whole, _ = augment(kernels, images, labels, order, 0, N, W, 2, True)
    for lo, hi in [(0, 1), (1, 17), (17, 40)]:
        part, _ = augment(kernels, images, labels, order, lo, hi - lo, W, 2, True)
        np.testing.assert_array_equal(part, whole[lo:hi], err_msg=f"rows {lo}:{hi} alone")
    again, _ = augment(kernels, images, labels, order, 0, N, W, 2, True)
    np.testing.assert_array_equal(again, whole)
    other, _ = augment(kernels, images, labels, order, 0, N, W, 2, True, key=KEY + 1)
    assert np.mean(np.any(other != whole, axis=1)) > 0.7, "another key should move most samples otherwise"


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
def test_same_bits_at_1_and_2_threads(rng):
    R, W, B = 28, 28, 257
    images = images_of(rng, B, R, W)
    labels = rng.integers(0, 10, B).astype(np.int32)
    order = rng.permutation(B)
    one = with_threads(1, augment, kernels, images, labels, order, 0, B, W, 2, True)
    two = with_threads(2, augment, kernels, images, labels, order, 0, B, W, 2, True)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


# --- the trainer ----------------------------------------------------------------------


def small_images(rng, N=96):
    """(N, 8, 8) uint8 images, most pixels zero as MNIST's are, and 3 classes."""
    images = (rng.integers(1, 256, (N, 8, 8)) * (rng.random((N, 8, 8)) < 0.3)).astype(np.uint8)
    return images, rng.integers(0, 3, N)


def config(**changes):
    return TrainConfig(**{"hidden": (8,), "epochs": 2, "batch_size": 16, **changes})


def test_off_by_default_and_shift_zero_changes_nothing(rng):
    images, labels = small_images(rng)
    assert TrainConfig().shift == 0 and TrainConfig().flip is False
    flat = Trainer(config(), images.reshape(len(images), -1), labels)
    shaped = Trainer(config(), images, labels)
    assert flat.augmented is None and shaped.augmented is None
    flat.run()
    shaped.run()
    np.testing.assert_array_equal(shaped.model.params, flat.model.params)
    moved = Trainer(config(shift=1), images, labels)
    moved.run()
    assert not np.array_equal(moved.model.params, flat.model.params)


def test_config_checks_shift_and_flip():
    with pytest.raises(ConfigError, match=r"^shift: expected a whole number >= 0, got -1$"):
        TrainConfig(shift=-1)
    with pytest.raises(ConfigError, match=r"^shift: expected a whole number >= 0, got 1.5$"):
        TrainConfig(shift=1.5)
    with pytest.raises(ConfigError, match=r"^flip: expected true or false, got 'yes'$"):
        TrainConfig(flip="yes")
    c = TrainConfig(shift=2, flip=True)
    assert TrainConfig.from_dict(c.to_dict()) == c
    old = TrainConfig().to_dict()
    del old["shift"], old["flip"]  # a checkpoint written before augmentation
    assert TrainConfig.from_dict(old) == TrainConfig()


@pytest.mark.parametrize("changes, what", [(dict(shift=1), "shift"), (dict(flip=True), "flip")])
def test_flat_features_are_refused(rng, changes, what):
    features = rng.standard_normal((30, 20)).astype(np.float32)
    with pytest.raises(ConfigError, match=rf"^{what}: moves images, so needs training images of shape "
                                          r"\(N, rows, width\); got features of shape \(30, 20\)$"):
        Trainer(config(**changes), features, np.arange(30) % 2)


def test_a_shift_as_large_as_the_image_is_refused(rng):
    images, labels = small_images(rng)
    with pytest.raises(ConfigError, match=r"^shift: expected less than the images' 8x8 pixels"):
        Trainer(config(shift=8), images, labels)


def train_with_threads(n, images, labels, **changes):
    return with_threads(n, lambda: Trainer(config(**changes), images, labels).run().model.params.copy())


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
def test_training_with_shifts_gives_the_same_bits_at_1_and_2_threads(rng):
    images, labels = small_images(rng)
    one = train_with_threads(1, images, labels, shift=2, flip=True)
    two = train_with_threads(2, images, labels, shift=2, flip=True)
    np.testing.assert_array_equal(one, two)


def test_numpy_engine_moves_the_same_samples(rng):
    """The numpy engine runs the twin: the same moves, so the same weights within rounding."""
    images, labels = small_images(rng)
    got = Trainer(config(shift=2, flip=True), images, labels).run().model.params
    want = Trainer(config(shift=2, flip=True, engine="numpy"), images, labels).run().model.params
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_resumed_run_draws_the_same_moves(rng, tmp_path):
    images, labels = small_images(rng)
    whole = Trainer(config(shift=2, flip=True, epochs=3), images, labels).run().model.params
    first = Trainer(config(shift=2, flip=True, epochs=3), images, labels)
    calls = iter(range(100))
    first.run(should_stop=lambda: next(calls) == 4)  # mid-epoch: 6 batches an epoch, one per check
    assert first.epoch == 0 and 0 < first.batch < first.batches_per_epoch
    first.save_checkpoint(tmp_path / "run.npz")
    resumed = Trainer.from_checkpoint(tmp_path / "run.npz", images, labels).run().model.params
    np.testing.assert_array_equal(resumed, whole)


# --- the checked wrapper and the command line ------------------------------------------


def test_checked_refuses_a_width_that_does_not_divide_D():
    from fastnet import checked

    with pytest.raises(ValueError, match=r"^augment_batch: width is 5, expected a divisor of D = 12 "
                                         r"\(the rows of an image of D values\)$"):
        checked.augment_batch(np.zeros((2, 12), np.uint8), np.zeros(2, np.int32), np.zeros((4, 12), np.uint8),
                              np.zeros(4, np.int32), np.arange(4), 0, 5, 1, False, 0)


def run_main(capsys, *argv):
    from fastnet import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_with_shift_and_flip_on_images_and_refuses_flat_features(rng, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images, labels = small_images(rng, 120)
    np.savez("images.npz", x_train=images[:96], y_train=labels[:96], x_test=images[96:], y_test=labels[96:])
    code, out, err = run_main(capsys, "--data", "images.npz", "--hidden", "8", "--epochs", "1", "--shift", "1",
                              "--flip", "--no-save", "--threads", "1")
    assert code == 0, err
    assert "shifts of up to 1 pixels, mirrored images" in out and "test accuracy" in out
    np.savez("flat.npz", x_train=images[:96].reshape(96, 64), y_train=labels[:96])
    code, out, err = run_main(capsys, "--data", "flat.npz", "--shift", "2", "--no-save")
    assert code == 2
    assert err.strip().splitlines()[-1] == ("fastnet-train: error: --shift: moves images, so needs training "
                                            "images of shape (N, rows, width); got features of shape (86, 64) "
                                            "(see fastnet-train --help)")
    code, out, err = run_main(capsys, "--data", "images.npz", "--shift", "-1", "--no-save")
    assert code == 2 and "--shift: invalid _non_negative_int value" not in err and "expected a whole number >= 0" in err
