"""The study viewer (`classifier predict --html`) in a real headless Chromium: 200 films load in under a
second with nothing fetched, the keyboard moves between films and findings and toggles the heatmap and
the boxes, and a file name stays text. Skipped (with the reason) only where Debian's chromium, its
driver or selenium are missing."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from classifier.cli import main as classifier_main
from classifier.synthetic import generate

import chromium

if chromium.missing():
    pytest.skip(f"no headless browser: {chromium.missing()}", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402 (after the skip)
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a trained network, and a browser
HOSTILE = "<img src=x onerror=alert(1)>.png"


def run(*args):
    return CliRunner().invoke(classifier_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def page(cam_run, tmp_path_factory):
    """The page of 200 films of 512 px (20 generated films in ten folders), and its predictions."""
    root = tmp_path_factory.mktemp("page")
    generate(root / "gen", 20, size=512, seed=3)
    for n in range(10):
        shutil.copytree(root / "gen" / "images", root / "films" / f"study{n:02d}")
    shutil.copy(root / "gen" / "images" / "synth_000004.png", root / "films" / HOSTILE)
    out, page = root / "p.parquet", root / "view.html"
    result = run("predict", cam_run, root / "films", "-o", out, "--html", page, "--html-films", "200", "--boxes",
                 "--quiet")
    assert result.exit_code == 0, result.output
    return page, out


@pytest.fixture(scope="module")
def driver():
    with chromium.browser() as browser:
        yield browser


def load(driver, page):
    driver.get(page.as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.viewer && window.viewer.drawn()"))
    assert chromium.console_errors(driver) == []


def js(driver, script):
    return driver.execute_script(script)


def keys(driver, *sequence):
    ActionChains(driver).send_keys(*sequence).perform()


def shown(driver, **expected):
    """Wait until the canvas shows what is expected; return what it shows."""
    WebDriverWait(driver, 5).until(lambda d: (d.execute_script("return window.viewer.drawn()") or {}).items()
                                   >= expected.items())
    return js(driver, "return window.viewer.drawn()")


PIXELS = ("const c = document.getElementById('film'); "
          "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);")


def test_200_films_load_in_under_a_second_with_nothing_fetched(driver, page):
    load(driver, page[0])
    figures = js(driver, """const nav = performance.getEntriesByType('navigation')[0];
        return {load: nav.loadEventEnd - nav.startTime, fetched: performance.getEntriesByType('resource').length,
                films: window.viewer.films};""")
    assert figures["films"] == 200 and figures["fetched"] == 0
    assert figures["load"] < 1000, figures
    assert page[0].stat().st_size < 200 * 64_000


def test_keys_move_between_films_and_findings_and_toggle_heatmap_and_boxes(driver, page):
    load(driver, page[0])
    predictions = pq.read_table(page[1]).to_pandas().set_index("id")
    ids = js(driver, "return JSON.parse(document.getElementById('viewer-data').textContent).films.map(f => f.id)")
    assert ids == predictions.index.tolist()[:200]
    keys(driver, "n")
    assert js(driver, "return window.viewer.current()") == ids[1]
    keys(driver, "p", "p")  # no film before the first
    assert js(driver, "return window.viewer.current()") == ids[0]
    # the film's most probable finding, chosen by arrow keys from the first
    row = predictions.loc[ids[0]]
    findings = json.loads(pq.read_schema(page[1]).metadata[b"chestxray_toolkit.operating_points"])
    top = max(findings, key=lambda f: row[f])
    keys(driver, *["j"] * list(findings).index(top))
    assert js(driver, "return window.viewer.finding()") == top
    assert js(driver, "return document.querySelector('#findings-body tr.current th').textContent") == top
    with_heat = shown(driver, finding=top, heat=True, boxes=True)
    lit = js(driver, PIXELS)
    boxes = [b for b in row["boxes"] if b["finding"] == top]
    listed = js(driver, "return [...document.querySelectorAll('#box-list li')].map(li => li.textContent)")
    assert len(boxes) > 0 and len(listed) == len(boxes) and all(top in item for item in listed)
    keys(driver, "h")
    assert shown(driver, finding=top, heat=False)["boxes"] is True and with_heat["heat"] is True
    plain = js(driver, PIXELS)
    assert plain != lit  # the heatmap coloured the film
    keys(driver, "b")
    assert shown(driver, heat=False, boxes=False)["finding"] == top
    bare = js(driver, PIXELS)
    assert bare != plain  # the boxes were drawn on it
    assert js(driver, "return document.getElementById('toggle-boxes').getAttribute('aria-pressed')") == "false"
    keys(driver, "h", "b")
    assert shown(driver, heat=True, boxes=True)
    assert chromium.console_errors(driver) == []


def test_a_file_name_made_of_markup_stays_text(driver, page):
    load(driver, page[0])
    js(driver, f"window.viewer.open({json.dumps(HOSTILE)})")
    assert js(driver, "return document.getElementById('film-heading').textContent") == HOSTILE
    assert js(driver, "return document.querySelectorAll('img').length") == 0
    assert chromium.console_errors(driver) == []
