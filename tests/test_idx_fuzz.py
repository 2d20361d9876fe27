"""Fuzzing read_idx: any byte string either parses to its header's shape or raises IdxFormatError.

Seeded loops feed 13,000 mutated and random inputs (raw and gzip) and a
Hypothesis test adds shrinkable ones; no other exception, and no crash of the
compiled loops, is acceptable.
"""
import gzip
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnet.data import IdxFormatError, read_idx
from fastnet.data.idx import TYPE_CODES

CODES = sorted(TYPE_CODES)


def idx_bytes(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def valid_file(rng):
    """A well-formed IDX file of random type and rank (1..4), 0..60 elements per axis product."""
    code = int(rng.choice(CODES))
    rank = int(rng.integers(1, 5))
    dims = [int(d) for d in rng.integers(0, 5, size=rank)]
    n = int(np.prod(dims)) * TYPE_CODES[code].itemsize
    return idx_bytes(code, dims, rng.bytes(n))


def mutate(rng, data: bytes) -> bytes:
    """One random corruption: flip, overwrite, cut, grow, or splice."""
    data = bytearray(data)
    kind = rng.integers(6)
    if kind == 0 and data:  # flip bits
        for _ in range(int(rng.integers(1, 4))):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    elif kind == 1 and data:  # overwrite one byte, biased to the header
        i = int(rng.integers(min(len(data), 24)))
        data[i] = int(rng.choice([0, 1, 0xFF, 0x08, 0x0E, int(rng.integers(256))]))
    elif kind == 2:  # truncate
        del data[int(rng.integers(len(data) + 1)):]
    elif kind == 3:  # append
        data += rng.bytes(int(rng.integers(1, 9)))
    elif kind == 4 and data:  # delete a run
        i = int(rng.integers(len(data)))
        del data[i:i + int(rng.integers(1, 9))]
    else:  # insert a run
        i = int(rng.integers(len(data) + 1))
        data[i:i] = rng.bytes(int(rng.integers(1, 9)))
    return bytes(data)


def expected_shape(data: bytes):
    """The shape the header of ``data`` states (after gunzip), or None if unreadable."""
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None
    if len(data) < 4 or len(data) < 4 + 4 * data[3]:
        return None
    return tuple(int.from_bytes(data[i:i + 4], "big") for i in range(4, 4 + 4 * data[3], 4))


def check(data: bytes) -> bool:
    """Read ``data``; True if it parsed (to its header's shape), False if IdxFormatError."""
    try:
        array = read_idx(data)
    except IdxFormatError:
        return False
    assert array.shape == expected_shape(data), data[:32]
    return True


def random_input(rng) -> bytes:
    kind = rng.integers(10)
    if kind < 4:
        return mutate(rng, valid_file(rng))
    if kind < 7:
        return mutate(rng, gzip.compress(valid_file(rng), compresslevel=1))
    if kind == 7:  # valid file, compressed after a mutation: well-formed gzip, bad IDX
        return gzip.compress(mutate(rng, valid_file(rng)), compresslevel=1)
    if kind == 8:  # random bytes behind a plausible magic
        prefix = b"\x1f\x8b" if rng.integers(2) else bytes([0, 0, int(rng.choice(CODES))])
        return prefix + rng.bytes(int(rng.integers(0, 40)))
    return rng.bytes(int(rng.integers(0, 40)))


def test_seeded_fuzz_never_crashes(rng):
    outcomes = [check(random_input(rng)) for _ in range(12_000)]
    # Both branches were exercised, plenty of each.
    assert 500 < sum(outcomes) < len(outcomes) - 500


def test_seeded_fuzz_through_files(tmp_path, rng):
    """The same inputs read from disk, where raw files take the readinto path."""
    path = tmp_path / "fuzz-idx"
    for _ in range(1000):
        data = random_input(rng)
        path.write_bytes(data)
        try:
            array = read_idx(path)
        except IdxFormatError as exc:
            assert str(exc).startswith(str(path) + ":")
        else:
            assert array.shape == expected_shape(data)


def test_every_truncation_of_a_valid_gzip_file_is_rejected(rng):
    data = gzip.compress(idx_bytes(0x0B, (3, 7), rng.bytes(42)))
    for cut in range(len(data)):
        with pytest.raises(IdxFormatError):
            read_idx(data[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.booleans())
def test_hypothesis_arbitrary_bytes(data, compress):
    check(gzip.compress(data) if compress else data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CODES), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
       st.binary(max_size=64), st.booleans())
def test_hypothesis_headers_with_any_dims(code, dims, payload, compress):
    data = idx_bytes(code, dims, payload)
    check(gzip.compress(data) if compress else data)
