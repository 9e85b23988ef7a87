"""Localization: IoU, IoBB and AFP on hand-computed cases, thresholded regions, and the command."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from classifier.cli import main
from classifier.localize import boxes_from_map, iobb, iou, localization_metrics


def test_iou_and_iobb_by_hand():
    truth, detected = (0, 0, 10, 10), (5, 0, 10, 10)  # overlap 5 x 10 = 50
    assert iou(truth, detected) == pytest.approx(50 / 150)
    assert iobb(truth, detected) == pytest.approx(50 / 100)
    assert iobb((0, 0, 10, 10), (2, 2, 4, 4)) == 1.0  # a box inside the truth is all "purity"
    assert iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0


def test_accuracy_and_false_positives_by_hand():
    truth = pd.DataFrame([["a", "Mass", 0, 0, 10, 10], ["b", "Mass", 0, 0, 10, 10]],
                         columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    predicted = pd.DataFrame([["a", "Mass", 0, 0, 10, 10], ["a", "Mass", 50, 50, 5, 5], ["b", "Mass", 8, 8, 10, 10]],
                             columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    metrics = localization_metrics(predicted, truth, ["Mass"])
    # a: hit (IoU 1) plus one false positive; b: overlap 2x2=4, IoU 4/196, IoBB 4/100.
    assert metrics["iou"]["0.1"]["Mass"] == {"acc": 0.5, "afp": 1.0}
    assert metrics["iobb"]["0.1"]["Mass"] == {"acc": 0.5, "afp": 1.0}
    assert metrics["iobb"]["0.1"]["mean"] == {"acc": 0.5, "afp": 1.0}
    assert set(metrics["iobb"]) == {"0.1", "0.25", "0.5", "0.75", "0.9"}
    assert set(metrics["iou"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"}


def test_thresholds_give_one_box_per_region_in_image_pixels():
    heatmap = np.zeros((8, 8))
    heatmap[1:3, 1:3] = 1.0   # a strong region
    heatmap[5:7, 4:8] = 0.5   # a weaker one
    found = boxes_from_map(heatmap, (60, 180), scale=(4.0, 2.0))
    boxes = sorted(b for b, _ in found)
    # at 60: both regions; at 180: only the strong one
    assert boxes == [(4.0, 2.0, 8.0, 4.0), (4.0, 2.0, 8.0, 4.0), (16.0, 10.0, 16.0, 4.0)]
    assert boxes_from_map(np.ones((4, 4)), (60,), (1.0, 1.0)) == []  # a flat map has no region


def test_localize_command_writes_boxes_overlays_and_tables(tmp_path, tiny_run):
    root, run = tiny_run
    out = tmp_path / "loc"
    result = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "-o", str(out),
                                       "--boxes", str(root / "BBox_List.csv"), "--overlays", "3"])
    assert result.exit_code == 0, result.output
    boxes = pd.read_csv(out / "boxes.csv")
    assert list(boxes.columns) == ["Image Index", "Finding Label", "x", "y", "w", "h", "score"]
    assert (boxes["x"] >= 0).all() and (boxes["x"] + boxes["w"] <= 48.01).all()
    metrics = json.loads((out / "localization.json").read_text())
    assert 0 <= metrics["iobb"]["0.5"]["mean"]["acc"] <= 1 and "Nodule" in metrics["iou"]["0.3"]
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert "T(IoBB)" in result.output and "mean accuracy: T(IoBB)=0.5" in result.output


def test_boxes_in_other_pixels_are_scaled(tmp_path, tiny_run):
    root, run = tiny_run
    big = pd.read_csv(root / "BBox_List.csv", skiprows=1, header=None)
    big[[2, 3, 4, 5]] = big[[2, 3, 4, 5]] * (1024 / 48)
    path = tmp_path / "BBox_1024.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + big.to_csv(index=False, header=False))
    a = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "-o", str(tmp_path / "a"),
                                  "--boxes", str(root / "BBox_List.csv"), "--overlays", "0"])
    b = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "-o", str(tmp_path / "b"),
                                  "--boxes", str(path), "--boxes-size", "1024", "--overlays", "0"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ma = json.loads((tmp_path / "a" / "localization.json").read_text())
    mb = json.loads((tmp_path / "b" / "localization.json").read_text())
    assert ma["iou"]["0.1"]["mean"] == pytest.approx(mb["iou"]["0.1"]["mean"])


def test_a_lesion_at_a_known_place_gives_the_map_its_maximum_there():
    """class_maps with a real (hand-set) network whose features are the image's own brightness per
    16-pixel cell: the upsampled map must peak on the lesion, not shifted by the resampling."""
    import torch
    from torch import nn

    from classifier.localize import class_maps
    from classifier.models import ModelConfig, WeaklySupervisedNet

    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=1, transition_channels=3))
    model.trunk, model.transition = nn.AvgPool2d(16), nn.Identity()
    with torch.no_grad():
        model.prediction.weight.fill_(1.0)
    image = torch.zeros(1, 3, 128, 128)
    image[:, :, 36:44, 86:94] = 1.0  # a lesion centred at row 40, column 90
    with torch.no_grad():
        _, maps = class_maps(model.eval(), image)
    row, col = divmod(int(maps[0, 0].argmax()), 128)
    assert abs(row - 40) <= 8 and abs(col - 90) <= 8
    [(box, _)] = [b for b in boxes_from_map(maps[0, 0].numpy(), (180,), (1.0, 1.0))]
    x, y, w, h = box
    assert x <= 90 <= x + w and y <= 40 <= y + h
