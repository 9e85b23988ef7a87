"""Labels → a dataset a classifier can trust: one row per image, a patient-safe `split` column, boxes.

Two sources: NIH's own `Data_Entry_2017*.csv(.gz)` (for users with the images and no reports), or
`reportminer label` output joined to an image manifest. Splits come from the official NIH lists
(validation carved from train_val by patient) or from a seeded split by patient; either way no
patient may appear in two splits, and the check's result is recorded. Every bad row is an error
naming the file and line.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.labels import ID_COLUMNS, NIH_SPELLINGS, read_labels
from cxrcore.output import atomic_path, encode_metadata
from cxrcore.splits import check_patients, validate_splits

NIH_REQUIRED = ("Image Index", "Finding Labels", "Patient ID")
NIH_OPTIONAL = {"View Position": "view_position", "Follow-up #": "follow_up", "Patient Age": "patient_age",
                "Patient Gender": "patient_sex"}
MANIFEST_REQUIRED = ("report_id", "image_id")
FRONTAL_VIEWS = ("PA", "AP")


def _line(row: int) -> int:
    """The 1-based line of a CSV data row (the header is line 1)."""
    return row + 2


def _where(frame: pd.DataFrame):
    """A function naming the frame's row at position `pos` as `file:line` (rows keep their line in `_line`)."""
    return lambda pos: f"{frame.attrs.get('source', 'labels')}:{frame['_line'].iloc[pos]}"


def _read_csv(path: Path) -> pd.DataFrame:
    """A table of strings; a file with a header and no rows is refused (a dataset of nothing is no dataset)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (EOFError, zlib.error) as exc:
        raise InputError(f"{path}: the file is cut short or damaged ({exc}); download or copy it again") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})") from None
    if frame.empty:
        raise InputError(f"{path}: a header and no rows; give the whole file (nothing was written)")
    return frame


def _require(frame: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    """Every required column present, and filled on every row (a blank one is often a file cut mid-line)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (columns are: {', '.join(frame.columns)})")
    for column in columns:
        blank = frame[column].isna() | (frame[column].str.strip() == "")
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"{path}:{_line(row)}: {column!r} is empty"
                             + (" (the file may be cut short)" if row == len(frame) - 1 else "")
                             + "; every row needs one")


def _no_duplicates(values: pd.Series, path: Path, what: str) -> None:
    dupes = values[values.duplicated(keep=False)]
    if len(dupes):
        first = dupes.iloc[0]
        lines = [_line(i) for i in dupes.index[dupes == first]]
        raise InputError(f"{path}:{lines[1]}: {what} {first} listed twice (also on line {lines[0]})")


def read_nih_entries(path: str | Path, findings: list[str], no_finding: str) -> pd.DataFrame:
    """NIH's Data_Entry file as SPEC rows: 1 for each listed finding, 0 for the others."""
    path = Path(path)
    raw = _read_csv(path)
    _require(raw, path, NIH_REQUIRED)
    _no_duplicates(raw["Image Index"], path, "image")
    known = set(findings) | {no_finding}
    labels = np.zeros((len(raw), len(findings) + 1), dtype=np.int8)
    column = {name: i for i, name in enumerate(findings + [no_finding])}
    for row, cell in enumerate(raw["Finding Labels"]):
        for name in filter(None, (n.strip() for n in cell.split("|"))):
            name = NIH_SPELLINGS.get(name, name)
            if name not in known:
                raise InputError(f"{path}:{_line(row)}: unknown finding {name!r} in 'Finding Labels'; "
                                 f"known: {', '.join(sorted(known))}")
            labels[row, column[name]] = 1
    frame = pd.DataFrame({"report_id": None, "image_id": raw["Image Index"], "patient_id": raw["Patient ID"],
                          "image_path": raw["Image Index"], "_line": [_line(i) for i in range(len(raw))]})
    for name, i in column.items():
        frame[name] = labels[:, i]
    for source, target in NIH_OPTIONAL.items():
        if source in raw.columns:
            frame[target] = raw[source]
    frame.attrs["source"] = str(path)
    return frame


CHEXPERT_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1, "": None}
MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}


def _chexpert_labels(raw: pd.DataFrame, path: Path, columns: list[str]) -> dict[str, list[int | None]]:
    """The CheXpert-style label columns (1.0 / 0.0 / -1.0 / blank) as 1 / 0 / -1 / None, checked."""
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}; a CheXpert-style label file has "
                         f"{', '.join(columns)} (use --schema chexpert)")
    out = {}
    for column in columns:
        cells = raw[column].fillna("").str.strip()
        bad = ~cells.isin(list(CHEXPERT_VALUES))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}:{_line(row)}: {column} = {raw[column].iloc[row]!r}; a label must be 1.0, 0.0, "
                             f"-1.0 or blank")
        out[column] = [CHEXPERT_VALUES[c] for c in cells]
    return out


def read_chexpert(path: str | Path, findings: list[str], no_finding: str) -> pd.DataFrame:
    """A CheXpert label CSV (`Path, Sex, Age, Frontal/Lateral, AP/PA`, then the 14 observations) as SPEC
    rows: one per image; the patient and study are read from the path (patient00001/study1/...)."""
    path = Path(path)
    raw = _read_csv(path)
    _require(raw, path, ("Path",))
    _no_duplicates(raw["Path"], path, "image")
    parts = raw["Path"].str.extract(r"(patient\d+)/(study\d+)/")
    if parts[0].isna().any():
        row = int(np.flatnonzero(parts[0].isna().to_numpy())[0])
        raise InputError(f"{path}:{_line(row)}: Path {raw['Path'].iloc[row]!r} names no patientNNNNN/studyN folder")
    frame = pd.DataFrame({"report_id": parts[0] + "/" + parts[1], "image_id": raw["Path"], "patient_id": parts[0],
                          "image_path": raw["Path"], "_line": [_line(i) for i in range(len(raw))]})
    for column, values in _chexpert_labels(raw, path, [*findings, no_finding]).items():
        frame[column] = pd.array(values, dtype="Int8")
    if "AP/PA" in raw.columns:
        frame["view_position"] = raw["AP/PA"]
    frame.attrs["source"] = str(path)
    return frame


def read_mimic(labels_path: str | Path, metadata_path: str | Path, split_path: str | Path | None,
               findings: list[str], no_finding: str) -> pd.DataFrame:
    """MIMIC-CXR-JPG's study labels (mimic-cxr-2.0.0-chexpert.csv or -negbio.csv) joined to its image
    metadata (mimic-cxr-2.0.0-metadata.csv): one row per image (dicom_id), the path the JPG release
    uses (files/p10/p10000032/s50414267/<dicom_id>.jpg), and the official split when given."""
    labels_path, metadata_path = Path(labels_path), Path(metadata_path)
    labels = _read_csv(labels_path)
    _require(labels, labels_path, ("subject_id", "study_id"))
    _no_duplicates(labels["study_id"], labels_path, "study")
    study = pd.DataFrame(_chexpert_labels(labels, labels_path, [*findings, no_finding]), index=labels["study_id"])
    meta = _read_csv(metadata_path)
    _require(meta, metadata_path, ("dicom_id", "subject_id", "study_id"))
    _no_duplicates(meta["dicom_id"], metadata_path, "image")
    known = meta["study_id"].isin(study.index)
    if not known.any():
        raise InputError(f"{metadata_path}: none of its {len(meta):,} images belongs to a study of {labels_path}; "
                         f"give the metadata of the same release (nothing was written)")
    meta = meta[known].reset_index(drop=True)
    subject = meta["subject_id"]
    frame = pd.DataFrame({"report_id": "s" + meta["study_id"], "image_id": meta["dicom_id"], "patient_id": subject,
                          "image_path": "files/p" + subject.str[:2] + "/p" + subject + "/s" + meta["study_id"] + "/"
                                        + meta["dicom_id"] + ".jpg",
                          "_line": [_line(i) for i in np.flatnonzero(known.to_numpy())]})
    for column in study.columns:
        frame[column] = pd.array(study.loc[meta["study_id"], column].tolist(), dtype="Int8")
    if "ViewPosition" in meta.columns:
        frame["view_position"] = meta["ViewPosition"]
    if split_path is not None:
        split = _read_csv(Path(split_path))
        _require(split, Path(split_path), ("dicom_id", "split"))
        where = dict(zip(split["dicom_id"], split["split"].map(lambda v: MIMIC_SPLITS.get(v.strip().lower(), v))))
        frame["split"] = frame["image_id"].map(where)
    frame.attrs["source"] = str(metadata_path)
    return frame


def join_manifest(labels_path: str | Path, manifest_path: str | Path,
                  label_columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The labeler's labels joined to an image manifest (report_id, image_id, patient_id, image_path...).

    Returns the rows and a list of messages about manifest rows whose report has no labels (dropped).
    """
    manifest_path = Path(manifest_path)
    manifest = _read_csv(manifest_path)
    _require(manifest, manifest_path, MANIFEST_REQUIRED)
    _no_duplicates(manifest["image_id"], manifest_path, "image")
    table = read_labels(labels_path)
    table.require("report_id", *label_columns)
    labels = table.frame
    per_report = labels.groupby("report_id", sort=False)[label_columns].first()
    known = manifest["report_id"].isin(per_report.index)
    if not known.any():
        raise InputError(f"{manifest_path}: none of its {len(manifest):,} images has a report labeled in "
                         f"{labels_path}; give the manifest of these reports (nothing was written)")
    dropped = [f"{manifest_path}:{_line(i)}: report {r} has no labels in {labels_path}; image {img} left out"
               for i, r, img in zip(manifest.index[~known], manifest["report_id"][~known], manifest["image_id"][~known])]
    kept = manifest[known].reset_index(drop=True)
    frame = pd.DataFrame({c: kept[c] if c in kept.columns else None for c in ID_COLUMNS}).replace({"": None})
    joined = per_report.reindex(kept["report_id"]).reset_index(drop=True)
    for c in label_columns:
        frame[c] = joined[c].astype("Int8")
    for c in kept.columns:
        if c not in frame.columns:
            frame[c] = kept[c].replace({"": None})
    frame["_line"] = [_line(i) for i in manifest.index[known]]
    frame.attrs["source"] = str(manifest_path)
    return frame, dropped


def keep_frontal(frame: pd.DataFrame) -> pd.DataFrame:
    """Only PA and AP views (needs a view_position column)."""
    if "view_position" not in frame.columns:
        raise InputError("--frontal-only needs a 'View Position' (NIH) or 'view_position' (manifest) column")
    kept = frame[frame["view_position"].fillna("").str.upper().isin(FRONTAL_VIEWS)].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"--frontal-only: none of the {len(frame):,} images is a PA or AP view (nothing was written)")
    kept.attrs = dict(frame.attrs)
    return kept


def read_list(path: str | Path) -> list[str]:
    """An NIH split list: one image name per line."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list ({exc})") from None


def official_splits(frame: pd.DataFrame, train_val_list: str | Path, test_list: str | Path,
                    val_fraction: float, seed: int) -> pd.Series:
    """train/val/test from NIH's lists; val is `val_fraction` of train_val's patients, drawn with `seed`."""
    train_val, test = read_list(train_val_list), read_list(test_list)
    both = set(train_val) & set(test)
    if both:
        name = sorted(both)[0]
        raise InputError(f"{test_list}:{test.index(name) + 1}: image {name} is also in {train_val_list} "
                         f"(line {train_val.index(name) + 1}); an image belongs to one split")
    where = {name: "train" for name in train_val} | {name: "test" for name in test}
    split = frame["image_id"].map(where)
    if split.isna().any():
        row = int(np.flatnonzero(split.isna().to_numpy())[0])
        raise InputError(f"{_where(frame)(row)}: image {frame['image_id'].iloc[row]} "
                         f"is in neither {train_val_list} nor {test_list}")
    check_patients(frame["patient_id"], split, _where(frame), f"{train_val_list} and {test_list}")
    patients = np.array(sorted(frame.loc[split == "train", "patient_id"].unique()))
    rng = np.random.default_rng(seed)
    val_patients = set(rng.permutation(patients)[: int(round(len(patients) * val_fraction))])
    split[(split == "train") & frame["patient_id"].isin(val_patients)] = "val"
    return split


def given_splits(frame: pd.DataFrame) -> pd.Series:
    """The `split` column a manifest brings, checked: known values, no patient in two splits."""
    return validate_splits(frame["split"], frame["patient_id"], _where(frame), "the 'split' column")


def write_dataset(frame: pd.DataFrame, path: str | Path, label_columns: list[str], meta: dict) -> None:
    """labels.parquet with the SPEC's columns, `split`, then any extra columns as strings; atomically
    (callers that write several files give the temporary path of `cxrcore.output.Outputs`)."""
    fields = [pa.field(c, pa.string()) for c in ID_COLUMNS] + [pa.field(c, pa.int8()) for c in label_columns]
    fields.append(pa.field("split", pa.string()))
    extra = [c for c in frame.columns if c not in {*ID_COLUMNS, *label_columns, "split"} and not c.startswith("_")]
    fields += [pa.field(c, pa.string()) for c in extra]
    schema = pa.schema(fields, metadata=encode_metadata(meta))
    columns = {}
    for f in fields:
        values = frame[f.name]
        if f.type == pa.int8():
            columns[f.name] = pa.Array.from_pandas(values.astype("Int8"), type=f.type)
        else:
            columns[f.name] = pa.array([None if pd.isna(v) else str(v) for v in values], type=f.type)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns, schema=schema), tmp)


