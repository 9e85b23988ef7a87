"""Decode an image file to a square grey float array in [0, 1]: PNG, JPEG (8- and 16-bit, RGB made
grey) and DICOM (rescaled with the header's window, as the paper did), resized to `size`.

Decoding a 1024-pixel PNG costs more than a training step at 224 pixels, so `ImageCache` can keep
each decoded, resized image on disk as a small `.npy`, keyed by the file's path, size and time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrcore.errors import ToolkitError

DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageError(ToolkitError):
    """An image that cannot be used; the message names the file and the reason."""


def load_image(path: str | Path, size: int) -> np.ndarray:
    """The image at `path` as a (size, size) float32 array in [0, 1]."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        pixels = _read_dicom(path)
    else:
        pixels = _read_picture(path)
    low, high = float(pixels.min()), float(pixels.max())
    if high - low < 1e-6:
        raise ImageError(f"{path}: blank image (every pixel is {low:g})")
    grey = ((pixels - low) / (high - low)).astype(np.float32)
    if grey.shape != (size, size):
        grey = np.asarray(Image.fromarray(grey, mode="F").resize((size, size), Image.BILINEAR), np.float32)
    return np.clip(grey, 0.0, 1.0)


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


class ImageCache:
    """Decoded, resized images kept on disk as float16 `.npy` files."""

    def __init__(self, folder: str | Path, size: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.size = size

    def load(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}".encode()).hexdigest()
        cached = self.folder / f"{key}.npy"
        if cached.exists():
            try:
                image = np.load(cached, allow_pickle=False)
                if image.shape == (self.size, self.size):
                    return image.astype(np.float32)
            except (OSError, ValueError, EOFError):
                pass  # a damaged cache file is decoded again and replaced, never trusted
        image = load_image(path, self.size)
        tmp = cached.with_name(f".{key}.{os.getpid()}.{id(self)}.tmp.npy")
        np.save(tmp, image.astype(np.float16))
        tmp.replace(cached)
        return image
