"""The classifier with real torch: model parts, loss, images, and real training for a few steps."""

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

from classifier.checkpoint import CheckpointError, load_checkpoint
from classifier.cli import main as classifier_main
from classifier.images import ImageError, load_image
from classifier.losses import targets_and_mask, weighted_bce
from classifier.choices import ARCHS
from classifier.config import ModelConfig
from classifier.models import LSEPool, WeaklySupervisedNet
from classifier.synthetic import FINDINGS, SIDES, generate
from reportminer.cli import main as reportminer_main


def run(*args):
    return CliRunner().invoke(classifier_main, [str(a) for a in args])


def test_lse_pooling_sits_between_mean_and_max():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])
    assert LSEPool(0.01)(x).item() == pytest.approx(2.0, abs=0.02)
    assert LSEPool(100.0)(x).item() == pytest.approx(5.0 - np.log(4) / 100, abs=1e-4)
    assert 2.0 < LSEPool(10.0)(x).item() < 5.0


def test_weighted_loss_uses_the_batch_counts():
    logits = torch.zeros(4, 1)  # every probability 0.5: each entry's BCE is ln 2
    targets = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    mask = torch.ones_like(targets)
    # beta_P = 4/1, beta_N = 4/3: (4 * ln2 + 3 * 4/3 * ln2) / 4 entries / 2 = ln 2
    assert weighted_bce(logits, targets, mask).item() == pytest.approx(np.log(2))
    targets_only_neg = torch.zeros(4, 1)
    assert weighted_bce(logits, targets_only_neg, mask).item() == pytest.approx(np.log(2) / 2)


@pytest.mark.parametrize("policy, target, mask", [("ignore", 0.0, 0.0), ("ones", 1.0, 1.0), ("zeros", 0.0, 1.0)])
def test_uncertain_policy(policy, target, mask):
    labels = torch.tensor([[1.0, 0.0, -1.0, float("nan")]])
    t, m = targets_and_mask(labels, policy)
    assert t.tolist() == [[1.0, 0.0, target, 0.0]]
    assert m.tolist() == [[1.0, 1.0, mask, 1.0]]


@pytest.mark.parametrize("arch, cells", [("resnet50", 4), ("resnet18", 4), ("densenet121", 2)])
def test_every_architecture_runs_forward_without_downloads(arch, cells):
    """The library's default stride is the command line's: 16 for a ResNet (4x4 cells at 64 px), 32 for DenseNet."""
    assert arch in ARCHS
    model = WeaklySupervisedNet(ModelConfig(arch=arch, num_classes=3, transition_channels=8)).eval()
    with torch.no_grad():
        features = model.forward_features(torch.zeros(2, 3, 64, 64))
        logits = model.forward_head(features)
    assert features.shape == (2, 8, cells, cells) and logits.shape == (2, 3)
    assert model.config.output_stride == 64 // cells
    assert model.prediction.weight.shape == (3, 8)  # with the features: a class activation map


@pytest.mark.parametrize("arch, stride, stages, cells", [("resnet18", 16, 4, 4), ("resnet18", 8, 4, 8),
                                                         ("resnet50", 16, 4, 4), ("resnet18", 8, 3, 8),
                                                         ("resnet18", 16, 3, 4), ("resnet50", 8, 3, 8)])
def test_output_stride_makes_finer_maps(arch, stride, stages, cells):
    model = WeaklySupervisedNet(ModelConfig(arch=arch, num_classes=2, transition_channels=4, output_stride=stride,
                                            trunk_stages=stages))
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-1] == cells
    assert model.cell_geometry() == (stride, 0.0)


def test_a_three_stage_trunk_is_smaller_and_refuses_what_it_cannot_do():
    full = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=2, transition_channels=4, output_stride=8))
    short = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=2, transition_channels=4, output_stride=8,
                                            trunk_stages=3))
    assert sum(p.numel() for p in short.parameters()) < sum(p.numel() for p in full.parameters()) / 3
    assert list(short.map_layers()) == ["layer1", "layer2", "layer3", "transition"]
    with pytest.raises(ValueError, match="ends at stride 16"):
        WeaklySupervisedNet(ModelConfig(arch="resnet18", output_stride=32, trunk_stages=3))
    with pytest.raises(ValueError, match="3 for a ResNet"):
        WeaklySupervisedNet(ModelConfig(arch="densenet121", trunk_stages=3))


def test_gradients_are_finite():
    model = WeaklySupervisedNet(ModelConfig(arch="resnet18", num_classes=2, transition_channels=4))
    logits = model(torch.randn(4, 3, 64, 64))
    t, m = targets_and_mask(torch.tensor([[1.0, 0.0]] * 4), "ignore")
    weighted_bce(logits, t, m).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_images_of_every_kind(tmp_path):
    ramp = np.tile(np.arange(64, dtype=np.uint16) * 1000, (64, 1))
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "16bit.png")
    rgb = np.stack([np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))] * 3, axis=-1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "colour.jpg")
    for name in ("16bit.png", "colour.jpg"):
        image = load_image(tmp_path / name, 32)
        assert image.shape == (32, 32) and image.dtype == np.float32
        assert image[:, 0].mean() < 0.1 and image[:, -1].mean() > 0.9
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ImageError, match=r"blank.png: blank image"):
        load_image(tmp_path / "blank.png", 32)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageError, match=r"broken.png: cannot decode"):
        load_image(tmp_path / "broken.png", 32)


def test_dicom_uses_the_header_window(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = generate_uid()
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    pixels = np.tile(np.arange(0, 4000, 62.5, dtype=np.uint16), (64, 1))  # 0 .. 3937
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.WindowCenter, ds.WindowWidth = 1000, 1000  # shows 500 .. 1500 only
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    image = load_image(tmp_path / "x.dcm", 64)
    column_of_1500 = int(1500 / 62.5)
    assert image[:, :8].max() == pytest.approx(0.0, abs=0.01)  # below the window: black
    assert image[:, column_of_1500 + 2:].min() == pytest.approx(1.0, abs=0.01)  # above it: white


def test_generator_is_seeded_and_its_reports_agree_with_its_truth(tmp_path):
    a, b = generate(tmp_path / "a", 40, size=64, seed=3), generate(tmp_path / "b", 40, size=64, seed=3)
    assert [c.report for c in a] == [c.report for c in b]
    assert (tmp_path / "a" / "images" / "synth_000000.png").read_bytes() == \
           (tmp_path / "b" / "images" / "synth_000000.png").read_bytes()
    for case in a:
        for x, y, w, h in case.findings.values():
            assert 0 <= x and 0 <= y and x + w <= 64.01 and y + h <= 64.01
    assert (tmp_path / "a" / "BBox_List.csv").read_text().startswith("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    result = CliRunner().invoke(reportminer_main, ["label", str(tmp_path / "a" / "reports.csv"), "-o",
                                                   str(tmp_path / "l.parquet"), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    labels = pq.read_table(tmp_path / "l.parquet").to_pandas().set_index("image_id")
    truth = pd.read_csv(tmp_path / "a" / "truth.csv").set_index("image_id")
    for finding in FINDINGS:
        said = labels[finding].reindex(truth.index).fillna(0)
        assert ((said != 0) == (truth[finding] == 1)).all(), finding  # present: 1 or -1; absent: 0 or not mentioned


WORDS = {"Atelectasis": "atelectasis", "Effusion": "effusion", "Infiltration": "infiltrate", "Mass": "mass",
         "Nodule": "nodule", "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax", "Consolidation": "consolidation"}


def test_generator_draws_the_eight_boxed_findings_with_hard_cases_and_names_their_side():
    from classifier.films import CM

    cases = generate_cases(300, size=128, seed=11)
    assert set(FINDINGS) == {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                             "Pneumothorax", "Consolidation"}
    lesions = [(name, lesion) for c in cases for name, lesion in c.lesions.items()]
    nodules = [lesion.size_cm for name, lesion in lesions if name == "Nodule"]
    assert min(nodules) < 0.8 and max(nodules) > 2.6  # down to 0.6 cm
    smallest = min((lesion for name, lesion in lesions if name == "Nodule"), key=lambda lesion: lesion.size_cm)
    assert smallest.box[2] <= (smallest.size_cm + 0.6) * CM * 128 + 2  # its box: the nodule and a 0.3 cm margin
    for name in FINDINGS:
        if name != "Cardiomegaly":
            assert {lesion.side for n, lesion in lesions if n == name} == {0, 1}, name  # on either side
    assert sum(len(c.findings) >= 2 for c in cases) > 0.3 * len(cases)  # often two findings or more on one film
    for case in cases:
        sentences = case.report.lower().replace("\n", " ").split(". ")
        for name, lesion in case.lesions.items():
            if name in WORDS:
                side = SIDES[lesion.side]
                assert any(WORDS[name] in s and side in s for s in sentences), (name, side, case.report)


def generate_cases(n, size, seed):
    import numpy as np

    from classifier.synthetic import generate_case

    rng = np.random.default_rng(seed)
    return [generate_case(i, size, rng)[1] for i in range(n)]


from conftest import FAST


@pytest.mark.slow
def test_fit_loss_falls_and_score_writes_everything(tiny, tmp_path):
    result = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--epochs", "4", *FAST)
    assert result.exit_code == 0, result.output
    assert "resnet18: starting from random weights" in result.output
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and log[-1]["loss"] < log[0]["loss"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]["auc"]) == set(FINDINGS)
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    assert state["findings"] == list(FINDINGS) and state["config"]["model"]["arch"] == "resnet18"

    result = run("score", tmp_path / "run", tiny / "labels.parquet", "-o", tmp_path / "scores.parquet",
                 "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    scores = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert list(scores.columns) == ["image_id", "image_path", *FINDINGS] and len(scores) == 64
    assert scores[list(FINDINGS)].apply(lambda c: c.between(0, 1).all()).all()
    summary = json.loads((tmp_path / "scores.auc.json").read_text())
    nodule = summary["per_finding"]["Nodule"]
    assert nodule["ci_low"] <= nodule["auc"] <= nodule["ci_high"]
    assert Image.open(tmp_path / "scores.roc.png").size[0] > 500


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(tiny, tmp_path):
    assert run("fit", tiny / "labels.parquet", "-o", tmp_path / "whole", "--epochs", "2", *FAST).exit_code == 0
    paused = run("fit", tiny / "labels.parquet", "-o", tmp_path / "cut", "--epochs", "2", "--pause-after", "1", *FAST)
    assert paused.exit_code == 0 and "paused after epoch 1 of 2; continue with --resume" in paused.output
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    again = run("fit", tiny / "labels.parquet", "-o", tmp_path / "cut", "--epochs", "2", *FAST)
    assert again.exit_code == 1 and "already holds a run (last.pt); pass --resume" in again.output
    resumed = run("fit", tiny / "labels.parquet", "-o", tmp_path / "cut", "--epochs", "2", "--resume", *FAST)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


class Payload:
    """An object whose unpickling would run a command."""

    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_a_checkpoint_with_foreign_code_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"format": "chestxray-toolkit/checkpoint-1", "model": Payload()}, run_dir / "best.pt")
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
        load_checkpoint(run_dir / "best.pt")
    (tmp_path / "l.parquet").write_bytes(b"")
    result = run("score", run_dir, tmp_path / "l.parquet", "-o", tmp_path / "s.parquet")
    assert result.exit_code == 1 and "refused" in result.output


@pytest.mark.slow
def test_a_corrupt_image_is_named_and_the_epoch_goes_on(tiny, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in (tiny / "images").iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    (images / "synth_000003.png").write_bytes(b"not a png at all")
    result = run("fit", tiny / "labels.parquet", "--images", tmp_path, "-o", tmp_path / "run", "--epochs", "1", *FAST)
    assert result.exit_code == 3, result.output  # written, with an input skipped and named
    assert "skipped unreadable image" in result.output and "synth_000003.png: cannot decode" in result.output
    assert (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_torchvision_weights_are_loaded_and_reported(tiny, tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    result = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--epochs", "1", "--weights",
                 tmp_path / "resnet18.pth", *FAST)
    assert result.exit_code == 0, result.output
    assert f"resnet18: loaded 120 trunk tensors from {tmp_path / 'resnet18.pth'}" in result.output
    wrong = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run2", "--epochs", "1", "--weights",
                tmp_path / "resnet18.pth", *FAST[:0], "--arch", "densenet121", "--size", "48", "--transition", "8")
    assert wrong.exit_code == 1 and "trunk tensors are missing or of another shape there" in wrong.output
    assert "is it a densenet121 state dict?" in wrong.output


def test_options_an_architecture_cannot_build_are_one_line_errors(tiny, tmp_path):
    result = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--epochs", "1", "--arch", "densenet121",
                 "--output-stride", "8", "--size", "48", "--transition", "8")
    assert result.exit_code == 1 and "densenet121 supports output_stride 32 only" in result.output
    assert not isinstance(result.exception, ValueError)
    short = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run2", "--epochs", "1", "--trunk-stages", "3",
                "--output-stride", "32", *FAST)
    assert short.exit_code == 1 and "ends at stride 16" in short.output


def test_flip_augmentation_mirrors_about_half_the_images_the_same_way_for_one_seed():
    """`--augment flip` (CheXNet's): each image either as it is or mirrored left-right, about half of
    them mirrored, decided by each image's own generator so a rerun draws the same."""
    from classifier.data import augment_batch

    image = torch.linspace(0, 1, 32).repeat(32, 1)  # dark on the left, bright on the right
    batch = image.repeat(200, 1, 1)
    out = augment_batch(batch, [torch.Generator().manual_seed(n) for n in range(200)], "flip")
    again = augment_batch(batch, [torch.Generator().manual_seed(n) for n in range(200)], "flip")
    assert torch.equal(out, again)
    flipped = [torch.equal(o, image.flip(-1)) for o in out]
    assert all(f or torch.equal(o, image) for f, o in zip(flipped, out))
    assert 70 <= sum(flipped) <= 130
    both = augment_batch(batch[:1], [torch.Generator().manual_seed(0)], "affine+flip")[0]
    assert not torch.equal(both, image) and not torch.equal(both, image.flip(-1))
