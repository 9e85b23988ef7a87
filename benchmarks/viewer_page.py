"""The study viewer's size and load time in headless Chromium (tests/chromium.py), against the same page
holding one film, measured in the same run.

    python benchmarks/viewer_page.py RUN FILMS [--films 200] [--loads 5]

FILMS is a folder of films (the README main job's out/unseen/images). `classifier predict --html` writes
the page of the first --films films and the page of the first film; each is loaded --loads times from
its file and timed by the browser's own navigation timing (start to the end of the load event, the
first film drawn), and any request beyond the file is counted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import chromium  # noqa: E402

TIMING = """const nav = performance.getEntriesByType('navigation')[0];
return {load_ms: nav.loadEventEnd - nav.startTime, requests: performance.getEntriesByType('resource').length,
        films: window.viewer.films, drawn: window.viewer.drawn() !== null};"""


def page(run: Path, films: Path, count: int, out: Path) -> Path:
    html = out / f"viewer{count}.html"
    subprocess.run([sys.executable, "-m", "classifier", "predict", str(run), str(films), "-o",
                    str(out / f"p{count}.parquet"), "--html", str(html), "--html-films", str(count), "--quiet"],
                   check=True)
    return html


def load(driver, html: Path, loads: int) -> dict:
    from selenium.webdriver.support.wait import WebDriverWait

    times, requests = [], 0
    for _ in range(loads):
        driver.get(html.as_uri())
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.viewer.drawn() !== null"))
        figures = driver.execute_script(TIMING)
        times.append(figures["load_ms"])
        requests += figures["requests"]
    if chromium.console_errors(driver):
        sys.exit(f"{html}: console errors {chromium.console_errors(driver)}")
    return {"ms": statistics.median(times), "requests": requests, "films": figures["films"],
            "mb": html.stat().st_size / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("films", type=Path)
    parser.add_argument("--films", dest="count", type=int, default=200)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    if chromium.missing():
        sys.exit(f"no headless browser: {chromium.missing()}")
    with tempfile.TemporaryDirectory() as tmp:
        pages = {n: page(args.run, args.films, n, Path(tmp)) for n in (1, args.count)}
        with chromium.browser() as driver:
            results = {n: load(driver, html, args.loads) for n, html in pages.items()}
    for n, r in results.items():
        print(f"{r['films']:>5} films: {r['mb']:6.2f} MB, loads in {r['ms']:6.0f} ms (median of {args.loads}), "
              f"{r['requests']} requests beyond the file")
    print(f"{args.count} films / 1 film: {results[args.count]['ms'] / results[1]['ms']:.1f}x the load time")


if __name__ == "__main__":
    main()
