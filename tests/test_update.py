"""`label --update`: a grown archive labels only what is new, and ends with the rows of a labeling from scratch."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from reportminer.engine import parts_folder

from conftest import ROOT, SAMPLES
from test_engine import write_corpus

NEW = {"n1": "FINDINGS: Suspicious nodule in the right upper lobe. No pleural effusion.",
       "n2": "FINDINGS: Large left pneumothorax. The heart is enlarged.\nIMPRESSION: Left pneumothorax.",
       "n3": "IMPRESSION: No acute cardiopulmonary abnormality."}


def label(*args):
    return CliRunner().invoke(main, ["label", *map(str, args), "--workers", "1", "--quiet"])


def archive(folder: Path, extra: dict[str, str] = {}) -> Path:
    """The bundled 34 reports as a folder of .txt files, plus `extra` (id → text)."""
    shutil.copytree(SAMPLES / "reports", folder)
    for report_id, text in extra.items():
        (folder / f"{report_id}.txt").write_text(text)
    return folder


def label_to(folder: Path, reports: Path, *options) -> tuple:
    result = label(reports, "-o", folder / "labels.parquet", "--evidence", folder / "mentions.parquet", *options)
    assert result.exit_code == 0, result.output
    return pq.read_table(folder / "labels.parquet"), pq.read_table(folder / "mentions.parquet")


def update(folder: Path, reports: Path, *options):
    return label(reports, "--update", folder / "labels.parquet", "--evidence", folder / "mentions.parquet", *options)


def same(folder: Path, expected: tuple) -> bool:
    return (pq.read_table(folder / "labels.parquet").equals(expected[0])
            and pq.read_table(folder / "mentions.parquet").equals(expected[1]))


def test_update_labels_only_new_and_changed_reports_and_equals_a_cold_run(tmp_path):
    reports = archive(tmp_path / "reports")
    label_to(tmp_path / "out", reports, "--cache", tmp_path / "cache")
    for report_id, text in NEW.items():
        (reports / f"{report_id}.txt").write_text(text)
    (reports / "s05.txt").write_text("FINDINGS: Small right pleural effusion. No pneumothorax.")

    result = update(tmp_path / "out", reports, "--cache", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert f"updated {tmp_path / 'out' / 'labels.parquet'}: labeled 4 new or changed reports, kept 33" in result.output
    cold = label_to(tmp_path / "cold", reports, "--no-cache")
    assert same(tmp_path / "out", cold)

    again = update(tmp_path / "out", reports)
    assert again.exit_code == 0 and "is up to date: none of its 37 reports is new or changed" in again.output
    assert same(tmp_path / "out", cold)


def test_vanished_reports_are_kept_at_the_end_unless_pruned(tmp_path):
    reports = archive(tmp_path / "reports")
    before = label_to(tmp_path / "out", reports)
    (reports / "s03.txt").unlink()
    (reports / "n1.txt").write_text(NEW["n1"])
    kept = update(tmp_path / "out", reports)
    assert kept.exit_code == 0 and "1 reports no longer in the inputs kept (--prune drops them)" in kept.output
    labels = pq.read_table(tmp_path / "out" / "labels.parquet")
    ids = labels.column("report_id").to_pylist()
    assert ids[0] == "n1" and ids[-1] == "s03" and labels.num_rows == before[0].num_rows + 1  # n1 sorts first

    pruned = update(tmp_path / "out", reports, "--prune")
    assert pruned.exit_code == 0 and "1 reports no longer in the inputs dropped" in pruned.output
    assert same(tmp_path / "out", label_to(tmp_path / "cold", reports))

    (reports / "n2.txt").write_text(NEW["n2"])  # an update without --evidence leaves the evidence behind
    assert label(reports, "--update", tmp_path / "out" / "labels.parquet").exit_code == 0
    stale = update(tmp_path / "out", reports)
    assert stale.exit_code == 1 and "was updated without --evidence since" in stale.output


def test_update_refuses_what_it_cannot_bring_together(tmp_path):
    reports = archive(tmp_path / "reports")
    missing = label(reports, "--update", tmp_path / "none.parquet")
    assert missing.exit_code == 1
    assert f"--update {tmp_path / 'none.parquet'}: no such file; label the archive once with -o" in missing.output
    label_to(tmp_path / "out", reports)
    other = label(reports, "--update", tmp_path / "out" / "labels.parquet", "--schema", "chexpert")
    assert other.exit_code == 1 and "was labeled with --schema chestxray14, not chexpert" in other.output
    both = label(reports, "--update", tmp_path / "out" / "labels.parquet", "-o", tmp_path / "x.parquet")
    assert both.exit_code == 2 and "give -o OUTPUT to label afresh, or --update OUTPUT" in both.output
    assert len(missing.output.strip().splitlines()) == 1 and len(other.output.strip().splitlines()) == 1


def test_an_edited_rule_is_refused_then_relabels_only_the_reports_it_touches(tmp_path):
    lexicon = tmp_path / "lexicon"
    shutil.copytree(ROOT / "lexicons", lexicon, ignore=shutil.ignore_patterns("__pycache__"))
    reports = archive(tmp_path / "reports", NEW)
    cache = tmp_path / "cache"
    label_to(tmp_path / "out", reports, "--lexicon", lexicon, "--cache", cache)

    rules = lexicon / "rules" / "uncertainty.yaml"
    text = rules.read_text()
    hedges = "|suggestive|maybe}"  # unc.hedge_modifier's words
    assert text.count(hedges) == 1
    rules.write_text(text.replace(hedges, "|suggestive|maybe|suspicious}"))  # "Suspicious nodule": uncertain now
    before = (tmp_path / "out" / "labels.parquet").read_bytes()
    refused = update(tmp_path / "out", reports, "--lexicon", lexicon, "--cache", cache)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "was labeled with other rules or code" in refused.output and "rules changed: unc.hedge_modifier" in refused.output
    assert "pass --relabel-changed-rules" in refused.output
    assert (tmp_path / "out" / "labels.parquet").read_bytes() == before

    relabeled = update(tmp_path / "out", reports, "--lexicon", lexicon, "--cache", cache, "--relabel-changed-rules")
    assert relabeled.exit_code == 0, relabeled.output
    assert "labeled 0 new or changed reports, kept 37" in relabeled.output
    touched = int(relabeled.output.split("kept 37 (")[1].split(" relabeled")[0])
    assert 1 <= touched < 10  # the reports with a hedged mention, not all 37
    cold = label_to(tmp_path / "cold", reports, "--lexicon", lexicon, "--no-cache")
    assert same(tmp_path / "out", cold)
    row = cold[0].column("report_id").to_pylist().index("n1")
    assert cold[0].column("Nodule")[row].as_py() == -1


@pytest.mark.slow
def test_a_killed_update_leaves_the_output_whole_and_resumes_to_a_cold_run(tmp_path):
    small = write_corpus(tmp_path / "small.jsonl", 200, seed=3)
    grown = tmp_path / "grown.jsonl"
    grown.write_text(small.read_text() + write_corpus(tmp_path / "more.jsonl", 4000, seed=4).read_text()
                     .replace('"R', '"N'))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "reportminer.cli", "label", "--workers", "1", "--chunk-size", "100", "--quiet",
               "--no-cache", "--evidence", str(out / "m.parquet")]
    subprocess.run(command + [str(small), "-o", str(out / "labels.parquet")], check=True, capture_output=True)
    before = {name: (out / name).read_bytes() for name in ("labels.parquet", "m.parquet")}

    proc = subprocess.Popen(command + [str(grown), "--update", str(out / "labels.parquet")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = parts_folder(out / "labels.parquet")
    deadline = time.time() + 120
    while len(list(parts.glob("*.done.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(list(parts.glob("*.done.json"))) < 40, "the update should have been killed part way"
    assert {name: (out / name).read_bytes() for name in before} == before

    again = subprocess.run(command + [str(grown), "--update", str(out / "labels.parquet")], capture_output=True,
                           text=True)
    assert again.returncode == 1 and "holds an unfinished run; pass --resume to continue it" in again.stderr
    resumed = subprocess.run(command + [str(grown), "--update", str(out / "labels.parquet"), "--resume"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "labeled 4000 new or changed reports, kept 200" in resumed.stderr
    cold = tmp_path / "cold"
    subprocess.run([*command[:-1], str(cold / "m.parquet"), str(grown), "-o", str(cold / "labels.parquet")],
                   check=True, capture_output=True)
    for name in before:
        assert pq.read_table(out / name).equals(pq.read_table(cold / name))
    assert not parts.exists()
