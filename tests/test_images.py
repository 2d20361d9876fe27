"""Images in, MNIST-like digits out: drawn shapes, polarity, bad input, and a round trip.

The drawn digits are made here with ``PIL.ImageDraw``: a thick "1" (a
vertical bar) and a "0" (an ellipse outline) at several sizes and places,
dark on light and light on dark. The round trip trains a small network on
MNIST, writes test digits out as PNG files, reads them back, and checks the
network scores them as it scores the arrays.
"""
import numpy as np
import pytest

from fastnet.data import load_dataset
from fastnet.data.images import INK_THRESHOLD, prepare_digit, read_image, read_images

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

CANVAS = (80, 100)  # Pillow's order: width, height

# (shape, bounding box (left, top, right, bottom)) on the 80x100 canvas.
DRAWINGS = [
    ("one", (35, 10, 47, 90)),  # tall, centred
    ("one", (5, 60, 11, 95)),  # short, bottom left corner
    ("one", (60, 0, 79, 99)),  # touching three borders
    ("zero", (15, 20, 65, 80)),  # wide
    ("zero", (40, 5, 70, 45)),  # top right
    ("zero", (2, 2, 9, 12)),  # tiny: scaled up
]


def draw(shape, box, ink=255, paper=0):
    """An 80x100 uint8 canvas of ``paper`` with ``shape`` drawn in ``ink``."""
    image = Image.new("L", CANVAS, paper)
    pen = ImageDraw.Draw(image)
    if shape == "one":
        pen.rectangle(box, fill=ink)
    else:
        pen.ellipse(box, outline=ink, width=max(2, (box[2] - box[0]) // 6))
    return np.asarray(image)


def center_of_mass(image):
    """Intensity-weighted (row, column), as ``scipy.ndimage.center_of_mass``."""
    image = image.astype(np.float64)
    rows, cols = np.indices(image.shape)
    return (image * rows).sum() / image.sum(), (image * cols).sum() / image.sum()


def ink_box(digit):
    """Height and width of the bounding box of the non-zero pixels."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist", mnist_dir, offline=True)


# --- prepare_digit on drawings ---------------------------------------------------------

@pytest.mark.parametrize("dark_on_light", [False, True], ids=["light-ink", "dark-ink"])
@pytest.mark.parametrize("shape, box", DRAWINGS, ids=[f"{s}-{b}" for s, b in DRAWINGS])
def test_a_drawing_becomes_a_centred_digit_in_a_20x20_box(shape, box, dark_on_light):
    canvas = draw(shape, box, *((0, 255) if dark_on_light else (255, 0)))
    digit = prepare_digit(canvas)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    height, width = ink_box(digit > INK_THRESHOLD)
    assert max(height, width) in (19, 20) and min(height, width) <= 20, (height, width)
    height, width = ink_box(digit)
    assert max(height, width) <= 22, (height, width)  # a faint anti-aliased edge at most
    row, col = center_of_mass(digit)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1, (row, col)
    assert digit.max() >= 250  # bright ink on black
    assert digit[0].max() == digit[-1].max() == digit[:, 0].max() == digit[:, -1].max() == 0


@pytest.mark.parametrize("shape, box", DRAWINGS, ids=[f"{s}-{b}" for s, b in DRAWINGS])
def test_polarity_grey_paper_and_float_pixels_give_the_same_digit(shape, box):
    light_on_dark = prepare_digit(draw(shape, box, ink=255, paper=0))
    versions = {
        "dark on light": draw(shape, box, ink=0, paper=255),
        "pencil on grey paper": draw(shape, box, ink=90, paper=210),
        "chalk on a grey board": draw(shape, box, ink=230, paper=60),
        "floats 0-1": draw(shape, box, ink=0, paper=255) / 255.0,
        "floats 0-255": draw(shape, box).astype(np.float32),
    }
    for what, canvas in versions.items():
        digit = prepare_digit(canvas)
        difference = np.abs(digit.astype(int) - light_on_dark).max()
        assert difference <= 2, f"{what}: differs by {difference} grey levels"


def test_an_mnist_digit_goes_through_unchanged(mnist):
    digits = mnist.test_images[:1000]
    prepared = np.stack([prepare_digit(digit) for digit in digits])
    # Each digit already spans 20 pixels and is centred: only stretching the
    # brightest pixel (254 in some) to 255 may move a grey level by one. Of the
    # whole test set, 9 in 10000 change more: 4 were cut by MNIST's own border
    # or have only faint pixels at an end (so their ink box is under 20) and
    # get scaled, 5 lose a faint pixel beyond the crop's margin.
    changed = np.abs(prepared.astype(int) - digits).max(axis=(1, 2)) > 1
    assert changed.sum() <= 2, np.flatnonzero(changed)


# --- prepare_digit refuses ---------------------------------------------------------------

@pytest.mark.parametrize("canvas", [
    np.zeros((100, 80), np.uint8),
    np.full((100, 80), 255, np.uint8),
    np.full((100, 80), 0.5),
    np.full((10, 10), 128, np.uint8) + np.eye(10, dtype=np.uint8) * int(INK_THRESHOLD),  # too faint
], ids=["black", "white", "grey floats", "faint diagonal"])
def test_a_canvas_without_ink_is_refused_in_one_line(canvas):
    with pytest.raises(ValueError, match="^sketch: no ink found") as info:
        prepare_digit(canvas, name="sketch")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad, why", [
    (np.zeros((28, 28, 3), np.uint8), "2-D"),
    (np.zeros((0, 5), np.uint8), "2-D"),
    (np.array([[np.nan, 1.0], [0.0, 0.0]]), "NaN"),
    (np.array([["a", "b"]]), "numbers"),
], ids=["rgb", "empty", "nan", "strings"])
def test_input_that_is_not_a_grayscale_image_is_refused(bad, why):
    with pytest.raises(ValueError, match=f"^image: .*{why}"):
        prepare_digit(bad)


# --- reading files -----------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_read_image_reads_a_file_as_prepare_digit_reads_its_pixels(tmp_path, suffix):
    canvas = draw("zero", (15, 20, 65, 80), ink=20, paper=235)
    path = tmp_path / f"zero{suffix}"
    Image.fromarray(canvas).convert("RGB").save(path)
    digit = read_image(path)
    expected = prepare_digit(canvas)
    tolerance = 40 if suffix == ".jpg" else 0  # JPEG blurs the edges a little
    assert np.abs(digit.astype(int) - expected).max() <= tolerance
    assert abs(center_of_mass(digit)[0] - 14) <= 1


def test_read_images_stacks_in_order(tmp_path):
    paths = []
    for i, (shape, box) in enumerate(DRAWINGS):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(draw(shape, box, ink=0, paper=255)).save(paths[-1])
    digits = read_images(paths)
    assert digits.shape == (len(DRAWINGS), 28, 28) and digits.dtype == np.uint8
    for digit, (shape, box) in zip(digits, DRAWINGS):
        np.testing.assert_array_equal(digit, prepare_digit(draw(shape, box)))
    assert read_images([]).shape == (0, 28, 28)


def test_a_file_that_is_not_an_image_is_refused_in_one_line(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    truncated = tmp_path / "cut.png"
    Image.fromarray(draw("one", (35, 10, 47, 90))).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    blank = tmp_path / "blank.png"
    Image.new("L", CANVAS, 255).save(blank)
    for path in (text, truncated, tmp_path / "missing.png", tmp_path, blank):
        with pytest.raises(ValueError) as info:
            read_image(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        error = info.value  # no PIL traceback is chained to it
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_missing_pillow_is_named_with_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match=r'^reading images needs Pillow: pip install "fastnet\[images\]"$'):
        read_image(tmp_path / "digit.png")


# --- the round trip through PNG files ----------------------------------------------------

def test_a_model_scores_mnist_digits_read_from_png_as_it_scores_the_arrays(mnist, tmp_path):
    from fastnet.config import TrainConfig
    from fastnet.train import Trainer, evaluate

    # The NumPy engine: what is under test is the images, not the kernels, and
    # it needs no JIT compile, which on a cold cache takes about a minute.
    config = TrainConfig(epochs=2, limit=20000, hidden=(64,), seed=0, engine="numpy")
    model = Trainer(config, mnist.train_images, mnist.train_labels).run().model
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    paths = [tmp_path / f"{i:04d}-{label}.png" for i, label in enumerate(labels)]
    for image, path in zip(images, paths):
        Image.fromarray(image).save(path)

    as_arrays = evaluate(model, images, labels, engine="numpy").accuracy
    from_png = evaluate(model, read_images(paths), labels, engine="numpy").accuracy

    assert as_arrays > 0.85, as_arrays  # the model learnt something, so the comparison means something
    assert abs(from_png - as_arrays) <= 0.005, (as_arrays, from_png)


def test_an_image_with_too_many_pixels_is_refused_with_one_line(tmp_path, monkeypatch):
    PIL_Image = pytest.importorskip("PIL.Image")
    PIL_Image.new("L", (200, 200), 255).save(tmp_path / "big.png")
    monkeypatch.setattr(PIL_Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses images of over twice this
    with pytest.raises(ValueError, match="big.png: too large to read") as e:
        read_image(tmp_path / "big.png")
    assert "\n" not in str(e.value)
