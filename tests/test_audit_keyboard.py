"""The audit page never puts a reviewer's keystroke on a finding she did not mean: headless Chromium,
keyboard only (issue 26), and the keys of the report-id box and the errors list (issue 23)."""

import pandas as pd
import pytest

import chromium
from auditpage import gold_values, js, keys, load, page_data, rm, shift_tab, write_page
from conftest import SAMPLES

if chromium.missing():
    pytest.skip(f"no headless browser: {chromium.missing()}", allow_module_level=True)

from selenium.webdriver.common.keys import Keys  # noqa: E402 (after the skip)


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


@pytest.fixture(scope="module")
def plain_page(labeled):
    return write_page(labeled / "labels.parquet", labeled / "plain.html")


def cursor(driver) -> tuple[list[str], str]:
    """The rows marked as the cursor's, and what the page says about it."""
    rows = js(driver, "return [...document.querySelectorAll('#findings-body tr[aria-current=true]')].map(r => r.id)")
    return rows, js(driver, "return document.getElementById('cursor').textContent")


def test_three_reports_reviewed_with_j_1_enter_put_every_value_on_the_intended_finding(driver, plain_page):
    load(driver, plain_page)
    data = page_data(driver)
    columns, first = data["columns"], [r["id"] for r in data["reports"][:3]]
    typed = [(["j"], "1"), (["j", "j", "j"], "1"), (["j"], "-")]  # Cardiomegaly 1, Infiltration 1, Cardiomegaly -1
    for moves, value in typed:
        assert cursor(driver) == (["row-0"], f"Cursor on {columns[0]} (finding 1 of {len(columns) - 1})")
        keys(driver, *moves, value, Keys.ENTER)
    assert js(driver, "return window.audit.current()") == data["reports"][3]["id"]
    assert js(driver, "return document.activeElement.id") == "gold-0"
    wanted = {"Cardiomegaly": "1"}, {"Infiltration": "1"}, {"Cardiomegaly": "-1"}
    for report, change in zip(data["reports"][:3], wanted):
        js(driver, f"window.audit.open({report['id']!r})")
        labeler = ["" if v is None else str(v) for v in report["labels"]]
        expected = [change.get(name, labeler[f]) for f, name in enumerate(columns)]
        assert gold_values(driver, len(columns))[:-1] == expected[:-1], report["id"]  # the last, No_Finding, follows
    assert js(driver, "return window.audit.reviewed()") == first


def test_enter_on_the_reviewed_box_marks_reviewed_and_opens_the_next(driver, plain_page):
    load(driver, plain_page)
    for _ in range(30):  # Tab from the first finding down to the box, as a keyboard user does
        if js(driver, "return document.activeElement.id") == "reviewed":
            break
        keys(driver, Keys.TAB)
    assert js(driver, "return document.activeElement.id") == "reviewed"
    keys(driver, Keys.ENTER)
    assert js(driver, "return window.audit.current()") == "s02"
    assert js(driver, "return window.audit.reviewed()") == ["s01"]
    assert cursor(driver)[0] == ["row-0"]


def test_enter_in_the_report_id_box_opens_the_report_and_the_next_keys_set_values(driver, plain_page):
    load(driver, plain_page)
    shift_tab(driver)  # from the first finding back to "Go to report id"
    assert js(driver, "return document.activeElement.id") == "goto"
    keys(driver, "s05", Keys.ENTER, "1", "j", "0")
    assert js(driver, "return window.audit.current()") == "s05"
    assert gold_values(driver, 2) == ["1", "0"]  # Atelectasis 1, Cardiomegaly 0: no key lost to a dropdown


def test_n_and_p_in_the_errors_list_visit_a_reports_second_error(driver, labeled, tmp_path):
    gold = pd.read_csv(SAMPLES / "hand_gold.csv", dtype=str)
    gold.loc[gold["report_id"] == "s05", "Hernia"] = "1"  # s05: a false negative beside its false positive (Effusion)
    gold.to_csv(tmp_path / "gold.csv", index=False)
    page = write_page(labeled / "labels.parquet", tmp_path / "errors.html", "--gold", tmp_path / "gold.csv",
                      "--uncertain", "positive")
    load(driver, page)
    js(driver, "const m = document.getElementById('list-mode'); m.value = 'errors'; m.dispatchEvent(new Event('change'))")
    js(driver, "document.querySelector('#list-body button').click()")  # the first error: s05, Effusion
    where = "return [window.audit.current(), document.querySelector('#findings-body tr.current th').textContent]"
    assert js(driver, where) == ["s05", "Effusion"]
    keys(driver, "j")  # the reviewer looks at the finding below before going on
    keys(driver, "n")
    assert js(driver, where) == ["s05", "Hernia"]
    keys(driver, "n")
    assert js(driver, where) == ["s09", "Pneumonia"]
    keys(driver, "k", "p")
    assert js(driver, where) == ["s05", "Hernia"]
    keys(driver, "p")
    assert js(driver, where) == ["s05", "Effusion"]
    assert chromium.console_errors(driver) == []
