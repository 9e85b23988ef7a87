"""The labeler on the OpenI development reports, both schemas, against the ChestX-ray8 authors' gold.

ChestX-ray14 schema: per-finding F1 beside the paper's Table 2 (OpenI), and micro P/R/F1 over the 13
findings with gold positives (Hernia has none), uncertain scored as negative, on all 3,080 reports
and on two parts drawn by a hash of the report id: the four fifths the rules were tuned on and the
fifth held back. CheXpert schema: the observations both golds share (Effusion is CheXpert's Pleural
Effusion), same scoring.

    python benchmarks/labeler_openi.py ../shared/data/openi-dev
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from reportminer.evaluate import evaluate_files

PAPER = {"Atelectasis": 0.924, "Cardiomegaly": 0.922, "Effusion": 0.918, "Infiltration": 0.895, "Mass": 0.800,
         "Nodule": 0.757, "Pneumonia": 0.571, "Pneumothorax": 0.667}  # ChestX-ray8, Table 2 (OpenI)
SHARED = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
          "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax", "Consolidation": "Consolidation",
          "Edema": "Edema"}


def held_back(report_id: str) -> bool:
    """The fifth of reports no rule was tuned on, chosen by a hash of the id (stable, no data needed)."""
    return int(hashlib.sha1(report_id.encode()).hexdigest(), 16) % 5 == 0


def label(reports: Path, out: Path, schema: str) -> Path:
    subprocess.run([sys.executable, "-m", "reportminer.cli", "label", str(reports), "-o", str(out), "--schema",
                    schema, "--quiet"], check=False, capture_output=True)
    if not out.exists():
        sys.exit(f"labeling with {schema} failed")
    return out


def micro(labels: Path, gold: pd.DataFrame, work: Path, name: str) -> dict:
    path = work / f"{name}.csv"
    gold.to_csv(path, index=False)
    result = evaluate_files(labels, path)
    return result


def f1_text(figures: dict) -> str:
    """A finding's F1, or why there is none: with no positive in the gold, F1 is undefined (not 0)."""
    if figures["support"] == 0:
        return "n/a (no positive in the gold; left out of the micro figures)"
    return f"{figures['f1']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("openi", type=Path, help="folder with reports/ and gold.csv")
    args = parser.parse_args()
    gold = pd.read_csv(args.openi / "gold.csv", dtype={"report_id": str})
    parts = {"all": gold, "tuned (4/5)": gold[~gold["report_id"].map(held_back)],
             "held back (1/5)": gold[gold["report_id"].map(held_back)]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cx14 = label(args.openi / "reports", work / "cx14.parquet", "chestxray14")
        results = {name: micro(cx14, part, work, f"cx14_{n}") for n, (name, part) in enumerate(parts.items())}
        print("ChestX-ray14 schema, F1 per finding (all reports) | the paper's labeler")
        for finding, figures in results["all"]["per_finding"].items():
            print(f"  {finding:<20}{f1_text(figures)}  {PAPER.get(finding, '')}")
        for name, result in results.items():
            m = result["totals"]["with gold positives"]["micro"]
            print(f"micro P/R/F1, 13 findings, {name:<16} {m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f}"
                  f"  ({result['reports']} reports)")
        chexpert = label(args.openi / "reports", work / "chexpert.parquet", "chexpert")
        shared = gold[["report_id", *SHARED]].rename(columns=SHARED)
        result = micro(chexpert, shared, work, "chexpert")
        m = result["totals"]["with gold positives"]["micro"]
        print("CheXpert schema on the observations both golds share: "
              + ", ".join(f"{f} {f1_text(v)}" for f, v in result["per_finding"].items()))
        print(f"micro P/R/F1 over them: {m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f}")


if __name__ == "__main__":
    main()
