"""Labels against hand labels: per-finding precision, recall, F1, support; micro and macro totals.

Labels are per image; gold is per report, so a report's label is the maximum over its images (they
share one report, so they agree). Totals are given over all findings in the gold, over the first 8
(the paper's original findings), and over the findings with gold positives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrcore.errors import InputError
from cxrcore.labels import read_labels

from .attributes import ATTRIBUTE_NAMES
from .evidence import read_mentions
from .intervals import LEVEL, draw_counts, intervals, pooled_strata
from .lexicon import Lexicon


GOLD_VALUES = {"1": 1.0, "0": 0.0, "-1": -1.0, "": float("nan"), "1.0": 1.0, "0.0": 0.0, "-1.0": -1.0}
# A report id written with a leading ' so a spreadsheet does not run it as a formula (the audit page's
# export: =, +, -, @, tab, return, or a ' itself, after the ').
SPREADSHEET_ESCAPED = r"'['=+\-@\t\r]"


def read_gold(gold: str | Path, labels: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Hand labels: `report_id` and, per finding, 1 / 0 / -1 (uncertain) / blank (not mentioned).

    Returns the values (float, NaN for blank) indexed by report_id, the gold columns that are labels
    of the labels file, and notes naming gold columns that are not (they are not scored)."""
    try:
        truth = pd.read_csv(gold, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{gold}: cannot read as CSV ({exc})") from None
    if "report_id" not in truth.columns:
        raise InputError(f"{gold}: missing column 'report_id' (columns are: {', '.join(truth.columns)}); is it the "
                         f"gold file, given second?")
    truth = truth[(truth != "").any(axis=1)]  # blank lines, which keep their place in the line count
    findings = [c for c in truth.columns if c in labels]
    notes = [f"gold column {c!r} is not a label of the labels file; it is not scored"
             for c in truth.columns if c not in labels and c != "report_id"]
    if not findings:
        raise InputError(f"{gold}: no finding columns in common with the labels ({', '.join(labels[:4])}, ...)")
    values = pd.DataFrame(index=truth.index)
    for column in findings:
        cells = truth[column].str.strip()
        bad = ~cells.isin(list(GOLD_VALUES))
        if bad.any():
            row = truth.index[bad][0]
            raise InputError(f"{gold}:{row + 2}: column {column} must be 1, 0, -1 or blank, got {truth[column][row]!r}")
        values[column] = cells.map(GOLD_VALUES)
    ids = truth["report_id"].str.strip()
    ids = ids.where(~ids.str.match(SPREADSHEET_ESCAPED), ids.str[1:])  # the audit page's '=1 is report =1
    if (ids == "").any():
        raise InputError(f"{gold}:{truth.index[ids == ''][0] + 2}: empty report_id")
    if ids.duplicated().any():
        row = truth.index[ids.duplicated()][0]
        raise InputError(f"{gold}:{row + 2}: report_id {ids[row]} listed twice")
    return values.set_index(ids), findings, notes


def load_pair(labels: str | Path, gold: str | Path,
              uncertain: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], int, list[str]]:
    """Predicted 0/1 and gold 0/1 frames indexed by report_id, the findings both files have, the
    number of gold reports with no row in the labels (scored as all negative), and notes on gold
    columns that are not scored. Uncertain (-1) on either side is scored as `uncertain` says; not
    mentioned is negative."""
    table = read_labels(labels)
    table.require("report_id")
    truth, findings, notes = read_gold(gold, table.label_columns)
    per_report = table.frame.groupby("report_id")[findings].max()
    missing = int((~truth.index.isin(per_report.index)).sum())
    if missing == len(truth):
        raise InputError(f"none of the {len(truth)} reports of {gold} is in {labels} (gold ids such as "
                         f"{truth.index[0]}, label ids such as {per_report.index[0] if len(per_report) else 'none'}); "
                         f"are these the files you meant?")
    value_for_uncertain = 1 if uncertain == "positive" else 0
    binary = per_report.reindex(truth.index).astype("float").fillna(0).replace(-1, value_for_uncertain)
    gold_binary = truth[findings].fillna(0).replace(-1, value_for_uncertain)
    return binary.astype(int), gold_binary.astype(int), findings, missing, notes


def _prf(tp: float, fp: float, fn: float) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def _hits(pred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per report and finding: true positive, false positive, false negative (booleans)."""
    return {"tp": (pred == 1) & (truth == 1), "fp": (pred == 1) & (truth == 0), "fn": (pred == 0) & (truth == 1)}


def score(pred: pd.DataFrame, truth: pd.DataFrame, findings: list[str],
          weights: pd.Series | None = None) -> dict[str, Any]:
    """Per-finding and total figures. With `weights` (per report, aligned with `truth`), each report
    counts its weight instead of 1, so a stratified sample's figures speak for the archive."""
    hits = _hits(pred[findings], truth[findings])

    def count(mask: pd.Series) -> float:
        return int(mask.sum()) if weights is None else float(weights[mask].sum())

    per: dict[str, dict[str, Any]] = {}
    for f in findings:
        tp, fp, fn = (count(hits[k][f]) for k in ("tp", "fp", "fn"))
        per[f] = {**_prf(tp, fp, fn), "support": count(truth[f] == 1), "tp": tp, "fp": fp, "fn": fn}
    groups = {f"all {len(findings)}": findings, "first 8": findings[:8],
              "with gold positives": [f for f in findings if per[f]["support"] > 0]}
    totals = {}
    for name, members in groups.items():
        tp, fp, fn = (sum(per[f][k] for f in members) for k in ("tp", "fp", "fn"))
        # A finding with no gold positive and no prediction has nothing to score: it is left out of macro.
        scored = [f for f in members if per[f]["tp"] + per[f]["fp"] + per[f]["fn"]] or members
        macro = {k: sum(per[f][k] for f in scored) / len(scored) for k in ("precision", "recall", "f1")}
        totals[name] = {"findings": members, "micro": {**_prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn},
                        "macro": macro}
    return {"per_finding": per, "totals": totals}


def add_intervals(figures: dict[str, Any], pred: pd.DataFrame, truth: pd.DataFrame, counts: np.ndarray,
                  weights: pd.Series | None = None) -> None:
    """Put a bootstrap interval (`ci`: precision, recall, f1 as [low, high]) on every per-finding and
    micro figure of `figures`; `counts` says how often each report is drawn in each resample."""
    findings = list(figures["per_finding"])
    w = np.ones(len(truth)) if weights is None else weights.to_numpy(dtype=float)
    drawn = {k: counts @ (mask.to_numpy(dtype=float) * w[:, None])
             for k, mask in _hits(pred[findings], truth[findings]).items()}  # (resamples, findings)
    for j, f in enumerate(findings):
        figures["per_finding"][f]["ci"] = intervals(drawn["tp"][:, j], drawn["fp"][:, j], drawn["fn"][:, j])
    for total in figures["totals"].values():
        cols = [findings.index(f) for f in total["findings"]]
        total["micro"]["ci"] = intervals(*(drawn[k][:, cols].sum(axis=1) for k in ("tp", "fp", "fn")))


def read_weights(path: str | Path, ids: pd.Index) -> tuple[pd.Series, np.ndarray | None, list[str]]:
    """The weight of each gold report (`report_id`, `weight`), its stratum when the file has `stratum`
    and `stratum_size` (a `reportminer sample` sample.csv), and notes. With strata, weights are
    recomputed over the gold's reports (stratum size / gold reports in the stratum), so a partly
    annotated sample still weighs each stratum as the archive does."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})") from None
    for column in ("report_id", "weight"):
        if column not in table.columns:
            raise InputError(f"{path}: missing column {column!r}; --weights wants report_id, weight (sample.csv "
                             f"of `reportminer sample`)")
    weight = pd.to_numeric(table["weight"], errors="coerce")
    bad = ~(np.isfinite(weight) & (weight > 0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}:{row + 2}: weight must be a positive number, got {table['weight'].iloc[row]!r}")
    if table["report_id"].duplicated().any():
        row = int(np.flatnonzero(table["report_id"].duplicated().to_numpy())[0])
        raise InputError(f"{path}:{row + 2}: report_id {table['report_id'].iloc[row]} listed twice")
    table = table.assign(weight=weight, report_id=table["report_id"].str.strip()).set_index("report_id")
    absent = ids[~ids.isin(table.index)]
    if len(absent):
        raise InputError(f"{path}: no weight for gold report {absent[0]}" + (f" (and {len(absent) - 1} more)"
                         if len(absent) > 1 else "") + "; give the sample.csv the gold was drawn from")
    table = table.loc[ids]
    if not {"stratum", "stratum_size"} <= set(table.columns):
        return table["weight"], None, []
    size = pd.to_numeric(table["stratum_size"], errors="coerce")
    weights = size / table.groupby("stratum")["stratum"].transform("size")
    notes = [] if np.allclose(weights, table["weight"]) else [
        f"weights recomputed per stratum over the {len(ids)} gold reports (stratum size / gold reports in it)"]
    return weights.rename("weight"), table["stratum"].astype(str).to_numpy(), notes


def evaluate_files(labels: str | Path, gold: str | Path, uncertain: str = "negative", bootstrap: int = 0,
                   seed: int = 0, weights: str | Path | None = None) -> dict[str, Any]:
    """All figures as a JSON-ready dict; with `bootstrap` resamples, intervals on them; with a
    `weights` file, the same figures weighted (under `weighted`)."""
    pred, truth, findings, missing, notes = load_pair(labels, gold, uncertain)
    result = {"labels": str(labels), "gold": str(gold), "uncertain": uncertain, "reports": int(len(truth)),
              "missing_reports": missing, **score(pred, truth, findings), "notes": notes}
    if bootstrap:
        result["bootstrap"] = {"resamples": bootstrap, "seed": seed, "level": LEVEL}
        add_intervals(result, pred, truth, draw_counts(len(truth), bootstrap, seed))
    if weights is not None:
        w, strata, weight_notes = read_weights(weights, truth.index)
        notes += weight_notes
        result["weighted"] = {"weights": str(weights), "stratified": strata is not None,
                              **score(pred, truth, findings, w)}
        if bootstrap:
            groups, note = pooled_strata(strata) if strata is not None else (None, None)
            notes += [note] if note else []
            add_intervals(result["weighted"], pred, truth, draw_counts(len(truth), bootstrap, seed, groups), w)
    return result


def _interval(figures: dict[str, Any]) -> str:
    if "ci" not in figures:
        return ""
    low, high = figures["ci"]["f1"]
    return f"  {low:.3f}-{high:.3f}" if np.isfinite(low) else "  n/a"


def _rows(result: dict[str, Any], support: str) -> list[str]:
    lines = []
    for f, s in result["per_finding"].items():
        lines.append(f"{f:<20}{s['precision']:>7.3f}{s['recall']:>7.3f}{s['f1']:>7.3f}{s['support']:>9{support}}"
                     f"{_interval(s)}")
    for name, t in result["totals"].items():
        for kind in ("micro", "macro"):
            v = t[kind]
            line = f"{kind + ' ' + name:<20}{v['precision']:>7.3f}{v['recall']:>7.3f}{v['f1']:>7.3f}"
            lines.append(line + (" " * 9 + _interval(v) if "ci" in v else ""))
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The figures as an aligned text table; the F1 interval, when there is one, as the last column."""
    lines = [f"{'finding':<20}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}"
             + ("  F1 95% CI" if "bootstrap" in result else ""), *_rows(result, "")]
    if "weighted" in result:
        lines += [f"weighted by {result['weighted']['weights']} (figures for the archive the sample was drawn "
                  f"from; support in reports of the archive):", *_rows(result["weighted"], ".0f")]
    if "bootstrap" in result:
        b = result["bootstrap"]
        lines.append(f"(95% intervals: percentile bootstrap over reports, {b['resamples']} resamples, seed {b['seed']}"
                     + ("; within strata for the weighted figures)" if result.get("weighted", {}).get("stratified")
                        else ")"))
    lines.append(f"({result['reports']} gold reports, {result['missing_reports']} without labels; "
                 f"uncertain scored as {result['uncertain']})")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def list_errors(labels: str | Path, gold: str | Path, uncertain: str = "negative",
                evidence: str | Path | None = None) -> pd.DataFrame:
    """Every false positive and false negative, with the mentions (sentence, assertion, rule) behind it."""
    pred, truth, findings, _, _ = load_pair(labels, gold, uncertain)
    rows = []
    for f in findings:
        for report_id in truth.index[(pred[f] == 1) & (truth[f] == 0)]:
            rows.append({"report_id": report_id, "finding": f, "error": "false positive"})
        for report_id in truth.index[(pred[f] == 0) & (truth[f] == 1)]:
            rows.append({"report_id": report_id, "finding": f, "error": "false negative"})
    frame = pd.DataFrame(rows, columns=["report_id", "finding", "error"])
    if evidence is None or frame.empty:
        return frame.assign(evidence="")
    mentions = read_mentions(evidence)
    grouped = {key: " | ".join(f"[{r.assertion} by {r.rule}] {r.sentence}" for r in g.itertuples())
               for key, g in mentions.groupby(["report_id", "finding"])}
    frame["evidence"] = [grouped.get((r, f), "(not mentioned)") for r, f in zip(frame["report_id"], frame["finding"])]
    return frame



def report_attributes(mentions: pd.DataFrame, lexicon: Lexicon) -> pd.DataFrame:
    """Per (report, finding): the side, severity and change its mentions state, one value each. Mentions
    count when they assert the finding (positive, uncertain) or say it resolved; sides on both sides
    give the side attribute's `both` value, the largest severity wins, and a change stated in the
    impression wins over one stated in the findings."""
    order = {a.name: a.order for a in lexicon.attributes}
    both = {a.name: a.both for a in lexicon.attributes}
    rows = []
    counted = mentions[(mentions["assertion"] != "negative") | (mentions.get("change") == "resolved")]
    for (report_id, finding), group in counted.groupby(["report_id", "finding"], sort=False):
        row = {"report_id": report_id, "finding": finding}
        for name in ATTRIBUTE_NAMES:
            if name not in group:
                row[name] = None
                continue
            stated = group.dropna(subset=[name])
            if name == "change" and (stated["section"] == "IMPRESSION").any():
                stated = stated[stated["section"] == "IMPRESSION"]
            values = set(stated[name])
            if both.get(name) and len(values - {both[name]}) >= 2:
                row[name] = both[name]
            else:
                row[name] = next((v for v in order.get(name, ()) if v in values), None)
        rows.append(row)
    return pd.DataFrame(rows, columns=["report_id", "finding", *ATTRIBUTE_NAMES])


def evaluate_attributes(evidence: str | Path, gold: str | Path, lexicon: Lexicon) -> dict[str, Any]:
    """Per attribute, over the gold's stated values: how many the labeler states the same (`correct`),
    states otherwise (`wrong`) or leaves blank (`missing`); and values it states where the gold has none."""
    try:
        truth = pd.read_csv(gold, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{gold}: cannot read as CSV ({exc})") from None
    missing = [c for c in ("report_id", "finding", *ATTRIBUTE_NAMES) if c not in truth.columns]
    if missing:
        raise InputError(f"{gold}: missing column {missing[0]!r}; an attributes gold has report_id, finding, "
                         f"{', '.join(ATTRIBUTE_NAMES)}")
    mine = report_attributes(read_mentions(evidence), lexicon).set_index(["report_id", "finding"])
    truth = truth[truth["finding"].isin(lexicon.finding_names)]  # the schema's findings only
    out: dict[str, Any] = {}
    for name in ATTRIBUTE_NAMES:
        counts = {"gold": 0, "correct": 0, "wrong": 0, "missing": 0, "extra": 0}
        stated = set()
        for r in truth.itertuples(index=False):
            value, key = getattr(r, name), (r.report_id, r.finding)
            ours = mine[name].get(key) if key in mine.index else None
            if value:
                stated.add(key)
                counts["gold"] += 1
                counts["correct" if ours == value else "missing" if ours is None else "wrong"] += 1
        counts["extra"] = int(sum(1 for key, v in mine[name].items() if v is not None and key not in stated
                                  and key[0] in set(truth["report_id"])))
        counts["accuracy"] = counts["correct"] / counts["gold"] if counts["gold"] else float("nan")
        out[name] = counts
    return out


def format_attributes(result: dict[str, Any]) -> str:
    lines = [f"{'attribute':<20}{'gold':>7}{'same':>7}{'other':>7}{'blank':>7}{'extra':>7}{'acc':>7}"]
    for name, c in result.items():
        lines.append(f"{name:<20}{c['gold']:>7}{c['correct']:>7}{c['wrong']:>7}{c['missing']:>7}{c['extra']:>7}"
                     f"{c['accuracy']:>7.3f}")
    return "\n".join(lines)
