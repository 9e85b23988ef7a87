"""`classifier fit` and `score` end to end on the real small NIH images (skipped without ../shared)."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from classifier.cli import main
from cxrcore.splits import patient_splits
from reportminer.dataset import read_nih_entries, write_dataset

from conftest import SHARED

pytestmark = pytest.mark.realdata
SMALL = SHARED / "nih-images-small"
FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]


@pytest.mark.slow
def test_fit_and_score_on_real_64px_images(tmp_path):
    joined = pd.read_csv(SMALL / "labels_joined_from_Data_Entry.csv")
    joined = joined[joined["relpath"].str.startswith("kcr2019d1_NIH1000_64px/")]
    nih = read_nih_entries(SHARED / "nih" / "Data_Entry_2017_v2020.csv.gz", FINDINGS, "No_Finding")
    frame = nih.merge(joined[["image_index", "relpath", "official_split"]], left_on="image_id", right_on="image_index")
    frame["image_path"] = frame["relpath"]
    split = patient_splits(frame.loc[frame["official_split"] == "train_val", "patient_id"], (0.85, 0.15, 0.0), seed=0)
    frame["split"] = "test"
    frame.loc[split.index, "split"] = split
    columns = FINDINGS + ["No_Finding"]
    write_dataset(frame[["report_id", "image_id", "patient_id", "image_path", *columns, "split"]],
                  tmp_path / "labels.parquet", columns, {"label_columns": columns, "no_finding": "No_Finding"})
    assert len(frame) == 1000

    result = CliRunner().invoke(main, ["fit", str(tmp_path / "labels.parquet"), "--images", str(SMALL), "-o",
                                       str(tmp_path / "run"), "--arch", "resnet18", "--size", "64", "--epochs", "2",
                                       "--transition", "64"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["images"] == (frame["split"] == "test").sum()
    result = CliRunner().invoke(main, ["score", str(tmp_path / "run"), str(tmp_path / "labels.parquet"), "--images",
                                       str(SMALL), "--split", "test", "-o", str(tmp_path / "scores.parquet"),
                                       "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    scores = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert len(scores) == metrics["test"]["images"] and scores.drop(columns=["image_id", "image_path"]).notna().all().all()
    print(result.output)  # the AUCs, for the record (-s shows them)
    # The 9 of these images with radiologists' boxes: 1024-pixel boxes scaled to the 64-pixel images.
    out = tmp_path / "loc"
    result = CliRunner().invoke(main, ["localize", str(tmp_path / "run"), str(tmp_path / "labels.parquet"), "--images",
                                       str(SMALL), "-o", str(out), "--boxes", str(SHARED / "nih" / "BBox_List_2017.csv"),
                                       "--boxes-size", "1024", "--overlays", "9"])
    assert result.exit_code == 0, result.output
    assert "9 images with true boxes" in result.output
    boxes = pd.read_csv(out / "boxes.csv")
    assert boxes["Image Index"].nunique() == 9
    assert ((boxes["x"] + boxes["w"]) <= 64.01).all() and ((boxes["y"] + boxes["h"]) <= 64.01).all()
    metrics = json.loads((out / "localization.json").read_text())
    assert set(metrics) == {"iobb", "iou", "pointing", "recent", "true_boxes", "heatmap"} and "mean" in metrics["iobb"]["0.5"]
    print(result.output)
