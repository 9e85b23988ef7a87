"""No browser: weighted intervals when a stratum has one gold report, and the audit page's
spreadsheet-escaped report ids read back by `evaluate`."""

import json

import numpy as np
import pandas as pd
import pytest

from auditpage import rm
from conftest import SAMPLES
from reportminer.intervals import draw_counts, pooled_strata


def test_one_report_strata_are_pooled_for_the_bootstrap():
    groups, note = pooled_strata(np.array(["a", "b", "b", "c", "d", "d"]))
    assert groups[0] == groups[3] != groups[1] and "2 strata have one gold report each" in note
    groups, note = pooled_strata(np.array(["a", "b", "b", "c", "c", "c"]))
    assert groups[0] == groups[1] and "stratum a has one gold report; the bootstrap resamples it with stratum b" in note
    strata = np.array(["a", "a", "b", "b"])
    assert pooled_strata(strata) == (strata, None)
    counts = draw_counts(4, 200, 0, pooled_strata(np.array(["a", "b", "c", "d"]))[0])
    assert counts.sum(axis=1).tolist() == [4] * 200 and counts.std(axis=0).min() > 0  # each report drawn 0 to 4 times


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    out = tmp_path_factory.mktemp("labeled")
    result = rm("label", SAMPLES / "reports", "-o", out / "labels.parquet", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_weighted_by_one_report_strata_gives_a_real_interval_and_a_note(labeled, tmp_path):
    ids = ["s03", "s05", "s06", "s09", "s10", "s21", "s27", "s32"]
    pd.DataFrame({"report_id": ids, "stratum": list("abcdefgh"), "stratum_size": [3, 9, 4, 12, 5, 7, 2, 6],
                  "weight": [3, 9, 4, 12, 5, 7, 2, 6]}).to_csv(tmp_path / "sample.csv", index=False)
    gold = pd.read_csv(SAMPLES / "hand_gold.csv", dtype=str)
    gold[gold["report_id"].isin(ids)].to_csv(tmp_path / "gold.csv", index=False)
    result = rm("evaluate", labeled / "labels.parquet", tmp_path / "gold.csv", "--uncertain", "positive", "--weights",
                tmp_path / "sample.csv", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    assert "note: 8 strata have one gold report each; the bootstrap resamples them together" in result.output
    low, high = json.loads((tmp_path / "e.json").read_text())["weighted"]["totals"]["all 14"]["micro"]["ci"]["f1"]
    assert low < high


def test_evaluate_reads_the_ids_the_audit_page_escaped_for_spreadsheets(tmp_path):
    ids = ["=1+2", "@sum", "'q", "plain"]
    pd.DataFrame({"report_id": ids, "text": "Small left pneumothorax."}).to_csv(tmp_path / "r.csv", index=False)
    assert rm("label", tmp_path / "r.csv", "-o", tmp_path / "labels.parquet", "--workers", "1", "--quiet").exit_code == 0
    (tmp_path / "gold.csv").write_text("report_id,Pneumothorax\n'=1+2,1\n'@sum,1\n''q,0\nplain,1\n")
    result = rm("evaluate", tmp_path / "labels.parquet", tmp_path / "gold.csv", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "e.json").read_text())
    assert (figures["reports"], figures["missing_reports"]) == (4, 0)
    assert (figures["per_finding"]["Pneumothorax"]["tp"], figures["per_finding"]["Pneumothorax"]["fp"]) == (3, 1)
