"""The labeler on the hand-written styles set (data_samples/styles): other hospitals' report styles.

Labels the 180 reports with `reportminer label --schema S` (one process), then scores them against the
hand labels of that schema, per split (`dev` is what rules may be tuned on, `holdout` is not) and style:
micro precision / recall / F1 over the findings with gold positives (uncertain scored as negative,
as `reportminer evaluate` does), and the exact-value agreement: the share of cells the gold fills
(1, 0 or -1) where the label is the same value. Then the side, severity and change of each
described finding against attributes.csv, per split.

    python benchmarks/labeler_styles.py --schema chestxray14 [--errors dev_errors.csv]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from cxrcore.labels import read_labels
from reportminer.evaluate import evaluate_attributes, evaluate_files, format_attributes, list_errors
from reportminer.lexicon import load_lexicon

ROOT = Path(__file__).resolve().parents[1] / "data_samples" / "styles"
GOLD = {"chestxray14": "gold_chestxray14.csv", "chexpert": "gold_chexpert.csv"}


def exact_agreement(labels: Path, gold: pd.DataFrame) -> tuple[int, int]:
    """(cells where the label equals the gold's 1/0/-1, cells the gold fills), over the gold's columns."""
    frame = read_labels(labels).frame.groupby("report_id").first()
    same = filled = 0
    for column in [c for c in gold.columns if c != "report_id" and c in frame.columns]:
        for report_id, value in zip(gold["report_id"], gold[column]):
            if pd.isna(value):
                continue
            filled += 1
            mine = frame[column].get(report_id) if report_id in frame.index else None
            same += int(mine is not None and not pd.isna(mine) and int(mine) == int(value))
    return same, filled


def score(labels: Path, gold: pd.DataFrame, work: Path, name: str) -> dict[str, float]:
    path = work / f"gold_{name}.csv"
    gold.to_csv(path, index=False)
    result = evaluate_files(labels, path)
    micro = result["totals"]["with gold positives"]["micro"]
    same, filled = exact_agreement(labels, gold)
    return {"subset": name, "reports": len(gold), "P": micro["precision"], "R": micro["recall"], "F1": micro["f1"],
            "exact": same / filled if filled else float("nan"), "cells": filled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", choices=sorted(GOLD), default="chestxray14")
    parser.add_argument("--errors", type=Path, help="Write the dev split's false positives and negatives here.")
    args = parser.parse_args()
    manifest = pd.read_csv(ROOT / "manifest.csv", dtype=str)
    gold = pd.read_csv(ROOT / GOLD[args.schema], dtype={"report_id": str})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels, evidence = work / "labels.parquet", work / "mentions.parquet"
        subprocess.run([sys.executable, "-m", "reportminer.cli", "label", str(ROOT / "reports"), "-o", str(labels),
                        "--evidence", str(evidence), "--schema", args.schema, "--workers", "1", "--quiet"], check=True)
        rows = []
        for name, ids in [("all", manifest["report_id"])] + \
                [(s, manifest.loc[manifest["split"] == s, "report_id"]) for s in ("dev", "holdout")] + \
                [(f"holdout {st}", manifest.loc[(manifest["split"] == "holdout") & (manifest["style"] == st), "report_id"])
                 for st in sorted(manifest["style"].unique())]:
            rows.append(score(labels, gold[gold["report_id"].isin(set(ids))], work, name.replace(" ", "_")))
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        attributes = pd.read_csv(ROOT / "attributes.csv", dtype=str)
        for split in ("dev", "holdout"):
            ids = set(manifest.loc[manifest["split"] == split, "report_id"])
            attributes[attributes["report_id"].isin(ids)].to_csv(work / f"attributes_{split}.csv", index=False)
            result = evaluate_attributes(evidence, work / f"attributes_{split}.csv", load_lexicon(schema=args.schema))
            print(f"attributes, {split} (findings of this schema the gold describes):")
            print(format_attributes(result))
        if args.errors:
            dev = gold[gold["report_id"].isin(set(manifest.loc[manifest["split"] == "dev", "report_id"]))]
            dev.to_csv(work / "dev.csv", index=False)
            list_errors(labels, work / "dev.csv", evidence=evidence).to_csv(args.errors, index=False)


if __name__ == "__main__":
    main()
