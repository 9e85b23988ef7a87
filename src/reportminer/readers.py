"""Inputs → `Report` records: NLM/OpenI XML folders, `.txt` folders, CSV, Parquet and JSONL tables.

A report that cannot be used becomes a `Skipped` record naming the file (and row) and the reason,
never an exception that stops the run and never a silent `None`: an unreadable file or folder, a
wrong encoding, a broken XML file or JSONL line, a text cell that is not text, a report longer than
the lexicon's `limits.report_chars`, an id holding half a surrogate pair. Only a table that cannot be
read at all (no `report_id` column, a text column of numbers) stops the run, with one line naming the
file and column.

Every report's text is cleaned before anything parses it (`clean_text`): control characters and lone
surrogates (JSON's `"\udcff"`) are replaced one for one, so offsets hold; a report left with nothing
but blanks is skipped and named.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError

if TYPE_CHECKING:
    from .known_inputs import Known as KnownInputs
    from .known_inputs import Marks

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
                  ".jsonl": "jsonl", ".ndjson": "jsonl"}
REPORT_SUFFIXES = (".xml", ".txt")
OPTIONAL_COLUMNS = ("image_id", "patient_id", "image_path")
MAX_BYTES_PER_CHAR = 4  # UTF-8: a file this many times the character limit cannot be within it
_UNCLEAN = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


@dataclass(frozen=True)
class Known:
    """The reports an earlier run read from the start of a JSONL file that is unchanged there
    (known_inputs.py): their ids in order, and the byte, line and columns where reading goes on."""

    source: str
    ids: list[str]
    offset: int
    line: int
    columns: dict[str, str] | None
    skipped: list[tuple[str, str]]
    digest: Any = field(compare=False, repr=False)  # a hashlib object: the bytes before `offset`, read to check them


@dataclass
class Position:
    """Where a JSONL reader is: the byte offset and the lines before the row it yielded last, and the digest of
    the bytes before that row; `exact` is False once a line break the byte offsets cannot follow (a lone
    carriage return) was met."""

    digest: Any
    offset: int = 0
    line: int = 0
    exact: bool = True


@dataclass(frozen=True)
class ReadSettings:
    """How inputs are read: the labeled sections (a table's columns of those names are section text),
    the encoding of text files, and the longest report accepted (characters)."""

    sections: tuple[str, ...] = ("FINDINGS", "IMPRESSION")
    encoding: str = "utf-8"
    max_chars: int = 100_000


def read_inputs(paths: list[str | Path], settings: ReadSettings, marks: Marks | None = None,
                known: KnownInputs | None = None) -> Iterator[Record | Known]:
    """Every report in every input, in a stable order (sorted file names within folders). With `marks`, how
    far each JSONL file holds whole reports is noted; with `known` (an update), a JSONL file whose start an
    earlier run read is read from its mark on, its earlier reports given as one `Known` record."""
    records = _read_all(paths, settings, marks, known)
    if marks is None:
        yield from records
        return
    for record in records:
        if isinstance(record, Report):
            marks.report()  # every report counts: a mark says where its file's reports stand in the run's order
        yield record


def _read_all(paths: list[str | Path], settings: ReadSettings, marks: Marks | None,
              known: KnownInputs | None) -> Iterator[Record | Known]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _read_folder(path, settings)
        elif path.is_file():
            kind = TABLE_SUFFIXES.get(path.suffix.lower())
            if path.suffix.lower() in REPORT_SUFFIXES:
                yield from read_report_file(path, settings)
            elif kind == "jsonl" and marks is not None and _byte_lines(settings.encoding):
                yield from _read_marked(path, settings, marks, known.resume(path, settings) if known else None)
            elif kind:
                yield from _usable(read_table(path, kind, settings), settings.max_chars)
            else:
                raise InputError(f"{path}: unknown input type; give a folder of .xml/.txt reports or a "
                                 f".csv, .parquet or .jsonl table")
        elif path.exists():
            raise InputError(f"{path}: not a regular file or folder; give a folder of reports or a table")
        else:
            raise InputError(f"{path}: no such file or folder")


def new_digest() -> Any:
    """The digest of the bytes of a JSONL file before a mark (known_inputs.py)."""
    return hashlib.blake2b(digest_size=16)


def _byte_lines(encoding: str) -> bool:
    """Whether a line break is the byte 0x0a in `encoding` (UTF-8, Latin-1...; not UTF-16), so that a file
    can be read line by line at byte offsets."""
    try:
        return "\n\r{}".encode(encoding) == b"\n\r{}"
    except (LookupError, UnicodeError):
        return False


def _read_marked(path: Path, settings: ReadSettings, marks: Marks, known: Known | None) -> Iterator[Record | Known]:
    """A JSONL table read with its marks noted (from the earlier run's mark on when `known`)."""
    marks.start(path, settings, known)
    if known is not None:
        yield from (Skipped(source, reason) for source, reason in known.skipped)
        yield known
    position = Position(known.digest, known.offset, known.line) if known else Position(new_digest())
    dropped = False  # a report the checks dropped is not in the order: no later mark may pass it

    def drop() -> None:
        nonlocal dropped
        dropped = True

    def report_starts(columns: dict[str, str] | None) -> None:
        if position.exact and not dropped:
            marks.boundary(position, columns)

    for record in _usable(read_table(path, "jsonl", settings, position, report_starts, known), settings.max_chars, drop):
        if isinstance(record, Skipped):
            marks.skipped(record)
        yield record


def _read_folder(path: Path, settings: ReadSettings) -> Iterator[Record]:
    """The .xml/.txt files below `path`, sorted; an unreadable subfolder is named and skipped."""
    found, problems = [], []
    for root, dirs, files in os.walk(path, onerror=lambda exc: problems.append(exc)):
        dirs.sort()
        found += [Path(root) / f for f in files if f.lower().endswith(REPORT_SUFFIXES)]
    for exc in problems:
        yield Skipped(str(exc.filename), f"cannot read this folder ({exc.strerror}); its reports are left out")
    if not found and not problems:
        raise InputError(f"{path}: no .xml or .txt reports found in this folder")
    for file in sorted(found):
        yield from read_report_file(file, settings)


def read_report_file(path: Path, settings: ReadSettings) -> Iterator[Record]:
    """One .xml or .txt report file, read within the size limit."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            yield Skipped(str(path), "not a regular file (a FIFO, device or socket); left out")
            return
        size = info.st_size
        if size > settings.max_chars * MAX_BYTES_PER_CHAR:
            yield Skipped(str(path), f"{size:,} bytes, longer than the {settings.max_chars:,} characters a report may "
                                     f"have (labeler.yaml limits.report_chars)")
            return
        data = path.read_bytes()
    except OSError as exc:
        yield Skipped(str(path), f"cannot read ({exc.strerror})")
        return
    records = read_xml(path, data, settings.encoding) if path.suffix.lower() == ".xml" else \
        read_txt(path, data, settings.encoding)
    yield from _usable(records, settings.max_chars)


def clean_text(text: str) -> str:
    """Text safe for the parser and for UTF-8 outputs, of the same length: a vertical tab or form feed
    becomes a line break, another control character a space, half a surrogate pair U+FFFD."""
    if not _UNCLEAN.search(text):
        return text
    return _UNCLEAN.sub(lambda m: "\n" if m.group() in "\x0b\x0c" else "\ufffd" if m.group() >= "\ud800" else " ",
                        text)


def _usable(records: Iterator[Record], max_chars: int, on_drop: Callable[[], None] | None = None) -> Iterator[Record]:
    """Reports cleaned (`clean_text`); those over the length limit, left blank by cleaning or with an id that
    UTF-8 cannot hold become named skips (one gigantic or broken report never stops an archive), and
    `on_drop` is told."""
    for record in records:
        problem = _problem(record, max_chars) if isinstance(record, Report) else None
        if problem is None:
            yield record
            continue
        if on_drop is not None:
            on_drop()
        yield Skipped(record.source, problem)


def _problem(report: Report, max_chars: int) -> str | None:
    """Why the report cannot be labeled (None: it can, its text now cleaned)."""
    if len(report.text) > max_chars:
        return (f"report {report.report_id} has {len(report.text):,} characters, more than the {max_chars:,} a "
                f"report may have (labeler.yaml limits.report_chars)")
    if any(_SURROGATE.search(v or "") for v in (report.report_id, report.patient_id,
                                                *(x for image in report.images for x in image))):
        return (f"report {report.report_id}: an id or image path holds half a surrogate pair (a character UTF-8 "
                f"cannot store); fix the id")
    report.text = clean_text(report.text)
    return None if report.text.strip() else f"report {report.report_id}: nothing but control characters"


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


def _not_text(path: Path | str, encoding: str, exc: UnicodeDecodeError) -> str:
    return (f"not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            f"re-run with --encoding latin-1 (or the file's real encoding)")


def read_xml(path: Path, data: bytes, encoding: str = "utf-8") -> Iterator[Record]:
    """An NLM/OpenI report: `<uId id>`, `<AbstractText Label=...>` sections, `<parentImage id>` images.

    A file that declares its encoding is read in it; one that does not and is not UTF-8 (which XML
    then requires) is read in `--encoding`."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        declared = data.lstrip()[:100].startswith(b"<?xml") and b"encoding" in data.lstrip()[:100]
        try:
            data.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError as bad:
            utf8, decode_error = False, bad
        if declared or utf8:
            yield Skipped(str(path), f"broken XML ({exc})")
            return
        if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
            yield Skipped(str(path), _not_text(path, encoding, decode_error))
            return
        try:
            root = ET.fromstring(data.decode(encoding))
        except (UnicodeDecodeError, ET.ParseError) as again:
            yield Skipped(str(path), f"broken XML, also read as {encoding} ({again})")
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


def read_txt(path: Path, data: bytes, encoding: str = "utf-8") -> Iterator[Record]:
    """A plain-text report; its id is the file's stem and sections are found by their headers."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        yield Skipped(str(path), _not_text(path, encoding, exc))
        return
    if not text.strip():
        yield Skipped(str(path), "empty report")
        return
    yield Report(report_id=path.stem, text=text, source=str(path))


def read_table(path: Path, kind: str, settings: ReadSettings, position: Position | None = None,
               on_report: Callable[[dict[str, str] | None], Any] | None = None,
               known: Known | None = None) -> Iterator[Record]:
    """A table with `report_id` and `text` (or section columns), read in chunks; adjacent rows that share
    a report_id are that report's images (a report_id that comes back later is skipped, named).

    A JSONL table may be read at byte offsets (`position`, from `known` on): `on_report(columns)` is called
    where each report's first row is, every earlier report having been yielded."""
    columns: dict[str, str] | None = known.columns if known else None
    section_columns = _check_columns(path, dict.fromkeys(columns.values()), columns, settings.sections) if columns else []
    current: Report | None = None
    finished = dict.fromkeys(known.ids, "an earlier part of this file") if known else {}  # id → where it was read
    for where, row in _table_rows(path, kind, settings.encoding, position):
        if isinstance(row, Skipped):
            yield row
            continue
        if columns is None:
            columns = {str(c).lower(): c for c in row}
            section_columns = _check_columns(path, row, columns, settings.sections)
        cells = _cells(row, columns, section_columns, settings.encoding)
        if isinstance(cells, str):
            yield Skipped(where, cells)
            continue
        record = _report_of(where, cells, section_columns)
        if isinstance(record, Skipped):
            yield record
            continue
        if current is not None and current.report_id == record.report_id:
            if current.text != record.text:
                yield Skipped(where, f"report {record.report_id}: same report_id as {current.source} but different text")
            current.images += record.images
            continue
        if record.report_id in finished:
            yield Skipped(where, f"report {record.report_id} was already read at {finished[record.report_id]}; "
                                 f"rows of one report must be adjacent")
            continue
        if current is not None:
            finished[current.report_id] = current.source
            yield current
        if on_report is not None:
            on_report(columns)
        current = record
    if current is not None:
        yield current


def _check_columns(path: Path, row: dict[str, Any], columns: dict[str, str], sections: tuple[str, ...]) -> list[str]:
    section_columns = [s.lower() for s in sections if s.lower() in columns]
    names = ", ".join(map(str, row))
    if "report_id" not in columns:
        raise InputError(f"{path}: missing column 'report_id' (columns are: {names})")
    if "text" not in columns and not section_columns:
        raise InputError(f"{path}: missing column 'text' (or section columns: "
                         f"{', '.join(repr(s.lower()) for s in sections)}); columns are: {names}")
    return section_columns


def _cells(row: dict[str, Any], columns: dict[str, str], section_columns: list[str],
           encoding: str) -> dict[str, str | None] | str:
    """The row's cells as text (None for blank), or the reason the row cannot be used."""
    wanted = ["report_id", "text", *section_columns, *OPTIONAL_COLUMNS]
    out: dict[str, str | None] = {}
    for name in wanted:
        if name not in columns:
            continue
        value = row.get(columns[name])
        if isinstance(value, bytes):
            try:
                value = value.decode(encoding)
            except UnicodeDecodeError as exc:
                return f"column {name!r}: {_not_text('', encoding, exc)}"
        if value is not None and not isinstance(value, str) and not (isinstance(value, float) and math.isnan(value)):
            if name in ("text", *section_columns) or not isinstance(value, (int, float)):
                return f"column {name!r} holds {type(value).__name__} {str(value)[:40]!r}, not text"
            value = str(value)  # a numeric id or path
        out[name] = value if isinstance(value, str) and value.strip() else None
    return out


def _report_of(where: str, cells: dict[str, str | None], section_columns: list[str]) -> Report | Skipped:
    report_id = cells.get("report_id")
    if report_id is None:
        return Skipped(where, "empty report_id")
    if "text" in cells:
        text, spans = cells["text"] or "", None
    else:
        text, spans = compose([(s.upper(), cells.get(s) or "") for s in section_columns])
        spans = [s for s in spans if s[2] > s[1]]
    if not text.strip() or (spans is not None and not spans):
        return Skipped(where, f"report {report_id}: empty report text")
    image = (cells.get("image_id"), cells.get("image_path"))
    return Report(report_id=report_id, text=text, source=where, sections=spans,
                  images=[image] if any(image) else [], patient_id=cells.get("patient_id"))


def _table_rows(path: Path, kind: str, encoding: str, position: Position | None = None,
                chunk: int = 10_000) -> Iterator[tuple[str, Any]]:
    """(where, row) for each row, reading `chunk` rows at a time; a bad JSONL line is (where, Skipped)."""
    try:
        if kind == "parquet":
            yield from _parquet_rows(path, chunk)
        elif kind == "jsonl":
            yield from _jsonl_rows(path, encoding) if position is None else _jsonl_byte_rows(path, encoding, position)
        else:
            yield from _csv_rows(path, encoding, chunk)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {_not_text(path, encoding, exc)}") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read as {kind} ({exc})") from None


def _csv_rows(path: Path, encoding: str, chunk: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A CSV or TSV file's rows as text, `chunk` at a time (pandas is imported here: only CSV needs it)."""
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    n = 2
    try:
        for frame in pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, sep=sep,
                                 chunksize=chunk):
            for row in frame.to_dict("records"):
                yield f"{path}:{n}", row
                n += 1
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file (no header row)") from None


def _parquet_rows(path: Path, chunk: int) -> Iterator[tuple[str, dict[str, Any]]]:
    table = pq.ParquetFile(path)
    for column in table.schema_arrow:
        text_like = pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or \
            pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) or pa.types.is_null(column.type)
        if column.name.lower() == "text" and not text_like:
            raise InputError(f"{path}: column {column.name!r} is {column.type}, not text; store the reports as strings")
    n = 0
    for batch in table.iter_batches(batch_size=chunk):
        for row in batch.to_pylist():
            yield f"{path}[row {n}]", row
            n += 1


def _jsonl_rows(path: Path, encoding: str) -> Iterator[tuple[str, Any]]:
    with path.open(encoding=encoding) as fh:
        for n, line in enumerate(fh, 1):
            yield from _jsonl_row(f"{path}:{n}", line)


def _jsonl_byte_rows(path: Path, encoding: str, position: Position) -> Iterator[tuple[str, Any]]:
    """As `_jsonl_rows` (the same lines, numbered alike), read in bytes from `position`, which follows each
    row's first byte and the lines before it."""
    with path.open("rb") as fh:
        fh.seek(position.offset)
        offset, n = position.offset, position.line
        for raw in fh:
            text = raw.decode(encoding)
            lines = [text]
            if "\r" in text:  # text mode also ends a line at a lone carriage return
                lines = _LINE_BREAK.split(text)
                if not lines[-1]:
                    lines.pop()
                position.exact = position.exact and len(lines) == 1
            for line in lines:
                position.offset, position.line = offset, n
                n += 1
                yield from _jsonl_row(f"{path}:{n}", line)
            position.digest.update(raw)
            offset += len(raw)


def _jsonl_row(where: str, line: str) -> Iterator[tuple[str, Any]]:
    """One JSONL line as (where, row), (where, Skipped) when it is not a JSON object, nothing when blank."""
    if not line.strip():
        return
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        yield where, Skipped(where, f"not a JSON object ({exc.msg}); the line is left out")
        return
    if not isinstance(row, dict):
        yield where, Skipped(where, f"not a JSON object but {type(row).__name__}; the line is left out")
        return
    yield where, row
