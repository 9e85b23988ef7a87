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
