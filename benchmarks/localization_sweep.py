"""Localization of `classifier fit` settings side by side, on generated radiographs with true boxes.

Every variant trains on image-level labels only (the generator's truth, which is what `reportminer
label` reads from the generated reports, hedged ones as uncertain → `--uncertain ones`), chooses its
localization defaults on its own validation split (`localize --split val --calibrate`, the boxes of
the training set's validation images) and is scored by `classifier localize` with those defaults on
unseen generated images: mean accuracy at T(IoBB) = 0.5 with its AFP, at IoU > 0.1 and > 0.5, the
pointing game, Nodule on its own, and the test AUC of `fit`. A variant is `"NAME:key=value ..."`;
keys are `classifier fit` options (`output-stride`, `epochs`, `trunk-stages`, `size`, ...) plus
`images` (generated images for fit, 70% of them train) and `heatmaps`, the heatmaps to calibrate and
score (`auto` lets calibration choose; `cam;gradcam:layer2` fixes each in turn). The rest are the
README demo's settings. Several variants run at once with `--parallel` (a GPU holds many).

    python benchmarks/localization_sweep.py --variant demo: --variant cam:heatmaps=cam
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

BASE = {"arch": "resnet18", "size": "128", "epochs": "16", "transition": "256", "output-stride": "16",
        "trunk-stages": "3", "uncertain": "ones", "images": "1000", "heatmaps": "auto"}
LOCALIZE = ("images", "heatmaps")


def labels_for(root: Path, n: int) -> Path:
    """labels.parquet for the first n images of `root`'s generated set, from its truth.csv."""
    path = root / f"labels_{n}.parquet"
    if not path.exists():
        truth = pd.read_csv(root / "truth.csv").head(n)
        frame = truth.assign(report_id=truth["image_id"], image_path="images/" + truth["image_id"])
        frame[list(FINDINGS)] = frame[list(FINDINGS)].astype("int8")  # fit splits it by patient, as the demo
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def command(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "classifier.cli", *map(str, args)], capture_output=True, text=True)


def run_variant(name: str, settings: dict[str, str], work: Path, args: argparse.Namespace) -> list[dict]:
    """fit, then per heatmap: calibrate on the validation split and localize the unseen set, in
    subprocesses as a user runs them; returns the table's rows (one per heatmap)."""
    run, loc = work / "runs" / name, work / "loc" / name
    train = labels_for(work / "train", int(settings["images"]))
    options = {k: v for k, v in settings.items() if k not in LOCALIZE}
    started = time.perf_counter()
    done = command("fit", train, "-o", run, "--device", args.device, "--loader-workers", args.loader_workers,
                   *[x for k, v in options.items() for x in (f"--{k}", v)])
    seconds = time.perf_counter() - started
    if done.returncode:
        return [{"variant": name, "error": done.stderr.strip().splitlines()[-1]}]
    rows = []
    for heatmap in settings["heatmaps"].split(";"):
        method, _, layer = heatmap.partition(":")
        fixed = [] if method == "auto" else ["--method", method] + (["--layer", layer] if layer else [])
        out = loc / heatmap.replace(":", "_")
        done = command("localize", run, train, "--split", "val", "--calibrate", work / "train" / "BBox_List.csv",
                       "-o", out / "calibration", "--overlays", "0", "--device", args.device, *fixed)
        if not done.returncode:
            done = command("localize", run, labels_for(work / "unseen", args.unseen), "-o", out, "--boxes",
                           work / "unseen" / "BBox_List.csv", "--device", args.device, "--overlays", args.overlays)
        if done.returncode:
            return rows + [{"variant": name, "heatmap": heatmap, "error": done.stderr.strip().splitlines()[-1]}]
        rows.append(row(name, settings, heatmap, out, run, seconds))
    return rows


def _without_nodule(iobb: dict, recent: dict) -> str:
    """Mean accuracy at T(IoBB)=0.5 / IoU > 0.5 over the findings other than Nodule."""
    others = [f for f in iobb if f not in ("mean", "Nodule")]
    return (f"{sum(iobb[f]['acc'] for f in others) / len(others):.3f}/"
            f"{sum(recent[f]['acc_iou>0.5'] for f in others) / len(others):.3f}")


def row(name: str, settings: dict[str, str], heatmap: str, out: Path, run: Path, seconds: float) -> dict:
    """One line of the table: the means, Nodule, and each finding's IoBB 0.5 / IoU > 0.5 accuracy."""
    metrics = json.loads((out / "localization.json").read_text())
    test = json.loads((run / "metrics.json").read_text()).get("test", {})
    iobb, recent, chosen = metrics["iobb"]["0.5"], metrics["recent"], metrics["heatmap"]
    out_row = {"variant": name, "settings": " ".join(f"{k}={v}" for k, v in settings.items()
                                                     if BASE.get(k) != v and k not in LOCALIZE),
               "heatmap": heatmap, "chosen": f"{chosen['method']} {chosen['layer']} {chosen['thresholds']}",
               "fit_s": round(seconds), "test_auc": test.get("mean_auc"), "iobb_0.5": iobb["mean"]["acc"],
               "afp_iobb_0.5": iobb["mean"]["afp"], "iou>0.1": recent["mean"]["acc_iou>0.1"],
               "iou>0.5": recent["mean"]["acc_iou>0.5"], "pointing": recent["mean"]["pointing"],
               "mean_without_nodule": _without_nodule(iobb, recent)}
    for f in FINDINGS:
        if f in iobb:
            out_row[f] = f"{iobb[f]['acc']:.2f}/{recent[f]['acc_iou>0.5']:.2f}"
    return out_row


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
    print("per finding: accuracy at T(IoBB)=0.5 / at IoU > 0.5")
    print(markdown(rows))


if __name__ == "__main__":
    main()
