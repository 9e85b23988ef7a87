"""The rules' gain as a measured ablation on real reports: keyword vs NegEx vs graph rules.

Labels the same reports three ways with `reportminer label --assertions keyword|negex|rules` (the
same mentions, only the decision differs), scores each with `reportminer evaluate`, and prints a
Markdown table: per-finding F1, and micro P/R/F1 over the 13 findings with gold positives and over
the first 8. Usage:

    python benchmarks/labeler_ablation.py ../shared/data/openi-dev/reports ../shared/data/openi-dev/gold.csv
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAPER = {"Atelectasis": .924, "Cardiomegaly": .922, "Effusion": .918, "Infiltration": .895, "Mass": .800,
         "Nodule": .757, "Pneumonia": .571, "Pneumothorax": .667}
METHODS = ("keyword", "negex", "rules")


def main(reports: str, gold: str) -> None:
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            labels = Path(tmp) / f"{method}.parquet"
            start = time.perf_counter()
            done = subprocess.run(["reportminer", "label", reports, "-o", str(labels), "--assertions", method, "--quiet"],
                                  capture_output=True, text=True)
            seconds[method] = time.perf_counter() - start
            if done.returncode not in (0, 3):
                sys.exit(done.stderr)
            out = Path(tmp) / f"{method}.json"
            subprocess.run(["reportminer", "evaluate", str(labels), gold, "--json", str(out)], check=True,
                           capture_output=True)
            results[method] = json.loads(out.read_text())
    findings = list(results["rules"]["per_finding"])
    print("| finding | keyword | NegEx | rules | paper (OpenI) |")
    print("|---|---:|---:|---:|---:|")
    for f in findings:
        cells = [f"{results[m]['per_finding'][f]['f1']:.3f}" if results[m]["per_finding"][f]["support"] else
                 "n/a" for m in METHODS]
        print(f"| {f} | {' | '.join(cells)} | {PAPER.get(f, '')} |")
    for group in ("with gold positives", "first 8"):
        cells = []
        for m in METHODS:
            t = results[m]["totals"][group]["micro"]
            cells.append(f"{t['precision']:.3f} / {t['recall']:.3f} / **{t['f1']:.3f}**")
        print(f"| micro P / R / F1, {group} ({len(results['rules']['totals'][group]['findings'])}) | {' | '.join(cells)} | |")
    print(f"| seconds to label (this machine) | {' | '.join(f'{seconds[m]:.1f}' for m in METHODS)} | |")
    unscored = [f for f in findings if not results["rules"]["per_finding"][f]["support"]]
    if unscored:
        print(f"\nn/a: {', '.join(unscored)} has no positive in the gold, so its F1 is undefined; it is left out of the "
              f"micro figures.")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
