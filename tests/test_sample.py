"""`reportminer sample`, the audit page's contents (no browser) and `evaluate`'s intervals and weights."""

import json
import os
import re
import stat

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cxrcore.labels import read_labels
from cxrcore.output import read_metadata
from reportminer.audit_html import asset, embed_json
from reportminer.cli import EXIT_SKIPPED, main
from reportminer.evaluate import evaluate_files
from reportminer.intervals import draw_counts
from reportminer.sample import NO_MENTION, allocate, assign_strata, draw, Design

from conftest import SAMPLES

GOLD = SAMPLES / "hand_gold.csv"


def rm(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def only_line(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """The 34 bundled reports labeled with their evidence (inputs recorded as an absolute path)."""
    out = tmp_path_factory.mktemp("labeled")
    result = rm("label", SAMPLES / "reports", "-o", out / "labels.parquet", "--evidence", out / "mentions.parquet",
                "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


# --- the design --------------------------------------------------------------------------------

def test_each_report_falls_in_the_stratum_of_its_rarest_value():
    values = pd.DataFrame({"Mass": [1, 1, 0, np.nan, np.nan], "Hernia": [np.nan, 1, np.nan, np.nan, np.nan]},
                          index=["a", "b", "c", "d", "e"])
    strata = assign_strata(values)
    assert strata.to_dict() == {"a": "Mass positive", "b": "Hernia positive", "c": "Mass negative",
                                "d": NO_MENTION, "e": NO_MENTION}


def test_allocation_gives_every_stratum_its_minimum_then_shares_the_rest():
    sizes = {"rare": 3, "mid": 40, "big": 957}
    counts = allocate(sizes, 100, minimum=10)
    assert sum(counts.values()) == 100
    assert counts["rare"] == 3 and counts["mid"] >= 10 and counts["big"] > counts["mid"]
    assert allocate(sizes, 5000, 10) == sizes  # more than the archive: all of it
    assert allocate({"a": 5, "b": 1, "c": 9}, 2, 10) == {"b": 1, "a": 1}  # fewer than strata: the smallest


def test_draw_is_seeded_and_weights_add_up_to_the_archive():
    strata = pd.Series(["x"] * 90 + ["y"] * 9 + ["z"] * 1, index=[f"r{i:03d}" for i in range(100)])
    one, again = draw(strata, Design(20, 7, 5)), draw(strata, Design(20, 7, 5))
    assert one.equals(again) and not one.equals(draw(strata, Design(20, 8, 5)))
    assert len(one) == 20 and one["report_id"].is_unique
    assert one.groupby("stratum").size().to_dict() == {"x": 14, "y": 5, "z": 1}
    assert one["weight"].sum() == pytest.approx(100)
    assert list(one.columns) == ["report_id", "stratum", "stratum_size", "sampled_in_stratum", "weight"]


# --- the command -------------------------------------------------------------------------------

def test_sample_folder_holds_the_texts_labels_mentions_and_design(labeled, tmp_path):
    out = tmp_path / "sample"
    result = rm("sample", labeled / "labels.parquet", "-n", 12, "--seed", 3, "-o", out)
    assert result.exit_code == 0, result.output
    sample = pd.read_csv(out / "sample.csv", dtype={"report_id": str})
    assert len(sample) == 12 and (sample["weight"] == sample["stratum_size"] / sample["sampled_in_stratum"]).all()
    texts = [json.loads(line) for line in (out / "reports.jsonl").read_text().splitlines()]
    assert [t["report_id"] for t in texts] == list(sample["report_id"])
    assert all(t["text"] == (SAMPLES / "reports" / f"{t['report_id']}.txt").read_text() for t in texts)
    labels = pq.read_table(out / "labels.parquet").to_pandas()
    assert list(labels["report_id"]) == list(sample["report_id"])
    assert json.loads(read_metadata(out / "labels.parquet")["inputs"]) == ["reports.jsonl"]
    mentions = pd.read_parquet(out / "mentions.parquet")
    assert set(mentions["report_id"]) <= set(sample["report_id"]) and len(mentions) > 12
    readme = (out / "README.md").read_text()
    assert "## How it was drawn" in readme and "--seed 3" in readme and "--weights sample.csv" in readme


def test_sample_of_a_sample_reads_its_own_reports_file(labeled, tmp_path):
    first = tmp_path / "first"
    assert rm("sample", labeled / "labels.parquet", "-n", 12, "-o", first).exit_code == 0
    result = rm("sample", first / "labels.parquet", "-n", 5, "-o", tmp_path / "second")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "second" / "sample.csv")) == 5


def test_a_sampled_report_without_its_text_is_named_and_the_weights_follow(labeled, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for file in sorted((SAMPLES / "reports").glob("*.txt"))[1:]:  # s01 is gone
        (reports / file.name).write_text(file.read_text())
    out = tmp_path / "sample"
    result = rm("sample", labeled / "labels.parquet", "-n", 40, "--reports", reports, "-o", out)
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped report s01: its text is not in {reports}" in result.output
    sample = pd.read_csv(out / "sample.csv")
    assert "s01" not in set(sample["report_id"]) and len(sample) == 33
    assert (sample["weight"] == sample["stratum_size"] / sample["sampled_in_stratum"]).all()


def test_sample_without_recorded_inputs_asks_for_reports(labeled, tmp_path):
    table = pq.read_table(labeled / "labels.parquet")
    meta = {k: v for k, v in table.schema.metadata.items() if not k.endswith(b"inputs")}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "labels.parquet")
    line = only_line(rm("sample", tmp_path / "labels.parquet", "-o", tmp_path / "s"))
    assert "records no inputs" in line and "--reports" in line


def test_sample_into_a_symlinked_folder_is_one_line_and_writes_nothing(labeled, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    line = only_line(rm("sample", labeled / "labels.parquet", "-o", tmp_path / "link"))
    assert "is a symbolic link, not a folder" in line and not any((tmp_path / "elsewhere").iterdir())


# --- the page's contents -----------------------------------------------------------------------

def page_json(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(block)


def test_audit_page_is_one_file_with_nothing_to_fetch(labeled, tmp_path):
    result = rm("audit", labeled / "labels.parquet", "-o", tmp_path / "audit.html", "--gold", GOLD,
                "--uncertain", "positive")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "audit.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "default-src 'none'" in page and "@import" not in page
    data = page_json(page)
    assert len(data["reports"]) == 34 and data["columns"][-1] == "No_Finding"
    assert len(data["gold"]["errors"]) == 6 and "6 errors" in result.output
    s01 = data["reports"][0]
    assert s01["id"] == "s01" and all(m[1] >= 0 for m in s01["mentions"])


def test_report_text_cannot_end_the_data_block():
    text = embed_json({"text": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["text"].startswith("</script>")


def test_audit_refuses_a_fifo_as_its_page(labeled, tmp_path):
    fifo = tmp_path / "audit.html"
    os.mkfifo(fifo)
    line = only_line(rm("audit", labeled / "labels.parquet", "-o", fifo))
    assert "is a FIFO (named pipe)" in line and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_chexpert_page_has_the_chexpert_columns(tmp_path):
    assert rm("label", SAMPLES / "reports", "-o", tmp_path / "labels.parquet", "--schema", "chexpert",
              "--workers", "1", "--quiet").exit_code == 0
    assert rm("audit", tmp_path / "labels.parquet", "-o", tmp_path / "a.html").exit_code == 0
    columns = page_json((tmp_path / "a.html").read_text())["columns"]
    assert columns == read_labels(tmp_path / "labels.parquet").label_columns and "No Finding" in columns


def test_the_inlined_script_and_style_cannot_end_their_own_elements():
    assert "</script" not in asset("audit.js").lower() and "</style" not in asset("audit.css").lower()


def test_audit_names_a_report_whose_text_is_missing(labeled, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "s02.txt").write_text((SAMPLES / "reports" / "s02.txt").read_text())
    result = rm("audit", labeled / "labels.parquet", "--reports", reports, "-o", tmp_path / "a.html")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped report s01: its text is not in {reports}" in result.output
    assert [r["id"] for r in page_json((tmp_path / "a.html").read_text())["reports"]] == ["s02"]


def test_audit_refuses_to_write_over_its_gold(labeled):
    gold = labeled / "gold_copy.csv"
    gold.write_text(GOLD.read_text())
    line = only_line(rm("audit", labeled / "labels.parquet", "--gold", gold, "-o", gold))
    assert "is also an input" in line and gold.read_text() == GOLD.read_text()


def test_mentions_that_do_not_fit_the_text_are_listed_not_highlighted(labeled, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for file in (SAMPLES / "reports").glob("*.txt"):
        (reports / file.name).write_text(("CHANGED " if file.stem == "s03" else "") + file.read_text())
    result = rm("audit", labeled / "labels.parquet", "--reports", reports, "-o", tmp_path / "a.html")
    assert result.exit_code == 0, result.output
    assert "warning: report s03:" in result.output and "not at their offsets" in result.output
    s03 = next(r for r in page_json((tmp_path / "a.html").read_text())["reports"] if r["id"] == "s03")
    assert s03["mentions"] and all(m[1] == -1 for m in s03["mentions"])


# --- evaluate: intervals and weights -----------------------------------------------------------

def test_intervals_are_seeded_and_hold_the_point_figure(labeled, tmp_path):
    a = evaluate_files(labeled / "labels.parquet", GOLD, "positive", bootstrap=300, seed=1)
    b = evaluate_files(labeled / "labels.parquet", GOLD, "positive", bootstrap=300, seed=1)
    assert a == b
    micro = a["totals"]["all 14"]["micro"]
    low, high = micro["ci"]["f1"]
    assert low <= micro["f1"] <= high and low < high
    assert "ci" not in evaluate_files(labeled / "labels.parquet", GOLD)["per_finding"]["Effusion"]


def test_bootstrap_counts_resample_reports_within_strata():
    counts = draw_counts(6, 50, seed=0, strata=np.array(["a", "a", "b", "b", "b", "c"]))
    assert (counts.sum(axis=1) == 6).all()
    assert (counts[:, :2].sum(axis=1) == 2).all() and (counts[:, 5] == 1).all()


def test_evaluate_prints_the_interval_column_and_keeps_its_last_line(labeled, tmp_path):
    result = rm("evaluate", labeled / "labels.parquet", GOLD, "--uncertain", "positive", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{'finding':<20}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}") and "F1 95% CI" in lines[0]
    effusion = next(line for line in lines if line.startswith("Effusion"))
    assert re.fullmatch(r"Effusion\s+0\.600\s+1\.000\s+0\.750\s+3  \d\.\d{3}-\d\.\d{3}", effusion)
    assert lines[-1] == "(34 gold reports, 0 without labels; uncertain scored as positive)"
    assert json.loads((tmp_path / "e.json").read_text())["bootstrap"]["resamples"] == 1000


def test_weighted_figures_count_each_report_its_weight(labeled, tmp_path):
    weights = pd.DataFrame({"report_id": [f"s{i:02d}" for i in range(1, 35)], "weight": 1.0})
    weights.loc[weights["report_id"] == "s09", "weight"] = 10.0  # s09: a false positive Pneumonia
    weights.to_csv(tmp_path / "w.csv", index=False)
    result = rm("evaluate", labeled / "labels.parquet", GOLD, "--uncertain", "positive", "--weights",
                tmp_path / "w.csv", "--json", tmp_path / "e.json", "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "e.json").read_text())
    plain, weighted = figures["per_finding"]["Pneumonia"], figures["weighted"]["per_finding"]["Pneumonia"]
    assert (plain["tp"], plain["fp"]) == (1, 3)  # false positives s09, s21, s32
    assert (weighted["tp"], weighted["fp"]) == (1.0, 12.0)
    assert weighted["precision"] == pytest.approx(1 / 13)
    assert "weighted by" in result.output


def test_weights_follow_the_strata_of_a_partly_annotated_sample(labeled, tmp_path):
    sample = pd.DataFrame({"report_id": ["s01", "s02", "s03", "s04"], "stratum": ["a", "a", "b", "b"],
                           "stratum_size": [10, 10, 4, 4], "sampled_in_stratum": 2, "weight": [5.0, 5.0, 2.0, 2.0]})
    sample.to_csv(tmp_path / "sample.csv", index=False)
    gold = tmp_path / "gold.csv"
    gold.write_text("\n".join(GOLD.read_text().splitlines()[:4]) + "\n")  # s01-s03: one of stratum b annotated
    figures = evaluate_files(labeled / "labels.parquet", gold, weights=tmp_path / "sample.csv", bootstrap=50)
    assert figures["weighted"]["per_finding"]["Pneumothorax"]["support"] == 4.0  # s03 now stands for all of b
    assert any("recomputed per stratum" in n for n in figures["notes"])
    assert figures["weighted"]["stratified"]


@pytest.mark.parametrize("content, expected", [
    ("report_id,weight\ns01,1\n", "no weight for gold report s02 (and 32 more)"),
    ("report_id,weight\n" + "".join(f"s{i:02d},1\n" for i in range(1, 34)) + "s34,-2\n",
     "w.csv:35: weight must be a positive number, got '-2'"),
    ("id,w\ns01,1\n", "missing column 'report_id'"),
])
def test_bad_weights_are_one_line(labeled, tmp_path, content, expected):
    (tmp_path / "w.csv").write_text(content)
    assert expected in only_line(rm("evaluate", labeled / "labels.parquet", GOLD, "--weights", tmp_path / "w.csv"))
