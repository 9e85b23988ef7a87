"""The image family of a set of films (sizes, bit depth, source), recorded with localization defaults so
that `localize` can say, in one line, when it draws on films of another family than the defaults were
chosen on: box rules chosen on 128-pixel generated films need not hold on a hospital's 3,000-pixel ones."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .data import Prepared

SAMPLE = 50  # films read for their headers: a family is a property of the set, not of each film
SIZE_SLACK = 1.25  # sizes within this factor of a recorded one are of its family


def bit_depth(path: Any) -> int | None:
    """Bits per pixel of a film from its header (16 for 16-bit PNGs, DICOM's BitsStored), None if unknown."""
    try:
        with Image.open(path) as im:
            return 16 if im.mode in ("I;16", "I;16B", "I;16L", "I") else 8
    except Exception:  # noqa: BLE001 - not a picture PIL reads: DICOM, or unreadable
        pass
    try:
        import pydicom

        return int(pydicom.dcmread(path, stop_before_pixels=True).BitsStored)
    except Exception:  # noqa: BLE001 - an unreadable header leaves the depth unknown, never stops localize
        return None


def describe(data: Prepared, rows: np.ndarray, source: str = "") -> dict[str, Any]:
    """Sizes (widths, in pixels) and bit depths of up to SAMPLE films of `rows`, and where they came from."""
    picked = rows[np.linspace(0, len(rows) - 1, min(len(rows), SAMPLE)).astype(int)] if len(rows) else rows
    sizes = sorted({int(data.original_size(int(r))[0]) for r in picked})
    bits = sorted({b for b in (bit_depth(data.paths[int(r)]) for r in picked) if b is not None})
    return {"source": source or "the scored films", "sizes": sizes, "bits": bits}


def mismatch(chosen: tuple[dict[str, Any], ...], scored: dict[str, Any]) -> str | None:
    """One line when `scored` films are of no family in `chosen` (by size or bit depth); None when they are,
    or when nothing is recorded (settings the command line gave)."""
    if not chosen or not scored["sizes"]:
        return None
    sizes = [s for family in chosen for s in family.get("sizes", [])]
    bits = {b for family in chosen for b in family.get("bits", [])}
    off_size = [s for s in scored["sizes"] if not any(1 / SIZE_SLACK <= s / c <= SIZE_SLACK for c in sizes)]
    off_bits = [b for b in scored["bits"] if bits and b not in bits]
    if not off_size and not off_bits:
        return None
    where = "; ".join(f"{f.get('source', '?')}: {_words(f)}" for f in chosen)
    return (f"warning: these films ({_words(scored)}) are not of the family the localization defaults were chosen on "
            f"({where}); boxes may be off: with 20 or more true boxes of your own films, choose them with "
            f"--calibrate BOXES")


def _words(family: dict[str, Any]) -> str:
    sizes = ", ".join(str(s) for s in family.get("sizes", [])) or "?"
    bits = ", ".join(str(b) for b in family.get("bits", [])) or "?"
    return f"{sizes} px, {bits}-bit"
