"""Peak memory of `classifier predict` against the number of films: it streams, so ten times the films
should need about the same memory (and take about ten times as long).

    python benchmarks/predict_memory.py RUN FILM [--counts 400,4000] [--workers 1] [--html]

FILM is one image, linked under COUNT names into a folder (hard links: the disk holds it once), so
the runs differ only in the number of films. Each run is its own process; its peak resident memory is
the kernel's (`wait4`'s ru_maxrss), its time the wall clock. The ratio of the largest count's peak to
the smallest's is the figure: 1.0 is flat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(run: Path, folder: Path, out: Path, workers: int, html: bool) -> tuple[float, float]:
    """(peak resident MB, seconds) of one `predict` process over `folder`."""
    command = [sys.executable, "-m", "classifier", "predict", str(run), str(folder), "-o", str(out), "--quiet",
               "--workers", str(workers)]
    if html:
        command += ["--html", str(out.with_suffix(".html"))]
    start = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"predict failed: {process.stderr.read().decode(errors='replace')}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("film", type=Path)
    parser.add_argument("--counts", default="400,4000")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--html", action="store_true", help="also write the page (its films are capped at 200)")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            folder = Path(tmp) / f"films{count}"
            folder.mkdir()
            for n in range(count):
                os.link(args.film, folder / f"film{n:07d}{args.film.suffix}")
            results[count] = measure(args.run, folder, Path(tmp) / f"p{count}.parquet", args.workers, args.html)
            peak, seconds = results[count]
            print(f"{count:>7,} films: peak {peak:7.1f} MB, {seconds:6.1f} s ({count / seconds:.0f} films/s)")
    low, high = results[counts[0]][0], results[counts[-1]][0]
    print(f"peak memory at {counts[-1]:,} films / at {counts[0]:,}: {high / low:.2f}x "
          f"({counts[-1] // counts[0]}x the films)")


if __name__ == "__main__":
    main()
