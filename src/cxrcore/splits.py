"""Patient-level splits: one set of values, one validation, one seeded draw, used by every command.

No patient may have images in two splits; every check names the rows it found, through a `where`
function that turns a row position into `file:line` (CSV) or `file[row n]` (Parquet).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .errors import InputError

SPLITS = ("train", "val", "test")
Where = Callable[[int], str]


def normalise_splits(values: pd.Series) -> pd.Series:
    """Split values as compared everywhere: text, stripped, lower case (missing stays missing)."""
    return values.map(lambda v: v.strip().lower() if isinstance(v, str) else v)


def validate_splits(split: pd.Series, patients: pd.Series, where: Where, given_by: str) -> pd.Series:
    """The normalised split column, checked: every value known, and no patient in two splits."""
    split = normalise_splits(split).reset_index(drop=True)
    bad = ~split.isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{where(row)}: split {split.iloc[row]!r} must be one of {', '.join(SPLITS)}")
    check_patients(patients, split, where, given_by)
    return split


def check_patients(patients: pd.Series, split: pd.Series, where: Where, given_by: str) -> None:
    """Fail, naming two rows, if any patient has images in two splits (or an image has no patient)."""
    patients = patients.reset_index(drop=True)
    missing = patients.isna() | (patients.astype(str).str.strip() == "")
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise InputError(f"{where(row)}: no patient_id; patient-level splits need one for every image")
    groups = pd.DataFrame({"patient": patients.to_numpy(), "split": split.reset_index(drop=True).to_numpy()})
    spread = groups.groupby("patient")["split"].nunique()
    crossing = spread[spread > 1]
    if len(crossing):
        patient = crossing.index[0]
        rows = groups.index[groups["patient"] == patient]
        first = rows[0]
        other = next(r for r in rows if groups["split"][r] != groups["split"][first])
        raise InputError(f"{where(other)}: patient {patient} is in '{groups['split'][other]}' here and in "
                         f"'{groups['split'][first]}' at {where(first)} (splits given by {given_by}); "
                         f"{len(crossing)} patients cross splits")


def patient_splits(patients: pd.Series, fractions: tuple[float, float, float], seed: int) -> pd.Series:
    """A seeded split by patient, so that all of a patient's images share one split. Every image needs a
    patient: without one the split cannot keep a patient's images together."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise InputError(f"split fractions must be three non-negative numbers that sum to 1, got {fractions}")
    missing = patients.isna() | (patients.astype(str).str.strip() == "")
    if missing.any():
        raise InputError(f"{int(missing.sum())} of {len(patients)} images have no patient_id (the first at row "
                         f"{int(np.flatnonzero(missing.to_numpy())[0])}); a split by patient needs one for every image")
    unique = np.array(sorted(patients.unique()))
    shuffled = np.random.default_rng(seed).permutation(unique)
    cuts = np.cumsum([int(round(f * len(unique))) for f in fractions[:2]])
    where = {p: SPLITS[int(np.searchsorted(cuts, i, side="right"))] for i, p in enumerate(shuffled)}
    return patients.map(where)


def split_summary(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images and patients per split, and the number of patients found in more than one split."""
    out = {s: {"images": int((frame["split"] == s).sum()),
               "patients": int(frame.loc[frame["split"] == s, "patient_id"].nunique())} for s in SPLITS}
    out["shared_patients"] = {"count": int((frame.groupby("patient_id")["split"].nunique() > 1).sum())}
    return out
