"""The audit page for a whole archive: the 3,080 OpenI development reports with the shared gold.

Labels the reports (or takes --labels/--evidence already made), writes the page with `reportminer
audit --gold`, then opens it in headless Chromium (tests/chromium.py) and prints: the file's size,
the load time by the browser's own navigation timing (navigation start to the end of the load
event, which includes parsing the embedded data and drawing the first report), the JavaScript
heap, the time to open the next report, and whether every error of `reportminer evaluate --errors`
is in the page (listed among the errors, and marked on its finding when its report is opened).
With --replicate N the same is measured on a page of N reports (the archive's reports repeated
under new ids), for the 5,000-report claim.

    python benchmarks/audit_page.py ../shared/data/openi-dev [--replicate 5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import chromium  # noqa: E402 (tests/chromium.py: the browser the tests use)

TIMING = """
const nav = performance.getEntriesByType('navigation')[0];
return {load_ms: nav.loadEventEnd - nav.startTime, dom_ms: nav.domContentLoadedEventEnd - nav.startTime,
        heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null};"""
NEXT = """
const n = arguments[0], first = window.audit.current(), start = performance.now();
for (let i = 0; i < n; i++) {
  document.activeElement.dispatchEvent(new KeyboardEvent('keydown', {key: 'n', bubbles: true, cancelable: true}));
}
const ms = (performance.now() - start) / n;
return window.audit.current() === first ? null : ms;"""
ERRORS_IN_PAGE = """
const listed = new Set(window.audit.errors().map(e => e.join('\\t')));
const missing = [], unmarked = [];
const columns = JSON.parse(document.getElementById('audit-data').textContent).columns;
for (const [id, finding, kind] of arguments[0]) {
  if (!listed.has([id, finding, kind].join('\\t'))) { missing.push(id + ' ' + finding); continue; }
  try { window.audit.open(id); } catch (e) { unmarked.push(id + ' ' + finding + ' (no report)'); continue; }
  if (window.audit.current() !== id ||
      document.getElementById('error-' + columns.indexOf(finding)).textContent !== kind) unmarked.push(id + ' ' + finding);
}
return {listed: listed.size, missing, unmarked};"""


def reportminer(*args: object) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "reportminer.cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode not in (0, 3):
        sys.exit(f"reportminer {args[0]} failed:\n{done.stderr}")
    return done


def measure(page: Path, errors: pd.DataFrame | None) -> dict:
    """Open the page in a fresh headless Chromium and measure it."""
    with chromium.browser() as driver:
        driver.get(page.as_uri())
        figures = driver.execute_script(TIMING)
        figures["console_errors"] = chromium.console_errors(driver)
        figures["next_report_ms"] = driver.execute_script(NEXT, 50)
        if errors is not None:
            rows = errors[["report_id", "finding", "error"]].astype(str).values.tolist()
            figures["errors"] = driver.execute_script(ERRORS_IN_PAGE, rows)
    figures["size_mb"] = page.stat().st_size / 2 ** 20
    return figures


def renamed(table: pa.Table, suffix: str) -> pa.Table:
    """The table with `suffix` added to every report_id."""
    ids = pc.binary_join_element_wise(table["report_id"], pa.scalar(suffix), pa.scalar(""))
    return table.set_column(table.schema.get_field_index("report_id"), "report_id", ids)


def replicate(labels: Path, evidence: Path, reports: Path, n: int, work: Path) -> Path:
    """A page of n reports: the archive's reports repeated under new ids `ID~k` (no relabeling needed)."""
    from reportminer.audit import page_data
    from reportminer.audit_html import render
    from reportminer.readers import ReadSettings, Report, read_inputs

    texts = {r.report_id: r.text for r in read_inputs([reports], ReadSettings()) if isinstance(r, Report)}
    table, mentions = pq.read_table(labels), pq.read_table(evidence)
    ids = list(dict.fromkeys(table["report_id"].to_pylist()))
    rounds = -(-n // len(ids))
    keep = [f"{rid}~{k}" for k in range(rounds) for rid in ids][:n]
    for name, source in (("big_labels.parquet", table), ("big_mentions.parquet", mentions)):
        big = pa.concat_tables([renamed(source, f"~{k}") for k in range(rounds)])
        pq.write_table(big.filter(pc.is_in(big["report_id"], value_set=pa.array(keep))), work / name)
    data, _ = page_data(work / "big_labels.parquet", {rid: texts[rid.rsplit("~", 1)[0]] for rid in keep},
                        work / "big_mentions.parquet")
    page = work / f"audit_{n}.html"
    page.write_text(render(data, f"{n} reports"), encoding="utf-8")
    return page


def report(name: str, figures: dict) -> None:
    print(f"{name}: {figures['size_mb']:.1f} MB; loads in {figures['load_ms']:.0f} ms (DOM ready "
          f"{figures['dom_ms']:.0f} ms); JS heap {figures['heap_mb']:.1f} MB; next report {figures['next_report_ms']:.1f} ms "
          f"(a key press: the report drawn, its list page redrawn, progress saved); "
          f"console errors: {len(figures['console_errors'])}")
    if "errors" in figures:
        e = figures["errors"]
        print(f"  errors of `evaluate --errors`: {e['listed']} in the page; not listed: {len(e['missing'])} "
              f"{e['missing'][:5]}; not marked in their report: {len(e['unmarked'])} {e['unmarked'][:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev", type=Path, help="openi-dev folder (reports/, gold.csv)")
    parser.add_argument("--labels", type=Path, help="labels.parquet of the reports (default: label them now)")
    parser.add_argument("--evidence", type=Path, help="mentions.parquet beside --labels")
    parser.add_argument("--replicate", type=int, help="also measure a page of this many reports")
    args = parser.parse_args()
    if chromium.missing():
        sys.exit(f"no headless browser: {chromium.missing()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        labels, evidence = args.labels, args.evidence
        if labels is None:
            labels, evidence = work / "labels.parquet", work / "mentions.parquet"
            reportminer("label", args.dev / "reports", "-o", labels, "--evidence", evidence, "--quiet")
        page, gold = work / "audit.html", args.dev / "gold.csv"
        start = time.perf_counter()
        reportminer("audit", labels, "--evidence", evidence, "--reports", args.dev / "reports", "--gold", gold,
                    "-o", page)
        print(f"reportminer audit --gold: {time.perf_counter() - start:.1f} s")
        reportminer("evaluate", labels, gold, "--errors", work / "errors.csv", "--bootstrap", "0")
        report(f"{labels.name} with {gold}", measure(page, pd.read_csv(work / "errors.csv", dtype=str)))
        if args.replicate:
            report(f"{args.replicate:,} reports", measure(replicate(labels, evidence, args.dev / "reports",
                                                                       args.replicate, work), None))


if __name__ == "__main__":
    main()
