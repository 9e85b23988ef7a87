"""Make docs/viewer.png: the study viewer (`classifier predict --html`) on generated films (never on real
data), drawn by headless Chromium (tests/chromium.py), showing a film's most probable boxed finding.

    python docs/viewer_screenshot.py RUN FILMS [docs/viewer.png]

RUN is a run folder (the README main job's out/demo/run), FILMS a folder of films (out/unseen/images).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import chromium  # noqa: E402

FILMS = 40
MAX_BYTES = 400_000


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    run, films = Path(sys.argv[1]), Path(sys.argv[2])
    target = Path(sys.argv[3]) if len(sys.argv) > 3 else ROOT / "docs" / "viewer.png"
    if chromium.missing():
        sys.exit(f"no headless browser: {chromium.missing()}")
    with tempfile.TemporaryDirectory() as tmp:
        out, page = Path(tmp) / "predictions.parquet", Path(tmp) / "viewer.html"
        subprocess.run([sys.executable, "-m", "classifier", "predict", str(run), str(films), "-o", str(out), "--html",
                        str(page), "--html-films", str(FILMS), "--boxes", "--quiet"], check=True)
        rows = pq.read_table(out).to_pandas().head(FILMS)
        # the film and finding with the most probable box: what a reader opens the viewer for
        best = max(((b["score"], row.id, b["finding"]) for row in rows.itertuples() for b in row.boxes))
        with chromium.browser(1280, 1000) as driver:
            from selenium.webdriver.support.wait import WebDriverWait

            driver.get(page.as_uri())
            driver.execute_script("window.viewer.open(arguments[0]); window.viewer.choose(arguments[1])", *best[1:])
            WebDriverWait(driver, 5).until(lambda d: (d.execute_script("return window.viewer.drawn()") or {}).get(
                "finding") == best[2])
            png = chromium.screenshot(driver, MAX_BYTES)
    target.write_bytes(png)
    print(f"{target}: {len(png):,} bytes; {best[1]}, {best[2]}")


if __name__ == "__main__":
    main()
