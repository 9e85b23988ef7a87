"""`reportminer stats`: counts, co-occurrence, agreement and a card, from real Parquet files."""

import matplotlib.image
import pandas as pd
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from reportminer.stats import agreement, cooccurrence, counts

from conftest import SAMPLES


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


FRAME = pd.DataFrame({
    "image_id": ["a", "b", "c", "d"],
    "split": ["train", "train", "test", "val"],
    "Effusion": pd.array([1, 1, 0, None], dtype="Int8"),
    "Atelectasis": pd.array([1, -1, 1, None], dtype="Int8"),
    "Mass": pd.array([None, None, 1, 0], dtype="Int8"),
})


def test_counts_per_split_keep_the_four_values_apart():
    table = counts(FRAME, ["Effusion", "Atelectasis"]).set_index(["split", "label"])
    assert table.loc[("all", "Atelectasis")].to_dict() == {
        "positive": 2, "uncertain": 1, "negative": 0, "not_mentioned": 1, "images": 4}
    assert table.loc[("train", "Effusion"), "positive"] == 2
    assert list(dict.fromkeys(table.index.get_level_values(0))) == ["all", "train", "val", "test"]


def test_cooccurrence_counts_positive_pairs():
    co = cooccurrence(FRAME, ["Effusion", "Atelectasis", "Mass"])
    assert co.loc["Effusion", "Atelectasis"] == 1  # image a (b is uncertain for Atelectasis)
    assert co.loc["Atelectasis", "Mass"] == 1 and co.loc["Effusion", "Mass"] == 0
    assert co.loc["Effusion", "Effusion"] == 2


def test_agreement_and_kappa():
    other = FRAME.assign(Effusion=pd.array([1, 0, 0, 0], dtype="Int8"))
    table = agreement(FRAME, other, ["Effusion", "Atelectasis"]).set_index("finding")
    assert table.loc["Effusion", ["both", "only_a", "only_b"]].tolist() == [1, 1, 0]
    assert table.loc["Effusion", "agreement"] == 0.75
    assert table.loc["Effusion", "kappa"] == pytest.approx(0.5)
    assert table.loc["Atelectasis", "kappa"] == 1.0


def test_stats_cli_writes_tables_pictures_and_card(tmp_path):
    rules, negex = tmp_path / "rules.parquet", tmp_path / "negex.parquet"
    assert run("label", SAMPLES / "reports", "-o", rules, "--workers", "1", "--quiet").exit_code == 0
    assert run("label", SAMPLES / "reports", "-o", negex, "--assertions", "negex", "--workers", "1", "--quiet").exit_code == 0
    out = tmp_path / "stats"
    result = run("stats", rules, "-o", out, "--compare", negex)
    assert result.exit_code == 0, result.output
    for name in ("cooccurrence.png", "counts.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 500 and image.shape[1] > 500 and image.std() > 0.05
    co = pd.read_csv(out / "cooccurrence.csv", index_col=0)
    assert co.loc["Mass", "Nodule"] == 1  # only s30 has both (s13: "no new mass"; s22: mass alone)
    card = (out / "dataset_card.md").read_text()
    assert "- 34 images" in card and "| Cardiomegaly |" in card and "## Agreement with the other label file" in card
    agree = pd.read_csv(out / "agreement.csv").set_index("finding")
    assert agree.loc["Hernia", "kappa"] == 1.0
    assert agree.loc["Pneumonia", "only_a"] == 1  # s14 "atelectasis versus pneumonia": present for the rules, negated by NegEx


def test_stats_of_a_file_without_labels_is_a_clear_error(tmp_path):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "x.parquet")
    result = run("stats", tmp_path / "x.parquet", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "x.parquet: no label columns found; is this a labels.parquet from reportminer?" in result.output
