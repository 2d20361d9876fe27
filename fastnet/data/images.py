"""Turn a user's photo or drawing of a digit into a 28x28 MNIST-like image.

MNIST's digits were made from scanned black-and-white NIST digits: each was
scaled, keeping its aspect ratio and with anti-aliasing, to fit a 20x20 box,
then placed in a 28x28 field so that its intensity-weighted centre of mass
sits at the field's centre; ink is bright (up to 255) on a black (0)
background. A network trained on MNIST has only ever seen digits prepared
that way, so :func:`prepare_digit` prepares any grayscale image the same way:

1. **Scale.** Integer pixels are read as 0-255; float pixels as 0-1 when none
   exceeds 1, otherwise as 0-255.
2. **Polarity.** The background level is the median of the border pixels
   (the outermost rows and columns). If it is light (above 127.5), the image
   is dark ink on light paper and is inverted (``255 - x``). The background
   level is then subtracted (values below it become 0), so grey paper or a
   dim screen becomes black.
3. **Crop.** Ink is every pixel more than :data:`INK_THRESHOLD` (32 of 255)
   above the background; an image without any is a :class:`ValueError`.
   The image is cropped to the ink's bounding box plus a margin of what will
   become 2 pixels: fainter pixels are kept, as MNIST's strokes have faint
   anti-aliased edges, often just outside that box.
4. **Fit.** The crop is resized, keeping its aspect ratio, so that the ink's
   box becomes 20 pixels on its longer side, with Pillow's BOX filter: each
   new pixel is the mean of the area it covers (anti-aliased, as MNIST's
   are), and no ink leaks past the box. The contrast is then stretched so
   the brightest pixel is 255.
5. **Centre.** The fitted digit is placed in a black 28x28 field so that its
   centre of mass lands on pixel (14, 14) in index coordinates (row,
   column), as MNIST's digits do; the shift is rounded to whole pixels and
   limited so that every non-zero pixel stays inside the field (no ink is
   cut off).

An MNIST digit goes through unchanged, bar a contrast stretch of at most one
grey level (and, rarely, a faint pixel beyond the margin): its ink already
spans 20 pixels and its centre of mass lies within half a pixel of (14, 14).

Pillow (the ``images`` extra: ``pip install "fastnet[images]"``) does the
resizing and, in :func:`read_image` and :func:`read_images`, the reading; it
is imported only when called, so ``fastnet`` itself does not need it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Union

import numpy as np

__all__ = ["INK_THRESHOLD", "prepare_digit", "read_image", "read_images"]

PathLike = Union[str, "os.PathLike[str]"]

#: Pixels more than this (of 255) above the background level count as ink.
INK_THRESHOLD = 32.0
FIELD = 28  #: side of the output image
BOX = 20  #: side of the box the digit is fitted into
MARGIN = 2  #: pixels kept around the fitted box for the ink's faint edges
CENTRE = 14.0  #: where the centre of mass goes, in index coordinates

_NEEDS_PILLOW = 'reading images needs Pillow: pip install "fastnet[images]"'


def prepare_digit(gray, *, name: str = "image") -> np.ndarray:
    """A 2-D grayscale array of any size -> the (28, 28) uint8 digit MNIST would hold.

    ``name`` is how error messages refer to the input (``read_image`` passes
    the file's path). Raises ``ValueError`` for an array that is not 2-D and
    non-empty, holds NaN or infinity, or has no ink.
    """
    pixels = _as_0_255(gray, name)
    ink = _ink_on_black(pixels)
    return _centre(_fit(ink, _ink_box(ink, name)))


def _as_0_255(gray, name):
    """``gray`` as float64 on the 0-255 scale (floats no greater than 1 are read as 0-1)."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D grayscale array, got shape {gray.shape}")
    if gray.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers, got dtype {gray.dtype}")
    pixels = gray.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    if gray.dtype.kind in "bf" and pixels.max() <= 1.0:
        pixels *= 255.0
    return pixels


def _ink_on_black(pixels):
    """Bright ink on a background of 0: inverted if the border is light, background level subtracted."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    background = float(np.median(border))
    if background > 127.5:
        pixels, background = 255.0 - pixels, 255.0 - background
    return np.clip(pixels - background, 0.0, None)


def _ink_box(ink, name):
    """(top, bottom, left, right), the bounding box of the pixels above :data:`INK_THRESHOLD`."""
    mask = ink > INK_THRESHOLD
    if not mask.any():
        raise ValueError(f"{name}: no ink found (no pixel differs from the background by more than "
                         f"{INK_THRESHOLD:g} of 255)")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _pillow():
    """Pillow's ``PIL`` package, imported on first use, or an ImportError saying how to install it."""
    try:
        import PIL.Image
        import PIL.ImageOps
    except ImportError:
        raise ImportError(_NEEDS_PILLOW) from None
    return PIL


def _fit(ink, box):
    """The ink's ``box`` and a margin, resized so the box's longer side is :data:`BOX` pixels.

    The box keeps its aspect ratio and lands on whole pixels of the output,
    :data:`MARGIN` pixels from its top and left; the margin keeps the faint
    anti-aliased edges (as MNIST's strokes have) just outside the box. The
    result is stretched so its brightest pixel is 255.
    """
    Image = _pillow().Image
    top, bottom, left, right = box
    h, w = bottom - top, right - left
    scale = BOX / max(h, w)
    size = (round(w * scale) + 2 * MARGIN, round(h * scale) + 2 * MARGIN)  # Pillow's order: (width, height)
    pad = math.ceil((MARGIN + 1) / scale)
    window = _window(ink, top - pad, bottom + pad, left - pad, right + pad)
    # The source rectangle (left, upper, right, lower) that becomes `size`, centred on the box.
    half_w, half_h = size[0] / scale / 2, size[1] / scale / 2
    centre_x, centre_y = pad + w / 2, pad + h / 2
    source = (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h)
    # BOX: each new pixel is the mean of the area it covers, as a scanner's
    # sensor measures it. No ink leaks past the box's edges, and no ring forms
    # around the strokes, as LANCZOS's negative lobes (or BILINEAR enlarging) would.
    image = Image.fromarray(window.astype(np.float32))  # mode "F"
    resized = image.resize(size, Image.Resampling.BOX, box=source)
    digit = np.asarray(resized, dtype=np.float64)
    return digit * (255.0 / digit.max())


def _window(ink, top, bottom, left, right):
    """``ink[top:bottom, left:right]``, with zeros where that reaches beyond the image."""
    window = np.zeros((bottom - top, right - left))
    r0, r1 = max(top, 0), min(bottom, ink.shape[0])
    c0, c1 = max(left, 0), min(right, ink.shape[1])
    window[r0 - top: r1 - top, c0 - left: c1 - left] = ink[r0:r1, c0:c1]
    return window


def _centre(digit):
    """``digit`` in a black 28x28 field, its centre of mass moved to (14, 14) by a whole-pixel shift.

    Rows and columns that round to 0 are trimmed first, so the margin's
    zeros never push the shift off centre.
    """
    digit = np.rint(digit).astype(np.uint8)
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    digit = digit[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    h, w = digit.shape
    weights = digit.astype(np.float64)
    com_row = (weights.sum(axis=1) @ np.arange(h)) / weights.sum()
    com_col = (weights.sum(axis=0) @ np.arange(w)) / weights.sum()
    top = min(max(int(np.rint(CENTRE - com_row)), 0), FIELD - h)
    left = min(max(int(np.rint(CENTRE - com_col)), 0), FIELD - w)
    field = np.zeros((FIELD, FIELD), np.uint8)
    field[top: top + h, left: left + w] = digit
    return field


def read_image(path: PathLike) -> np.ndarray:
    """The image file at ``path`` (any format Pillow reads), as grayscale, through :func:`prepare_digit`.

    A photo is first turned upright as its EXIF orientation tag says, then
    converted to Pillow's 8-bit grayscale ("L"); transparency is dropped.

    A file Pillow cannot open or decode raises a one-line ``ValueError``
    naming the file; a missing Pillow raises ``ImportError`` saying how to
    install it.
    """
    PIL = _pillow()
    name = os.fspath(path)
    try:
        with PIL.Image.open(path) as image:
            gray = np.asarray(PIL.ImageOps.exif_transpose(image).convert("L"))
    except PIL.UnidentifiedImageError:
        raise ValueError(f"{name}: not an image Pillow can read") from None
    except PIL.Image.DecompressionBombError as error:  # far more pixels than any photo of a digit
        raise ValueError(f"{name}: too large to read ({error})") from None
    except OSError as error:  # missing, unreadable, truncated
        why = error.strerror or " ".join(str(error).split())
        raise ValueError(f"{name}: cannot read the image ({why})") from None
    return prepare_digit(gray, name=name)


def read_images(paths: Iterable[PathLike]) -> np.ndarray:
    """The image files ``paths`` through :func:`read_image`, stacked: (N, 28, 28) uint8."""
    digits = [read_image(path) for path in paths]
    return np.stack(digits) if digits else np.zeros((0, FIELD, FIELD), np.uint8)
