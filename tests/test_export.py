"""`classifier export` (ONNX and TorchScript agree with the run, the contract travels inside the file),
the model card `fit` writes into every run, and `fit --init imagenet` from a torch cache made here."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from click.testing import CliRunner

from classifier.cli import main as classifier_main
from classifier.export import read_contract
from classifier.images import decode
from conftest import FAST


def run(*args):
    return CliRunner().invoke(classifier_main, [str(a) for a in args])


def exported_probabilities(path, fmt: str, grey: np.ndarray) -> np.ndarray:
    """What another runtime gives for these (B, 1, S, S) inputs: onnxruntime, or TorchScript loaded alone."""
    if fmt == "onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"grey": grey})[0]
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(torch.from_numpy(grey)).numpy()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_exported_model_agrees_with_the_run_on_50_films_and_carries_its_contract(tiny_run, tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    tiny, run_dir = tiny_run
    table = pq.read_table(tiny / "labels.parquet").slice(0, 50)
    pq.write_table(table, tmp_path / "labels.parquet")
    scored = run("score", run_dir, tmp_path / "labels.parquet", "--images", tiny, "-o", tmp_path / "scores.parquet",
                 "--bootstrap", "0")
    assert scored.exit_code == 0, scored.output
    scores = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    model_file = tmp_path / f"model{suffix}"
    result = run("export", run_dir, "--format", fmt, "-o", model_file)
    assert result.exit_code == 0, result.output
    contract = read_contract(model_file)
    findings = json.loads((run_dir / "config.json").read_text())["findings"]
    assert contract["findings"] == findings and contract["size"] == 48
    assert contract["input"] == {"name": "grey", "shape": ["batch", 1, 48, 48], "dtype": "float32", "range": [0.0, 1.0]}
    assert contract["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    points = run_dir / "operating_points.json"
    if points.exists():
        recorded = json.loads(points.read_text())["findings"]
        assert contract["operating_points"] == {f: recorded[f]["threshold"] for f in findings}
    else:
        assert contract["operating_points"] is None
    assert f"{run_dir} → {model_file} ({fmt}, 48 px, {len(findings)} findings" in result.output
    assert "; max |difference| to the checkpoint" in result.output
    grey = np.stack([decode(tiny / p, 48)[0] for p in scores["image_path"]])[:, None].astype(np.float32) / 255
    got = exported_probabilities(model_file, fmt, grey)
    assert got.shape == (50, len(findings))
    assert np.abs(got - scores[findings].to_numpy(np.float32)).max() < 1e-4
    assert np.abs(exported_probabilities(model_file, fmt, grey[:1]) - got[:1]).max() < 1e-5  # any batch size


@pytest.mark.slow
def test_export_refuses_to_write_over_the_run_and_names_the_missing_extra(tiny_run, tmp_path):
    _, run_dir = tiny_run
    before = (run_dir / "best.pt").read_bytes()
    result = run("export", run_dir, "--format", "torchscript", "-o", run_dir / "best.pt")
    assert result.exit_code == 1 and "is also an input of this command" in result.output
    assert (run_dir / "best.pt").read_bytes() == before
    # A user without the [export] extra: onnxscript cannot be imported in this process.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["onnxscript"] = None
        from classifier.cli import main
        main(["export", {str(run_dir)!r}, "--format", "onnx", "-o", {str(tmp_path / "m.onnx")!r}])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == ("Error: ONNX export needs onnxscript, which this install lacks: "
                                  "pip install 'chestxray-toolkit[export]'")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_fit_writes_a_model_card_with_the_data_digest_splits_and_intervals(tiny_run):
    tiny, run_dir = tiny_run
    card = (run_dir / "model_card.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    digest = hashlib.sha256((tiny / "labels.parquet").read_bytes()).hexdigest()
    assert card.startswith(f"# Model card: {run_dir.name}\n")
    assert f"SHA-256 `{digest}`" in card
    assert f"test {metrics['test']['images']} images" in card and f"val {metrics['val']['images']} images" in card
    auc, (low, high) = metrics["test"]["auc"]["Cardiomegaly"], metrics["test"]["auc_ci"]["Cardiomegaly"]
    assert low <= auc <= high
    row = next(line for line in card.splitlines() if line.startswith("| Cardiomegaly |") and "-" in line)
    assert f"{auc:.3f} ({low:.3f}-{high:.3f})" in row
    assert "| epochs | 2 |" in card and "| model.arch | resnet18 |" in card
    assert "## Intended use and limits" in card and "not a medical device" in card
    assert "Started from: random weights" in card


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache of our own, and a network that refuses every connection (a dead proxy)."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return home


def test_init_imagenet_offline_is_one_line_naming_the_file_and_the_folder(tiny, tmp_path, torch_home):
    result = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--epochs", "1", "--init", "imagenet", *FAST)
    folder = torch_home / "hub" / "checkpoints"
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and error[0].startswith(
        f"Error: --init imagenet: resnet18-f37072fd.pth is not in {folder} and cannot be downloaded here (")
    assert error[0].endswith("put that file there (from https://download.pytorch.org/models/resnet18-f37072fd.pth), "
                             "or give --weights FILE")
    assert not list(folder.glob("*.pth")) and not (tmp_path / "run" / "last.pt").exists()
    both = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--init", "imagenet", "--weights",
               tiny / "labels.parquet", *FAST)
    assert both.exit_code == 2 and "give --init imagenet or --weights FILE, not both" in both.output


@pytest.mark.slow
def test_init_imagenet_loads_the_cached_file(tiny, tmp_path, torch_home):
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), cached)
    result = run("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--epochs", "1", "--init", "imagenet", *FAST)
    assert result.exit_code == 0, result.output
    assert f"resnet18: ImageNet weights ResNet18_Weights.IMAGENET1K_V1 from {cached}" in result.output
    assert f"resnet18: loaded 120 trunk tensors from {cached}" in result.output
    assert f"Started from: the torchvision state dict `{cached}`" in (tmp_path / "run" / "model_card.md").read_text()
