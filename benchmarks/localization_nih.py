"""`classifier localize` on the real NIH films in ../shared/data: plumbing and scaling, not accuracy.

What is here: 1,000 NIH films downscaled to 64 pixels (`kcr2019d1_NIH1000_64px`), 9 of them with
radiologists' boxes (drawn on the 1,024-pixel films), and 24 films at the original 1,024 pixels
(`mrdchry_first24`) with no boxes. The script trains a small network on the 64-pixel films' NIH labels
(official split; validation carved from train_val by patient), then:

1. localizes the 9 boxed films with the built-in defaults (boxes scaled from 1,024 to 64 pixels);
2. calibrates on the boxed films of half the boxed patients and scores the others' (NIH boxed test
   films only; a user with all 984 boxes calibrates on some and reports on the rest the same way);
3. localizes the 24 films at 1,024 pixels and checks every box lies on the film, in its own pixels.

    python benchmarks/localization_nih.py --work out/localization_nih
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cxrcore.splits import patient_splits
from reportminer.dataset import read_nih_entries, write_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL = SHARED / "nih-images-small"
FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]


def labels(folder: str, path: Path) -> Path:
    """labels.parquet of the films under `folder` of nih-images-small, with their NIH labels and split."""
    joined = pd.read_csv(SMALL / "labels_joined_from_Data_Entry.csv")
    joined = joined[joined["relpath"].str.startswith(folder + "/")]
    nih = read_nih_entries(SHARED / "nih" / "Data_Entry_2017_v2020.csv.gz", FINDINGS, "No_Finding")
    frame = nih.merge(joined[["image_index", "relpath", "official_split"]], left_on="image_id", right_on="image_index")
    frame["image_path"] = frame["relpath"]
    split = patient_splits(frame.loc[frame["official_split"] == "train_val", "patient_id"], (0.85, 0.15, 0.0), seed=0)
    frame["split"] = "test"
    frame.loc[split.index, "split"] = split
    columns = FINDINGS + ["No_Finding"]
    write_dataset(frame[["report_id", "image_id", "patient_id", "image_path", *columns, "split"]], path, columns,
                  {"label_columns": columns, "no_finding": "No_Finding"})
    return path


def boxes_of(table: Path, image_ids: set[str], path: Path) -> Path:
    """NIH's BBox_List rows of `image_ids`, in its own format."""
    raw = pd.read_csv(SHARED / "nih" / "BBox_List_2017.csv").iloc[:, :6]
    raw = raw[raw.iloc[:, 0].isin(image_ids)]
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + raw.to_csv(index=False, header=False))
    return path


def classifier(*args: object) -> str:
    done = subprocess.run([sys.executable, "-m", "classifier.cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    return done.stderr + done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("out/localization_nih"))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    small = labels("kcr2019d1_NIH1000_64px", work / "labels_64.parquet")
    run = work / "run"
    if not (run / "best.pt").exists():
        classifier("fit", small, "--images", SMALL, "-o", run, "--arch", "resnet18", "--size", "64", "--epochs",
                   args.epochs, "--transition", "64")
    frame = pd.read_parquet(small)
    boxed = set(pd.read_csv(SHARED / "nih" / "BBox_List_2017.csv").iloc[:, 0]) & set(frame["image_id"])
    patients = sorted(frame.loc[frame["image_id"].isin(boxed), "patient_id"].unique())
    held_patients = set(patients[: len(patients) // 2])  # NIH boxed only test films: calibrate on half the patients
    held_ids = set(frame.loc[frame["patient_id"].isin(held_patients), "image_id"]) & boxed
    print(f"{len(boxed)} boxed 64-pixel films ({len(patients)} patients): calibrate on {len(held_ids)}, "
          f"score {len(boxed - held_ids)}")
    every = boxes_of(SHARED, boxed, work / "boxes_all.csv")
    print(classifier("localize", run, small, "--images", SMALL, "-o", work / "builtin", "--boxes", every,
                     "--boxes-size", "1024", "--overlays", "9"))
    held = boxes_of(SHARED, held_ids, work / "boxes_calibrate.csv")
    scored = boxes_of(SHARED, boxed - held_ids, work / "boxes_test.csv")
    print(classifier("localize", run, small, "--images", SMALL, "-o", work / "calibrated", "--calibrate", held,
                     "--boxes", scored, "--boxes-size", "1024", "--overlays", "9"))
    full = labels("mrdchry_first24", work / "labels_1024.parquet")
    print(classifier("localize", run, full, "--images", SMALL, "-o", work / "films_1024", "--min-score", "0.2",
                     "--overlays", "6"))
    drawn = pd.read_csv(work / "films_1024" / "boxes.csv")
    inside = ((drawn[["x", "y"]] >= 0).all(axis=1) & (drawn["x"] + drawn["w"] <= 1024.01)
              & (drawn["y"] + drawn["h"] <= 1024.01))
    print(json.dumps({"films_1024": int(pd.read_parquet(full).shape[0]), "boxes": len(drawn),
                      "largest_box_px": float(drawn[["w", "h"]].max().max()) if len(drawn) else 0.0,
                      "all_on_the_film": bool(inside.all())}))


if __name__ == "__main__":
    main()
