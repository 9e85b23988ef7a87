"""Localization: IoU, IoBB and AFP on hand-computed cases, thresholded regions, and the command."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from classifier.cli import main
from classifier.boxes import boxes_from_map, iobb, iou
from classifier.metrics import localization_metrics


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    """class_maps with a hand-set network whose trunk averages the image over 17-pixel windows every 16
    pixels, padded like a ResNet (cell i centred on pixel 16 i): the map must peak on the lesion and its
    tightest box must cover it, not be shifted by the resampling."""
    import torch
    from torch import nn

    from classifier.heatmaps import class_maps
    from classifier.config import ModelConfig
    from classifier.models import WeaklySupervisedNet

    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=1, transition_channels=3, output_stride=16))
    model.trunk, model.transition = nn.Conv2d(3, 3, 17, stride=16, padding=8, bias=False), nn.Identity()
    with torch.no_grad():
        model.trunk.weight.fill_(1 / 17**2)
        model.prediction.weight.fill_(1.0)
    image = torch.zeros(1, 3, 128, 128)
    image[:, :, 44:53, 92:101] = 1.0  # a 9-pixel lesion centred on pixel (48, 96), the centre of cell (3, 6)
    with torch.no_grad():
        _, maps = class_maps(model.eval(), image)
    row, col = divmod(int(maps[0, 0].argmax()), 128)
    assert (row, col) == (48, 96)
    [(box, _)] = boxes_from_map(maps[0, 0].numpy(), (220,), (1.0, 1.0))
    x, y, w, h = box
    assert x < 96 < x + w and y < 48 < y + h and w < 16 and h < 16


@pytest.mark.parametrize("stages, stride", [(3, 8), (4, 16)])
def test_upsampled_cells_sit_where_the_trunk_centres_them(stages, stride):
    """Measured on a real ResNet-18 trunk: the input pixels that move the middle feature cell are
    centred where `upsample` puts that cell (align_corners=False would put it half a cell off)."""
    import torch

    from classifier.heatmaps import upsample
    from classifier.config import ModelConfig
    from classifier.models import WeaklySupervisedNet

    torch.manual_seed(0)
    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=1, transition_channels=4,
                                            output_stride=stride, trunk_stages=stages)).eval()
    size = 256
    cells = size // stride
    centres = []
    for _ in range(3):
        image = torch.rand(1, 3, size, size, requires_grad=True)
        model.trunk(image)[0, :, cells // 2, cells // 2].sum().backward()
        weight = image.grad[0].abs().sum(0)
        axis = torch.arange(size, dtype=torch.float32)
        centres.append([float((weight.sum(1) * axis).sum() / weight.sum()), float((weight.sum(0) * axis).sum() / weight.sum())])
    measured = np.mean(centres, axis=0)
    one_hot = torch.zeros(1, 1, cells, cells)
    one_hot[0, 0, cells // 2, cells // 2] = 1.0
    peak = divmod(int(upsample(one_hot, (size, size), *model.cell_geometry())[0, 0].argmax()), size)
    assert np.abs(measured - np.array(peak)).max() <= 1.5, (measured, peak)


def test_pointing_accuracy_by_hand():
    from classifier.metrics import pointing_accuracy

    truth = pd.DataFrame([["a", "Mass", 0, 0, 10, 10], ["b", "Mass", 0, 0, 10, 10], ["b", "Mass", 20, 20, 5, 5]],
                         columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    peaks = pd.DataFrame([["a", "Mass", 5.0, 5.0], ["b", "Mass", 22.0, 22.0]], columns=["Image Index", "Finding Label", "x", "y"])
    assert pointing_accuracy(peaks, truth, ["Mass"]) == {"Mass": 1.0, "mean": 1.0}  # b's peak is in its second box
    peaks.loc[1, "x"] = 50.0
    assert pointing_accuracy(peaks, truth, ["Mass", "Nodule"]) == {"Mass": 0.5, "mean": 0.5}


@pytest.mark.slow
def test_grad_cam_reads_a_chosen_layer_and_names_the_layers_when_asked_for_another(tmp_path, tiny_run):
    root, run = tiny_run
    out = tmp_path / "gc"
    result = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "-o", str(out), "--boxes",
                                       str(root / "BBox_List.csv"), "--overlays", "0", "--method", "gradcam",
                                       "--layer", "layer2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "localization.json").read_text())
    assert metrics["heatmap"] == {"method": "gradcam", "layer": "layer2", "thresholds": [60, 180]}
    assert 0 <= metrics["pointing"]["mean"] <= 1
    bad = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "-o", str(tmp_path / "x"),
                                    "--method", "gradcam", "--layer", "layer9"])
    assert bad.exit_code == 1
    assert "layer1, layer2, layer3, layer4, transition" in bad.output and "Traceback" not in bad.output


def test_grad_cam_at_the_transition_layer_is_the_class_map_cut_at_zero():
    """With average pooling every position's gradient is the prediction weight / positions, so
    Grad-CAM at the transition layer is ReLU(class map - bias) / positions: checked on a real network."""
    import torch

    from classifier.heatmaps import class_maps, grad_cam_maps, upsample
    from classifier.config import ModelConfig
    from classifier.models import WeaklySupervisedNet

    torch.manual_seed(0)
    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=2, transition_channels=8, pool="avg")).eval()
    images = torch.rand(2, 3, 96, 96)
    probs_cam, _ = class_maps(model, images)
    probs_gc, gc = grad_cam_maps(model, images, "transition")
    assert torch.allclose(probs_cam, probs_gc, atol=1e-6)
    with torch.no_grad():
        cells = model.class_maps(model.forward_features(images)) - model.prediction.bias.view(1, -1, 1, 1)
    expected = upsample(torch.relu(cells) / cells[0, 0].numel(), (96, 96), *model.cell_geometry())
    assert gc.abs().max() > 0 and torch.allclose(gc, expected, atol=1e-6)
