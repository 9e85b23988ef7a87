"""Inputs → `Report` records: NLM/OpenI XML folders, `.txt` folders, CSV, Parquet and JSONL tables.

A report that cannot be read becomes a `Skipped` record naming the file (and row) and the reason,
never an exception that stops the run and never a silent `None`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
                  ".jsonl": "jsonl", ".ndjson": "jsonl"}
OPTIONAL_COLUMNS = ("image_id", "patient_id", "image_path")


@dataclass
class Report:
    """One report: its full text, known sections as (name, start, end) offsets, and its images.

    `images` holds (image_id, image_path) pairs; an empty list means images are unknown and the
    report gets one output row of its own.
    """

    report_id: str
    text: str
    source: str
    sections: list[tuple[str, int, int]] | None = None
    images: list[tuple[str | None, str | None]] = field(default_factory=list)
    patient_id: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A report or file that could not be used, and why."""

    source: str
    reason: str


Record = Union[Report, Skipped]


def read_inputs(paths: list[str | Path], sections: tuple[str, ...], encoding: str = "utf-8") -> Iterator[Record]:
    """Every report in every input, in a stable order (sorted file names within folders). `sections` are
    the lexicon's labeled sections: a table's columns of those names (any case) are read as section text."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".xml", ".txt"))
            if not files:
                raise InputError(f"{path}: no .xml or .txt reports found in this folder")
            for file in files:
                yield from (read_xml(file) if file.suffix.lower() == ".xml" else read_txt(file, encoding))
        elif path.is_file():
            kind = TABLE_SUFFIXES.get(path.suffix.lower())
            if path.suffix.lower() == ".xml":
                yield from read_xml(path)
            elif path.suffix.lower() == ".txt":
                yield from read_txt(path, encoding)
            elif kind:
                yield from read_table(path, kind, sections, encoding)
            else:
                raise InputError(f"{path}: unknown input type; give a folder of .xml/.txt reports or a "
                                 f".csv, .parquet or .jsonl table")
        else:
            raise InputError(f"{path}: no such file or folder")


def compose(sections: list[tuple[str, str]]) -> tuple[str, list[tuple[str, int, int]]]:
    """Join labeled section texts as `LABEL: text` paragraphs; return the text and section offsets."""
    parts, spans, pos = [], [], 0
    for name, body in sections:
        head = f"{name.upper()}: "
        body = (body or "").strip()
        parts.append(head + body)
        spans.append((name.upper(), pos + len(head), pos + len(head) + len(body)))
        pos += len(head) + len(body) + 2
    return "\n\n".join(parts), spans


def read_xml(path: Path) -> Iterator[Record]:
    """An NLM/OpenI report: `<uId id>`, `<AbstractText Label=...>` sections, `<parentImage id>` images."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        yield Skipped(str(path), f"broken XML ({exc})")
        return
    uid = root.find(".//uId")
    report_id = uid.get("id") if uid is not None and uid.get("id") else path.stem
    sections = [(a.get("Label") or "TEXT", a.text or "") for a in root.iter("AbstractText")]
    if not sections:
        yield Skipped(str(path), "no <AbstractText> sections in this XML")
        return
    text, spans = compose(sections)
    if not any(end > start for _, start, end in spans):
        yield Skipped(str(path), "empty report (every section is blank)")
        return
    images = [(img.get("id"), None) for img in root.iter("parentImage") if img.get("id")]
    yield Report(report_id=report_id, text=text, source=str(path), sections=spans, images=images)


def read_txt(path: Path, encoding: str = "utf-8") -> Iterator[Record]:
    """A plain-text report; its id is the file's stem and sections are found by their headers."""
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as exc:
        yield Skipped(str(path), f"not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                                 f"re-run with --encoding latin-1 (or the file's real encoding)")
        return
    except OSError as exc:
        yield Skipped(str(path), f"cannot read ({exc.strerror})")
        return
    if not text.strip():
        yield Skipped(str(path), "empty report")
        return
    yield Report(report_id=path.stem, text=text, source=str(path))


def read_table(path: Path, kind: str, sections: tuple[str, ...], encoding: str = "utf-8") -> Iterator[Record]:
    """A table with `report_id` and `text` (or section columns), read in chunks; adjacent rows that share
    a report_id are that report's images (a report_id that comes back later is skipped, named)."""
    columns: dict[str, str] | None = None
    section_columns: list[str] = []
    current: Report | None = None
    finished: dict[str, str] = {}  # report_id → where it was read, to name a late repeat
    for where, row in _table_rows(path, kind, encoding):
        if columns is None:
            columns = {str(c).lower(): c for c in row}
            section_columns = [s.lower() for s in sections if s.lower() in columns]
            if "report_id" not in columns:
                raise InputError(f"{path}: missing column 'report_id' (columns are: {', '.join(map(str, row))})")
            if "text" not in columns and not section_columns:
                raise InputError(f"{path}: missing column 'text' (or section columns: "
                                 f"{', '.join(repr(s.lower()) for s in sections)}); columns are: {', '.join(map(str, row))}")

        def get(name: str) -> str | None:
            return _clean(row.get(columns[name])) if name in columns else None

        report_id = get("report_id")
        if report_id is None:
            yield Skipped(where, "empty report_id")
            continue
        if "text" in columns:
            text, spans = get("text") or "", None
        else:
            text, spans = compose([(s.upper(), get(s) or "") for s in section_columns])
            spans = [s for s in spans if s[2] > s[1]]
        if not text.strip() or (spans is not None and not spans):
            yield Skipped(where, f"report {report_id}: empty report text")
            continue
        image = (get("image_id"), get("image_path"))
        if current is not None and current.report_id == report_id:
            if current.text != text:
                yield Skipped(where, f"report {report_id}: same report_id as {current.source} but different text")
            elif any(image):
                current.images.append(image)
            continue
        if report_id in finished:
            yield Skipped(where, f"report {report_id} was already read at {finished[report_id]}; "
                                 f"rows of one report must be adjacent")
            continue
        if current is not None:
            finished[current.report_id] = current.source
            yield current
        current = Report(report_id=report_id, text=text, source=where, sections=spans,
                         images=[image] if any(image) else [], patient_id=get("patient_id"))
    if current is not None:
        yield current


def _table_rows(path: Path, kind: str, encoding: str, chunk: int = 10_000) -> Iterator[tuple[str, dict]]:
    """(where, row) for each row, reading `chunk` rows at a time."""
    try:
        if kind == "parquet":
            n = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk):
                for row in batch.to_pylist():
                    yield f"{path}[row {n}]", row
                    n += 1
        elif kind == "jsonl":
            with path.open(encoding=encoding) as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise InputError(f"{path}:{n}: not a JSON object ({exc.msg})") from None
                        if not isinstance(row, dict):
                            raise InputError(f"{path}:{n}: not a JSON object")
                        yield f"{path}:{n}", row
        else:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            n = 2
            for frame in pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, sep=sep,
                                     chunksize=chunk):
                for row in frame.to_dict("records"):
                    yield f"{path}:{n}", row
                    n += 1
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         f"re-run with --encoding latin-1 (or the file's real encoding)") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file (no header row)") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read as {kind} ({exc})") from None


def _clean(value: object) -> str | None:
    """Table cells as text, with blanks and missing values as None."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value)
    return text if text.strip() else None
