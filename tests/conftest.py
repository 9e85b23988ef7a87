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


def pytest_collection_modifyitems(config, items):
    """Tests marked `realdata` skip when ../shared/data is absent (a user's clone has none)."""
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"{SHARED} is absent")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)
