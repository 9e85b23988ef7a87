"""`label --update` of a JSONL archive that grows at its end: the part labeled before is not read again, and
whatever happened to the file, the result has the rows of a labeling from scratch."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cli import main

from test_engine import write_corpus


def label(*args):
    return CliRunner().invoke(main, ["label", *map(str, args), "--workers", "1", "--quiet"])


def append(path: Path, rows: list[dict]) -> None:
    with path.open("a") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


def labeled_then_updated(tmp_path: Path, archive: Path, grow, *options) -> tuple:
    """Label `archive`, let `grow(archive)` change it, update; return the update's result and a cold
    labeling of the changed archive (labels and mentions of each)."""
    cache = tmp_path / "cache"
    first = label(archive, "-o", tmp_path / "labels.parquet", "--evidence", tmp_path / "mentions.parquet",
                  "--cache", cache, *options)
    assert first.exit_code in (0, 3), first.output
    grow(archive)
    result = label(archive, "--update", tmp_path / "labels.parquet", "--evidence", tmp_path / "mentions.parquet",
                   "--cache", cache, *options)
    cold = label(archive, "-o", tmp_path / "cold.parquet", "--evidence", tmp_path / "cold-mentions.parquet",
                 "--no-cache", *options)
    assert cold.exit_code in (0, 3), cold.output
    updated = pq.read_table(tmp_path / "labels.parquet"), pq.read_table(tmp_path / "mentions.parquet")
    expected = pq.read_table(tmp_path / "cold.parquet"), pq.read_table(tmp_path / "cold-mentions.parquet")
    assert updated[0].equals(expected[0]) and updated[1].equals(expected[1])
    return result, cold


NEW = [{"report_id": "N1", "text": "FINDINGS: Large right pneumothorax. No effusion.", "image_id": "N1a"},
       {"report_id": "N2", "text": "IMPRESSION: Cardiomegaly without edema.", "image_id": "N2a"}]


def test_an_appended_archive_reads_only_the_new_rows(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 40)
    result, _ = labeled_then_updated(tmp_path, archive, lambda path: append(path, NEW))
    assert result.exit_code == 0, result.output
    assert "labeled 2 new or changed reports, kept 40 (39 of them in the unchanged start of JSONL inputs, not read " \
           "again)" in result.output  # the last report is read again: more of its rows (images) may follow

    append(archive, [{**row, "report_id": "M" + row["report_id"]} for row in NEW])  # the next day: from the update's mark
    again = label(archive, "--update", tmp_path / "labels.parquet", "--evidence", tmp_path / "mentions.parquet",
                  "--cache", tmp_path / "cache")
    assert "labeled 2 new or changed reports, kept 42 (41 of them in the unchanged start" in again.output
    assert label(archive, "-o", tmp_path / "cold2.parquet", "--no-cache").exit_code == 0
    assert pq.read_table(tmp_path / "labels.parquet").equals(pq.read_table(tmp_path / "cold2.parquet"))


def test_rows_appended_to_the_last_report_join_it(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 10)
    last = json.loads(archive.read_text().splitlines()[-1])
    result, _ = labeled_then_updated(tmp_path, archive,
                                     lambda path: append(path, [{**last, "image_id": "R9c"}, *NEW]))
    assert "labeled 3 new or changed reports" in result.output  # R9 with a third image, N1, N2


def test_an_edit_before_the_mark_reads_the_file_whole(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 10)

    def edit(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        row = json.loads(lines[0])
        lines[0] = lines[1] = ""
        path.write_text(json.dumps({**row, "text": "Small left pleural effusion."}) + "\n" + "".join(lines))
        append(path, NEW)

    result, _ = labeled_then_updated(tmp_path, archive, edit)
    assert result.exit_code == 0, result.output
    assert "labeled 3 new or changed reports" in result.output and "not read again" not in result.output


def test_skips_before_the_mark_are_named_again_and_late_repeats_skipped(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 6)
    with archive.open("a") as fh:
        fh.write("{broken\n")
    append(archive, [{"report_id": "R6", "text": "No pneumothorax.", "image_id": "R6a"}])

    def grow(path: Path) -> None:
        append(path, [{"report_id": "R2", "text": "Pneumonia.", "image_id": "x"}, *NEW])

    result, cold = labeled_then_updated(tmp_path, archive, grow)
    assert result.exit_code == 3, result.output
    broken = f"skipped {archive}:13: not a JSON object"
    assert broken in result.output and broken in cold.output
    assert "report R2 was already read at" in result.output and "report R2 was already read at" in cold.output
    assert "6 of them in the unchanged start" in result.output


@pytest.mark.parametrize("kind", ["lone carriage returns", "utf-16"])
def test_files_read_without_marks_are_read_whole(tmp_path, kind):
    rows = [json.loads(line) for line in write_corpus(tmp_path / "plain.jsonl", 6).read_text().splitlines()]
    archive = tmp_path / "archive.jsonl"
    encoding = "utf-16" if kind == "utf-16" else "utf-8"
    newline = "\r" if kind == "lone carriage returns" else "\n"
    archive.write_text("".join(json.dumps(row) + newline for row in rows), encoding=encoding)

    def grow(path: Path) -> None:
        path.write_text(path.read_text(encoding=encoding) + "".join(json.dumps(row) + newline for row in NEW),
                        encoding=encoding)

    result, _ = labeled_then_updated(tmp_path, archive, grow, "--encoding", encoding)
    assert result.exit_code == 0, result.output
    assert "labeled 2 new or changed reports, kept 6" in result.output and "not read again" not in result.output


def test_a_jsonl_after_other_inputs_keeps_its_place_in_the_order(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 8)
    reports = tmp_path / "reports"
    reports.mkdir()
    for name, text in (("a1", "FINDINGS: Small left effusion."), ("a2", "IMPRESSION: No pneumothorax.")):
        (reports / f"{name}.txt").write_text(text)
    cache = tmp_path / "cache"
    assert label(reports, archive, "-o", tmp_path / "labels.parquet", "--cache", cache).exit_code == 0
    append(archive, NEW)
    result = label(reports, archive, "--update", tmp_path / "labels.parquet", "--cache", cache)
    assert "labeled 2 new or changed reports, kept 10 (7 of them in the unchanged start" in result.output
    assert label(reports, archive, "-o", tmp_path / "cold.parquet", "--no-cache").exit_code == 0
    assert pq.read_table(tmp_path / "labels.parquet").equals(pq.read_table(tmp_path / "cold.parquet"))


def test_an_id_of_the_unread_start_met_again_elsewhere_is_refused(tmp_path):
    archive = write_corpus(tmp_path / "archive.jsonl", 8)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a1.txt").write_text("FINDINGS: Small left effusion.")
    cache = tmp_path / "cache"
    assert label(reports, archive, "-o", tmp_path / "labels.parquet", "--cache", cache).exit_code == 0
    (reports / "R2.txt").write_text("IMPRESSION: Large right pneumothorax.")  # R2 is also in the archive's start
    append(archive, NEW)
    result = label(reports, archive, "--update", tmp_path / "labels.parquet", "--cache", cache)
    assert result.exit_code == 1 and "report R2 is in the inputs twice; --update needs one report per id" in result.output
