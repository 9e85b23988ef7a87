"""What the audit page exports and what its evaluation says, in headless Chromium: No_Finding kept
consistent with the findings, one file name per export, report ids safe in a spreadsheet, and
weighted intervals that stay honest when a stratum has one gold report."""

import re

import pandas as pd
import pytest

import chromium
from auditpage import exported, js, keys, label_texts, load, page_data, rm, write_page
from conftest import SAMPLES

if chromium.missing():
    pytest.skip(f"no headless browser: {chromium.missing()}", allow_module_level=True)

from selenium.webdriver.common.keys import Keys  # noqa: E402 (after the skip)
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def driver():
    with chromium.browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    out = tmp_path_factory.mktemp("labeled")
    result = rm("label", SAMPLES / "reports", "-o", out / "labels.parquet", "--evidence", out / "mentions.parquet",
                "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_no_finding_follows_the_reviewers_findings_in_the_export(driver, labeled, tmp_path):
    load(driver, write_page(labeled / "labels.parquet", tmp_path / "a.html"))
    columns = page_data(driver)["columns"]
    assert columns[-1] == "No_Finding" and js(driver, "return document.getElementById('gold-14').disabled")
    keys(driver, "j", "1", Keys.ENTER)  # s01, a normal study: Cardiomegaly 1
    keys(driver, "j", "j", "-", Keys.ENTER)  # s02, normal: Effusion uncertain
    keys(driver, "k", Keys.ENTER)  # s03: reviewed as the labeler has it (Pneumothorax 1, so not normal)
    rows = exported(driver)
    assert (rows["s01"][1], rows["s01"][-1]) == ("1", "0")
    assert (rows["s02"][2], rows["s02"][-1]) == ("-1", "-1")
    assert rows["s03"][-1] == "0"
    (tmp_path / "fix.csv").write_text("report_id,Pneumothorax,No_Finding\ns03,0,0\n")
    driver.find_element("id", "import").send_keys(str(tmp_path / "fix.csv"))
    WebDriverWait(driver, 10).until(lambda d: "fix.csv" in js(d, "return document.getElementById('message').textContent"))
    assert "No_Finding follows the findings: set anew for 1 reports" in js(
        driver, "return document.getElementById('message').textContent")
    assert exported(driver)["s03"][-1] == "1"  # nothing positive or uncertain left: a normal study
    assert chromium.console_errors(driver) == []


def test_repeated_exports_get_names_in_the_order_made_not_gold_1(labeled, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page = write_page(labeled / "labels.parquet", tmp_path / "a.html")
    with chromium.browser(downloads=downloads) as browser:
        load(browser, page)
        keys(browser, "1", Keys.ENTER, "e")
        WebDriverWait(browser, 10).until(lambda _: len(list(downloads.glob("*.csv"))) == 1)
        first = js(browser, "return window.audit.exportCsv()")
        keys(browser, Keys.ENTER, "e")  # s02 reviewed too, exported again at once
        WebDriverWait(browser, 10).until(lambda _: len(list(downloads.glob("*.csv"))) == 2)
        names = sorted(p.name for p in downloads.glob("*.csv"))
        assert all(re.fullmatch(r"gold-\d{8}-\d{6}-\d{3}\.csv", n) for n in names), names
        assert [(downloads / n).read_text() for n in names] == [first, js(browser, "return window.audit.exportCsv()")]
        assert names[1] in js(browser, "return document.getElementById('message').textContent")
        assert chromium.console_errors(browser) == []


def test_ids_a_spreadsheet_would_run_are_escaped_and_read_back(driver, tmp_path):
    ids = ["=1+2", "+cmd", "-x", "@sum", "'q", "plain"]
    labels = label_texts(tmp_path, {i: "No pleural effusion." for i in ids})
    load(driver, write_page(labels, tmp_path / "a.html"))
    keys(driver, *[Keys.ENTER] * len(ids))  # every report reviewed as the labeler has it
    export = js(driver, "return window.audit.exportCsv()")
    assert [line.split(",")[0] for line in export.splitlines()[1:]] == ["'=1+2", "'+cmd", "'-x", "'@sum", "''q", "plain"]
    (tmp_path / "gold.csv").write_text(export)
    result = rm("evaluate", labels, tmp_path / "gold.csv", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    figures = pd.read_json(tmp_path / "e.json", typ="series")
    assert (figures["reports"], figures["missing_reports"]) == (6, 0)  # every id matched its report
    load(driver, tmp_path / "a.html")
    driver.find_element("id", "import").send_keys(str(tmp_path / "gold.csv"))
    WebDriverWait(driver, 10).until(lambda d: "gold.csv" in js(d, "return document.getElementById('message').textContent"))
    assert js(driver, "return window.audit.reviewed()") == ids


def one_report_strata(labeled, folder):
    """The bundled labels beside a sample.csv whose 8 strata each hold one report of the gold."""
    folder.mkdir()
    for name in ("labels.parquet", "mentions.parquet"):
        (folder / name).write_bytes((labeled / name).read_bytes())
    ids = ["s03", "s05", "s06", "s09", "s10", "s21", "s27", "s32"]
    pd.DataFrame({"report_id": ids, "stratum": [f"stratum {k}" for k in range(8)], "stratum_size": [3, 9, 4, 12, 5, 7, 2, 6],
                  "sampled_in_stratum": 1, "weight": [3, 9, 4, 12, 5, 7, 2, 6]}).to_csv(folder / "sample.csv", index=False)
    gold = pd.read_csv(SAMPLES / "hand_gold.csv", dtype=str)
    gold[gold["report_id"].isin(ids)].to_csv(folder / "gold.csv", index=False)
    return folder


def test_weighted_intervals_with_one_report_strata_are_not_zero_width_and_say_why(driver, labeled, tmp_path):
    folder = one_report_strata(labeled, tmp_path / "sample")
    load(driver, write_page(folder / "labels.parquet", folder / "a.html", "--gold", folder / "gold.csv",
                            "--uncertain", "positive"))
    rows = js(driver, """const rows = [...document.querySelectorAll('#evaluation-body tr')];
        const at = rows.findIndex(r => r.classList.contains('weighted'));
        return at < 0 ? [] : rows.slice(at + 1).map(r => [...r.children].map(c => c.textContent))""")
    micro = next(r for r in rows if r[0] == "micro all 14")
    low, high = (float(x) for x in micro[4].split("\u2013"))
    assert low < high  # the eight reports vary together, as one group
    assert "sample.csv" in js(driver, "return document.getElementById('weighted-heading').textContent")
    notes = js(driver, "return document.getElementById('evaluation-notes').textContent")
    assert "8 strata have one gold report each; the bootstrap resamples them together" in notes
