"""Decode an image file to a square 8-bit grey image: PNG, JPEG (8- and 16-bit, RGB made grey) and
DICOM (rescaled with the header's window, as the paper did), stretched to its own range and resized.

The decode ends in 8 bits whatever the source, so an image read from its file and the same image
read from a prepared store (store.py, which holds these bytes) are the same tensor: training from
either gives the same weights.

Decoding is bounded: only regular files are opened (a FIFO named `.png` would block its reader
forever), and an image whose header claims more than `max_pixels` (default `MAX_PIXELS`, a 5,000 x
5,000 film; `classifier prepare --max-pixels`) is refused before its pixels are read, so a worker
never holds more than about 14 bytes per pixel of the budget (350 MB at the default).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrcore.errors import ToolkitError
from cxrcore.output import file_kind

from .choices import MAX_PIXELS  # a 5,000 x 5,000 film; radiography detectors are at most about 4,300 wide

DICOM_SUFFIXES = (".dcm", ".dicom")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageError(ToolkitError):
    """An image that cannot be used; the message names the file and the reason."""


def decode(path: str | Path, size: int, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at `path` as a (size, size) uint8 array, and its original (width, height); an image over
    `max_pixels`, or a path that is not a regular file, is an ImageError."""
    path = Path(path)
    open_regular(path).close()  # before anything reads it (is_dicom opens it)
    if is_dicom(path):
        pixels = _read_dicom(path, max_pixels)
    else:
        pixels = _read_picture(path, max_pixels)
    low, high = float(pixels.min()), float(pixels.max())
    if high - low < 1e-6:
        raise ImageError(f"{path}: blank image (every pixel is {low:g})")
    grey = ((pixels - low) * (255.0 / (high - low))).astype(np.float32)
    if grey.shape != (size, size):
        grey = np.asarray(Image.fromarray(grey, mode="F").resize((size, size), Image.BILINEAR), np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8), (pixels.shape[1], pixels.shape[0])


def load_image(path: str | Path, size: int) -> np.ndarray:
    """The image at `path` as a (size, size) float32 array in [0, 1] (its 8-bit decode, scaled)."""
    return decode(path, size)[0].astype(np.float32) / 255.0


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading, if it is a regular file; else an ImageError naming what it is. The open
    does not wait (a FIFO's plain open blocks until something writes to it)."""
    try:
        fh = open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({exc.strerror})") from None
    mode = os.fstat(fh.fileno()).st_mode
    if not stat.S_ISREG(mode):
        fh.close()
        raise ImageError(f"{path}: is {file_kind(mode)}, not an image file")
    os.set_blocking(fh.fileno(), True)
    return fh


def check_budget(path: str | Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image whose header claims more pixels than a worker may decode."""
    if width * height > max_pixels:
        raise ImageError(f"{path}: refused, {width:,} x {height:,} pixels is over the budget of {max_pixels:,} per "
                         f"image (classifier prepare --max-pixels)")


def _open_picture(fh: BinaryIO) -> Image.Image:
    """Pillow's image of an open file, header read; its warning about a large image is left out (the budget
    is ours to check, and says more)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fh)


def picture_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from a picture's header, without decoding it."""
    try:
        with open_regular(path) as fh, _open_picture(fh) as im:
            return im.size
    except ImageError:
        raise
    except Exception as exc:  # Pillow's many ways of saying the header is unusable
        raise ImageError(f"{path}: cannot read the image's size ({exc.__class__.__name__}: {exc})") from None


def picture(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A picture as 8-bit grey at its own size (for overlays), within the pixel budget."""
    try:
        with open_regular(path) as fh, _open_picture(fh) as im:
            check_budget(path, *im.size, max_pixels)
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, MemoryError) as exc:
        raise _undecodable(path, exc) from None


def _read_picture(path: Path, max_pixels: int) -> np.ndarray:
    try:
        with open_regular(path) as fh, _open_picture(fh) as im:
            check_budget(path, *im.size, max_pixels)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, np.float32)
            if im.mode != "L":
                im = im.convert("L")  # RGB, RGBA, palette: luminance
            return np.asarray(im, np.float32)
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels: refused before decoding
        raise ImageError(f"{path}: refused, too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, MemoryError) as exc:
        raise _undecodable(path, exc) from None


def _undecodable(path: str | Path, exc: Exception) -> ImageError:
    if isinstance(exc, UnidentifiedImageError):  # Pillow's own message names the open file object, not the path
        return ImageError(f"{path}: cannot decode (not a picture Pillow can identify: PNG, JPEG, TIFF, BMP...)")
    return ImageError(f"{path}: cannot decode ({exc.__class__.__name__}: {exc})")


def is_dicom(path: str | Path) -> bool:
    """Whether `path` is read as DICOM: by its suffix, or, for a name without a picture's suffix, by the
    `DICM` marker after the 128-byte preamble (archives often name films by their SOP Instance UID)."""
    suffix = Path(path).suffix.lower()
    if suffix in DICOM_SUFFIXES or suffix in PICTURE_SUFFIXES:
        return suffix in DICOM_SUFFIXES
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _read_dicom(path: Path, max_pixels: int) -> np.ndarray:
    """Display values (modality and VOI LUTs, MONOCHROME1 inverted): see dicom.py."""
    try:
        from .dicom import read_pixels
    except ModuleNotFoundError as exc:
        if exc.name != "pydicom":
            raise
        raise ImageError(f"{path}: DICOM needs pydicom (pip install pydicom)") from None
    return read_pixels(path, max_pixels)  # the budget is checked on the header
