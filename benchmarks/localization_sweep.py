"""Localization of `classifier fit` settings side by side, on generated radiographs with true boxes.

Every variant trains on image-level labels only (the generator's truth, which is what `reportminer
label` reads from the generated reports, hedged ones as uncertain → `--uncertain ones`) and is
scored by `classifier localize` on the same unseen generated images: mean accuracy at T(IoBB) = 0.5
and T(IoU) = 0.3, pointing accuracy (map maximum inside the true box), and the test AUC of `fit`.
A variant is `"NAME:key=value key=value ..."`; keys are `classifier fit` options (`output-stride`,
`epochs`, `pool`, `lse-r`, `lr`, `size`, ...) plus `images` (generated images for fit, 70% of them
train), and for localize `thresholds` (`60,180;120,200` scores the same run with each set) and
`heatmaps` (`cam;gradcam:layer2` scores it with each). The rest are the README demo's settings. Several variants run at once with `--parallel` (a GPU holds many).

    python benchmarks/localization_sweep.py --variant os32:output-stride=32 --variant os16:output-stride=16 \\
        --variant os8:output-stride=8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from classifier.synthetic import FINDINGS, generate

BASE = {"arch": "resnet18", "size": "128", "epochs": "6", "transition": "256", "output-stride": "16",
        "uncertain": "ones", "images": "1000", "thresholds": "60,180", "heatmaps": "cam"}
LOCALIZE = ("images", "thresholds", "heatmaps")


def labels_for(root: Path, n: int) -> Path:
    """labels.parquet for the first n images of `root`'s generated set, from its truth.csv."""
    path = root / f"labels_{n}.parquet"
    if not path.exists():
        truth = pd.read_csv(root / "truth.csv").head(n)
        frame = truth.assign(report_id=truth["image_id"], image_path="images/" + truth["image_id"])
        frame[list(FINDINGS)] = frame[list(FINDINGS)].astype("int8")  # fit splits it by patient, as the demo
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def run_variant(name: str, settings: dict[str, str], work: Path, args: argparse.Namespace) -> list[dict]:
    """fit then localize in subprocesses, as a user runs them; returns the table's rows (one per threshold set)."""
    run, loc = work / "runs" / name, work / "loc" / name
    options = {k: v for k, v in settings.items() if k not in LOCALIZE}
    fit = [sys.executable, "-m", "classifier.cli", "fit", str(labels_for(work / "train", int(settings["images"]))),
           "-o", str(run), "--device", args.device, "--loader-workers", str(args.loader_workers),
           "--cache", str(work / "cache"), *[x for k, v in options.items() for x in (f"--{k}", v)]]
    started = time.perf_counter()
    done = subprocess.run(fit, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        return [{"variant": name, "error": done.stderr.strip().splitlines()[-1]}]
    rows = []
    for heatmap, levels in [(h, t) for h in settings["heatmaps"].split(";") for t in settings["thresholds"].split(";")]:
        method, _, layer = heatmap.partition(":")
        out = loc / f"{heatmap.replace(':', '_')}_{levels.replace(',', '_')}"
        localize = [sys.executable, "-m", "classifier.cli", "localize", str(run),
                    str(labels_for(work / "unseen", args.unseen)), "-o", str(out), "--boxes",
                    str(work / "unseen" / "BBox_List.csv"), "--device", args.device, "--thresholds", levels,
                    "--overlays", str(args.overlays), "--method", method, "--layer", layer or "transition"]
        done = subprocess.run(localize, capture_output=True, text=True)
        if done.returncode:
            return [{"variant": name, "error": done.stderr.strip().splitlines()[-1]}]
        metrics = json.loads((out / "localization.json").read_text())
        test = json.loads((run / "metrics.json").read_text()).get("test", {})
        row = {"variant": name, "settings": " ".join(f"{k}={v}" for k, v in settings.items()
                                                     if BASE.get(k) != v and k not in LOCALIZE[1:]),
               "heatmap": heatmap, "thresholds": levels, "fit_s": round(seconds), "test_auc": test.get("mean_auc"),
               "iobb_0.5": metrics["iobb"]["0.5"]["mean"]["acc"], "iou_0.3": metrics["iou"]["0.3"]["mean"]["acc"],
               "afp_iobb_0.5": metrics["iobb"]["0.5"]["mean"]["afp"], "pointing": metrics["pointing"]["mean"]}
        for f in FINDINGS:
            if f in metrics["iobb"]["0.5"]:
                row[f] = (f"{metrics['iobb']['0.5'][f]['acc']:.2f}/{metrics['iou']['0.3'][f]['acc']:.2f}"
                          f"/{metrics['pointing'][f]:.2f}")
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """A Markdown table of the rows (numbers to 3 decimals)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("out/localization_sweep"))
    parser.add_argument("--variant", action="append", required=True, help='"NAME:key=value ..." (see above)')
    parser.add_argument("--unseen", type=int, default=400, help="Unseen generated images to localize on.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", type=int, default=1, help="Variants trained at once.")
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--overlays", type=int, default=24)
    parser.add_argument("--budget", type=float, default=float("inf"), help="Start no variant after this many seconds.")
    parser.add_argument("--results", type=Path, help="Append each row here as JSON lines, as it finishes.")
    args = parser.parse_args()
    variants = {}
    for text in args.variant:
        name, _, spec = text.partition(":")
        variants[name] = {**BASE, **dict(kv.split("=", 1) for kv in spec.split())}
    if len({v["size"] for v in variants.values()}) > 1:
        sys.exit("all variants must share one size (the images are generated at it)")
    size = int(next(iter(variants.values()))["size"])
    count = max(int(v["images"]) for v in variants.values())
    started = time.perf_counter()
    for folder, n, seed in (("train", count, 0), ("unseen", args.unseen, 1)):
        target = args.work / folder
        if not (target / "truth.csv").exists() or len(pd.read_csv(target / "truth.csv")) < n:
            generate(target, n, size=size, seed=seed)
    print(f"generated {count} + {args.unseen} images at {size} px in {time.perf_counter() - started:.0f} s", flush=True)

    def one(item: tuple[str, dict[str, str]]) -> list[dict]:
        name, settings = item
        if time.perf_counter() - started > args.budget:
            return [{"variant": name, "error": "not run: over --budget"}]
        rows = run_variant(name, settings, args.work, args)
        for row in rows:
            print(json.dumps(row), flush=True)
            if args.results:
                with args.results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
        return rows

    with ThreadPoolExecutor(args.parallel) as pool:
        rows = [row for rows in pool.map(one, variants.items()) for row in rows]
    print()
    print("per finding: IoBB@0.5 / IoU@0.3 / pointing accuracy")
    print(markdown(rows))


if __name__ == "__main__":
    main()
