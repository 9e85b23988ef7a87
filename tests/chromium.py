"""Headless Chromium for the audit page: Debian's `chromium` and `chromium-driver` (installed by .ci/run),
driven by selenium. Used by tests/test_audit_browser.py, benchmarks/audit_page.py and docs/audit_screenshot.py.

Chromium is started with every background service off and a fresh profile: without them it tries to
reach Google (updates, sync, QUIC) and hangs on a machine without that network.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def missing() -> str | None:
    """Why the browser cannot be started here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (apt-get install {package})"
    return None


@contextmanager
def browser(width: int = 1280, height: int = 900, downloads: Path | None = None) -> Iterator:
    """A headless Chromium with its console log kept, quit (and its fresh profile removed) on leaving."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        if downloads is not None:
            options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                      "download.prompt_for_download": False})
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (the log is drained by reading it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, max_bytes: int) -> bytes:
    """The page as PNG, for the docs: the page logged no error, and the picture stays within `max_bytes` (else
    the script exits with one line)."""
    assert not console_errors(driver)
    png = driver.get_screenshot_as_png()
    if len(png) > max_bytes:
        sys.exit(f"the screenshot is {len(png):,} bytes, over {max_bytes:,}")
    return png
