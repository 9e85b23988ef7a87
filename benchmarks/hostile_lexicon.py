"""What a hostile lexicon costs before its one-line refusal: seconds and peak memory, per kind.

Each kind is a copy of the shipped lexicon with one hostile change, run as a user runs it:
`reportminer check-lexicon DIR` in a subprocess, its peak RSS taken from the kernel (wait4). The
reference, measured in the same run, is the plainest refusal there is: a folder without labeler.yaml
(start-up, imports and one line). The issue's figures before the limits: the alias chain ran 116 s and
took 8.7 GB; the link to /dev/zero grew to 22 GB; the FIFO blocked forever.

Then the backtracking pattern `(a+)+$`: Python's `re` on a few dozen "a"s (doubling per "a"), and
`reportminer label --lexicon` with the pattern on a report of sixty "a"s against the same command
with the unchanged lexicon.

With `--openi DIR` (the OpenI reports folder), also what RE2 costs the labeler: the mention finder
over every distinct sentence of those reports, its patterns on RE2 against the same finder with
them on Python's `re` (the reference, as the labeler ran before), the mentions compared one by one.

    python benchmarks/hostile_lexicon.py
    python benchmarks/hostile_lexicon.py --openi ../shared/data/openi-dev/reports
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = Path("schemas") / "chestxray14" / "findings.yaml"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def measure(args: list[str], cwd: Path) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS in MB, last stderr line) of one command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        err.seek(0)
        lines = err.read().decode(errors="replace").splitlines()
    return proc.returncode, seconds, usage.ru_maxrss / 1024, (lines[-1] if lines else "")[:110]


def alias_chain(folder: Path) -> None:
    lines = ["lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = folder / FINDINGS
    path.write_text("\n".join(lines) + "\n" + path.read_text().replace("    synonyms: [", "    synonyms: *a9\n    x: [", 1))


def dense(entries: int) -> str:
    """A valid rule file of `entries` short list entries (the most parsing a file's size allows)."""
    return "rules: []\npadding: [" + ", ".join(["ab"] * entries) + "]\n"


def folder_budget(folder: Path) -> None:
    for n in range(6):  # each under the file limit, parsed in full, until the folder's budget runs out
        (folder / "rules" / f"pad{n}.yaml").write_text(dense(49_000))


KINDS = {
    "alias chain, 9 levels of 9 (9^9 once expanded)": alias_chain,
    "rule file linked to /dev/zero": lambda f: (f / "rules" / "zero.yaml").symlink_to("/dev/zero"),
    "FIFO among the rules": lambda f: os.mkfifo(f / "rules" / "fifo.yaml"),
    "rule file of 300 KB": lambda f: (f / "rules" / "big.yaml").write_text("# " + "x" * 300_000),
    "dense rule files of 49,000 entries each, until the folder's budget": folder_budget,
    "nesting 10,000 deep": lambda f: (f / "rules" / "deep.yaml").write_text("rules: " + "[" * 10_000 + "]" * 10_000),
}


def backtracking(tmp: Path) -> None:
    print("\n`(a+)+$` on n \"a\"s and a \"!\" with Python's re (each \"a\" doubles the time):")
    pattern = re.compile(r"(a+)+$")
    for n in (18, 20, 22):
        start = time.perf_counter()
        pattern.search("a" * n + "!")
        print(f"  n={n}: {time.perf_counter() - start:.2f} s")
    reports = tmp / "reports.csv"
    reports.write_text("report_id,text\nr1," + "a" * 60 + "!\n")
    plain, hostile = tmp / "plain", tmp / "hostile"
    for folder in (plain, hostile):
        shutil.copytree(ROOT / "lexicons", folder)
    path = hostile / FINDINGS
    path.write_text(path.read_text().replace("    patterns:\n", "    patterns:\n      - '(a+)+$'\n", 1))
    rows = {name: measure(["reportminer", "label", str(reports), "-o", str(tmp / f"{name}.parquet"), "--lexicon",
                           str(folder), "--workers", "1"], tmp) for name, folder in (("shipped", plain), ("(a+)+$", hostile))}
    print("`reportminer label --lexicon` on one report of sixty \"a\"s and a \"!\" (RE2: linear in the text):")
    for name, (code, seconds, mb, _) in rows.items():
        print(f"  {name:<10} exit {code}  {seconds:5.1f} s  {mb:6.0f} MB")
    print(f"time with (a+)+$ / with the shipped lexicon: {rows['(a+)+$'][1] / rows['shipped'][1]:.2f}x")


def python_re_finder(lexicon):
    """The mention finder with the lexicon's patterns on Python's `re` (how the labeler ran before RE2)."""
    from reportminer.mentions import MentionFinder

    def compiled(patterns):
        if not patterns:
            return None
        return re.compile(r"(?<![\w])(?:" + "|".join(f"(?:{p})" for p in patterns) + r")(?![\w])", re.IGNORECASE)

    finder = MentionFinder(lexicon)
    finder._findings = [(name, synonyms, compiled(f.patterns), signs, compiled(f.absent), exclusions)
                        for (name, synonyms, _, signs, _, exclusions), f in zip(finder._findings, lexicon.findings)]
    finder._any_regex = compiled(tuple(p for f in lexicon.findings for p in f.patterns + f.absent))
    return finder


def finder_cost(openi: Path) -> None:
    import xml.etree.ElementTree as ET

    from reportminer.lexicon import load_lexicon
    from reportminer.mentions import MentionFinder
    from reportminer.sections import split_sentences

    sentences = set()
    for path in sorted(openi.glob("*.xml")):
        for node in ET.parse(path).getroot().iter("AbstractText"):
            text = (node.text or "").strip()
            sentences.update(text[a:b] for a, b in split_sentences(text, 0, len(text), 1000))
    ordered = sorted(sentences)
    print(f"\nthe mention finder on the {len(ordered):,} distinct sentences of {openi} (best of 3 passes):")
    for schema in ("chestxray14", "chexpert"):
        lexicon = load_lexicon(ROOT / "lexicons", schema)
        finders = {"Python re": python_re_finder(lexicon), "RE2": MentionFinder(lexicon)}
        found, best = {}, {}
        for name, finder in finders.items():
            for _ in range(3):
                start = time.perf_counter()
                found[name] = [finder.find(s) for s in ordered]
                best[name] = min(best.get(name, 1e9), time.perf_counter() - start)
        same = sum(a == b for a, b in zip(found["Python re"], found["RE2"]))
        print(f"  {schema}: {sum(map(len, found['RE2'])):,} mentions, the same in {same:,} of {len(ordered):,} "
              f"sentences; {best['Python re'] / len(ordered) * 1e6:.1f} us vs {best['RE2'] / len(ordered) * 1e6:.1f} "
              f"us a sentence; RE2 / Python re time: {best['RE2'] / best['Python re']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--openi", type=Path, help="OpenI reports folder: also measure the finder on its sentences")
    args = parser.parse_args()
    if args.openi:
        finder_cost(args.openi)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        reference = tmp / "reference"
        shutil.copytree(ROOT / "lexicons", reference)
        (reference / "labeler.yaml").unlink()
        ref = measure(["reportminer", "check-lexicon", str(reference)], tmp)
        print(f"{'kind':<64}{'exit':>5}{'s':>7}{'MB':>7}  x ref s / MB")
        print(f"{'reference: no labeler.yaml':<64}{ref[0]:>5}{ref[1]:>7.1f}{ref[2]:>7.0f}")
        worst = (0.0, 0.0)
        for n, (name, build) in enumerate(KINDS.items()):
            folder = tmp / f"kind{n}"
            shutil.copytree(ROOT / "lexicons", folder)
            build(folder)
            code, seconds, mb, line = measure(["reportminer", "check-lexicon", str(folder)], tmp)
            worst = (max(worst[0], seconds / ref[1]), max(worst[1], mb / ref[2]))
            print(f"{name:<64}{code:>5}{seconds:>7.1f}{mb:>7.0f}  {seconds / ref[1]:.2f} / {mb / ref[2]:.2f}")
            print(f"    {line.replace(str(folder), 'DIR')}")
        print(f"worst refusal against the reference: {worst[0]:.2f}x the time, {worst[1]:.2f}x the memory")
        (tmp / "r.csv").write_text("report_id,text\nr1,No effusion.\n")
        code, seconds, mb, line = measure(["reportminer", "label", "r.csv", "-o", "l.parquet", "--lexicon",
                                           str(tmp / "kind0"), "--workers", "1"], tmp)
        print(f"`label --lexicon` with the alias chain: exit {code}, {seconds:.1f} s, {mb:.0f} MB "
              f"({seconds / ref[1]:.2f}x / {mb / ref[2]:.2f}x the reference)")
        backtracking(tmp)


if __name__ == "__main__":
    main()
