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


class ImageError(ToolkitError):
    """An image that cannot be used; the message names the file and the reason."""


def decode(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at `path` as a (size, size) uint8 array, and its original (width, height)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
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


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise ImageError(f"{path}: DICOM needs pydicom (pip install pydicom)") from None
    try:
        ds = pydicom.dcmread(path)
        pixels = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
    except Exception as exc:  # pydicom raises many kinds; each means this file is unusable
        raise ImageError(f"{path}: cannot decode DICOM ({exc.__class__.__name__}: {exc})") from None
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels  # MONOCHROME1 stores bone dark
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    return pixels
