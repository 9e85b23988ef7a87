"""`classifier fit` and `score` end to end on the real small NIH images (skipped without ../shared)."""

import json
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from classifier.cli import main

from conftest import ROOT, SHARED

sys.path.insert(0, str(ROOT / "benchmarks"))
from localization_nih import labels  # noqa: E402  (one builder of these labels, shared with the benchmark)

pytestmark = pytest.mark.realdata
SMALL = SHARED / "nih-images-small"


@pytest.mark.slow
def test_fit_and_score_on_real_64px_images(tmp_path):
    frame = pd.read_parquet(labels("kcr2019d1_NIH1000_64px", tmp_path / "labels.parquet"))
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
    assert set(metrics) == {"iobb", "iou", "pointing", "recent", "true_boxes", "heatmap", "scored_family"} and "mean" in metrics["iobb"]["0.5"]
    print(result.output)
