"""Read and write IDX files, the format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a header followed by the values of one array, big-endian, in
C order::

    byte 0, 1     0x00 0x00
    byte 2        type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                  0x0D float32, 0x0E float64
    byte 3        rank r (number of dimensions), at least 1
    bytes 4..4+4r the r dimensions, each a big-endian 32-bit unsigned integer
    then          prod(dims) values of the type, most significant byte first

Files are often gzip-compressed (``.gz``); :func:`read_idx` recognises gzip by
its magic bytes, not by the file name, and accepts multi-member streams.

Everything is validated here, in Python, before a byte is copied: the loops in
the compiled :mod:`fastnet.data._idx` only convert buffers whose sizes were
already checked. A malformed file raises :class:`IdxFormatError` naming the
file, what was expected and what was found.
"""
from __future__ import annotations

import gzip
import os
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple, Union

import numpy as np

from fastnet._files import atomic_write
from fastnet.data import _idx

__all__ = ["IdxFormatError", "IdxHeader", "read_idx", "write_idx", "parse_header"]

PathLike = Union[str, "os.PathLike[str]"]
Source = Union[PathLike, bytes, bytearray, memoryview, BinaryIO]

#: IDX type code -> NumPy dtype of the values (native byte order once read).
TYPE_CODES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_CODE_OF_DTYPE = {dtype: code for code, dtype in TYPE_CODES.items()}
#: Unsigned integer dtype of each item size, to byte-swap any payload as integers.
_SWAP_VIEW = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_LITTLE_ENDIAN = sys.byteorder == "little"

_GZIP_MAGIC = b"\x1f\x8b"
#: Deflate cannot expand data by more than 1032:1; a header promising more
#: bytes than that from the compressed size is corrupt (and is caught before
#: anything is allocated).
_MAX_DEFLATE_RATIO = 1032
#: Compressed bytes handed to zlib per call, and the most decompressed bytes
#: one call may return. zlib runs without the GIL, so few large calls let
#: another thread (Numba loading the kernels, see fastnet.prewarm) run
#: meanwhile: after each call the reader waits for that thread's turn, so
#: small pieces slow loading (docs/performance.md, "Warm start"). (Handing
#: zlib the whole file at once would cost a copy of it, held while it is read.)
_GZ_CHUNK = 1 << 20
_GZ_PIECE = 8 << 20
#: Raw bytes read per call when converting a file to float32 on the fly.
_RAW_CHUNK = 1 << 20


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file (or not a well-formed gzip stream of one)."""


class IdxHeader(NamedTuple):
    """The decoded header of an IDX file."""

    dtype: np.dtype
    shape: tuple
    #: Size of the header in bytes: 4 + 4 * rank.
    size: int

    @property
    def payload_bytes(self) -> int:
        """Number of payload bytes the dimensions call for."""
        return _prod(self.shape) * self.dtype.itemsize


def _prod(shape) -> int:
    """Exact product of ``shape`` as a Python int (no overflow)."""
    n = 1
    for d in shape:
        n *= d
    return n


def _dims_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def parse_header(head, name: str = "<bytes>") -> IdxHeader:
    """Decode the IDX header at the start of ``head`` (bytes-like).

    ``head`` may hold more than the header; it must hold all of it. Raises
    :class:`IdxFormatError` for a short header, a bad magic number, an unknown
    type code or rank 0. ``name`` is used in error messages.
    """
    head = memoryview(head).cast("B")
    if len(head) == 0:
        raise IdxFormatError(f"{name}: empty file, expected an IDX header (at least 4 bytes)")
    if len(head) < 4:
        raise IdxFormatError(
            f"{name}: file holds {len(head)} bytes, an IDX header needs at least 4 (truncated?)"
        )
    if head[0] != 0 or head[1] != 0:
        raise IdxFormatError(
            f"{name}: not an IDX file: expected the magic number to start with bytes 00 00, "
            f"found {head[0]:02x} {head[1]:02x}"
        )
    code, rank = head[2], head[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X} ({d})" for c, d in TYPE_CODES.items())
        raise IdxFormatError(f"{name}: unknown IDX type code 0x{code:02X}, expected one of {known}")
    if rank == 0:
        raise IdxFormatError(f"{name}: header says rank 0, expected at least one dimension")
    size = 4 + 4 * rank
    if len(head) < size:
        raise IdxFormatError(
            f"{name}: header of rank {rank} needs {size} bytes, file holds {len(head)} (truncated?)"
        )
    shape = tuple(int.from_bytes(head[i:i + 4], "big") for i in range(4, size, 4))
    return IdxHeader(TYPE_CODES[code], shape, size)


def _check_payload(header: IdxHeader, found: int, name: str) -> None:
    """Raise unless ``found`` payload bytes is what ``header`` calls for."""
    expected = header.payload_bytes
    if found == expected:
        return
    what = (
        f"{name}: header says {_dims_text(header.shape)} {header.dtype} = {expected} bytes, "
        f"file holds {found}"
    )
    raise IdxFormatError(what + (" (truncated?)" if found < expected else " (trailing data?)"))


def _new_output(header: IdxHeader, scale, name: str) -> np.ndarray:
    """Allocate the array ``header`` describes (float32 for a scaled uint8 file).

    Callers check first that the source holds (or can hold) that many bytes.
    """
    # NumPy refuses a shape whose non-zero dims multiply past intp, even when
    # another dim is 0 and the array is empty.
    span = _prod(d for d in header.shape if d) * header.dtype.itemsize
    if span > np.iinfo(np.intp).max:
        raise IdxFormatError(
            f"{name}: header says {_dims_text(header.shape)} {header.dtype}, expected dimensions "
            f"whose product fits this machine's array size, found {span} bytes (corrupt header?)"
        )
    dtype = np.float32 if _fused(header, scale) else header.dtype
    return np.empty(header.shape, dtype=dtype)


def _fused(header: IdxHeader, scale) -> bool:
    """Whether the read converts to float32 on the fly (a uint8 file read with ``scale``)."""
    return scale is not None and header.dtype == np.uint8


def _finish(out: np.ndarray, header: IdxHeader, scale) -> np.ndarray:
    """Turn the big-endian payload now in ``out`` into native values (and scale them)."""
    if header.dtype.itemsize > 1 and _LITTLE_ENDIAN:
        _idx.byteswap_inplace(out.reshape(-1).view(_SWAP_VIEW[header.dtype.itemsize]))
    if scale is not None:  # not a uint8 file, so not fused: convert after the read
        out = out.astype(np.float32, copy=False)
        out *= np.float32(scale)
    return out


def _gunzip_pieces(data, name: str) -> Iterator[bytes]:
    """Yield the decompressed bytes of the gzip stream ``data`` in pieces.

    Handles streams of several gzip members and zero padding after the last one
    (as :mod:`gzip` does). Raises :class:`IdxFormatError` for a corrupt or
    truncated stream.
    """
    view = memoryview(data).cast("B")
    end = len(view)
    pos = 0
    while True:
        inflater = zlib.decompressobj(wbits=31)
        tail = b""
        while not inflater.eof:
            if not tail and pos < end:
                tail = view[pos:pos + _GZ_CHUNK]
                pos += len(tail)
            try:
                piece = inflater.decompress(tail, _GZ_PIECE)
            except zlib.error as exc:
                raise IdxFormatError(f"{name}: corrupt gzip stream ({exc})") from None
            tail = inflater.unconsumed_tail
            if piece:
                yield piece
            elif not tail and pos >= end and not inflater.eof:  # all input taken, no output, no end
                raise IdxFormatError(
                    f"{name}: gzip stream ends early after {end} compressed bytes (truncated download?)"
                )
        pos -= len(inflater.unused_data)
        rest = view[pos:]
        if not rest:
            return
        if rest[:2] == _GZIP_MAGIC:  # another member
            continue
        if not bytes(rest).strip(b"\0"):  # zero padding, as gzip allows
            return
        raise IdxFormatError(
            f"{name}: {len(rest)} bytes of trailing garbage after the gzip stream "
            f"at offset {pos}, expected another gzip member or the end of the file"
        )


def _read_gzip(data, name: str, scale, expect=None) -> np.ndarray:
    """Decode a gzip-compressed IDX file held in memory, piece by piece into the output."""
    pieces = _gunzip_pieces(data, name)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= 4 and len(head) >= 4 + 4 * head[3]:
            break
        if len(head) >= 2 and head[:2] != b"\0\0":
            break
    if not head:
        raise IdxFormatError(f"{name}: gzip stream decompresses to 0 bytes, expected an IDX header")
    header = _expected(parse_header(head, name), expect, name)
    expected = header.payload_bytes
    if expected > _MAX_DEFLATE_RATIO * len(data):
        # The stream cannot inflate to that many bytes: count what it does hold
        # (at most 1032 times its size, nothing kept) to report it, and never
        # allocate what the header asks for.
        _check_payload(header, len(head) - header.size + sum(len(p) for p in pieces), name)
    out = _new_output(header, scale, name)
    fused = _fused(header, scale)
    flat = out.reshape(-1) if fused else out.reshape(-1).view(np.uint8)
    filled = 0

    def put(piece):
        nonlocal filled
        n = len(piece)
        if filled + n > expected:
            # Count the rest (bounded by the deflate ratio) to report the size found.
            found = filled + n + sum(len(p) for p in pieces)
            _check_payload(header, found, name)
        if fused:
            _idx.scale_u8_to_f32(flat[filled:filled + n], piece, scale)
        else:
            flat[filled:filled + n] = np.frombuffer(piece, np.uint8)
        filled += n

    if len(head) > header.size:
        put(memoryview(head)[header.size:])
    for piece in pieces:
        put(piece)
    _check_payload(header, filled, name)
    return out if fused else _finish(out, header, scale)


def _read_raw_bytes(data, name: str, scale, expect=None) -> np.ndarray:
    """Decode an uncompressed IDX file held in memory."""
    data = memoryview(data).cast("B")
    header = _expected(parse_header(data, name), expect, name)
    _check_payload(header, len(data) - header.size, name)
    out = _new_output(header, scale, name)
    payload = data[header.size:]
    if _fused(header, scale):
        _idx.scale_u8_to_f32(out.reshape(-1), payload, scale)
        return out
    out.reshape(-1).view(np.uint8)[:] = np.frombuffer(payload, np.uint8)
    return _finish(out, header, scale)


def _readinto_full(f, buf, name: str, header: IdxHeader, done: int) -> int:
    """Fill ``buf`` from ``f``; raise if the file ends first. Returns bytes read."""
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            _check_payload(header, done + got, name)
        got += n
    return got


def _read_raw_file(f, name: str, scale, expect=None) -> np.ndarray:
    """Decode an uncompressed IDX file from an open regular file, straight into the output."""
    file_size = os.fstat(f.fileno()).st_size
    head = f.read(4)
    if len(head) == 4 and head[:2] == b"\0\0":
        head += f.read(4 * head[3])
    header = _expected(parse_header(head, name), expect, name)
    _check_payload(header, file_size - header.size, name)
    out = _new_output(header, scale, name)
    expected = header.payload_bytes
    if _fused(header, scale):
        flat = out.reshape(-1)
        buf = np.empty(min(_RAW_CHUNK, expected), np.uint8)
        done = 0
        while done < expected:
            n = min(len(buf), expected - done)
            _readinto_full(f, buf[:n], name, header, done)
            _idx.scale_u8_to_f32(flat[done:done + n], buf[:n], scale)
            done += n
    else:
        _readinto_full(f, out.reshape(-1).view(np.uint8), name, header, 0)
    if f.read(1):  # the file grew since fstat
        _check_payload(header, expected + 1, name)
    return out if _fused(header, scale) else _finish(out, header, scale)


def read_idx(source: Source, *, scale: float | None = None, expect=None) -> np.ndarray:
    """Read an IDX file into a NumPy array of the shape its header states.

    Parameters
    ----------
    source : str, os.PathLike, bytes-like or binary file object
        A path to a raw or gzip-compressed IDX file (gzip is recognised by its
        magic bytes, whatever the name), the bytes of one, or an open binary
        file.
    scale : float, optional
        If given, return float32 values multiplied by ``scale``. For a uint8
        file (images) the conversion is fused into the read, so
        ``read_idx(path, scale=1/255)`` loads pixels in [0, 1] without an
        intermediate uint8 array.
    expect : callable, optional
        Called with the file's :class:`IdxHeader` before any of its payload is
        read (or decompressed); it raises to refuse a file of the wrong type
        or dimensions, so that such a file costs nothing to reject.

    Returns
    -------
    numpy.ndarray
        A new, writable, C-contiguous array in native byte order: uint8, int8,
        int16, int32, float32 or float64 as the type code says (float32 when
        ``scale`` is given).

    Raises
    ------
    IdxFormatError
        If the file is not a well-formed IDX file: empty or short, bad magic
        number, unknown type code, rank 0, a payload shorter or longer than the
        dimensions say, dimensions too large for the file, or a corrupt or
        truncated gzip stream. The message names the file, what was expected
        and what was found.
    OSError
        If the file cannot be opened or read.
    """
    if scale is not None:
        scale = float(scale)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(source, "<bytes>", scale, expect)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        return _decode_bytes(source.read(), name, scale, expect)
    name = os.fspath(source)
    with open(name, "rb") as f:
        if f.peek(2)[:2] == _GZIP_MAGIC or not Path(name).is_file():
            return _decode_bytes(f.read(), name, scale, expect)
        return _read_raw_file(f, name, scale, expect)


def _decode_bytes(data, name: str, scale, expect=None) -> np.ndarray:
    if bytes(data[:2]) == _GZIP_MAGIC:
        return _read_gzip(data, name, scale, expect)
    return _read_raw_bytes(data, name, scale, expect)


def _expected(header: IdxHeader, expect, name: str) -> IdxHeader:
    """``header``, after ``expect(header)`` (if given) had its say: it raises to refuse."""
    if expect is not None:
        expect(header)
    return header


def _encode(array: np.ndarray, name: str) -> tuple[bytes, np.ndarray]:
    """Validate ``array`` and return its IDX header and its big-endian payload."""
    array = np.asarray(array)
    code = _CODE_OF_DTYPE.get(array.dtype.newbyteorder("="))
    if code is None:
        known = ", ".join(str(d) for d in TYPE_CODES.values())
        raise TypeError(f"{name}: IDX cannot hold dtype {array.dtype}; expected one of {known}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"{name}: IDX holds arrays of rank 1 to 255, got rank {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"{name}: IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    return header, payload


def write_idx(path: PathLike | BinaryIO, array, *, compresslevel: int = 6) -> None:
    """Write ``array`` to ``path`` as an IDX file, gzip-compressed if the name ends in ``.gz``.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        Destination. A path is written atomically: to a temporary file in the
        same folder, then renamed over ``path``, so a reader never sees half a
        file. A file object is written in place (uncompressed).
    array : array_like
        Values of dtype uint8, int8, int16, int32, float32 or float64 (either
        byte order) and rank 1 to 255.
    compresslevel : int
        gzip level for ``.gz`` names (1 fastest .. 9 smallest).

    Raises
    ------
    TypeError
        If IDX has no type code for the array's dtype (e.g. int64, bool).
    ValueError
        If the rank is 0 or above 255, or a dimension does not fit 32 bits.
    """
    if hasattr(path, "write"):
        header, payload = _encode(array, str(getattr(path, "name", "<file object>")))
        path.write(header)
        path.write(memoryview(payload.reshape(-1).view(np.uint8)))
        return
    path = Path(path)
    header, payload = _encode(array, str(path))
    with atomic_write(path) as raw:
        if path.name.endswith(".gz"):
            # mtime=0 and no file name in the gzip header: the same array
            # always gives the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                               compresslevel=compresslevel, mtime=0) as f:
                f.write(header)
                f.write(memoryview(payload.reshape(-1).view(np.uint8)))
        else:
            raw.write(header)
            raw.write(memoryview(payload.reshape(-1).view(np.uint8)))
