"""Shared fixtures: the real lexicon, the real spaCy model, paths to bundled and shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reportminer.labeler import Labeler
from reportminer.lexicon import Lexicon, load_lexicon
from reportminer.parse import load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _session_cache_home(tmp_path_factory):
    """The decision cache of every run in the tests lives under a temporary folder, never in ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(autouse=True)
def _cache_home(tmp_path_factory, monkeypatch):
    """A fresh decision cache for each test: no test is served what another one decided."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(scope="session")
def lexicon() -> Lexicon:
    return load_lexicon(ROOT / "lexicons")


@pytest.fixture(scope="session")
def nlp():
    return load_model()


@pytest.fixture(scope="session")
def labeler(lexicon, nlp) -> Labeler:
    return Labeler(lexicon, nlp)


FAST = ["--arch", "resnet18", "--size", "48", "--batch-size", "16", "--transition", "16", "--lr", "3e-3"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """64 generated images at 48 px, labeled by reportminer (its reports), with boxes and truth."""
    from click.testing import CliRunner

    from classifier.synthetic import generate
    from reportminer.cli import main as reportminer_main

    root = tmp_path_factory.mktemp("tiny")
    generate(root, 64, size=48, seed=5)
    result = CliRunner().invoke(reportminer_main, ["label", str(root / "reports.csv"), "-o",
                                                   str(root / "labels.parquet"), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny, tmp_path_factory) -> tuple[Path, Path]:
    """A real 2-epoch training run on the tiny set."""
    from click.testing import CliRunner

    from classifier.cli import main as classifier_main

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    result = CliRunner().invoke(classifier_main, ["fit", str(tiny / "labels.parquet"), "-o", str(run), "--epochs", "2",
                                                  "--output-stride", "16", *FAST])
    assert result.exit_code == 0, result.output
    return tiny, run


@pytest.fixture(scope="session")
def cam_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run whose recorded localization defaults are class activation maps (one forward
    pass, where the built-in saliency Grad-CAM needs a backward pass per finding): recorded by `localize
    --calibrate` on six boxed films, for tests that draw many heatmaps (predict's study viewer)."""
    import shutil

    from click.testing import CliRunner

    from classifier.cli import main as classifier_main

    tiny, run_dir = tiny_run
    root = tmp_path_factory.mktemp("cam_run")
    shutil.copytree(run_dir, root / "run")
    (root / "boxes.csv").write_text("\n".join((tiny / "BBox_List.csv").read_text().splitlines()[:7]) + "\n")
    result = CliRunner().invoke(classifier_main, ["localize", str(root / "run"), str(tiny / "labels.parquet"), "-o",
                                                  str(root / "loc"), "--calibrate", str(root / "boxes.csv"), "--method",
                                                  "cam", "--thresholds", "60,180", "--overlays", "0"])
    assert result.exit_code == 0, result.output
    return root / "run"


def write_bad_reports(folder: Path, good_text: str) -> Path:
    """A folder with one good report and one each of: zero bytes, blank, Latin-1 encoded, broken XML."""
    folder.mkdir()
    (folder / "good.txt").write_text(good_text)
    (folder / "zero.txt").write_text("")
    (folder / "empty.txt").write_text("   \n")
    (folder / "latin.txt").write_bytes("Épanchement pleural.".encode("latin-1"))
    (folder / "bad.xml").write_text("<eCitation><uId id='X'>")
    return folder


def pytest_collection_modifyitems(config, items):
    """Tests marked `realdata` skip when ../shared/data is absent (a user's clone has none)."""
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED} is absent")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)
