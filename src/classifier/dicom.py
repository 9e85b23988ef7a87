"""DICOM films read as a radiologist's viewer shows them, and the identifiers that go with them.

A film's stored values are not what is displayed: the Modality LUT (or Rescale Slope and Intercept)
turns them into the modality's units, the VOI LUT (or the first Window Center and Width, with its
VOI LUT Function) chooses the range shown, and MONOCHROME1 stores dense tissue dark, so it is
inverted. `read_pixels` applies them in that order and returns display values (bright = dense) as
float32; `images.decode` then stretches them to the 8-bit range every training image has (the
film's own minimum to 0, its maximum to 255), so a 12- or 16-bit DICOM and its 8-bit PNG copy give
the network the same input.

Refused with one line naming the file: a file that is not DICOM (a PDF renamed `.dcm`: no `DICM`
marker), a truncated or corrupt one, one without pixel data, a multi-frame one (a series, not a
film), a header whose Rows x Columns exceeds the caller's pixel budget (checked before the pixel
data is read or any array allocated), and a compressed transfer syntax whose decoder is missing
(JPEG Lossless, JPEG-LS and JPEG 2000 decode through the pylibjpeg plugins:
`pip install 'chestxray-toolkit[dicom]'`; baseline JPEG and JPEG 2000 also through Pillow, RLE and
deflate through pydicom itself).

For callers that carry a film's identity to their output (`classifier predict`):

    identifiers(path, patient=False) -> {"StudyInstanceUID": str | None, "SOPInstanceUID": str | None}
        (plus "PatientID" only when `patient` is true: a patient identifier leaves the archive only
        when the user asks for it); reads the header alone, never the pixels.
    images.is_dicom(path) -> bool: a `.dcm`/`.dicom` name, or (for a name without a picture's suffix)
        the `DICM` marker at byte 128; `images.decode` reads such a file through `read_pixels`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

from .images import ImageError

IDENTIFIERS = ("StudyInstanceUID", "SOPInstanceUID")
PLUGINS = "pip install 'chestxray-toolkit[dicom]' (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg)"
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # as Pillow's RGB → L, so colour films match PNGs


def read_pixels(path: str | Path, max_pixels: int) -> np.ndarray:
    """The film at `path` as display values (H, W) float32, bright = dense; one-line `ImageError`s."""
    path = Path(path)
    ds = _header(path)
    _check_shape(path, ds, max_pixels)
    _check_decoder(path, ds)
    try:
        stored = ds.pixel_array
        if ds.get("SamplesPerPixel", 1) > 1:  # colour (a photographed or scanned film): luminance, no LUTs
            return np.asarray(stored, np.float32) @ LUMINANCE
        pixels = np.asarray(apply_voi_lut(apply_modality_lut(stored, ds), ds), np.float32)
    except (MemoryError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError, RuntimeError,
            OSError, EOFError) as exc:  # pydicom's many ways of saying the pixel data or its LUTs are unusable
        raise ImageError(f"{path}: cannot decode the DICOM pixel data ({_first_line(exc)})") from None
    if pixels.ndim != 2:
        raise ImageError(f"{path}: DICOM pixel data of shape {pixels.shape}; one grey film was expected")
    if not np.isfinite(pixels).all():
        raise ImageError(f"{path}: DICOM pixel values include NaN or infinity after its LUTs")
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        pixels = pixels.max() - pixels  # MONOCHROME1 stores dense tissue dark
    return pixels


def identifiers(path: str | Path, patient: bool = False) -> dict[str, str | None]:
    """StudyInstanceUID and SOPInstanceUID of a DICOM film (None where absent), and PatientID only when
    `patient` is true; the header alone is read."""
    path = Path(path)
    wanted = (*IDENTIFIERS, "PatientID") if patient else IDENTIFIERS
    ds = _header(path, stop_before_pixels=True)
    return {name: str(ds.get(name) or "").strip() or None for name in wanted}


def _header(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """The dataset, with large values (the pixel data) left on disk until they are asked for."""
    try:
        return pydicom.dcmread(path, defer_size="1 MB", stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not a DICOM file") from None
    except InvalidDicomError:
        raise ImageError(f"{path}: not a DICOM file ({_what_it_is(path)}no 'DICM' marker after the 128-byte "
                         f"preamble); convert it or leave it out") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError,
            RuntimeError, MemoryError, OverflowError) as exc:  # a truncated or corrupt file: pydicom fails in many ways
        raise ImageError(f"{path}: corrupt or truncated DICOM ({_first_line(exc)})") from None


def _check_shape(path: Path, ds: pydicom.Dataset, max_pixels: int) -> None:
    """One film of at most `max_pixels`, as its header claims, before any pixel is read."""
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = ds.get("SOPClassUID")
        raise ImageError(f"{path}: a DICOM without pixel data ({getattr(kind, 'name', kind) or 'no SOP class'}); "
                         f"only image files can be read")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageError(f"{path}: DICOM header without a usable Rows and Columns ({_first_line(exc)})") from None
    if frames > 1:
        raise ImageError(f"{path}: a multi-frame DICOM ({frames:,} frames); only single films are read "
                         f"(save each frame as its own file)")
    if rows < 1 or columns < 1:
        raise ImageError(f"{path}: DICOM header claims {columns} x {rows} pixels; not a film")
    if rows * columns > max_pixels:
        raise ImageError(f"{path}: refused, its header claims {columns:,} x {rows:,} pixels, over the budget of "
                         f"{max_pixels:,} pixels per image")


def _check_decoder(path: Path, ds: pydicom.Dataset) -> None:
    """A compressed film whose decoder is not installed: say what to install instead of pydicom's essay."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(f"{path}: compressed as {syntax.name}, which no DICOM decoder here reads") from None
    if not decoder.is_available:
        raise ImageError(f"{path}: compressed as {syntax.name}; decoding it needs a plugin: {PLUGINS}")


def _what_it_is(path: Path) -> str:
    """A hint for a file that is not DICOM: what its first bytes say it is."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return ""
    for magic, kind in ((b"%PDF", "a PDF"), (b"\x89PNG", "a PNG"), (b"\xff\xd8\xff", "a JPEG"),
                        (b"PK\x03\x04", "a ZIP archive"), (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF")):
        if head.startswith(magic):
            return f"it is {kind}; "
    return "empty; " if not head else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__
