"""Helpers for the audit page's browser tests: write a page from reports given as text, open it
afresh in headless Chromium, type keys, read what a reviewer sees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from reportminer.cli import main

import chromium

SYMBOL = {"positive": "+", "negative": "\u2212", "uncertain": "?"}


def rm(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def label_texts(folder: Path, reports: dict[str, str]) -> Path:
    """Label the reports (id -> text) from a CSV; the labels.parquet, mentions.parquet beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"report_id": list(reports), "text": list(reports.values())}).to_csv(folder / "reports.csv", index=False)
    result = rm("label", folder / "reports.csv", "-o", folder / "labels.parquet", "--evidence",
                folder / "mentions.parquet", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "labels.parquet"


def write_page(labels: Path, page: Path, *options) -> Path:
    result = rm("audit", labels, "-o", page, *options)
    assert result.exit_code == 0, result.output
    return page


def load(driver, page: Path) -> None:
    """Open the page afresh (its saved progress cleared) and check it loaded without a console error."""
    driver.get(page.as_uri())
    driver.execute_script("localStorage.clear()")
    driver.get(page.as_uri())
    assert chromium.console_errors(driver) == []
    assert driver.execute_script("return window.audit.reports") > 0


def keys(driver, *sequence: str) -> None:
    """Key presses sent to whatever has the focus, as a keyboard user types them."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*sequence).perform()


def shift_tab(driver) -> None:
    """Shift+Tab: the focus goes back one control."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()


def js(driver, script: str):
    return driver.execute_script(script)


def page_data(driver) -> dict:
    return js(driver, "return JSON.parse(document.getElementById('audit-data').textContent)")


def gold_values(driver, columns: int) -> list[str]:
    """The "Your gold" values of the report on screen."""
    return [js(driver, f"return document.getElementById('gold-{f}').value") for f in range(columns)]


def exported(driver) -> dict[str, list[str]]:
    """The export's rows as report_id -> values (the CSV the page would download now)."""
    lines = js(driver, "return window.audit.exportCsv()").splitlines()
    return {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}
