"""What the audit page shows a reviewer, in headless Chromium: every highlight names its finding,
text and ids are drawn as the labeler read them (direction controls shown, not obeyed), no folder of
the machine that wrote the page, a 390-px-wide screen, and a visible focus on every control."""

import os
from pathlib import Path

import pandas as pd
import pytest

import chromium
from auditpage import SYMBOL, js, keys, label_texts, load, rm, write_page
from conftest import ROOT, SAMPLES

if chromium.missing():
    pytest.skip(f"no headless browser: {chromium.missing()}", allow_module_level=True)

from selenium.webdriver.common.keys import Keys  # noqa: E402 (after the skip)

RLO = "\u202e"


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
def gold_page(labeled):
    return write_page(labeled / "labels.parquet", labeled / "audit.html", "--gold", SAMPLES / "hand_gold.csv")


def test_each_highlight_names_its_finding_no_finding_included(driver, gold_page, labeled):
    load(driver, gold_page)
    mentions = pd.read_parquet(labeled / "mentions.parquet")
    for report_id in ("s01", "s03", "s21"):
        js(driver, f"window.audit.open({report_id!r})")
        mine = mentions[mentions["report_id"] == report_id]
        badges = js(driver, "return [...document.querySelectorAll('#report-text .badge')].map(b => b.textContent)")
        assert sorted(badges) == sorted(f"{SYMBOL[m.assertion]} {m.finding}" for m in mine.itertuples())
    js(driver, "window.audit.open('s01')")  # "No acute cardiopulmonary abnormality"
    normal = js(driver, "return [...document.querySelectorAll('#report-text .m')].filter(s => "
                        "s.textContent.startsWith('No acute')).map(s => [s.className, s.title])")
    assert len(normal) == 1 and "m-nofinding" in normal[0][0] and normal[0][1].startswith("No_Finding: positive")
    colour = "return getComputedStyle(document.querySelector('#report-text .{}')).{}"
    assert js(driver, colour.format("m-nofinding", "backgroundColor")) != "rgb(253, 227, 230)"  # not a finding's red
    assert js(driver, colour.format("b-nofinding", "color")) != "rgb(176, 0, 32)"


def test_direction_controls_in_ids_and_text_are_shown_not_obeyed(driver, tmp_path):
    labels = label_texts(tmp_path, {f"ab{RLO}cd": f"No {RLO}pleural effusion.\u200b", "abcd": "Normal chest."})
    load(driver, write_page(labels, tmp_path / "a.html"))
    assert RLO not in js(driver, "return document.body.innerText") and "\u200b" not in js(
        driver, "return document.body.innerText")
    assert js(driver, "return document.getElementById('position').innerText") == "Report abRLOcd (1 of 2)"
    assert js(driver, "return document.querySelector('#position bdi').innerText") == "abRLOcd"
    assert js(driver, "return [...document.querySelectorAll('#list-body button')].map(b => b.innerText)") == \
        ["abRLOcd", "abcd"]  # two ids that differ only by an invisible character no longer look alike
    assert js(driver, "return [...document.querySelectorAll('#report-text .ctl')].map(c => c.innerText)") == \
        ["RLO", "ZWSP"]
    assert js(driver, "return document.querySelector('#report-text .m').textContent") == "pleural effusion"
    assert js(driver, "return document.querySelector('#report-text .ctl').title").startswith("U+202E")
    assert chromium.console_errors(driver) == []


def test_the_page_holds_no_folder_of_the_machine_that_wrote_it(driver, labeled, tmp_path):
    page = write_page(labeled / "labels.parquet", tmp_path / "a.html", "--gold", SAMPLES / "hand_gold.csv")
    load(driver, page)
    shown = js(driver, "return document.documentElement.outerHTML + document.body.innerText")
    for folder in {str(labeled), str(labeled.resolve()), str(tmp_path), str(ROOT), str(SAMPLES), os.getcwd(),
                   str(Path.home())}:
        assert folder not in shown and folder not in page.read_text(), folder
    assert "labels.parquet" in js(driver, "return document.getElementById('source').textContent")
    assert "hand_gold.csv" in js(driver, "return document.getElementById('evaluation-caption').textContent")
    embedded = write_page(labeled / "labels.parquet", tmp_path / "b.html", "--gold", SAMPLES / "hand_gold.csv",
                          "--embed-paths")
    assert str(SAMPLES / "hand_gold.csv") in embedded.read_text() and str(labeled) in embedded.read_text()


def test_a_390_px_screen_shows_every_gold_value_and_opens_at_the_header(gold_page):
    with chromium.browser() as driver:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        load(driver, gold_page)
        assert js(driver, "return innerWidth") == 390
        assert js(driver, "return document.activeElement.id") == "gold-0"
        assert js(driver, "return scrollY") == 0  # the first focus does not scroll past the header
        assert js(driver, "return document.documentElement.scrollWidth") <= 390  # nothing overflows the screen
        clipped = js(driver, """
            const box = document.getElementById('annotate').getBoundingClientRect();
            return [...document.querySelectorAll('#findings select')].map(s => s.getBoundingClientRect())
              .filter(r => r.left < box.left || r.right > Math.min(box.right, innerWidth)).length""")
        assert clipped == 0  # every "Your gold" select whole on screen, none scrolled out of its table
        headers = js(driver, "return [...document.querySelectorAll('#findings-head th')].map(h => h.getBoundingClientRect().right)")
        assert max(headers, default=0) <= 390


def test_the_import_button_shows_its_keyboard_focus(driver, gold_page):
    load(driver, gold_page)
    js(driver, "document.getElementById('export').focus()")
    keys(driver, Keys.TAB)
    assert js(driver, "return document.activeElement.id") == "import"
    style = js(driver, "const s = getComputedStyle(document.querySelector('label[for=import]')); "
                       "return [s.outlineStyle, parseFloat(s.outlineWidth)]")
    assert style[0] != "none" and style[1] >= 2
