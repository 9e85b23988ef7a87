"""Decode an image file to a square 8-bit grey image: PNG, JPEG (8- and 16-bit, RGB made grey) and
DICOM (rescaled with the header's window, as the paper did), stretched to its own range and resized.

The decode ends in 8 bits whatever the source, so an image read from its file and the same image
read from a prepared store (store.py, which holds these bytes) are the same tensor: training from
either gives the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrcore.errors import ToolkitError

DICOM_SUFFIXES = (".dcm", ".dicom")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageError(ToolkitError):
    """An image that cannot be used; the message names the file and the reason."""


def decode(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at `path` as a (size, size) uint8 array, and its original (width, height)."""
    path = Path(path)
    if is_dicom(path):
        pixels = _read_dicom(path)
    else:
        pixels = _read_picture(path)
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


def _read_picture(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im, np.float32)
            if im.mode != "L":
                im = im.convert("L")  # RGB, RGBA, palette: luminance
            return np.asarray(im, np.float32)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as exc:  # a header claiming billions of pixels: refused before decoding
        raise ImageError(f"{path}: refused, too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, MemoryError) as exc:
        raise ImageError(f"{path}: cannot decode ({exc.__class__.__name__}: {exc})") from None


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


def _read_dicom(path: Path) -> np.ndarray:
    """Display values (modality and VOI LUTs, MONOCHROME1 inverted): see dicom.py."""
    try:
        from .dicom import read_pixels
    except ModuleNotFoundError as exc:
        if exc.name != "pydicom":
            raise
        raise ImageError(f"{path}: DICOM needs pydicom (pip install pydicom)") from None
    # The pixel budget of pictures (Pillow's decompression-bomb limit), checked on the header.
    return read_pixels(path, 2 * (Image.MAX_IMAGE_PIXELS or 2**31))
