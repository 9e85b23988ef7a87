"""`label --update OUTPUT INPUTS...`: bring an earlier labels file up to date with a grown or edited archive.

Every labels file has a `report_digest` column (a digest of each report's text, sections, images
and patient). An update reads the inputs, compares each report's digest with the recorded one and
labels only the reports that are new or whose content changed; the others keep their rows. Reports
that are gone from the inputs keep their rows unless `--prune`. The result has the rows a labeling
of the whole archive from scratch would have, in the same order (each report where the inputs have
it; with rows kept for vanished reports last), and replaces the file atomically, with its evidence.

A file labeled with other rules is refused, unless `--relabel-changed-rules`: when only assertion
rules changed (changes.py), every unchanged report is checked and only the sentences a changed rule
touches are decided again (labeler.Carry; the earlier decisions come from the cache); when anything
else that decides a label changed (findings, settings, the parser, spaCy or this toolkit), every
report is labeled again, its parses still served by the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.labels import label_schema
from cxrcore.output import Outputs, decode_metadata, encode_metadata

from .changes import changed_rules, other_digest
from .engine import DIGEST_COLUMN, Outcome, Settings, keys, labels_part_schema, read_parquet, report_digest
from .evidence import MENTION_SCHEMA
from .labeler import Carry
from .known_inputs import MARKS_KEY, Known
from .readers import Known as KnownReports
from .readers import Record, Report

WRITE_ROWS = 65_536  # rows gathered per Parquet row group when writing the spliced output
Ranges = dict[str, tuple[int, int]]  # report id → its rows [start, stop) in a table


@dataclass
class Previous:
    """The labels file being updated (and its evidence), read whole: about 50 bytes a row, 200 a mention."""

    path: Path
    meta: dict[str, str]
    labels: pa.Table
    rows: Ranges
    digests: dict[str, str]
    evidence: pa.Table | None = None
    mention_rows: Ranges = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """How today's settings differ from the file's: `none`, only assertion `rules`, or `all` (anything else)."""

    kind: str
    changed: frozenset[str] = frozenset()
    reason: str = ""


def _ranges(table: pa.Table, path: Path) -> Ranges:
    """Each report's rows, which `label` writes next to each other."""
    out: Ranges = {}
    ids = table.column("report_id").to_pylist()
    start = 0
    for n in range(1, len(ids) + 1):
        if n == len(ids) or ids[n] != ids[start]:
            if ids[start] in out:
                raise InputError(f"{path}: report {ids[start]} has rows in two places (two reports with one id?); "
                                 f"--update needs one report per id: label afresh with -o")
            out[ids[start]] = (start, n)
            start = n
    return out


def _read(path: Path, what: str) -> pa.Table:
    try:
        return read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{what} {path}: cannot read as Parquet ({exc}); --update wants the labels.parquet "
                         f"(and mentions.parquet) of an earlier `reportminer label`") from None


def read_previous(output: Path, evidence: Path | None) -> Previous:
    """The labels file to update and, with `evidence`, the mentions written with it; one line when unusable."""
    if not output.is_file():
        raise InputError(f"--update {output}: no such file; label the archive once with -o {output} first")
    labels = _read(output, "--update")
    meta = decode_metadata(labels.schema.metadata)
    if DIGEST_COLUMN not in labels.column_names or "lexicon_digest" not in meta:
        raise InputError(f"--update {output}: has no {DIGEST_COLUMN} column (written before --update existed, or not "
                         f"by `reportminer label`); label afresh once with -o {output}")
    rows = _ranges(labels, output)
    first = labels.column(DIGEST_COLUMN).to_pylist()
    previous = Previous(output, meta, labels, rows, {rid: first[a] for rid, (a, _) in rows.items()})
    if evidence is not None:
        if not evidence.is_file():
            raise InputError(f"--evidence {evidence}: no such file; --update adds to the evidence written with "
                             f"{output}; without it, label afresh with -o {output} --evidence {evidence}")
        mentions = _read(evidence, "--evidence")
        theirs = decode_metadata(mentions.schema.metadata)
        if meta.get("evidence_written") != "true" or any(theirs.get(k) != meta.get(k) for k in
                                                        ("lexicon_digest", "cache_key", "inputs")):
            raise InputError(f"--evidence {evidence}: was not written with {output} as it is now (another run, "
                             f"lexicon or inputs, or {output} was updated without --evidence since); give the "
                             f"evidence written with it, or label afresh with -o")
        previous.evidence, previous.mention_rows = mentions, _ranges(mentions, evidence)
    return previous


def compare(previous: Previous, settings: Settings, schema: str, relabel: bool) -> Change:
    """What changed since `previous` was labeled; refuses (one line) what an update cannot bring together."""
    meta, path = previous.meta, previous.path
    for key, now, option in (("schema", schema, "--schema"), ("assertions", settings.method, "--assertions"),
                             ("parser_package", settings.model, "--model")):
        if meta.get(key) != now:
            raise InputError(f"--update {path}: was labeled with {option} {meta.get(key)}, not {now}; update it with "
                             f"{option} {meta.get(key)}, or label afresh with -o")
    decisions, parses = keys(settings)
    if meta.get("cache_key") == decisions:
        return Change("none")
    if meta.get("cache_parse_key") != parses:
        change = Change("all", reason="another parser, spaCy, or version or source code of this toolkit")
    elif meta.get("lexicon_other_digest") != other_digest(settings.lexicon) or "rule_digests" not in meta:
        change = Change("all", reason="the lexicon's findings, sections, settings or attributes changed")
    else:
        changed = changed_rules(json.loads(meta["rule_digests"]), settings.lexicon)
        change = Change("rules", frozenset(changed),
                        "rules changed: " + (", ".join(sorted(changed)) if changed else "none (examples or notes only)"))
    if not relabel:
        raise InputError(f"--update {path}: was labeled with other rules or code (lexicon {meta.get('lexicon_digest')}, now "
                         f"{settings.lexicon.digest}; {change.reason}); pass --relabel-changed-rules to relabel the "
                         f"reports they touch, or label afresh with -o")
    return change


def carry(previous: Previous, change: Change) -> Carry | None:
    """The earlier decisions an update with changed rules may reuse (none when more than rules changed)."""
    return Carry(previous.meta["cache_key"], change.changed) if change.kind == "rules" else None


def fingerprint(state: str, previous: Previous, prune: bool, change: Change) -> str:
    """The resume fingerprint of an update: the run's, the file updated (size, time), and the mode."""
    stat = previous.path.stat()
    return hashlib.sha256(json.dumps([state, str(previous.path), stat.st_size, stat.st_mtime_ns, prune,
                                      change.kind, sorted(change.changed)]).encode()).hexdigest()


class Plan:
    """Which reports are labeled, and the order of every report in the output."""

    def __init__(self, previous: Previous, change: Change, prune: bool, label_columns: list[str]) -> None:
        self.previous = previous
        self.label_columns = label_columns
        self.change = change
        self.prune = prune
        self.order: list[str] = []  # every report id of the inputs, in their order
        self.fresh: set[str] = set()  # reports new or changed
        self.rechecked = 0  # unchanged reports labeled again because the rules changed
        self.unread = 0  # reports of the unchanged start of JSONL inputs, not read again

    def known_inputs(self) -> Known | None:
        """The JSONL inputs' marks of the file (known_inputs.py), when nothing but the inputs changed."""
        if self.change.kind != "none":
            return None  # every report is checked again
        return Known(self.previous.meta.get(MARKS_KEY), list(self.previous.rows))

    def select(self, records: Iterable[Record | KnownReports]) -> Iterator[Record]:
        """The records to label (skipped records pass through, to be named); the order is kept aside."""
        seen: set[str] = set()
        recheck = self.change.kind != "none"
        for record in records:
            if isinstance(record, KnownReports):  # unchanged since the file was labeled: their rows are kept
                again = next((rid for rid in record.ids if rid in seen), None)
                if again is not None:
                    raise InputError(f"{record.source}: report {again} is in the inputs twice; --update needs one "
                                     f"report per id")
                self.order += record.ids
                seen.update(record.ids)
                self.unread += len(record.ids)
                continue
            if not isinstance(record, Report):
                yield record
                continue
            if record.report_id in seen:
                raise InputError(f"{record.source}: report {record.report_id} is in the inputs twice; --update needs "
                                 f"one report per id")
            seen.add(record.report_id)
            self.order.append(record.report_id)
            unchanged = self.previous.digests.get(record.report_id) == report_digest(record)
            if not unchanged:
                self.fresh.add(record.report_id)
            elif recheck:
                self.rechecked += 1
            if recheck or not unchanged:
                yield record

    def vanished(self) -> list[str]:
        """Reports of the file that are gone from the inputs (or unreadable now), in the file's order."""
        present = set(self.order)
        return [rid for rid in self.previous.rows if rid not in present]

    def merge(self, parts: Path, outputs: Outputs, meta: dict[str, Any], outcome: Outcome) -> int:
        """Write the labels (and evidence) in the inputs' order from the parts and the rows kept;
        nothing when nothing changed. Returns the label rows written."""
        previous, vanished = self.previous, self.vanished()
        if vanished and self.change.kind != "none" and not self.prune:
            raise InputError(f"--update {previous.path}: {len(vanished)} of its reports (e.g. {vanished[0]}) are not in "
                             f"the inputs and cannot be relabeled with the changed rules; pass --prune to drop them, or "
                             f"give the inputs they came from")
        if not self.fresh and not self.rechecked and not (vanished and self.prune):
            return 0
        columns = self.label_columns
        schema = labels_part_schema(columns, False).with_metadata(label_schema(columns, meta).metadata)
        kept = [] if self.prune else vanished
        rows = _splice(outputs.path(previous.path), schema, self.order, kept, _parts(parts, "labels", schema),
                       _conform(previous.labels, schema, previous.path), previous.rows)
        evidence = [t for t in outputs.targets if t != previous.path]
        if evidence:
            mention_schema = MENTION_SCHEMA.with_metadata(encode_metadata(meta))
            old = previous.evidence if previous.evidence is not None else mention_schema.empty_table()
            _splice(outputs.path(evidence[0]), mention_schema, self.order, kept, _parts(parts, "mentions", mention_schema),
                    _conform(old, mention_schema, evidence[0]), previous.mention_rows)
        return rows


    def summary(self, outcome: Outcome) -> str:
        """One line: what the update did."""
        path, vanished = self.previous.path, self.vanished()
        gone = (f"; {len(vanished)} reports no longer in the inputs " + ("dropped" if self.prune else
                "kept (--prune drops them)")) if vanished else ""
        if not self.fresh and not self.rechecked and not (vanished and self.prune):
            return f"{path} is up to date: none of its {len(self.order)} reports is new or changed{gone}"
        kept = len(self.order) - len(self.fresh)
        line = f"updated {path}: labeled {len(self.fresh)} new or changed reports, kept {kept}"
        if self.unread:
            line += f" ({self.unread} of them in the unchanged start of JSONL inputs, not read again)"
        if self.change.kind == "rules":
            touched = len(set(outcome.touched) - self.fresh)
            line += f" ({touched} relabeled: their sentences are touched by the changed rules; {self.change.reason})"
        elif self.change.kind == "all":
            line += f" (all relabeled: {self.change.reason})"
        return line + gone


def start(output: Path, evidence: Path | None, settings: Settings, schema: str, relabel: bool, prune: bool,
          state: str) -> tuple[Settings, Plan, str]:
    """Read and check the file to update: the settings to label with, the plan, the resume fingerprint."""
    previous = read_previous(output, evidence)
    change = compare(previous, settings, schema, relabel)
    plan = Plan(previous, change, prune, settings.lexicon.label_columns)
    settings = Settings(settings.lexicon, settings.model, settings.method, settings.report_text, settings.cache,
                        carry(previous, change))
    return settings, plan, fingerprint(state, previous, prune, change)


def _conform(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    """`table` with exactly the columns of `schema`, in its order (an earlier file's rows kept as they are)."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise InputError(f"{path}: has no column {missing[0]!r} that the labels have now; label afresh with -o")
    return table.select(schema.names).cast(schema)


def _parts(parts: Path, kind: str, schema: pa.Schema) -> pa.Table:
    tables = [read_parquet(p).cast(schema) for p in sorted(parts.glob(f"*.{kind}.parquet"))]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _splice(target: str, schema: pa.Schema, order: list[str], kept: list[str], new: pa.Table, old: pa.Table,
            old_rows: Ranges) -> int:
    """Write, for each report of `order` then of `kept`, its rows from `new` if labeled now, else from `old`."""
    new_rows = _ranges(new, Path(target)) if new.num_rows else {}
    runs: list[tuple[pa.Table, int, int]] = []  # (table, start, stop), neighbouring rows of one table joined
    for rid in [*order, *kept]:
        table, span = (new, new_rows[rid]) if rid in new_rows else (old, old_rows.get(rid))
        if span is None:
            continue  # a report without mentions
        if runs and runs[-1][0] is table and runs[-1][2] == span[0]:
            runs[-1] = (table, runs[-1][1], span[1])
        else:
            runs.append((table, *span))
    written = 0
    with pq.ParquetWriter(target, schema) as writer:
        batch: list[pa.Table] = []
        size = 0
        for table, start, stop in runs:
            batch.append(table.slice(start, stop - start))
            size += stop - start
            if size >= WRITE_ROWS:
                writer.write_table(pa.concat_tables(batch))
                written, batch, size = written + size, [], 0
        if batch:
            writer.write_table(pa.concat_tables(batch))
            written += size
        if not written and not runs:
            writer.write_table(schema.empty_table())
    return written
