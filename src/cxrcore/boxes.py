"""True boxes in NIH's BBox_List format (`Image Index, Finding Label, x, y, w, h`), read cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .labels import NIH_SPELLINGS
from .output import atomic_path

BOX_COLUMNS = ["Image Index", "Finding Label", "x", "y", "w", "h"]


def read_boxes(path: str | Path, findings: list[str]) -> pd.DataFrame:
    """NIH's BBox_List (odd header with stray empty fields, `Infiltrate`) as a clean NIH-format table."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, header=None, skiprows=1, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})") from None
    raw = raw.loc[:, [c for c in raw.columns if (raw[c] != "").any()]]
    if raw.shape[1] != 6:
        raise InputError(f"{path}: expected 6 fields per row (image, finding, x, y, w, h), found {raw.shape[1]}")
    raw.columns = BOX_COLUMNS
    raw["Finding Label"] = raw["Finding Label"].map(lambda n: NIH_SPELLINGS.get(n.strip(), n.strip()))
    unknown = ~raw["Finding Label"].isin(findings)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(f"{path}:{row + 2}: unknown finding {raw['Finding Label'].iloc[row]!r}")
    for c in ("x", "y", "w", "h"):
        values = pd.to_numeric(raw[c], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise InputError(f"{path}:{row + 2}: {c} = {raw[c].iloc[row]!r} is not a number")
        raw[c] = values
    return raw


def write_boxes(boxes: pd.DataFrame, path: str | Path) -> None:
    """A boxes table as CSV, atomically."""
    with atomic_path(path) as tmp:
        boxes.to_csv(tmp, index=False)
