"""Throughput and memory of `reportminer label` on an archive-sized corpus built from real reports.

The corpus: N reports resampled from the FINDINGS and IMPRESSION sentences of the OpenI development
reports (seeded; each report draws as many sentences per section as a real report has, so the text
is varied and repeats the way real archives do). Written as JSONL with `findings`/`impression`.

Throughput: `reportminer label` (a subprocess: start-up, model loading, reading and writing all
included, default workers = all cores) against a plain reference measured in the same run: spaCy's
`nlp.pipe` over the same texts with the same model and pipeline, one process, no labeling at all.
The ratio of reports per second is printed last.

Memory (`--memory`): peak RSS of `reportminer label`'s whole process tree at N and at 10 N reports.

    python benchmarks/label_throughput.py ../shared/data/openi-dev/reports --reports 20000
    python benchmarks/label_throughput.py ../shared/data/openi-dev/reports --reports 20000 --memory
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil

from reportminer.labeler import Labeler
from reportminer.lexicon import load_lexicon
from reportminer.parse import DEFAULT_MODEL, load_model
from reportminer.readers import Report
from reportminer.sections import split_sentences


def real_sections(folder: Path) -> dict[str, list[list[str]]]:
    """Per section, each real report's list of sentences."""
    out: dict[str, list[list[str]]] = {"findings": [], "impression": []}
    for path in sorted(folder.glob("*.xml")):
        for node in ET.parse(path).getroot().iter("AbstractText"):
            name = (node.get("Label") or "").lower()
            if name in out and node.text and node.text.strip():
                text = node.text.strip()
                out[name].append([text[a:b] for a, b in split_sentences(text, 0, len(text), len(text) + 1)])
    return out


def build_corpus(folder: Path, n: int, path: Path, seed: int = 0) -> list[str]:
    """Write N resampled reports as JSONL; return their texts (for the reference)."""
    rng = random.Random(seed)
    sections = real_sections(folder)
    pools = {k: [s for report in v for s in report] for k, v in sections.items()}
    texts = []
    with path.open("w") as fh:
        for i in range(n):
            row = {"report_id": f"R{i}"}
            for name, reports in sections.items():
                count = len(rng.choice(reports))
                row[name] = " ".join(rng.choice(pools[name]) for _ in range(count))
            fh.write(json.dumps(row) + "\n")
            texts.append(f"FINDINGS: {row['findings']}\n\nIMPRESSION: {row['impression']}")
    return texts


def peak_rss(command: list[str]) -> tuple[float, float]:
    """Run `command`; return (seconds, peak RSS in MiB of the process and all its children together)."""
    start = time.perf_counter()
    proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode not in (0, 3):
        sys.exit(stderr.decode())
    return time.perf_counter() - start, peak / 2**20


def like_for_like(texts: list[str], nlp) -> float:  # type: ignore[no-untyped-def]
    """Reports per second of the labeler in this process, every sentence decided where it occurs (no cache),
    on the reference's texts with the reference's model already loaded."""
    reports = [Report(f"R{i}", text, "benchmark") for i, text in enumerate(texts)]
    labeler = Labeler(load_lexicon(), nlp, cache=False)
    start = time.perf_counter()
    for _ in labeler.label(reports):
        pass
    return len(reports) / (time.perf_counter() - start)


def label_command(corpus: Path, out: Path) -> list[str]:
    return ["reportminer", "label", str(corpus), "-o", str(out), "--quiet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, help="folder of OpenI XML reports to resample")
    parser.add_argument("--reports", dest="n", type=int, default=20_000)
    parser.add_argument("--memory", action="store_true", help="compare peak RSS at N and 10 N reports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        texts = build_corpus(args.reports, args.n, corpus)
        distinct = len({s for t in texts for s in t.split(". ")}) / sum(len(t.split(". ")) for t in texts)
        print(f"corpus: {args.n:,} reports resampled from {args.reports} ({distinct:.0%} of sentences distinct)")
        if args.memory:
            big = Path(tmp) / "corpus10.jsonl"
            build_corpus(args.reports, 10 * args.n, big, seed=1)
            small_s, small_mb = peak_rss(label_command(corpus, Path(tmp) / "a.parquet"))
            big_s, big_mb = peak_rss(label_command(big, Path(tmp) / "b.parquet"))
            print(f"{args.n:,} reports: {small_s:.0f} s, peak RSS {small_mb:.0f} MiB")
            print(f"{10 * args.n:,} reports: {big_s:.0f} s, peak RSS {big_mb:.0f} MiB")
            print(f"peak RSS ratio (10x reports / 1x): {big_mb / small_mb:.2f} (target <= 1.25)")
            return
        nlp = load_model(DEFAULT_MODEL)
        start = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=256):
            pass
        reference = args.n / (time.perf_counter() - start)
        print(f"reference, spaCy nlp.pipe ({nlp.pipe_names}, one process): {reference:,.0f} reports/s")
        seconds, mb = peak_rss(label_command(corpus, Path(tmp) / "labels.parquet"))
        ours = args.n / seconds
        print(f"reportminer label (all cores, everything included): {ours:,.0f} reports/s, peak RSS {mb:.0f} MiB")
        print(f"ratio reportminer / reference: {ours / reference:.1f}x (target >= 4)")
        single = like_for_like(texts, nlp)
        print(f"like for like: the labeler in one process, no sentence cache, model loaded: {single:,.0f} reports/s "
              f"({single / reference:.1f}x the reference; the gain left is parsing only sentences that name a finding)")


if __name__ == "__main__":
    main()
