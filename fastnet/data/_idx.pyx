# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The hot loops of the IDX reader: byte-order swaps and the fused u8 -> float32 scale.

Each public function is a thin ``def`` wrapper that releases the GIL and calls a
``cdef ... nogil`` loop over typed memoryviews (the layout of scikit-learn's
``_isfinite.pyx``). Nothing here validates a file: :mod:`fastnet.data.idx` checks
every header and length first and hands these loops buffers of the right size.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

ctypedef fused swappable:
    uint16_t
    uint32_t
    uint64_t


def byteswap_inplace(swappable[::1] values):
    """Reverse the byte order of every element of ``values``, in place.

    ``values`` is a C-contiguous uint16, uint32 or uint64 view of the buffer to
    convert (the reader views int16 / float32 / float64 payloads that way).
    """
    with nogil:
        _byteswap(values)


cdef inline void _byteswap(swappable[::1] values) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t n = values.shape[0]
    # GCC and Clang turn each of these shift-and-mask patterns into one bswap
    # (or a vector shuffle when the loop is vectorised).
    if swappable is uint16_t:
        for i in range(n):
            values[i] = <uint16_t>((values[i] >> 8) | (values[i] << 8))
    elif swappable is uint32_t:
        for i in range(n):
            values[i] = (((values[i] >> 24) & 0xFFU) | ((values[i] >> 8) & 0xFF00U)
                         | ((values[i] << 8) & 0xFF0000U) | (values[i] << 24))
    else:
        for i in range(n):
            values[i] = (((values[i] >> 56) & 0xFFULL)
                         | ((values[i] >> 40) & 0xFF00ULL)
                         | ((values[i] >> 24) & 0xFF0000ULL)
                         | ((values[i] >> 8) & 0xFF000000ULL)
                         | ((values[i] << 8) & 0xFF00000000ULL)
                         | ((values[i] << 24) & 0xFF0000000000ULL)
                         | ((values[i] << 40) & 0xFF000000000000ULL)
                         | (values[i] << 56))


def scale_u8_to_f32(float[::1] out, const uint8_t[::1] src, double scale):
    """Overwrite ``out[i]`` with ``float32(src[i] * scale)`` for every ``i``.

    The product is formed in double precision and rounded once to float32, so
    ``scale=1/255`` gives the float32 nearest to ``pixel / 255``. ``out`` and
    ``src`` must have the same length.
    """
    if out.shape[0] != src.shape[0]:
        raise ValueError(f"out holds {out.shape[0]} values, src {src.shape[0]}")
    with nogil:
        _scale_u8_to_f32(out, src, scale)


cdef inline void _scale_u8_to_f32(float[::1] out, const uint8_t[::1] src,
                                  double scale) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(src.shape[0]):
        out[i] = <float>(<double>src[i] * scale)
