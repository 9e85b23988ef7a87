"""The persistent decision cache: what was decided for a distinct sentence, kept between runs.

Reports repeat their sentences, and archives are labeled again and again (a day's new reports, an
edited rule): a sentence once decided is looked up, not parsed. One SQLite file (the standard
library's, in WAL mode: many readers and one writer at a time, safe for the worker processes of
one run, for several runs and for Dask workers on this machine) holds two tables:

- `decisions`: (namespace, sentence) → the sentence's mentions and decisions as JSON. The namespace
  is a digest of everything a decision depends on (`decision_key`): the lexicon's digest (which
  covers its schema), the assertion method, the spaCy model's name and version, spaCy's version and
  this toolkit's version and source code (`source_digest`: an edited module counts, even under the
  same version number). An edited rule or another parser gives another namespace, so a stale
  decision is never served; the old one ages out.
- `parses`: (namespace, masked sentence) → its parse (words, tags, dependencies, lemmas), keyed by
  the model alone (`parse_key`): an edited rule re-decides sentences from their stored parses
  without the parser.
- `reports`: (decision namespace, digest of a report's text and sections) → its labels and mentions:
  an archive labeled again (into another output, with other workers) skips even the sentence
  splitting of the reports it has seen.

The file is bounded (`max_bytes`): past the bound, the entries used least recently go. A file that
is damaged (truncated, not a database, failing SQLite's `quick_check`) or made by another version of
this cache is rebuilt empty, with one line of warning; an error met while a run uses the file turns
the cache off for that process, so a damaged entry is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from cxrcore import __version__
from cxrcore.errors import ToolkitError

FILE_NAME = "decisions.sqlite3"
SCHEMA_VERSION = 1  # PRAGMA user_version of a file this module can read
APPLICATION_ID = 0x43585243  # "CXRC": PRAGMA application_id of our files
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB
EVICT_TO = 0.8  # eviction brings the file down to this share of the bound
EVICT_ROUNDS = 8
BUSY_TIMEOUT_S = 60
BATCH = 500  # keys per SELECT (SQLite allows 32,766 parameters)

_TABLES = """
CREATE TABLE IF NOT EXISTS decisions (ns TEXT, sentence TEXT, value TEXT, used INTEGER,
                                      PRIMARY KEY (ns, sentence)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_used ON decisions (used);
CREATE TABLE IF NOT EXISTS parses (ns TEXT, text TEXT, value TEXT, used INTEGER,
                                   PRIMARY KEY (ns, text)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parses_used ON parses (used);
CREATE TABLE IF NOT EXISTS reports (ns TEXT, digest TEXT, value TEXT, used INTEGER,
                                    PRIMARY KEY (ns, digest));
CREATE INDEX IF NOT EXISTS reports_used ON reports (used);
"""
KEY_COLUMNS = {"decisions": "sentence", "parses": "text", "reports": "digest"}  # each table's key column


class CacheError(ToolkitError):
    """The cache folder given with --cache cannot be used."""


def default_folder() -> Path:
    """The user's cache folder for this toolkit: $XDG_CACHE_HOME/chestxray-toolkit, else ~/.cache/chestxray-toolkit."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "chestxray-toolkit"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of this package's Python source: the code that finds, parses and decides mentions."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def parse_key(model: str, description: str, spacy_version: str) -> str:
    """The namespace of parses: the model as named and as described by its meta, spaCy's and our version
    and source."""
    return _digest("parse", str(SCHEMA_VERSION), __version__, source_digest(), model, description, spacy_version)


def decision_key(parses: str, lexicon_digest: str, method: str) -> str:
    """The namespace of decisions: the parser's namespace, the lexicon's digest and the assertion method."""
    return _digest("decide", parses, lexicon_digest, method)


def _today() -> int:
    return int(time.time() // 86400)


def prepare(folder: Path, explicit: bool, warn: Callable[[str], None]) -> Path | None:
    """The cache file in `folder`, created, checked and rebuilt if damaged (one line through `warn`).

    The default folder that cannot be created gives a warning and no cache; a folder given with
    --cache that cannot be used is an error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if explicit:
            raise CacheError(f"--cache {folder}: cannot use this folder ({reason}); give a writable folder "
                             f"or --no-cache") from None
        warn(f"warning: cannot create the decision cache folder {folder} ({reason}); labeling without the cache "
             f"(pass --cache DIR to keep one elsewhere, or --no-cache)")
        return None
    path = folder / FILE_NAME
    problem = _check(path)
    if problem is not None:
        try:
            _remove(path)
            again = _check(path)  # creates the tables
        except OSError as exc:
            again = exc.strerror or str(exc)
        if again is not None:
            if explicit:
                raise CacheError(f"--cache {folder}: {path} is {problem} and cannot be rebuilt ({again}); remove it, "
                                 f"or give another folder or --no-cache") from None
            warn(f"warning: the decision cache {path} is {problem} and cannot be rebuilt ({again}); labeling "
                 f"without the cache")
            return None
        warn(f"warning: the decision cache {path} was {problem}; rebuilt it empty (labels are not affected)")
    return path


def _check(path: Path) -> str | None:
    """None when `path` is a usable cache (created if missing), else what is wrong with it."""
    if path.exists() and not path.is_file():
        return "not a regular file"
    try:
        with _connect(path) as con:
            app, version = con.execute("PRAGMA application_id").fetchone()[0], con.execute(
                "PRAGMA user_version").fetchone()[0]
            empty = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if empty:
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.executescript(_TABLES)
                return None
            if app != APPLICATION_ID:
                return "not a decision cache"
            if version != SCHEMA_VERSION:
                return f"made by another version of the toolkit (cache format {version}, this one reads {SCHEMA_VERSION})"
            result = [row[0] for row in con.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                return f"damaged ({result[0]})"
            con.executescript(_TABLES)
    except sqlite3.DatabaseError as exc:
        return f"damaged ({exc})"
    return None


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError:
        con.close()
        raise
    return con


def _remove(path: Path) -> None:
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class CacheSpec:
    """Where a worker finds the cache and its bound (travels with the settings to every worker)."""

    path: str
    max_bytes: int = DEFAULT_MAX_BYTES


class DecisionStore:
    """One process's connection to the cache, for one decision namespace and one parse namespace.

    Every method fails soft: a database error turns the store off (`broken`), and the caller decides
    afresh what it would have read."""

    def __init__(self, spec: CacheSpec, decisions: str, parses: str) -> None:
        self.spec = spec
        self.decisions_ns = decisions
        self.parses_ns = parses
        self.broken: str | None = None
        self._con: sqlite3.Connection | None = None
        self._today = _today()

    def _connection(self) -> sqlite3.Connection | None:
        if self._con is None and self.broken is None:
            path = Path(self.spec.path)
            try:
                if not path.exists():  # a Dask worker on another machine starts its own file
                    path.parent.mkdir(parents=True, exist_ok=True)
                    problem = _check(path)
                    if problem is not None:
                        raise OSError(problem)
                self._con = _connect(path)
            except (sqlite3.Error, OSError) as exc:
                self.broken = str(exc)
        return self._con

    def _fail(self, exc: Exception) -> None:
        self.broken = str(exc)
        if self._con is not None:
            self._con.close()
            self._con = None

    def get(self, table: str, keys: Iterable[str], namespace: str | None = None) -> dict[str, Any]:
        """{key: decoded value} for the keys the cache holds in `table` (decisions, parses or reports)."""
        con = self._connection()
        keys = list(keys)
        if con is None or not keys:
            return {}
        column = KEY_COLUMNS[table]
        ns = namespace or self._namespace(table)
        found: dict[str, Any] = {}
        stale: list[str] = []
        try:
            for i in range(0, len(keys), BATCH):
                part = keys[i:i + BATCH]
                marks = ",".join("?" * len(part))
                for key, value, used in con.execute(
                        f"SELECT {column}, value, used FROM {table} WHERE ns = ? AND {column} IN ({marks})", [ns, *part]):
                    found[key] = json.loads(value)
                    if used < self._today:
                        stale.append(key)
            if stale:
                self._touch(con, table, column, ns, stale)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a value that is not JSON
            self._fail(exc)
            return {}
        return found

    def _touch(self, con: sqlite3.Connection, table: str, column: str, ns: str, keys: list[str]) -> None:
        """Mark entries as used today (least recently used entries are evicted first)."""
        con.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(keys), BATCH):
                part = keys[i:i + BATCH]
                con.execute(f"UPDATE {table} SET used = ? WHERE ns = ? AND {column} IN ({','.join('?' * len(part))})",
                            [self._today, ns, *part])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _namespace(self, table: str) -> str:
        """Parses depend on the model alone; decisions and reports' labels on everything (`decision_key`)."""
        return self.parses_ns if table == "parses" else self.decisions_ns

    def put(self, table: str, items: dict[str, Any]) -> None:
        """Store {key: value}; entries another process stored meanwhile are kept (they are the same)."""
        con = self._connection()
        if con is None or not items:
            return
        ns = self._namespace(table)
        rows = [(ns, key, json.dumps(value, separators=(",", ":")), self._today) for key, value in items.items()]
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?, ?)", rows)
                self._evict(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._fail(exc)

    def _evict(self, con: sqlite3.Connection) -> None:
        """Past the bound, delete the least recently used entries until the file is at `EVICT_TO` of it
        (the freed pages are reused: the file stops growing)."""
        page = con.execute("PRAGMA page_size").fetchone()[0]
        limit = self.spec.max_bytes
        for _ in range(EVICT_ROUNDS):  # half-empty pages free nothing: delete again until the bytes in use fall
            used = page * (con.execute("PRAGMA page_count").fetchone()[0]
                           - con.execute("PRAGMA freelist_count").fetchone()[0])
            if used <= limit:
                return
            limit = self.spec.max_bytes * EVICT_TO
            share = min(1.0, 1 - limit / used + 0.05)
            for table, column in KEY_COLUMNS.items():
                count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                con.execute(f"DELETE FROM {table} WHERE (ns, {column}) IN (SELECT ns, {column} FROM {table} "
                            f"ORDER BY used LIMIT ?)", [int(count * share) + 1])

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
