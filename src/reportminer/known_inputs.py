"""How far each JSONL input was read by the run that made a labels file: an update reads only what was
appended since.

An archive kept as JSONL grows at its end. While reading a JSONL table, `Marks` notes, for each file,
the bytes that hold whole reports only (up to the first row of its last report, which more rows may
still join), their digest and line count, how many reports they held (and where those stand in the
run's order) and what was skipped in them. `label` stores the marks in the labels file's metadata.
`label --update` hands them back (`Known`): a file whose first bytes still have the recorded digest
is read from the mark on; the reports before it are the earlier run's, by position, and its skips
are named again. Anything else (another encoding or sections, a file edited before the mark, a CSV
or Parquet table, a folder of reports) is read whole and compared report by report, as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .readers import Known as KnownReports
from .readers import Position, ReadSettings, Skipped, new_digest

MARKS_KEY = "input_marks"  # the labels file's metadata key
MAX_SKIPPED = 1_000  # a file with more skipped rows before its mark is read whole next time (small metadata)
_BLOCK = 1 << 20


@dataclass
class Mark:
    """The part of one JSONL file read whole by a run: bytes [0, offset), `line` lines, `reports` reports
    (positions first ... first + reports - 1 of the run's order), the column names of its first row."""

    path: str
    read: list[Any]  # the ReadSettings it was read with
    offset: int = 0
    digest: str = ""
    line: int = 0
    first: int = 0
    reports: int = 0
    columns: dict[str, str] | None = None
    skipped: list[list[str]] = field(default_factory=list)


def _key(path: Path) -> str:
    return str(path.resolve())


def _read_key(settings: ReadSettings) -> list[Any]:
    return [list(settings.sections), settings.encoding, settings.max_chars]


def prefix_digest(path: Path, size: int) -> Any | None:
    """The digest object (hashlib) of the first `size` bytes of `path`; None when it is shorter now or
    unreadable."""
    digest = new_digest()
    try:
        with path.open("rb") as fh:
            left = size
            while left:
                block = fh.read(min(_BLOCK, left))
                if not block:
                    return None
                digest.update(block)
                left -= len(block)
    except OSError:
        return None
    return digest


class Marks:
    """The marks of the JSONL inputs of one run, noted as they are read (`readers.read_inputs`)."""

    def __init__(self) -> None:
        self.reports = 0  # Reports read so far, in the run's order (known ones included)
        self._marks: dict[str, Mark] = {}
        self._mark: Mark | None = None  # of the file being read
        self._in_file = 0  # its reports read so far
        self._skipped: list[list[str]] = []  # and its skips

    def start(self, path: Path, settings: ReadSettings, known: KnownReports | None) -> None:
        """A JSONL file is about to be read (from its mark on when `known`)."""
        self._mark = Mark(_key(path), _read_key(settings), first=self.reports)
        self._in_file, self._skipped = 0, []
        if known is not None:
            self._in_file, self._skipped = len(known.ids), [list(s) for s in known.skipped]
            self._mark.offset, self._mark.line, self._mark.reports = known.offset, known.line, len(known.ids)
            self._mark.columns, self._mark.skipped = known.columns, list(self._skipped)
            self._mark.digest = known.digest.hexdigest()
            self.reports += len(known.ids)
        self._marks[self._mark.path] = self._mark

    def skipped(self, record: Skipped) -> None:
        self._skipped.append([record.source, record.reason])

    def report(self) -> None:
        self.reports += 1
        self._in_file += 1

    def boundary(self, position: Position, columns: dict[str, str] | None) -> None:
        """A report's first row starts at `position`: every row before it is of reports read whole."""
        assert self._mark is not None
        self._mark.offset, self._mark.line, self._mark.reports = position.offset, position.line, self._in_file
        self._mark.digest = position.digest.hexdigest()  # of the bytes as they were read
        self._mark.columns, self._mark.skipped = columns, list(self._skipped)

    def to_json(self) -> str:
        """The marks, for the labels file's metadata."""
        return json.dumps([asdict(m) for m in self._marks.values() if m.offset and len(m.skipped) <= MAX_SKIPPED],
                          separators=(",", ":"))


class Known:
    """The marks of an earlier run, with the report ids of its order, for `read_inputs` to resume from."""

    def __init__(self, marks_json: str | None, order: list[str]) -> None:
        self._marks: dict[str, Mark] = {}
        self._order = order
        try:
            for entry in json.loads(marks_json or "[]"):
                mark = Mark(**entry)
                numbers = (mark.offset, mark.line, mark.first, mark.reports)
                if all(type(n) is int and n >= 0 for n in numbers) and mark.first + mark.reports <= len(order) \
                        and isinstance(mark.digest, str) and isinstance(mark.path, str):
                    self._marks[mark.path] = mark
        except (TypeError, ValueError, AttributeError):
            self._marks = {}  # marks from another version: read every file whole

    def resume(self, path: Path, settings: ReadSettings) -> KnownReports | None:
        """Where to go on reading `path` (None: read it whole): its recorded bytes are unchanged."""
        mark = self._marks.get(_key(path))
        if mark is None or mark.read != _read_key(settings):
            return None
        digest = prefix_digest(path, mark.offset)
        if digest is None or digest.hexdigest() != mark.digest:
            return None
        return KnownReports(str(path), self._order[mark.first:mark.first + mark.reports], mark.offset, mark.line,
                            mark.columns, [tuple(s) for s in mark.skipped], digest)
