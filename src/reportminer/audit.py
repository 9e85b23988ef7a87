"""What the audit page shows, gathered into one JSON-ready dict (audit_html turns it into the page).

Per report: its full text, the labeler's values, its mentions (offsets into the text, assertion,
rule, the sentence that decided, side/severity/change) and, for a sample, its stratum and weight.
With a gold file: the figures of `reportminer evaluate` (with their intervals), the gold file's
values and every false positive and false negative (and, for a sample, the figures weighted back to
its archive). Strings repeated across mentions (rules, sentences) are stored once, so 5,000 reports
stay a few megabytes. Files are named by their names only unless asked: a page is shared with
colleagues and must not show the folders of the machine that wrote it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from cxrcore.errors import InputError
from cxrcore.labels import LabelTable, read_labels
from cxrcore.output import json_text

from .evaluate import evaluate_files, list_errors, read_gold
from .evidence import read_mentions
from .lexicon import Schema

ASSERTIONS = ("positive", "negative", "uncertain")
ATTRIBUTES = ("side", "severity", "change")
ERROR_TYPES = ("false positive", "false negative")


@dataclass(frozen=True)
class GoldFile:
    """A gold file to show the evaluation and the errors of, scored as `evaluate` scores it."""

    path: Path
    uncertain: str = "negative"
    bootstrap: int = 1000
    seed: int = 0


def label_rows(table: LabelTable) -> pd.DataFrame:
    """One row of label values per report (a report's images share them), in file order."""
    return table.frame.drop_duplicates("report_id").set_index("report_id")[table.label_columns]


def utf16_offsets(text: str) -> list[int] | None:
    """Where each character starts in UTF-16 code units (the browser's string index), or None when
    the two agree (no character beyond the Basic Multilingual Plane)."""
    if all(ord(c) < 0x10000 for c in text):
        return None
    out, at = [], 0
    for c in text:
        out.append(at)
        at += 2 if ord(c) >= 0x10000 else 1
    return out + [at]


class Strings:
    """Each distinct string once; mentions refer to them by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: Any) -> int | None:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return None
        value = str(value)
        if value not in self._index:
            self._index[value] = len(self.items)
            self.items.append(value)
        return self._index[value]


def compact_mentions(group: pd.DataFrame, text: str, findings: Strings, strings: Strings) -> tuple[list, int]:
    """A report's mentions as [finding, start, end, assertion, rule, sentence, side, severity, change]
    (indexes into the string tables, offsets in UTF-16 units), and how many do not sit at their
    offsets in this text (start and end -1: listed, not highlighted)."""
    units, out, misplaced = utf16_offsets(text), [], 0
    for m in group.itertuples(index=False):
        start, end = int(m.start), int(m.end)
        if not (0 <= start < end <= len(text)) or text[start:end] != m.text:
            start, end, misplaced = -1, -1, misplaced + 1
        elif units is not None:
            start, end = units[start], units[end]
        out.append([findings(m.finding), start, end, ASSERTIONS.index(m.assertion) if m.assertion in ASSERTIONS else 0,
                    strings(m.rule), strings(m.sentence), *(strings(getattr(m, a, None)) for a in ATTRIBUTES)])
    return out, misplaced


def report_entries(table: LabelTable, texts: dict[str, str], mentions: pd.DataFrame | None,
                   findings: Strings, strings: Strings) -> tuple[list[dict], list[str]]:
    """One entry per report with a text, in the labels' order; warnings naming misplaced mentions."""
    rows = label_rows(table)
    grouped = dict(tuple(mentions.groupby("report_id", sort=False))) if mentions is not None else {}
    entries, warnings = [], []
    for report_id, values in rows.iterrows():
        if report_id not in texts:
            continue
        text = texts[report_id]
        marks, misplaced = compact_mentions(grouped[report_id], text, findings, strings) \
            if report_id in grouped else ([], 0)
        if misplaced:
            warnings.append(f"report {report_id}: {misplaced} mentions are not at their offsets in its text (was it "
                            f"changed since labeling?); they are listed, not highlighted")
        entries.append({"id": str(report_id), "text": text, "mentions": marks,
                        "labels": [None if pd.isna(v) else int(v) for v in values]})
    return entries, warnings


def path_namer(embed_paths: bool) -> Callable[[Path | str], str]:
    """How the page names a file: as given with --embed-paths, else by its name alone."""
    return (lambda p: str(p)) if embed_paths else (lambda p: Path(p).name)


def weighted_figures(labels: Path, gold: GoldFile, sample: Path | None) -> tuple[dict[str, Any], list[str]]:
    """`evaluate`'s figures, weighted back to the archive by the sample's sample.csv when it weighs
    every gold report; else unweighted, with a warning saying why."""
    plain = dict(uncertain=gold.uncertain, bootstrap=gold.bootstrap, seed=gold.seed)
    if sample is None:
        return evaluate_files(labels, gold.path, **plain), []
    try:
        return evaluate_files(labels, gold.path, weights=sample, **plain), []
    except InputError as exc:
        return evaluate_files(labels, gold.path, **plain), [f"no weighted figures on the page: {exc}"]


def gold_section(labels: Path, gold: GoldFile, columns: list[str], sample: Path | None,
                 name: Callable[[Path | str], str]) -> tuple[dict[str, Any], list[str]]:
    """The evaluation, the gold file's values per report and every error, as `evaluate` finds them."""
    figures, warnings = weighted_figures(labels, gold, sample)
    figures["labels"], figures["gold"] = name(labels), name(gold.path)
    if "weighted" in figures:
        figures["weighted"]["weights"] = name(figures["weighted"]["weights"])
    values, scored, _ = read_gold(gold.path, columns)
    errors = list_errors(labels, gold.path, gold.uncertain)
    by_report = {str(rid): [None if pd.isna(row.get(c, float("nan"))) else int(row[c]) for c in columns]
                 for rid, row in values.iterrows()}
    return {"path": name(gold.path), "evaluation": figures, "scored": scored, "values": by_report,
            "errors": [[str(e.report_id), columns.index(e.finding), ERROR_TYPES.index(e.error)]
                       for e in errors.itertuples(index=False)]}, warnings


def sample_section(sample: Path | None) -> dict[str, list] | None:
    """Stratum and weight of each report of a `reportminer sample` folder (its sample.csv)."""
    if sample is None:
        return None
    frame = pd.read_csv(sample, dtype={"report_id": str, "stratum": str}, keep_default_na=False)
    if not {"report_id", "stratum", "weight"} <= set(frame.columns):
        return None
    return {r.report_id: [r.stratum, float(r.weight)] for r in frame.itertuples(index=False)}


def no_finding_rule(schema: Schema | None, table: LabelTable) -> tuple[dict[str, Any] | None, list[str]]:
    """How the no-finding column follows the findings (the schema's rule, as the labeler applies it),
    so the page keeps a reviewer's No_Finding consistent with her findings; None, with a warning,
    when the labels do not follow that rule (another lexicon made them): the column is then hers."""
    if schema is None or table.no_finding is None or schema.no_finding != table.no_finding:
        return None, []
    columns = table.label_columns
    counted = [f for f in table.findings if f not in schema.ignore]
    rows = label_rows(table).astype("float")
    value = pd.Series(1.0, index=rows.index)
    value = value.mask((rows[counted] == -1).any(axis=1), schema.uncertain_value)
    value = value.mask((rows[counted] == 1).any(axis=1), schema.abnormal_value).astype("float")
    given = rows[table.no_finding]
    differ = (value != given) & ~(value.isna() & given.isna())
    if differ.any():
        return None, [f"{table.no_finding} of report {differ.idxmax()} does not follow the {schema.name} schema's rule; "
                      f"the page leaves {table.no_finding} for the reviewer to set"]
    text = (lambda v: "" if v is None else str(v))
    return {"column": columns.index(table.no_finding), "counted": [columns.index(f) for f in counted],
            "abnormal": text(schema.abnormal_value), "uncertain": text(schema.uncertain_value)}, []


def page_data(labels: Path, texts: dict[str, str], evidence: Path | None = None, gold: GoldFile | None = None,
              sample: Path | None = None, schema: Schema | None = None,
              embed_paths: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Everything the page shows, and the digest its progress is saved under."""
    table = read_labels(labels)
    table.require("report_id")
    columns, findings, strings, name = table.label_columns, Strings(), Strings(), path_namer(embed_paths)
    for column in columns:
        findings(column)
    mentions = read_mentions(evidence) if evidence is not None else None
    reports, warnings = report_entries(table, texts, mentions, findings, strings)
    rule, rule_warnings = no_finding_rule(schema, table)
    section, gold_warnings = gold_section(labels, gold, columns, sample, name) if gold else (None, [])
    data = {"labels": name(labels), "columns": columns, "noFinding": table.no_finding, "noFindingRule": rule,
            "findings": findings.items, "strings": strings.items, "assertions": list(ASSERTIONS),
            "attributes": list(ATTRIBUTES), "errorTypes": list(ERROR_TYPES),
            "evidence": name(evidence) if evidence else None, "reports": reports, "gold": section,
            "sample": sample_section(sample)}
    data["digest"] = digest(columns, reports)
    return data, warnings + rule_warnings + gold_warnings


def digest(columns: list[str], reports: list[dict]) -> str:
    """The key a page's progress is saved under: its reports, their texts and the labeler's values
    (what a reviewer's work depends on), not the gold file or the paths, so the same audit written
    again, say with --gold, finds the work done, and another audit never does."""
    basis = [columns, [[r["id"], r["text"], r["labels"]] for r in reports]]
    return hashlib.sha256(json_text(basis, indent=None).encode()).hexdigest()[:16]
