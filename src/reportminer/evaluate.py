"""Labels against hand labels: per-finding precision, recall, F1, support; micro and macro totals.

Labels are per image; gold is per report, so a report's label is the maximum over its images (they
share one report, so they agree). Totals are given over all findings in the gold, over the first 8
(the paper's original findings), and over the findings with gold positives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.labels import read_labels


def load_pair(labels: str | Path, gold: str | Path, uncertain: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], int]:
    """Predicted 0/1 and gold 0/1 frames indexed by report_id, the findings both files have, and the
    number of gold reports with no row in the labels (scored as all negative)."""
    table = read_labels(labels)
    table.require("report_id")
    pred = table.frame
    try:
        truth = pd.read_csv(gold, dtype={"report_id": str})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{gold}: cannot read as CSV ({exc})") from None
    if "report_id" not in truth.columns:
        raise InputError(f"{gold}: missing column 'report_id'")
    findings = [c for c in truth.columns if c in pred.columns and c != "report_id"]
    if not findings:
        raise InputError(f"{gold}: no finding columns in common with {labels}")
    for col in findings:
        bad = truth.index[~truth[col].isin([0, 1])]
        if len(bad):
            raise InputError(f"{gold}:{bad[0] + 2}: column {col} must be 0 or 1, got {truth[col].iloc[bad[0]]!r}")
    if truth["report_id"].duplicated().any():
        dup = truth.index[truth["report_id"].duplicated()][0]
        raise InputError(f"{gold}:{dup + 2}: report_id {truth['report_id'].iloc[dup]} listed twice")
    value_for_uncertain = 1 if uncertain == "positive" else 0
    per_report = pred.groupby("report_id")[findings].max()
    binary = per_report.reindex(truth["report_id"]).astype("float").fillna(0).replace(-1, value_for_uncertain)
    missing = int((~truth["report_id"].isin(per_report.index)).sum())
    return binary.astype(int), truth.set_index("report_id")[findings].astype(int), findings, missing


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def evaluate_files(labels: str | Path, gold: str | Path, uncertain: str = "negative") -> dict[str, Any]:
    """All figures as a JSON-ready dict."""
    pred, truth, findings, missing = load_pair(labels, gold, uncertain)
    per: dict[str, dict[str, Any]] = {}
    for f in findings:
        tp = int(((pred[f] == 1) & (truth[f] == 1)).sum())
        fp = int(((pred[f] == 1) & (truth[f] == 0)).sum())
        fn = int(((pred[f] == 0) & (truth[f] == 1)).sum())
        per[f] = {**_prf(tp, fp, fn), "support": int(truth[f].sum()), "tp": tp, "fp": fp, "fn": fn}
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
    return {"labels": str(labels), "gold": str(gold), "uncertain": uncertain, "reports": int(len(truth)),
            "missing_reports": missing, "per_finding": per, "totals": totals}


def format_table(result: dict[str, Any]) -> str:
    """The figures as an aligned text table."""
    lines = [f"{'finding':<20}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}"]
    for f, s in result["per_finding"].items():
        lines.append(f"{f:<20}{s['precision']:>7.3f}{s['recall']:>7.3f}{s['f1']:>7.3f}{s['support']:>9}")
    for name, t in result["totals"].items():
        for kind in ("micro", "macro"):
            v = t[kind]
            lines.append(f"{kind + ' ' + name:<20}{v['precision']:>7.3f}{v['recall']:>7.3f}{v['f1']:>7.3f}")
    lines.append(f"({result['reports']} gold reports, {result['missing_reports']} without labels; "
                 f"uncertain scored as {result['uncertain']})")
    return "\n".join(lines)


def list_errors(labels: str | Path, gold: str | Path, uncertain: str = "negative",
                evidence: str | Path | None = None) -> pd.DataFrame:
    """Every false positive and false negative, with the mentions (sentence, assertion, rule) behind it."""
    pred, truth, findings, _ = load_pair(labels, gold, uncertain)
    rows = []
    for f in findings:
        for report_id in truth.index[(pred[f] == 1) & (truth[f] == 0)]:
            rows.append({"report_id": report_id, "finding": f, "error": "false positive"})
        for report_id in truth.index[(pred[f] == 0) & (truth[f] == 1)]:
            rows.append({"report_id": report_id, "finding": f, "error": "false negative"})
    frame = pd.DataFrame(rows, columns=["report_id", "finding", "error"])
    if evidence is None or frame.empty:
        return frame.assign(evidence="")
    mentions = pq.read_table(evidence).to_pandas()
    grouped = {key: " | ".join(f"[{r.assertion} by {r.rule}] {r.sentence}" for r in g.itertuples())
               for key, g in mentions.groupby(["report_id", "finding"])}
    frame["evidence"] = [grouped.get((r, f), "(not mentioned)") for r, f in zip(frame["report_id"], frame["finding"])]
    return frame

