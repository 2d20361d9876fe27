"""read_idx / write_idx: round trips, the real MNIST files, and every kind of bad input."""
import gzip
import hashlib
import io
import os

import numpy as np
import pytest

from fastnet.data import IdxFormatError, read_idx, write_idx
from fastnet.data.idx import TYPE_CODES, parse_header

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 5), (2, 3, 4), (1, 2, 1, 3), (0, 4), (2, 1, 1, 1, 3)]

MNIST_FILES = {
    # name: (shape, SHA-256 of the decompressed bytes, from SHA256SUMS.raw)
    "train-images-idx3-ubyte.gz": ((60000, 28, 28),
                                   "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte.gz": ((60000,),
                                   "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte.gz": ((10000, 28, 28),
                                  "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte.gz": ((10000,),
                                  "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


def random_array(rng, dtype, shape):
    """Values spanning the dtype's range (and a few special floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.standard_normal(shape) * 1e3
        flat = values.reshape(-1)
        flat[: min(3, flat.size)] = [np.inf, -0.0, np.finfo(dtype).tiny][: min(3, flat.size)]
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def idx_bytes(code, dims, payload=b""):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, rng, dtype, shape, suffix):
    array = random_array(rng, dtype, shape)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    assert back.flags.c_contiguous and back.flags.writeable
    np.testing.assert_array_equal(back, array, err_msg=f"{dtype} {shape} {suffix!r}")
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_header_and_payload_are_big_endian(tmp_path, rng, dtype):
    array = random_array(rng, dtype, (2, 3))
    write_idx(tmp_path / "a", array)
    data = (tmp_path / "a").read_bytes()
    code = {v: k for k, v in TYPE_CODES.items()}[np.dtype(dtype)]
    assert data[:12] == bytes([0, 0, code, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    assert data[12:] == array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()


def test_writes_either_byte_order_and_non_contiguous(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_bytes_and_file_objects(tmp_path, rng):
    array = random_array(rng, np.int16, (4, 5))
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array)
    for name in ("a", "a.gz"):
        data = (tmp_path / name).read_bytes()
        np.testing.assert_array_equal(read_idx(data), array)
        np.testing.assert_array_equal(read_idx(bytearray(data)), array)
        np.testing.assert_array_equal(read_idx(io.BytesIO(data)), array)
        with open(tmp_path / name, "rb") as f:
            np.testing.assert_array_equal(read_idx(f), array)
    buffer = io.BytesIO()
    write_idx(buffer, array)
    assert buffer.getvalue() == (tmp_path / "a").read_bytes()


def test_gzip_is_recognised_by_content_not_name(tmp_path, rng):
    array = random_array(rng, np.float64, (3, 3))
    write_idx(tmp_path / "a.gz", array)
    os.rename(tmp_path / "a.gz", tmp_path / "misnamed")
    np.testing.assert_array_equal(read_idx(tmp_path / "misnamed"), array)


def test_multi_member_gzip_and_zero_padding(rng):
    array = random_array(rng, np.int32, (10, 100))
    raw = idx_bytes(0x0C, (10, 100), array.astype(">i4").tobytes())
    # Split inside the header and inside an element.
    stream = gzip.compress(raw[:6]) + gzip.compress(raw[6:2003]) + gzip.compress(raw[2003:]) + b"\0" * 16
    np.testing.assert_array_equal(read_idx(stream), array)


def test_gz_output_is_deterministic(tmp_path, rng):
    array = random_array(rng, np.uint8, (5, 5))
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, rng):
    path = tmp_path / "a.gz"
    write_idx(path, random_array(rng, np.uint8, (3,)))
    with pytest.raises(TypeError, match="int64"):
        write_idx(path, np.arange(3, dtype=np.int64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]
    assert read_idx(path).shape == (3,)  # the old file is untouched


@pytest.mark.parametrize("array, error", [
    (np.zeros(3, dtype=np.int64), TypeError),
    (np.zeros(3, dtype=bool), TypeError),
    (np.zeros(3, dtype=np.float16), TypeError),
    (np.float32(1.0), ValueError),
])
def test_write_rejects_what_idx_cannot_hold(tmp_path, array, error):
    with pytest.raises(error, match=str(tmp_path / "x")):
        write_idx(tmp_path / "x", array)


# ---------------------------------------------------------------- scale


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_scale_fuses_u8_to_float32(tmp_path, suffix):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_idx(tmp_path / f"p{suffix}", pixels)
    for source in (tmp_path / f"p{suffix}", (tmp_path / f"p{suffix}").read_bytes()):
        scaled = read_idx(source, scale=1 / 255)
        assert scaled.dtype == np.float32 and scaled.shape == (16, 16)
        # Formed in float64, rounded once: the float32 nearest to pixel / 255.
        np.testing.assert_array_equal(scaled, (pixels / 255).astype(np.float32))


def test_scale_on_large_raw_file_crosses_read_chunks(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(3, 1000, 700), dtype=np.uint8)  # > 2 MiB
    write_idx(tmp_path / "p", pixels)
    np.testing.assert_array_equal(read_idx(tmp_path / "p", scale=0.5),
                                  pixels.astype(np.float32) * np.float32(0.5))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_scale_on_other_types_converts_after_reading(tmp_path, rng, dtype):
    array = random_array(rng, dtype, (4, 4))
    write_idx(tmp_path / "a.gz", array)
    scaled = read_idx(tmp_path / "a.gz", scale=2.0)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, array.astype(np.float32) * np.float32(2.0))


# ---------------------------------------------------------------- the real MNIST


@pytest.mark.parametrize("name", sorted(MNIST_FILES))
def test_mnist_shapes_and_raw_sha256(mnist_dir, name):
    shape, sha256 = MNIST_FILES[name]
    array = read_idx(mnist_dir / name)
    assert array.shape == shape and array.dtype == np.uint8
    header = idx_bytes(0x08, shape)
    assert hashlib.sha256(header + array.tobytes()).hexdigest() == sha256


def test_mnist_pixel_statistics(mnist_dir):
    images = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    pixels = images.astype(np.float64) / 255
    np.testing.assert_allclose(pixels.mean(), 0.1306604762738429, rtol=1e-12)
    np.testing.assert_allclose(pixels.std(), 0.30810780385646264, rtol=1e-12)
    scaled = read_idx(mnist_dir / "train-images-idx3-ubyte.gz", scale=1 / 255)
    np.testing.assert_array_equal(scaled, pixels.astype(np.float32))


def test_mnist_class_counts(mnist_dir):
    train = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    test = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------- bad input

VALID = idx_bytes(0x0C, (2, 3), np.arange(6, dtype=">i4").tobytes())

BAD_RAW = {
    "empty": (b"", "empty file"),
    "short magic": (b"\0\0\x08", "file holds 3 bytes, an IDX header needs at least 4"),
    "bad magic": (b"\x01\x02\x08\x01" + bytes(5), "expected the magic number to start with bytes 00 00, found 01 02"),
    "unknown type": (b"\0\0\x0A\x01\0\0\0\0", "unknown IDX type code 0x0A"),
    "rank 0": (b"\0\0\x08\0", "header says rank 0"),
    "short dims": (b"\0\0\x08\x03\0\0\0\x01\0\0", "header of rank 3 needs 16 bytes, file holds 10"),
    "short payload": (VALID[:-1], r"header says 2x3 int32 = 24 bytes, file holds 23 \(truncated\?\)"),
    "long payload": (VALID + b"\0", r"header says 2x3 int32 = 24 bytes, file holds 25 \(trailing data\?\)"),
    "overflowing dims": (idx_bytes(0x0E, (2**32 - 1,) * 4), "header says 4294967295x4294967295x4294967295x4294967295"),
    "empty but unaddressable": (idx_bytes(0x08, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)),
                                "expected dimensions whose product fits"),
}


@pytest.mark.parametrize("case", sorted(BAD_RAW))
@pytest.mark.parametrize("via", ["path", "bytes"])
def test_bad_raw_files_raise_idx_format_error(tmp_path, case, via):
    data, message = BAD_RAW[case]
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    source = path if via == "path" else data
    with pytest.raises(IdxFormatError, match=message) as info:
        read_idx(source)
    assert str(info.value).startswith(str(path) if via == "path" else "<bytes>")


BAD_GZ = {
    "truncated stream": (gzip.compress(VALID)[:-5], "gzip stream ends early"),
    "only a gzip header": (gzip.compress(VALID)[:10], "gzip stream ends early"),
    "corrupt deflate data": (gzip.compress(VALID)[:10] + b"\xff" * 20, "corrupt gzip stream \\(.*invalid block type"),
    "bad crc": (gzip.compress(VALID)[:-8] + b"\0\0\0\0" + gzip.compress(VALID)[-4:], "corrupt gzip stream"),
    "trailing garbage": (gzip.compress(VALID) + b"junk", "4 bytes of trailing garbage"),
    "empty member": (gzip.compress(b""), "decompresses to 0 bytes"),
    "long payload": (gzip.compress(VALID + b"\0\0"), "= 24 bytes, file holds 26 \\(trailing data\\?\\)"),
    "short payload": (gzip.compress(VALID[:-2]), "= 24 bytes, file holds 22 \\(truncated\\?\\)"),
    "bad magic": (gzip.compress(b"PK\x03\x04" + bytes(20)), "found 50 4b"),
    "absurd dims": (gzip.compress(idx_bytes(0x08, (60000, 60000, 60000))),
                    "60000x60000x60000 uint8 = 216000000000000 bytes, file holds 0 \\(truncated\\?\\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_GZ))
def test_bad_gz_files_raise_idx_format_error(tmp_path, case):
    data, message = BAD_GZ[case]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(IdxFormatError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(str(path) + ":")


def test_truncated_mnist_names_sizes(tmp_path, mnist_dir):
    """The message the tracker issue asks for, on the real file cut short."""
    raw = gzip.decompress((mnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:1016], mtime=0))
    with pytest.raises(IdxFormatError) as info:
        read_idx(path)
    assert str(info.value) == (f"{path}: header says 60000x28x28 uint8 = 47040000 bytes, "
                               "file holds 1000 (truncated?)")


def test_idx_format_error_is_a_value_error():
    assert issubclass(IdxFormatError, ValueError)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_parse_header():
    header = parse_header(idx_bytes(0x0D, (5, 6, 7)))
    assert header.dtype == np.float32 and header.shape == (5, 6, 7) and header.size == 16
    assert header.payload_bytes == 5 * 6 * 7 * 4
