"""The audit page in a real headless Chromium: loaded from a file URL, driven by the keyboard,
reloaded, exported and evaluated; hostile report text stays text. Skipped (with the reason) only
where Debian's chromium, its driver or selenium are missing."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from reportminer.cli import EXIT_SKIPPED, main

import chromium
from conftest import SAMPLES, SHARED

if chromium.missing():
    pytest.skip(f"no headless browser: {chromium.missing()}", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402 (after the skip)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

VALUES = ["1", "0", "-1", ""]
KEY_FOR = {"1": "1", "0": "0", "-1": "-", "": "b"}


def rm(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


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
    """The 34 bundled reports against their hand labels, uncertain scored as positive (6 errors)."""
    page = labeled / "audit.html"
    result = rm("audit", labeled / "labels.parquet", "-o", page, "--gold", SAMPLES / "hand_gold.csv",
                "--uncertain", "positive")
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
    ActionChains(driver).send_keys(*sequence).perform()


def js(driver, script: str):
    return driver.execute_script(script)


MARKED_OFFSETS = """
    let at = 0; const marked = [];
    for (const node of document.getElementById('report-text').childNodes) {
      if (node.classList && node.classList.contains('badge')) continue;
      const length = node.textContent.length;
      if (node.classList && node.classList.contains('m')) for (let i = at; i < at + length; i++) marked.push(i);
      at += length;
    }
    return marked;"""


def test_every_mention_is_marked_with_colour_and_a_text_badge(driver, gold_page, labeled):
    load(driver, gold_page)
    mentions = pd.read_parquet(labeled / "mentions.parquet")
    for report_id in ("s01", "s05", "s11"):
        js(driver, f"window.audit.open({report_id!r})")
        mine = mentions[mentions["report_id"] == report_id]
        assert js(driver, MARKED_OFFSETS) == sorted({i for m in mine.itertuples() for i in range(m.start, m.end)})
        badges = js(driver, "return [...document.querySelectorAll('#report-text .badge')].map(b => b.textContent)")
        assert sorted(badges) == sorted({"positive": "+", "negative": "\u2212", "uncertain": "?"}[m.assertion] + " " + m.finding
                                        for m in mine.itertuples())
        classes = js(driver, "return [...document.querySelectorAll('#report-text .m')].map(s => s.className)")
        assert {c.split()[1] for c in classes} == {f"m-{a}" for a in mine["assertion"]}
        titles = " ".join(js(driver, "return [...document.querySelectorAll('#report-text .m')].map(s => s.title)"))
        assert all(rule in titles for rule in mine["rule"]) and all(s in titles for s in mine["sentence"])
    text = js(driver, "return [...document.getElementById('report-text').childNodes]"
                      ".filter(n => !(n.classList && n.classList.contains('badge'))).map(n => n.textContent).join('')")
    assert text == (SAMPLES / "reports" / "s11.txt").read_text()
    js(driver, "document.querySelector('#report-text .m').click()")
    assert "by rule pos.no_change_in" in js(driver, "return document.getElementById('detail').textContent")
    assert chromium.console_errors(driver) == []


def test_keyboard_values_survive_a_reload(driver, gold_page):
    load(driver, gold_page)
    js(driver, "document.getElementById('gold-0').focus()")
    keys(driver, "1", Keys.ARROW_DOWN, "-", Keys.ARROW_DOWN, "b", "r")  # Atelectasis 1, Cardiomegaly -1, Effusion blank, reviewed
    keys(driver, "n", Keys.ARROW_DOWN, "0")  # next report (the cursor back on its first finding), Cardiomegaly: 0
    driver.refresh()
    assert chromium.console_errors(driver) == []
    assert js(driver, "return window.audit.current()") == "s02"
    assert js(driver, "return document.getElementById('gold-1').value") == "0"
    js(driver, "window.audit.open('s01')")
    assert [js(driver, f"return document.getElementById('gold-{f}').value") for f in range(3)] == ["1", "-1", ""]
    assert js(driver, "return window.audit.reviewed()") == ["s01"]
    assert js(driver, "return document.getElementById('reviewed').checked") is True


def test_the_same_audit_written_again_with_a_gold_file_finds_the_work_done(driver, gold_page, labeled):
    plain = labeled / "plain.html"
    assert rm("audit", labeled / "labels.parquet", "-o", plain).exit_code == 0
    load(driver, plain)
    keys(driver, "1", "r")  # Atelectasis of s01
    driver.get(gold_page.as_uri())
    assert js(driver, "return document.getElementById('gold-0').value") == "1"
    assert js(driver, "return window.audit.reviewed()") == ["s01"]


def test_page_holds_one_report_and_a_page_of_the_list(driver, gold_page):
    load(driver, gold_page)
    assert js(driver, "return document.querySelectorAll('#report-text').length") == 1
    assert js(driver, "return document.querySelectorAll('#list-body tr').length") <= 50
    unlabeled = js(driver, """return [...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabeled == []
    js(driver, "document.getElementById('goto').focus()")
    keys(driver, Keys.TAB)  # Tab from the report-id box goes to the first finding, past the report text
    assert js(driver, "return document.activeElement.id") == "gold-0"


def test_errors_are_listed_filtered_and_shown_in_their_report(driver, gold_page):
    load(driver, gold_page)
    assert js(driver, "return document.getElementById('evaluation').hidden") is False
    table = js(driver, "return document.getElementById('evaluation-body').textContent")
    assert "Pneumonia" in table and "0.250" in table  # 1 true and 3 false positives
    js(driver, "const m = document.getElementById('list-mode'); m.value = 'errors'; m.dispatchEvent(new Event('change'))")
    assert js(driver, "return document.querySelectorAll('#list-body tr').length") == 6
    pick = "const s = document.getElementById('{}'); s.value = {}; s.dispatchEvent(new Event('change'))"
    js(driver, pick.format("filter-finding", "'6'"))  # Pneumonia
    assert js(driver, "return document.querySelectorAll('#list-body tr').length") == 3
    js(driver, pick.format("filter-rule", "'unc.differential'"))
    rows = js(driver, "return [...document.querySelectorAll('#list-body tr')].map(r => r.textContent)")
    assert len(rows) == 1 and rows[0].startswith("s32") and "false positive" in rows[0]
    js(driver, "document.querySelector('#list-body button').click()")
    assert js(driver, "return window.audit.current()") == "s32"
    assert js(driver, "return document.getElementById('error-6').textContent") == "false positive"
    assert js(driver, "return document.querySelectorAll('#report-text .m.wrong').length") >= 1
    assert "unc.differential" in js(driver, "return document.getElementById('report-errors').textContent")


def message_after_reading(driver, name: str) -> str:
    """The page's message once the file `name` is read (the browser reads a chosen file asynchronously)."""
    script = "return document.getElementById('message').textContent"
    WebDriverWait(driver, 10).until(lambda d: name in d.execute_script(script))
    return js(driver, script)


def test_import_of_a_partly_done_csv_and_its_one_line_errors(driver, gold_page, tmp_path):
    load(driver, gold_page)
    header = "report_id,Atelectasis,Cardiomegaly,Effusion,Foo"
    (tmp_path / "part.csv").write_text(f"{header}\ns02,1,-1,,x\nnot_here,0,0,0,0\n")
    driver.find_element("id", "import").send_keys(str(tmp_path / "part.csv"))
    message = message_after_reading(driver, "part.csv")
    assert "Imported 1 reports from part.csv" in message and "1 are not in this audit: not_here" in message
    assert "Ignored columns: Foo" in message
    js(driver, "window.audit.open('s02')")
    assert [js(driver, f"return document.getElementById('gold-{f}').value") for f in range(3)] == ["1", "-1", ""]
    assert js(driver, "return window.audit.reviewed()") == ["s02"]
    (tmp_path / "bad.csv").write_text(f"{header}\ns03,1,2,0,\n")
    driver.find_element("id", "import").send_keys(str(tmp_path / "bad.csv"))
    assert message_after_reading(driver, "bad.csv") == "bad.csv:2: column Cardiomegaly must be 1, 0, -1 or blank, got '2'"
    assert js(driver, "return window.audit.reviewed()") == ["s02"]
    assert chromium.console_errors(driver) == []


def test_hostile_report_text_stays_text(driver, tmp_path):
    hostile = ("</script><script>alert(1)</script> <img src=x onerror=\"window.pwned=1\"> {{script}} "
               "\U0001F600 Small left pneumothorax.")
    pd.DataFrame({"report_id": ["<b>x</b>", "plain"], "text": [hostile, "No pleural effusion."]}) \
        .to_csv(tmp_path / "reports.csv", index=False)
    assert rm("label", tmp_path / "reports.csv", "-o", tmp_path / "labels.parquet", "--evidence",
              tmp_path / "mentions.parquet", "--workers", "1", "--quiet").exit_code == 0
    page = tmp_path / "audit.html"
    assert rm("audit", tmp_path / "labels.parquet", "-o", page).exit_code == 0
    load(driver, page)
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text
    assert js(driver, "return window.pwned === undefined && document.querySelectorAll('img').length === 0")
    assert js(driver, "return document.getElementById('report-heading').textContent") == "Report <b>x</b>"
    shown = js(driver, "return document.getElementById('report-text').textContent")
    assert shown.startswith("</script><script>alert(1)</script>") and "{{script}}" in shown
    assert js(driver, "return [...document.querySelectorAll('#report-text .m')].map(s => s.textContent)") == \
        ["pneumothorax"]  # placed right after the emoji (two UTF-16 units in the browser, one character in Python)


def reviewer_loop(driver, labels: Path, reports: Path, work: Path, gold_known: dict[str, list[str]] | None = None):
    """Sample, open the page, type known values for every report by keyboard, export; the export."""
    result = rm("sample", labels, "-n", 50, "--seed", 1, "-o", work / "sample", "--reports", reports)
    assert result.exit_code in (0, EXIT_SKIPPED), result.output
    page = work / "audit.html"
    assert rm("audit", work / "sample" / "labels.parquet", "-o", page).exit_code == 0
    load(driver, page)
    columns = js(driver, "return JSON.parse(document.getElementById('audit-data').textContent).columns")
    ids = list(pd.read_csv(work / "sample" / "sample.csv", dtype=str)["report_id"])
    rng, typed = random.Random(0), {}
    js(driver, "document.getElementById('gold-0').focus()")
    for report_id in ids:
        assert js(driver, "return window.audit.current()") == report_id
        assert js(driver, "return document.activeElement.id") == "gold-0"  # each report opens on its first finding
        typed[report_id] = [rng.choice(VALUES) for _ in columns[:-1]]  # the findings; No_Finding follows them
        sequence = []
        for value in typed[report_id]:
            sequence += [KEY_FOR[value], Keys.ARROW_DOWN]
        keys(driver, *sequence, Keys.ENTER)  # reviewed, next report
        findings = typed[report_id]
        typed[report_id].append("0" if "1" in findings else "-1" if "-1" in findings else "1")  # ChestX-ray14's rule
    keys(driver, "e")
    export = js(driver, "return document.getElementById('export-text').value")
    assert export == js(driver, "return window.audit.exportCsv()")
    assert chromium.console_errors(driver) == []
    (work / "gold.csv").write_text(export)
    return ids, columns, typed


def direct_figures(labels: Path, typed: dict[str, list[str]], columns: list[str]) -> dict[str, tuple[int, int, int]]:
    """tp, fp, fn per finding, uncertain and blank scored as negative, straight from the typed values."""
    frame = pd.read_parquet(labels).drop_duplicates("report_id").set_index("report_id")
    out = {}
    for f, name in enumerate(columns):
        pred = {r: frame.at[r, name] == 1 for r in typed}
        truth = {r: typed[r][f] == "1" for r in typed}
        out[name] = (sum(pred[r] and truth[r] for r in typed), sum(pred[r] and not truth[r] for r in typed),
                     sum(truth[r] and not pred[r] for r in typed))
    return out


def check_loop(labels: Path, work: Path, ids, columns, typed) -> None:
    exported = pd.read_csv(work / "gold.csv", dtype=str, keep_default_na=False)
    assert list(exported.columns) == ["report_id", *columns] and list(exported["report_id"]) == ids
    assert {row[0]: list(row[1:]) for row in exported.itertuples(index=False, name=None)} == typed
    result = rm("evaluate", labels, work / "gold.csv", "--json", work / "e.json", "--weights",
                work / "sample" / "sample.csv")
    assert result.exit_code == 0, result.output
    figures = json.loads((work / "e.json").read_text())
    for name, (tp, fp, fn) in direct_figures(labels, typed, columns).items():
        got = figures["per_finding"][name]
        assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, fn), name
        assert got["precision"] == (tp / (tp + fp) if tp + fp else 0.0)
        assert got["recall"] == (tp / (tp + fn) if tp + fn else 0.0)
    assert figures["reports"] == len(ids) and "weighted" in figures


@pytest.mark.slow
def test_reviewer_loop_on_the_bundled_reports(driver, labeled, tmp_path):
    ids, columns, typed = reviewer_loop(driver, labeled / "labels.parquet", SAMPLES / "reports", tmp_path)
    assert len(ids) == 34  # 50 asked, the archive has 34: all of it
    check_loop(labeled / "labels.parquet", tmp_path, ids, columns, typed)


@pytest.mark.slow
@pytest.mark.realdata
def test_reviewer_loop_on_50_openi_dev_reports(driver, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for file in sorted((SHARED / "openi-dev" / "reports").glob("*.xml"))[:60]:
        (reports / file.name).write_bytes(file.read_bytes())
    result = rm("label", reports, "-o", tmp_path / "labels.parquet", "--evidence", tmp_path / "mentions.parquet",
                "--workers", "1", "--quiet")
    assert result.exit_code in (0, EXIT_SKIPPED), result.output
    ids, columns, typed = reviewer_loop(driver, tmp_path / "labels.parquet", reports, tmp_path)
    assert len(ids) == 50
    check_loop(tmp_path / "labels.parquet", tmp_path, ids, columns, typed)


def test_export_downloads_the_same_csv(gold_page, tmp_path):
    with chromium.browser(downloads=tmp_path) as browser:
        load(browser, gold_page)
        js(browser, "document.getElementById('gold-0').focus()")
        keys(browser, "1", Keys.ENTER, "e")
        WebDriverWait(browser, 10).until(lambda _: list(tmp_path.glob("gold-*.csv")))
        saved = next(tmp_path.glob("gold-*.csv")).read_text()
        assert saved == js(browser, "return window.audit.exportCsv()") and saved.splitlines()[1].startswith("s01,1,")
        assert chromium.console_errors(browser) == []
