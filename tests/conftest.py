"""Shared fixtures: the real lexicon, the real spaCy model, paths to bundled and shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportminer.labeler import Labeler
from reportminer.lexicon import Lexicon, load_lexicon
from reportminer.parse import load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def lexicon() -> Lexicon:
    return load_lexicon(ROOT / "lexicons")


@pytest.fixture(scope="session")
def nlp():
    return load_model()


@pytest.fixture(scope="session")
def labeler(lexicon, nlp) -> Labeler:
    return Labeler(lexicon, nlp)


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
