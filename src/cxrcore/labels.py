"""labels.parquet, the contract between the labeler and the classifier: its schema, and one reader.

Columns (docs/SPEC.md): `report_id`, `image_id`, `patient_id`, `image_path` (nullable strings), one int8
column per finding and then the no-finding column, with 1 positive, 0 negative, -1 uncertain and
null not mentioned; optionally `split` (train | val | test, patient-safe) and other columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError
from .output import decode_metadata, encode_metadata

if TYPE_CHECKING:  # pandas is imported by the reader only: the labeler writes labels without it
    import pandas as pd

ID_COLUMNS = ("report_id", "image_id", "patient_id", "image_path")
LABEL_VALUES = (1, 0, -1)
DEFAULT_NO_FINDING = "No_Finding"
NIH_SPELLINGS = {"Infiltrate": "Infiltration", "No Finding": "No_Finding"}  # NIH's names → the SPEC's


def label_schema(label_columns: list[str], metadata: dict[str, Any]) -> pa.Schema:
    """report_id, image_id, patient_id, image_path (strings), then one int8 column per label."""
    fields = [pa.field(c, pa.string()) for c in ID_COLUMNS] + [pa.field(c, pa.int8()) for c in label_columns]
    return pa.schema(fields, metadata=encode_metadata(metadata))


@dataclass
class LabelTable:
    """A labels.parquet read and checked: the rows, which columns are findings, and the split."""

    path: Path
    frame: pd.DataFrame
    findings: list[str]  # the finding columns, in file order, without the no-finding column
    no_finding: str | None  # the no-finding column, when the file has one
    meta: dict[str, str]
    split: pd.Series | None  # normalised and patient-checked; None without a split column

    @property
    def label_columns(self) -> list[str]:
        return self.findings + ([self.no_finding] if self.no_finding else [])

    def where(self, row: int) -> str:
        return f"{self.path}[row {row}]"

    def require(self, *columns: str) -> None:
        """Fail with one line when a column the caller needs is missing."""
        for column in columns:
            if column not in self.frame.columns:
                raise InputError(f"{self.path}: missing column {column!r}; is this a labels.parquet from reportminer?")

    def matrix(self, findings: list[str] | None = None) -> np.ndarray:
        """Labels as float32 (rows, findings): 1, 0, -1 and NaN for not mentioned."""
        return self.frame[findings or self.findings].astype("float32").to_numpy(dtype=np.float32, na_value=np.nan)


def read_labels(path: str | Path) -> LabelTable:
    """Read a labels.parquet: it has rows, its label columns come from its metadata (else its int8
    columns), every label value is checked to be 1, 0, -1 or null, and a split column is validated by
    patient."""
    import pandas as pd

    from .splits import validate_splits

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read as Parquet ({exc})") from None
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows (its columns alone); label or build a dataset with at least one image first")
    frame = table.to_pandas()
    meta = decode_metadata(table.schema.metadata)
    if "label_columns" in meta:
        columns = json.loads(meta["label_columns"])
    else:
        columns = [c for c in frame.columns if str(frame[c].dtype) in ("int8", "Int8")]
    if not columns or any(c not in frame.columns for c in columns):
        raise InputError(f"{path}: no label columns found; is this a labels.parquet from reportminer?")
    no_finding = meta.get("no_finding", DEFAULT_NO_FINDING)
    findings = [c for c in columns if c != no_finding]
    if not findings:
        raise InputError(f"{path}: no finding columns besides {no_finding}")
    labels = LabelTable(path, frame, findings, no_finding if no_finding in columns else None, meta, None)
    _check_values(labels)
    if "split" in frame.columns:
        patients = frame["patient_id"] if "patient_id" in frame.columns else pd.Series([None] * len(frame))
        labels.split = validate_splits(frame["split"], patients, labels.where, "the split column")
    return labels


def _check_values(labels: LabelTable) -> None:
    import pandas as pd

    for column in labels.label_columns:
        values = pd.to_numeric(labels.frame[column], errors="coerce")
        bad = labels.frame[column].notna() & ~values.isin(LABEL_VALUES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{labels.where(row)}: {column} = {labels.frame[column].iloc[row]!r}; a label must be "
                             f"1, 0, -1 or empty")
