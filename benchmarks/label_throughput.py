"""Speed of `reportminer label` on an archive-sized corpus built from real reports: cold, warm, updated.

The corpus: N reports resampled from the FINDINGS and IMPRESSION sentences of the OpenI development
reports (seeded; each report draws as many sentences per section as a real report has, so the text
is varied and repeats the way real archives do). Written as JSONL with `findings`/`impression`.
The archive then grows by 10%: N/10 more reports drawn the same way with another seed.

Measured in one run, every `reportminer label` a subprocess (start-up, reading and writing
included, default workers = all cores), against a reference measured in the same run: spaCy's
`nlp.pipe` over the same texts with the same model and pipeline, one process, no labeling at all.

1. cold: `label` with an empty decision cache;
2. warm: the same command again, its cache now holding yesterday's decisions;
3. update: the archive file grows at its end (as an archive kept as JSONL does), then `label --update`
   of the cold run's output, against a cold labeling of the grown archive (`--no-cache`), compared row
   for row. The new reports hold sentences never seen before, so the update loads spaCy and its model:
   that load alone, in a fresh process, is measured too (the floor of any run that meets a new sentence),
   and so is the same update of another copy of the output, when those sentences are cached.

The table printed last is the one README.md and docs/archive.md show. `--profile` adds where a cold
labeling spends its time (cProfile, one process). `--memory`: peak RSS of the whole process tree at
N and at 10 N reports.

    python benchmarks/label_throughput.py ../shared/data/openi-dev/reports --reports 20000
    python benchmarks/label_throughput.py ../shared/data/openi-dev/reports --reports 20000 --profile
    python benchmarks/label_throughput.py ../shared/data/openi-dev/reports --reports 20000 --memory
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from reportminer.cache import source_digest
from reportminer.lexicon import load_lexicon
from reportminer.parse import DEFAULT_MODEL, load_model
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


def build_corpus(folder: Path, n: int, path: Path, seed: int = 0, first: int = 0) -> list[str]:
    """Write N resampled reports (ids from R`first`) as JSONL; return their texts (for the reference)."""
    rng = random.Random(seed)
    sections = real_sections(folder)
    pools = {k: [s for report in v for s in report] for k, v in sections.items()}
    texts = []
    with path.open("w") as fh:
        for i in range(first, first + n):
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


def label(*args: str | Path) -> tuple[float, float]:
    """Seconds and CPU seconds (all its processes) of one `reportminer label` run (a subprocess, everything
    included)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(["reportminer", "label", *map(str, args), "--quiet"], capture_output=True, text=True)
    if done.returncode not in (0, 3):
        sys.exit(done.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def reference(texts: list[str]) -> tuple[float, float]:
    """Seconds and CPU seconds of spaCy's nlp.pipe over the texts: same model and pipeline, no labeling."""
    nlp = load_model(DEFAULT_MODEL)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in nlp.pipe(texts, batch_size=256):
        pass
    return time.perf_counter() - start, time.process_time() - cpu


def spacy_load() -> tuple[float, float]:
    """Seconds and CPU seconds for a fresh process to import spaCy and load the model, labeling nothing."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", f"from reportminer.parse import load_model; load_model({DEFAULT_MODEL!r})"],
                   check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def profile(corpus: Path, folder: Path, top: int = 14) -> None:
    """Where one cold labeling in one process spends its time (cProfile; the run is slower under it)."""
    from reportminer.cli import main

    stats_file = folder / "label.prof"
    args = ["label", str(corpus), "-o", str(folder / "profiled.parquet"), "--workers", "1", "--quiet",
            "--cache", str(folder / "profile-cache")]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main(args, standalone_mode=False)
    finally:
        profiler.disable()
    profiler.dump_stats(stats_file)
    stats = pstats.Stats(str(stats_file))
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    stages = {  # (file suffix, function) → what it is, cumulative time
        "spaCy parser (nlp.pipe)": ("spacy/language.py", "pipe"),
        "graphs (networkx, lists, prepositions)": ("parse.py", "sentence_graph"),
        "assertion rules": ("assertions.py", "decide_matched"),
        "attributes (side, severity, change)": ("attributes.py", "describe"),
        "finding mentions (regular expressions)": ("mentions.py", "find"),
        "sections and sentences of every report": ("labeler.py", "_layout"),
        "reading the inputs": ("readers.py", "read_inputs"),
        "cache reads and writes (SQLite)": ("cache.py", "get"),
        "merging parts into the output": ("engine.py", "_merge"),
    }
    print(f"profile of one cold labeling, one process, {total:.1f} s under cProfile (cumulative, stages overlap "
          f"where one calls another):")
    for name, (suffix, function) in stages.items():
        seconds = sum(v[3] for (path, _, fn), v in stats.stats.items()  # type: ignore[attr-defined]
                      if path.endswith(suffix) and fn == function)
        if function == "get":
            seconds += sum(v[3] for (path, _, fn), v in stats.stats.items()  # type: ignore[attr-defined]
                           if path.endswith("cache.py") and fn == "put")
        print(f"  {name:<42} {seconds:6.1f} s  {seconds / total:5.0%}")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, help="folder of OpenI XML reports to resample")
    parser.add_argument("--reports", dest="n", type=int, default=20_000)
    parser.add_argument("--memory", action="store_true", help="compare peak RSS at N and 10 N reports")
    parser.add_argument("--profile", action="store_true", help="also profile one cold labeling in this process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus, archive = tmp / "corpus.jsonl", tmp / "archive.jsonl"
        texts = build_corpus(args.reports, args.n, corpus)
        distinct = len({s for t in texts for s in t.split(". ")}) / sum(len(t.split(". ")) for t in texts)
        print(f"corpus: {args.n:,} reports resampled from {args.reports} ({distinct:.0%} of sentences distinct); "
              f"{os.cpu_count()} cores")
        if args.memory:
            big = tmp / "corpus10.jsonl"
            build_corpus(args.reports, 10 * args.n, big, seed=1)
            command = ["reportminer", "label", "--quiet", "--no-cache", "-o"]
            small_s, small_mb = peak_rss([*command, str(tmp / "a.parquet"), str(corpus)])
            big_s, big_mb = peak_rss([*command, str(tmp / "b.parquet"), str(big)])
            print(f"{args.n:,} reports: {small_s:.0f} s, peak RSS {small_mb:.0f} MiB")
            print(f"{10 * args.n:,} reports: {big_s:.0f} s, peak RSS {big_mb:.0f} MiB")
            print(f"peak RSS ratio (10x reports / 1x): {big_mb / small_mb:.2f} (target <= 1.25)")
            return
        extra = build_corpus(args.reports, args.n // 10, tmp / "extra.jsonl", seed=1, first=args.n)
        shutil.copy(corpus, archive)  # the archive: labeled, then grown at its end
        cache = tmp / "cache"
        lexicon = load_lexicon().digest, source_digest()

        ref, ref_cpu = reference(texts)
        print(f"reference, spaCy nlp.pipe over the same texts, same model and pipeline, one process: "
              f"{args.n / ref:,.0f} reports/s")
        (cold, cold_cpu), (warm, warm_cpu) = (label(archive, "-o", tmp / f"{name}.parquet", "--cache", cache)
                                              for name in ("cold", "warm"))
        same_warm = pq.read_table(tmp / "warm.parquet").equals(pq.read_table(tmp / "cold.parquet"))
        with archive.open("a") as end:
            end.write((tmp / "extra.jsonl").read_text())
        shutil.copy(tmp / "cold.parquet", tmp / "updated.parquet")
        update, update_cpu = label(archive, "--update", tmp / "updated.parquet", "--cache", cache)
        floor, floor_cpu = spacy_load()
        shutil.copy(tmp / "cold.parquet", tmp / "again.parquet")  # the same growth, its sentences now cached
        again, again_cpu = label(archive, "--update", tmp / "again.parquet", "--cache", cache)
        grown_cold, grown_cpu = label(archive, "-o", tmp / "grown.parquet", "--no-cache")
        same_update = pq.read_table(tmp / "updated.parquet").equals(pq.read_table(tmp / "grown.parquet"))
        if (load_lexicon().digest, source_digest.__wrapped__()) != lexicon:
            sys.exit("the lexicon or the code changed while the benchmark ran (its runs differ); run it again")
        n, m = args.n, args.n + len(extra)
        rows = [  # (what, seconds, CPU seconds, reports, ratio of seconds, ratio of CPU seconds)
            ("reference: spaCy `nlp.pipe` over the same texts, one process, no labeling", ref, ref_cpu, n, "1x", "1x"),
            ("`label`, cold (empty decision cache)", cold, cold_cpu, n, f"**{ref / cold:.1f}x** reference",
             f"{ref_cpu / cold_cpu:.1f}x"),
            ("`label` again, warm cache" + ("" if same_warm else " (ROWS DIFFER)"), warm, warm_cpu, n,
             f"**{cold / warm:.1f}x** cold", f"{cold_cpu / warm_cpu:.1f}x"),
            (f"`label --update`, {len(extra):,} new reports (+10%) appended to the archive", update, update_cpu, m,
             f"**{cold / update:.1f}x** cold", f"{cold_cpu / update_cpu:.1f}x"),
            ("of which the floor: a fresh process importing spaCy and loading its model, nothing labeled", floor,
             floor_cpu, 0, f"{cold / floor:.1f}x cold", f"{cold_cpu / floor_cpu:.1f}x"),
            ("the same update of another copy, every sentence of the new reports already cached (no parser)", again,
             again_cpu, m, f"{cold / again:.1f}x cold", f"{cold_cpu / again_cpu:.1f}x"),
            ("`label` of the grown archive, no cache: " + ("rows equal to the update's" if same_update
                                                           else "ROWS DIFFER from the update's"),
             grown_cold, grown_cpu, m, "", ""),
        ]
        print(f"\n| {n:,} resampled OpenI reports, {os.cpu_count()} cores | seconds | CPU seconds | reports/s "
              f"| speed | in CPU |")
        print("|---|---:|---:|---:|---|---|")
        for name, seconds, cpu, reports, ratio, cpu_ratio in rows:
            rate = f"{reports / seconds:,.0f}" if reports else ""
            print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {rate} | {ratio} | {cpu_ratio} |")
        print(f"\ntargets: cold >= 8x reference ({ref / cold:.1f}x), warm >= 3x faster than cold ({cold / warm:.1f}x), "
              f"update >= 10x faster than cold ({cold / update:.1f}x; spaCy's load alone {cold / floor:.1f}x) with "
              f"equal rows ({same_update}); "
              f"load average {os.getloadavg()[0]:.1f}")
        if args.profile:
            print()
            profile(corpus, tmp)


if __name__ == "__main__":
    main()
