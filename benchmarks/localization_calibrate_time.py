"""How long `classifier localize --calibrate` takes, against the code of a reference revision, in one run.

Both versions calibrate the same run on the same boxes (the first N boxed films of a generated set), as
subprocesses one after the other, each in a fresh copy of the run; the reference's code is taken with
`git archive REV src` into a temporary folder. Prints both wall times and their ratio.

    python benchmarks/localization_calibrate_time.py out/fam/A128/run out/fam/A128/eval --films 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "feb30a0"  # the last commit before calibration took every Grad-CAM kind of a layer in one pass


def code_of(rev: str, into: Path) -> Path:
    """The `src` folder of revision `rev`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def timed(src: Path, run: Path, labels: Path, boxes: Path, out: Path) -> float:
    """Seconds one `localize --calibrate` takes with the code in `src`."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "classifier.cli", "localize", str(run), str(labels), "-o", str(out),
                           "--calibrate", str(boxes), "--overlays", "0", "--device", "cpu"],
                          env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 3):
        sys.exit(done.stderr)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("generated", type=Path, help="A `classifier synth` folder with labels_*.parquet.")
    parser.add_argument("--films", type=int, default=60, help="Boxed films to calibrate on.")
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--code", type=Path, default=REPO / "src", help="The code timed against the reference.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = pd.read_csv(args.generated / "BBox_List.csv", skiprows=1, header=None)
        films = list(dict.fromkeys(table[0]))[: args.films]
        chosen = table[table[0].isin(films)]
        frame = pd.read_parquet(next(args.generated.glob("labels_*.parquet")))
        frame = frame[frame["image_id"].isin(films)]  # only the calibration films: nothing else is drawn
        labels = args.generated / f"labels_calibrate_{args.films}.parquet"
        frame.to_parquet(labels, index=False)
        boxes = work / "boxes.csv"
        boxes.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + chosen.to_csv(index=False, header=False))
        reference = code_of(args.reference, work / "reference")
        seconds = {}
        for name, src in (("reference", reference), ("now", args.code)):
            run = shutil.copytree(args.run, work / f"run_{name}")
            (run / "localization_defaults.json").unlink(missing_ok=True)
            seconds[name] = timed(src, run, labels, boxes, work / f"out_{name}")
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
    print(f"{len(films)} films, {len(chosen)} boxes: --calibrate took {seconds['now']:.1f} s against "
          f"{seconds['reference']:.1f} s at {args.reference}, {seconds['reference'] / seconds['now']:.2f}x faster")


if __name__ == "__main__":
    main()
