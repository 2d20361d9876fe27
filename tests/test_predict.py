"""``fastnet-predict``: each sample's class and probabilities, from arrays, CSV rows and images."""
import csv

import numpy as np
import pytest

from fastnet.cli import predict_main
from fastnet.engine import predict_proba
from fastnet.model import MLP


@pytest.fixture
def digits_model(tmp_path):
    path = tmp_path / "digits.npz"
    MLP((784, 16, 10), seed=1).save(path)
    return path


@pytest.fixture
def small_model(tmp_path):
    path = tmp_path / "small.npz"
    MLP((5, 4, 3), seed=2).save(path)
    return path


def run(capsys, *argv):
    code = predict_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_npy_rows_to_csv_match_predict_proba(tmp_path, capsys, digits_model, rng):
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    code, _, err = run(capsys, digits_model, tmp_path / "x.npy", "--output", tmp_path / "p.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "p.csv")
    assert rows[0] == ["id", "label"] + [f"p_{k}" for k in range(10)]
    probs = predict_proba(MLP.load(digits_model), images)
    assert [r[0] for r in rows[1:]] == [f"{tmp_path / 'x.npy'}:{i}" for i in range(1, 8)]
    assert [int(r[1]) for r in rows[1:]] == list(probs.argmax(axis=1))
    np.testing.assert_allclose(np.array([r[2:] for r in rows[1:]], float), probs, rtol=1e-5)


def test_pixels_and_floats_in_one_call_are_scaled_alike(tmp_path, capsys, small_model, rng):
    """uint8 samples are pixels (scaled by 1/255), float samples are used as they are,
    also when both come in one call."""
    pixels = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "floats.npy", pixels / 255)
    code, _, err = run(capsys, small_model, tmp_path / "pixels.npy", tmp_path / "floats.npy", "-o", tmp_path / "p.csv")
    assert code == 0, err
    probs = np.array([r[2:] for r in read_rows(tmp_path / "p.csv")[1:]], float)
    np.testing.assert_allclose(probs[:3], probs[3:], rtol=1e-5)


def test_without_output_prints_the_top_three(tmp_path, capsys, digits_model, rng):
    np.save(tmp_path / "one.npy", rng.integers(0, 256, (1, 784), dtype=np.uint8))
    code, out, err = run(capsys, digits_model, tmp_path / "one.npy")
    assert code == 0, err
    line, = out.splitlines()
    name, _, top = line.partition(": ")
    assert name == f"{tmp_path / 'one.npy'}:1"
    probs = [float(part.split("(")[1].rstrip(")")) for part in top.split(", ")]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)


def test_csv_feature_rows(tmp_path, capsys, small_model):
    (tmp_path / "x.csv").write_text("a,b,c,d,e\n0.1,0.2,0.3,0.4,0.5\n1,2,3,4,5\n")
    code, _, err = run(capsys, small_model, tmp_path / "x.csv", "-o", tmp_path / "p.csv")
    assert code == 0, err
    rows = read_rows(tmp_path / "p.csv")
    expected = predict_proba(MLP.load(small_model), np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5]],
                                                              np.float32), scale=1.0)
    np.testing.assert_allclose(np.array([r[2:] for r in rows[1:]], float), expected, rtol=1e-5)


def test_an_image_file(tmp_path, capsys, digits_model):
    pil = pytest.importorskip("PIL.Image")
    draw = pytest.importorskip("PIL.ImageDraw")
    image = pil.new("L", (60, 80), 255)
    draw.Draw(image).rectangle((25, 10, 35, 70), fill=0)  # a dark "1" on white paper
    image.save(tmp_path / "one.png")
    code, out, err = run(capsys, digits_model, tmp_path / "one.png")
    assert code == 0, err
    assert out.startswith(f"{tmp_path / 'one.png'}: ")


@pytest.mark.parametrize("make, message", [
    (lambda d: np.save(d / "x.npy", np.zeros((2, 27, 28), np.uint8)), "the model takes 784 values per sample, found 756"),
    (lambda d: (d / "x.txt").write_text("1,2"), "expected .npy, .npz, .csv or an image"),
    (lambda d: None, "no such file"),
])
def test_bad_inputs_give_one_line_and_write_nothing(tmp_path, capsys, digits_model, make, message):
    make(tmp_path)
    target = next(iter(tmp_path.glob("x.*")), tmp_path / "x.npy")
    code, _, err = run(capsys, digits_model, target, "--output", tmp_path / "p.csv")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("fastnet-predict: error: ") and message in err, err
    assert not (tmp_path / "p.csv").exists()


def test_refuses_to_write_over_an_input(tmp_path, capsys, digits_model, rng):
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (2, 784), dtype=np.uint8))
    before = (tmp_path / "x.npy").read_bytes()
    code, _, err = run(capsys, digits_model, tmp_path / "x.npy", "--output", tmp_path / "x.npy")
    assert code == 1 and "is one of the inputs" in err
    assert (tmp_path / "x.npy").read_bytes() == before


def test_a_missing_model(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "none.npz", tmp_path / "x.npy")
    assert code == 1 and "no such file" in err and err.count("\n") == 1
