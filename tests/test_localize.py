"""Localization: IoU, IoBB and AFP on hand-computed cases, thresholded regions, and the command."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from classifier.cli import main
from classifier.defaults import DEFAULTS_FILE
from classifier.boxes import BoxRules, boxes_from_map, iobb, iou, merge_boxes
from classifier.metrics import localization_metrics


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


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


def test_recent_figures_count_iou_strictly_above_and_pointing_by_hand():
    truth = pd.DataFrame([["a", "Mass", 0, 0, 10, 10], ["b", "Mass", 0, 0, 10, 10]],
                         columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    # a: IoU exactly 0.5 (half the true box); b: IoU 1/3, and a false box
    predicted = pd.DataFrame([["a", "Mass", 0, 0, 10, 5], ["b", "Mass", 5, 0, 10, 10], ["b", "Mass", 30, 30, 5, 5]],
                             columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    peaks = pd.DataFrame([["a", "Mass", 5.0, 5.0], ["b", "Mass", 50.0, 50.0]],
                         columns=["Image Index", "Finding Label", "x", "y"])
    metrics = localization_metrics(predicted, truth, ["Mass", "Nodule"], peaks)
    assert metrics["iou"]["0.5"]["Mass"]["acc"] == 0.5  # the paper's tables: IoU 50/100 counts at T(IoU) = 0.5
    assert metrics["recent"]["Mass"] == {"acc_iou>0.1": 1.0, "acc_iou>0.5": 0.0, "afp_iou>0.1": 0.5, "pointing": 0.5}
    assert metrics["recent"]["mean"] == metrics["recent"]["Mass"] and metrics["true_boxes"] == {"Mass": 2}
    assert set(metrics) == {"iobb", "iou", "pointing", "recent", "true_boxes"}


def test_calibration_fits_the_thresholds_to_the_true_boxes_and_avoids_false_ones():
    from classifier.calibration import choose_rules, entry, grid

    entries = []
    for k in range(6):
        heatmap = blob(40, (12 + k, 12), 8, 1.0) + blob(40, (30, 30), 6, 0.6)  # a lesion and a weaker blob (peak 153)
        truth = [(11, 11 + k, 3, 3)]  # the lesion's pixels at 200 and above on the 0-255 scale (radius 1.7)
        entries.append(entry("Consolidation", heatmap, truth, (1.0, 1.0)))  # no size prior: levels from the map
    fixed_only = [r for r in grid(None, BoxRules(min_area=0)) if r.level == "fixed" and r.grow == 1]
    overall, own, figures = choose_rules(entries, fixed_only)
    rules = own["Consolidation"]
    assert rules.low == 200 and rules.high > 153, rules  # boxes the size of the truth, and the blob draws none
    assert figures["Consolidation"]["acc_iou>0.5"] == 1.0 and figures["Consolidation"]["afp_iobb_0.5"] == 0.0
    assert overall == rules
    given = grid((60, 100), BoxRules(min_area=0))
    assert {(r.low, r.high) for r in given if r.level == "fixed"} == {(60, 100)}  # given thresholds are kept


def test_the_iou_objective_chooses_the_box_that_covers_the_finding_over_a_speck_inside_it():
    from classifier.calibration import measure, entry

    # a map whose bright core is a speck in the middle of the true box and whose shoulder covers the box:
    # by IoBB the speck scores perfectly; by IoU only the box at the shoulder's level does
    heatmap = blob(60, (30, 30), 16, 0.5) + blob(60, (30, 30), 3, 0.5)
    entries = [entry("Consolidation", heatmap, [(19, 19, 23, 23)], (1.0, 1.0))]
    speck, cover = BoxRules(200, 250, min_area=0), BoxRules(40, 250, min_area=0)
    small, big = measure(entries, speck), measure(entries, cover)
    assert small["acc_iobb_0.5"] == big["acc_iobb_0.5"] == 1.0  # IoBB cannot tell them apart
    assert small["acc_iou>0.5"] == 0.0 and big["acc_iou>0.5"] == 1.0
    assert big["objective"] > small["objective"] + 1


def test_defaults_come_from_the_options_then_the_run_then_the_architecture(tmp_path):
    from cxrcore.errors import InputError
    from classifier.defaults import DEFAULTS_FILE, Options, Settings, read_defaults, resolve, write_defaults

    resnet = ["layer1", "layer2", "layer3", "layer4", "transition"]
    built = read_defaults(tmp_path, "resnet18", resnet)
    assert built.source == "built-in for resnet18" and not built.calibration_digests
    assert {layer for _, layer in built.groups(list(built.per_finding))} <= set(resnet)
    # a network without some layer (a DenseNet has none of a ResNet's) reads those choices at its transition layer
    dense = read_defaults(tmp_path, "densenet121", ["transition"])
    assert {layer for _, layer in dense.groups(list(dense.per_finding) + ["Edema"])} == {"transition"}
    assert [m for m, _, _ in map(dense.choice_for, dense.per_finding)] == \
        [m for m, _, _ in map(built.choice_for, built.per_finding)]
    grown = BoxRules(150, 230, level="prior", prior_scale=2.0, grow=1.2)
    recorded = Settings("cam", "transition", BoxRules(90, 210), {"Nodule": ("layercam", "layer1", grown)})
    write_defaults(tmp_path, recorded, {"images": 3, "boxes": "cal.csv", "image_digests": ["d1", "d2", "d3"]}, {})
    settings = read_defaults(tmp_path, "resnet18", resnet)
    assert (settings.method, settings.rules.low) == ("cam", 90)
    assert settings.choice_for("Nodule") == ("layercam", "layer1", grown)
    assert settings.groups(["Mass", "Nodule"]) == {("cam", "transition"): ["Mass"], ("layercam", "layer1"): ["Nodule"]}
    assert settings.calibration_digests == {"d1", "d2", "d3"} and "chosen on 3 images of cal.csv" in settings.source
    partly = resolve(settings, Options(method="gradcam", layer="layer2"))
    assert (partly.method, partly.layer, partly.rules.low, partly.per_finding) == ("gradcam", "layer2", 90, {})
    assert partly.calibration_digests  # recorded thresholds still in use: the images they were chosen on stay refused
    given = resolve(settings, Options(method="cam", thresholds=(60, 180), max_boxes=1))
    assert given.choice_for("Nodule") == ("cam", "transition", BoxRules(60, 180, max_boxes=1))
    assert not given.calibration_digests and given.source == "options"
    (tmp_path / DEFAULTS_FILE).write_text('{"method": "cam"}')
    with pytest.raises(InputError, match=f"{DEFAULTS_FILE}: not a localization defaults file .* calibrate again"):
        read_defaults(tmp_path, "resnet18", resnet)


def blob(size, centre, radius, peak):
    """A hand-made map: a cone of `peak` at `centre` falling to 0 at `radius` pixels."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.clip(1 - np.hypot(yy - centre[0], xx - centre[1]) / radius, 0, None) * peak


def test_hysteresis_keeps_a_low_region_only_where_it_reaches_the_high_threshold():
    heatmap = blob(64, (16, 16), 10, 1.0) + blob(64, (48, 48), 10, 0.5)  # a lesion and a weak blob at half its height
    rules = BoxRules(low=60, high=180, min_area=0, max_boxes=5)
    [(box, score)] = boxes_from_map(heatmap, rules, scale=(1.0, 1.0))
    assert 14 <= box[0] + box[2] / 2 <= 18 and score == pytest.approx(1.0)  # the weak blob (peak 127) draws nothing
    # the kept box has the low threshold's extent (cone radius 10 * (1 - 60/255) = 7.6), not the high one's (2.9)
    assert 14 <= box[2] <= 17
    both = boxes_from_map(heatmap, BoxRules(low=60, high=120, min_area=0, max_boxes=5), (1.0, 1.0))
    assert sorted(round(s, 2) for _, s in both) == [0.5, 1.0]  # a lower high threshold keeps the blob too
    assert boxes_from_map(np.ones((4, 4)), rules, (1.0, 1.0)) == []  # a flat map shows nothing


def test_size_floor_drops_tiny_regions_and_boxes_are_in_image_pixels():
    heatmap = blob(64, (16, 16), 10, 1.0)
    heatmap[50, 50] = 0.9  # one strong pixel: 1 of 4,096 pixels
    rules = BoxRules(low=60, high=180, min_area=0.001, max_boxes=5)
    found = boxes_from_map(heatmap, rules, scale=(4.0, 2.0))
    assert len(found) == 1 and found[0][0][0] < 80  # the pixel is under the floor (0.001 * 4,096 = 4 pixels)
    kept = boxes_from_map(heatmap, BoxRules(low=60, high=180, min_area=0, max_boxes=5), (4.0, 2.0))
    assert sorted(b for b, _ in kept)[1] == (200.0, 100.0, 4.0, 2.0)  # without the floor it is a box, scaled


def test_overlapping_boxes_merge_and_at_most_max_boxes_are_kept():
    heatmap = np.zeros((40, 40))
    heatmap[5:7, 3:15] = heatmap[5:15, 13:15] = 1.0  # a lesion in two regions split by a dip: an inverted L ...
    heatmap[9:17, 6:8] = 0.9                         # ... and a bar under it, 12 of its 16 box pixels in the L's box
    heatmap[30:35, 30:35] = 0.8                      # two separate findings
    heatmap[30:35, 2:6] = 0.75
    rules = BoxRules(low=100, high=150, min_area=0, merge=0.5, max_boxes=3)
    found = boxes_from_map(heatmap, rules, (1.0, 1.0))
    assert [b for b, _ in found] == [(3, 5, 12, 12), (30, 30, 5, 5), (2, 30, 4, 5)]
    assert found[0][1] == pytest.approx(1.0)  # the union keeps the higher score
    apart = boxes_from_map(heatmap, BoxRules(low=100, high=150, min_area=0, merge=0.9, max_boxes=5), (1.0, 1.0))
    assert len(apart) == 4  # overlapping by 0.75 of the smaller: kept apart at merge=0.9
    assert [b for b, _ in boxes_from_map(heatmap, BoxRules(100, 150, 0, 0.5, 2), (1.0, 1.0))] == \
        [(3, 5, 12, 12), (30, 30, 5, 5)]  # the two best scored


def test_merge_joins_boxes_by_overlap_of_the_smaller_until_none_overlap():
    a, b, c = ((0, 0, 10, 10), 0.9), ((8, 0, 10, 10), 0.8), ((14, 0, 3, 3), 0.7)  # a-b overlap 20%; c inside b
    assert merge_boxes([a, b, c], 0.5) == [a, b]
    assert merge_boxes([a, b, c], 0.2) == [((0, 0, 18, 10), 0.9)]  # a+b, and c inside their union


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
    assert set(metrics["recent"]["Nodule"]) == {"acc_iou>0.1", "acc_iou>0.5", "afp_iou>0.1", "pointing"}
    assert metrics["heatmap"]["source"] == "built-in for resnet18" and metrics["heatmap"]["max_boxes"] == 3
    per_map = boxes.groupby(["Image Index", "Finding Label"]).size()
    assert per_map.max() <= 3  # at most max_boxes per finding and image
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert "T(IoBB)" in result.output and "IoU>0.5 Acc." in result.output
    assert "mean over 9 findings: T(IoBB)=0.5" in result.output
    assert result.output.count("warning: these films (48 px, 8-bit) are not of the family") == 1


@pytest.mark.slow
def test_an_unreadable_image_is_named_once_and_the_others_drawn(tmp_path, tiny_run):
    root, run = tiny_run
    images = tmp_path / "images"
    images.mkdir()
    for p in (root / "images").iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    (images / "synth_000003.png").write_bytes(b"not a png at all")
    result = CliRunner().invoke(main, ["localize", str(run), str(root / "labels.parquet"), "--images", str(tmp_path),
                                       "-o", str(tmp_path / "loc"), "--boxes", str(root / "BBox_List.csv"),
                                       "--method", "saliency-gradcam", "--layer", "layer3", "--overlays", "0"])
    assert result.exit_code == 3, result.output  # written, with an input skipped and named
    assert result.output.count("skipped unreadable image") == 1 and "synth_000003.png: cannot" in result.output
    assert "skipped 1 image (named above)" in result.output
    boxes = pd.read_csv(tmp_path / "loc" / "boxes.csv")
    assert len(boxes) and "synth_000003" not in set(boxes["Image Index"].str.removesuffix(".png"))


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


def boxes_of(path, images):
    """The NIH-format boxes of `path` on `images` only, as a table."""
    table = pd.read_csv(path, skiprows=1, header=None)
    return table[table[0].isin(images)]


def write_boxes(table, path):
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + table.to_csv(index=False, header=False))
    return path


@pytest.mark.slow
def test_calibration_never_reads_the_boxes_it_reports_on(tmp_path, tiny_run):
    """Calibrate on one half of the boxed images and score the other: the recorded choice is the same
    whatever the scored boxes say, the scores count only the scored boxes, and a calibration image
    among the scored ones is an error naming it, in the same call and in every later one."""
    root, trained = tiny_run
    everything = root / "BBox_List.csv"
    images = sorted(pd.read_csv(everything, skiprows=1, header=None)[0].unique())
    held = write_boxes(boxes_of(everything, images[::2]), tmp_path / "held.csv")
    scored = boxes_of(everything, images[1::2])
    moved = scored.copy()
    moved[[2, 3]] = (moved[[2, 3]] + 7) % 40  # the scored images' boxes somewhere else entirely
    chosen = []
    versions = (("a", write_boxes(scored, tmp_path / "scored.csv")), ("b", write_boxes(moved, tmp_path / "moved.csv")))
    for name, truth in versions:
        run = shutil.copytree(trained, tmp_path / f"run_{name}")
        result = invoke("localize", run, root / "labels.parquet", "-o", tmp_path / name, "--calibrate", held, "--boxes",
                        truth, "--method", "gradcam", "--overlays", "0")
        assert result.exit_code == 0, result.output
        recorded = json.loads((run / DEFAULTS_FILE).read_text())
        chosen.append({k: recorded[k] for k in ("method", "layer", "thresholds", "per_finding", "chosen_on")})
        metrics = json.loads((tmp_path / name / "localization.json").read_text())
        assert sum(metrics["true_boxes"].values()) == len(scored)  # only the scored boxes are counted
    assert chosen[0] == chosen[1]  # whatever the scored boxes say, the choice is the same
    assert chosen[0]["chosen_on"]["images"] == len(images[::2])
    overlap = invoke("localize", run, root / "labels.parquet", "-o", tmp_path / "c", "--calibrate", held, "--boxes",
                     everything)
    assert overlap.exit_code == 1
    assert f"{images[0]} (and {len(images[::2]) - 1} more) is also in --calibrate" in overlap.output
    later = invoke("localize", run, root / "labels.parquet", "-o", tmp_path / "d", "--boxes", everything)
    assert later.exit_code == 1 and f"{images[0]} was used to choose this run's localization defaults" in later.output
    stated = invoke("localize", run, root / "labels.parquet", "-o", tmp_path / "e", "--boxes", everything, "--method",
                    "cam", "--thresholds", "60,180", "--overlays", "0")
    assert stated.exit_code == 0, stated.output  # every value given: nothing chosen on these images is used


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
    [(box, _)] = boxes_from_map(maps[0, 0].numpy(), BoxRules(220, 220, min_area=0), (1.0, 1.0))
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
    from classifier.defaults import BUILT_IN

    # the heatmap given; the thresholds not, so they are the architecture's built-in ones
    assert {k: metrics["heatmap"][k] for k in ("method", "layer", "thresholds", "source")} == \
        {"method": "gradcam", "layer": "layer2", "thresholds": [BUILT_IN[0][2].low, BUILT_IN[0][2].high],
         "source": "built-in for resnet18"}
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


def test_saliency_grad_cam_is_grad_cam_times_the_smoothed_gradient_of_the_whole_network():
    """The product keeps Grad-CAM's zeros (specific to the finding) and takes its detail from the
    gradient of each logit with respect to the pixels, here computed through the plain forward pass."""
    import torch
    from torchvision.transforms.functional import gaussian_blur

    from classifier.config import ModelConfig
    from classifier.heatmaps import grad_cam_maps
    from classifier.models import WeaklySupervisedNet

    torch.manual_seed(0)
    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=2, transition_channels=8)).eval()
    images = torch.rand(2, 3, 96, 96)
    probs_gc, gc = grad_cam_maps(model, images, "layer2")
    probs_sg, sg = grad_cam_maps(model, images, "layer2", "saliency-gradcam")
    assert torch.allclose(probs_gc, probs_sg, atol=1e-6)
    assert gc.shape == sg.shape == (2, 2, 96, 96) and sg.min() >= 0 and sg.max() > 0
    assert (sg[gc == 0] == 0).all()
    pixels = images.clone().requires_grad_(True)
    logits = model(pixels)
    sigma = model.map_layers()["layer2"][1] / 4  # a quarter of layer2's stride of 8
    for c in range(2):
        (grad,) = torch.autograd.grad(logits[:, c].sum(), pixels, retain_graph=True)
        saliency = gaussian_blur(grad.abs().sum(1, keepdim=True), [13, 13], [sigma, sigma])[:, 0]
        assert torch.allclose(sg[:, c], gc[:, c] * saliency, rtol=1e-4, atol=1e-12)
    # finer than Grad-CAM: it varies inside one layer2 cell, where the upsampled Grad-CAM is nearly flat
    assert sg[0, 0, 40:48, 40:48].std() / sg[0, 0].mean() > gc[0, 0, 40:48, 40:48].std() / gc[0, 0].mean()


@pytest.mark.slow
def test_localize_with_saliency_grad_cam_records_it(tmp_path, tiny_run):
    root, run = tiny_run
    out = tmp_path / "sg"
    result = invoke("localize", run, root / "labels.parquet", "-o", out, "--boxes", root / "BBox_List.csv",
                    "--overlays", "1", "--method", "saliency-gradcam", "--layer", "layer1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "localization.json").read_text())
    assert (metrics["heatmap"]["method"], metrics["heatmap"]["layer"]) == ("saliency-gradcam", "layer1")
    assert 0 <= metrics["pointing"]["mean"] <= 1 and list(out.glob("overlays/*.png"))


def test_otsu_level_adapts_to_the_map_and_prior_growth_reaches_the_finding_s_size():
    from classifier.boxes import map_boxes, normalise, otsu, size_prior, view

    wide, sharp = blob(64, (32, 32), 20, 1.0), blob(64, (32, 32), 20, 1.0) ** 4  # one lesion, two map shapes
    norms = [normalise(m) for m in (wide, sharp)]
    assert otsu(norms[0]) > otsu(norms[1])  # a sharper map gets a lower level: the box keeps the lesion's extent
    [(box, _)] = map_boxes(view(norms[0], (60,), (250,)), BoxRules(high=250, level="prior"), "Cardiomegaly")
    target = size_prior()["Cardiomegaly"] * 64 * 64
    assert 0.7 < box[2] * box[3] / target < 1.45  # grown until its area is the prior's (levels every 10)
    [(half, _)] = map_boxes(view(norms[0], (60,), (250,)), BoxRules(high=250, level="prior", prior_scale=0.25), "Cardiomegaly")
    assert half[2] < box[2] and half[3] < box[3]
    [(grown, _)] = map_boxes(view(norms[0], (60,), (250,)), BoxRules(high=250, level="prior", grow=1.4), "Cardiomegaly")
    assert grown[2] == pytest.approx(min(64, box[2] * 1.4)) and grown[0] + grown[2] / 2 == box[0] + box[2] / 2
    # a finding with no prior keeps the fixed level
    assert map_boxes(view(norms[0], (60,), (250,)), BoxRules(high=250, level="prior"), "Edema") == \
        map_boxes(view(norms[0], (60,), (250,)), BoxRules(high=250), "Edema")


def test_the_shipped_size_prior_is_nih_s_984_boxes():
    from classifier.boxes import PRIOR_FILE

    data = json.loads(PRIOR_FILE.read_text())
    findings = data["findings"]
    assert set(findings) == {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                             "Pneumothorax"}
    assert sum(f["boxes"] for f in findings.values()) == 984
    for f in findings.values():
        for what in ("w", "h", "area"):
            assert 0 < f[f"{what}_q25"] <= f[f"{what}_q50"] <= f[f"{what}_q75"] < 1
    assert findings["Nodule"]["area_q50"] < findings["Mass"]["area_q50"] < findings["Cardiomegaly"]["area_q50"]


def test_a_family_the_defaults_were_not_chosen_on_is_named_in_one_line():
    from classifier.family import mismatch

    chosen = ({"source": "generated films", "sizes": [128, 256], "bits": [8]},)
    assert mismatch(chosen, {"source": "x", "sizes": [140], "bits": [8]}) is None  # within a quarter of 128
    line = mismatch(chosen, {"source": "x", "sizes": [1024], "bits": [16]})
    assert "\n" not in line and "1024 px, 16-bit" in line and "--calibrate" in line and "128, 256 px" in line
    assert mismatch(chosen, {"source": "x", "sizes": [256], "bits": [16]}) is not None  # another bit depth
    assert mismatch((), {"source": "x", "sizes": [1024], "bits": [16]}) is None  # options given: nothing to compare


@pytest.mark.slow
def test_calibration_boxes_off_the_film_or_of_no_size_are_named_and_skipped(tmp_path, tiny_run):
    root, trained = tiny_run
    everything = pd.read_csv(root / "BBox_List.csv", skiprows=1, header=None)
    good = everything.head(6)
    negative, outside = good.iloc[[0]].copy(), good.iloc[[1]].copy()
    negative[4] = -5.0
    outside[[2, 3]] = 900.0  # the tiny films are 48 pixels wide
    run = shutil.copytree(trained, tmp_path / "run")
    mixed = write_boxes(pd.concat([good, negative, outside]), tmp_path / "mixed.csv")
    result = invoke("localize", run, root / "labels.parquet", "-o", tmp_path / "a", "--calibrate", mixed,
                    "--method", "gradcam", "--overlays", "0")
    assert result.exit_code == 3, result.output  # written, with inputs skipped
    assert "mixed.csv:8:" in result.output and "non-positive" in result.output
    assert "mixed.csv:9:" in result.output and "is not on its film" in result.output
    assert (run / DEFAULTS_FILE).exists()
    bad = write_boxes(pd.concat([negative, outside]), tmp_path / "bad.csv")
    refused = invoke("localize", shutil.copytree(trained, tmp_path / "run2"), root / "labels.parquet", "-o",
                     tmp_path / "b", "--calibrate", bad, "--method", "gradcam")
    assert refused.exit_code == 1 and "none of its boxes on these images can be scored" in refused.output
    assert not (tmp_path / "run2" / DEFAULTS_FILE).exists()


def test_calibration_s_one_pass_maps_equal_each_kind_s_own_maps():
    """Every kind at a layer from one backward pass per round of wanted findings (one finding of every
    image per pass) gives the maps each kind gives alone; the maps not wanted stay zero."""
    import torch

    from classifier.config import ModelConfig
    from classifier.heatmaps import grad_cam_kinds, grad_cam_maps
    from classifier.models import WeaklySupervisedNet

    torch.manual_seed(0)
    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=3, transition_channels=8)).eval()
    images = torch.rand(3, 3, 64, 64)
    wanted = [[0, 2], [1], []]
    _, together = grad_cam_kinds(model, images, "layer1", ("gradcam", "layercam", "saliency-gradcam"), wanted)
    for kind, maps in together.items():
        _, alone = grad_cam_maps(model, images, "layer1", kind)
        for i, findings in enumerate(wanted):
            for c in range(3):
                expected = alone[i, c] if c in findings else torch.zeros_like(alone[i, c])
                assert torch.allclose(maps[i, c], expected, rtol=1e-4, atol=1e-9), (kind, i, c)


def test_the_ward_family_writes_a_set_the_same_commands_read(tmp_path):
    from PIL import Image

    result = invoke("synth", "--family", "ward", "-o", tmp_path / "ward", "-n", 8, "--size", 96, "--seed", 3)
    assert result.exit_code == 0, result.output
    boxes = pd.read_csv(tmp_path / "ward" / "BBox_List.csv", skiprows=1, header=None)
    truth = pd.read_csv(tmp_path / "ward" / "truth.csv")
    assert len(truth) == 8 and boxes[0].str.startswith("ward_").all()
    assert ((boxes[4] > 0) & (boxes[5] > 0)).all()
    assert ((boxes[2] >= 0) & (boxes[3] >= 0) & (boxes[2] + boxes[4] <= 96.01) & (boxes[3] + boxes[5] <= 96.01)).all()
    boxed = {(i, f) for i, f in zip(boxes[0], boxes[1])}
    marked = {(i, f) for _, row in truth.iterrows() for f in truth.columns[2:] if row[f] == 1 for i in [row["image_id"]]}
    assert boxed == marked  # every finding the truth marks has its box, and no other
    with Image.open(tmp_path / "ward" / "images" / "ward_000000.png") as im:
        assert im.size == (96, 96) and im.mode == "L"
