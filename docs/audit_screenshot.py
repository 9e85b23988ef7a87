"""Make docs/audit.png: the audit page on the bundled sample reports (never on real data), drawn by
headless Chromium (tests/chromium.py) after a reviewer's few key presses.

    python docs/audit_screenshot.py [docs/audit.png]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import chromium  # noqa: E402

SAMPLES = ROOT / "data_samples"
MAX_BYTES = 300_000


def reportminer(*args: object, cwd: str | None = None) -> None:
    subprocess.run([sys.executable, "-m", "reportminer.cli", *map(str, args)], check=True, capture_output=True, cwd=cwd)


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "audit.png"
    if chromium.missing():
        sys.exit(f"no headless browser: {chromium.missing()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "out"  # the page names its files by name only (labels.parquet)
        reportminer("label", SAMPLES / "reports", "-o", work / "labels.parquet", "--evidence", work / "mentions.parquet",
                    "--workers", "1", "--quiet")
        reportminer("audit", "out/labels.parquet", "-o", "out/audit.html", "--gold", SAMPLES / "hand_gold.csv",
                    "--uncertain", "positive", cwd=tmp)
        with chromium.browser(1280, 900) as driver:
            from selenium.webdriver.common.action_chains import ActionChains
            from selenium.webdriver.common.keys import Keys

            driver.get((work / "audit.html").as_uri())
            driver.execute_script("localStorage.clear(); document.getElementById('gold-0').focus()")
            ActionChains(driver).send_keys(*[Keys.ENTER] * 20).perform()  # 20 reports reviewed as labeled
            driver.execute_script("window.audit.open('s21'); document.getElementById('gold-6').focus()")
            ActionChains(driver).send_keys("0").perform()  # the reviewer's gold: no pneumonia
            driver.execute_script("document.querySelector('#report-text .m-uncertain').click()")
            png = chromium.screenshot(driver, MAX_BYTES)
    target.write_bytes(png)
    print(f"{target}: {len(png):,} bytes")


if __name__ == "__main__":
    main()
