"""The labeler on the hand-written styles sets: other hospitals' report styles.

`--set styles` (data_samples/styles: 180 reports, five styles) or `--set styles2` (data_samples/styles2: 400
reports, ten styles, written by writers who never saw the rules; its ChestX-ray14 gold follows the clinical
convention, so score it with `--profile clinical`). Labels the reports with `reportminer label --schema S
[--profile P] [--convention KEY=VALUE ...]` (one process), then scores them against the hand labels of that
schema, per split (`dev` is what rules may be tuned on, `holdout` is not) and style:
micro precision / recall / F1 over the findings with gold positives (uncertain scored as negative,
as `reportminer evaluate` does), and the exact-value agreement: the share of cells the gold fills
(1, 0 or -1) where the label is the same value. Then the side, severity and change of each
described finding against attributes.csv, per split.

    python benchmarks/labeler_styles.py --schema chestxray14 [--errors dev_errors.csv]
    python benchmarks/labeler_styles.py --set styles2 --schema chestxray14 --profile clinical --holdout

The per-style rows are the dev split's unless `--holdout` is given (held-out figures are for reporting, once
the rules are frozen). `--ablate` labels once more with each new mechanism turned off (its convention or
lexicon switch named in `ABLATIONS`) and prints the dev and holdout micro F1 and exact agreement of each.
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

SETS = {name: Path(__file__).resolve().parents[1] / "data_samples" / name for name in ("styles", "styles2")}
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


def run_label(root: Path, work: Path, schema: str, options: list[str], tag: str = "") -> tuple[Path, Path]:
    """labels.parquet and mentions.parquet of the set's reports, labeled with these extra options (a cache of
    this run only: the ablations share the parses, never a decision of other rules)."""
    labels, evidence = work / f"labels{tag}.parquet", work / f"mentions{tag}.parquet"
    subprocess.run([sys.executable, "-m", "reportminer.cli", "label", str(root / "reports"), "-o", str(labels),
                    "--evidence", str(evidence), "--schema", schema, "--workers", "1", "--quiet", "--cache", str(work / "cache"),
                    *options], check=True)
    return labels, evidence


def subsets(manifest: pd.DataFrame, holdout: bool) -> list[tuple[str, pd.Series]]:
    """(name, report ids): dev (and, with `holdout`, all and holdout), then per style the dev split (and the
    holdout's with `holdout`)."""
    out = [("dev", manifest.loc[manifest["split"] == "dev", "report_id"])]
    if holdout:
        out += [("all", manifest["report_id"]), ("holdout", manifest.loc[manifest["split"] == "holdout", "report_id"])]
    for split in ("dev", "holdout") if holdout else ("dev",):
        out += [(f"{split} {st}", manifest.loc[(manifest["split"] == split) & (manifest["style"] == st), "report_id"])
                for st in sorted(manifest["style"].unique())]
    return out


# Each new mechanism of issue 23 and the convention value that turns it off (conventions.yaml).
ABLATIONS = {
    "organ headings (layout=plain)": ["--convention", "layout=plain"],
    "revisions: addenda replace (revisions=all)": ["--convention", "revisions=all"],
    "stated-normal sentences (stated_normal=blank)": ["--convention", "stated_normal=blank"],
    "'?' marks a mention uncertain (query=positive)": ["--convention", "query=positive"],
    "shorthand and slips (shorthand=off)": ["--convention", "shorthand=off"],
    "opacity words are Infiltration (opacity=none)": ["--convention", "opacity=none"],
    "diagnoses: infection, CHF (diagnoses=none)": ["--convention", "diagnoses=none"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="which", choices=sorted(SETS), default="styles")
    parser.add_argument("--schema", choices=sorted(GOLD), default="chestxray14")
    parser.add_argument("--profile", help="A profile of the lexicon's conventions (clinical).")
    parser.add_argument("--convention", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--holdout", action="store_true",
                        help="Also print the holdout split per style (always for --set styles).")
    parser.add_argument("--ablate", action="store_true", help="Also label with each new mechanism turned off.")
    parser.add_argument("--errors", type=Path, help="Write the dev split's false positives and negatives here.")
    args = parser.parse_args()
    args.holdout = args.holdout or args.which == "styles"  # the first set's holdout figures are published already
    root = SETS[args.which]
    options = (["--profile", args.profile] if args.profile else []) + \
        [part for c in args.convention for part in ("--convention", c)]
    manifest = pd.read_csv(root / "manifest.csv", dtype=str)
    gold = pd.read_csv(root / GOLD[args.schema], dtype={"report_id": str})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels, evidence = run_label(root, work, args.schema, options)
        rows = [score(labels, gold[gold["report_id"].isin(set(ids))], work, name.replace(" ", "_"))
                for name, ids in subsets(manifest, args.holdout)]
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        attributes = pd.read_csv(root / "attributes.csv", dtype=str)
        for split in ("dev", "holdout") if args.holdout else ("dev",):
            ids = set(manifest.loc[manifest["split"] == split, "report_id"])
            attributes[attributes["report_id"].isin(ids)].to_csv(work / f"attributes_{split}.csv", index=False)
            result = evaluate_attributes(evidence, work / f"attributes_{split}.csv", load_lexicon(schema=args.schema))
            print(f"attributes, {split} (findings of this schema the gold describes):")
            print(format_attributes(result))
        if args.ablate:
            rows = []
            for n, (name, extra) in enumerate([("all mechanisms", [])] + list(ABLATIONS.items())):
                ablated, _ = run_label(root, work, args.schema, options + extra, tag=f"_{n}")
                for split in ("dev", "holdout") if args.holdout else ("dev",):
                    ids = set(manifest.loc[manifest["split"] == split, "report_id"])
                    row = score(ablated, gold[gold["report_id"].isin(ids)], work, f"ablate_{n}_{split}")
                    rows.append({"turned off": name, "split": split, "F1": row["F1"], "exact": row["exact"]})
            print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if args.errors:
            dev = gold[gold["report_id"].isin(set(manifest.loc[manifest["split"] == "dev", "report_id"]))]
            dev.to_csv(work / "dev.csv", index=False)
            list_errors(labels, work / "dev.csv", evidence=evidence).to_csv(args.errors, index=False)


if __name__ == "__main__":
    main()
