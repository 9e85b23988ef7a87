"""Nothing of the user's is replaced (issue 27, and the write-error and progress items of issue 25).

One mechanism, `cxrcore.output`, serves every command: outputs are checked against every file the
command reads (by inode, so another spelling, a symlinked folder or a hard link counts), an output
folder is new, empty or holds only what the same command made (its `.manifest.json`), a write the
disk refuses is one line naming the path. Each test runs the real command on real files and checks
what a user sees (the exit status and the one line) and that the user's files are byte for byte as
they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cxrcore.cli import EXIT_SKIPPED
from cxrcore.errors import InputError
from cxrcore.output import MANIFEST

from conftest import FAST, SAMPLES
from test_hostile import HEADER, cl, error_line, label, only_line, png_header, rm

PYTHON = sys.executable


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(tool: str, *args, ulimit_kb: int | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -m TOOL.cli ARGS` in its own process (optionally under `ulimit -f`), stderr piped."""
    command = " ".join(f"'{a}'" for a in [PYTHON, "-m", f"{tool}.cli", *map(str, args)])
    if ulimit_kb is not None:
        command = f"ulimit -f {ulimit_kb}; exec {command}"
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)


def one_line(stderr: str) -> str:
    """The single `Error: ` line of a failed process, with no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture()
def images_set(tiny, tmp_path) -> Path:
    """A copy of the tiny set's images and labels the test may damage."""
    root = tmp_path / "set"
    shutil.copytree(tiny / "images", root / "images")
    shutil.copy(tiny / "labels.parquet", root / "labels.parquet")
    return root


def first_image(root: Path) -> Path:
    return root / pd.read_parquet(root / "labels.parquet")["image_path"].iloc[0]


# --- 1. An output that is one of the command's inputs -------------------------------------------

def test_score_refuses_to_write_over_the_runs_checkpoint(tiny_run):
    """`score RUN labels -o RUN/best.pt`: exit 1 `is also an input`; the trained model byte for byte as it was."""
    tiny, run = tiny_run
    before = digest(run / "best.pt")
    line = only_line(cl("score", run, tiny / "labels.parquet", "-o", run / "best.pt", "--bootstrap", "10"))
    assert f"{run / 'best.pt'}: is also an input of this command" in line
    assert digest(run / "best.pt") == before


def test_a_hard_link_to_an_input_is_that_input(tiny_run, tmp_path):
    """An output path that is a hard link to the run's checkpoint (another name, the same file): refused."""
    tiny, run = tiny_run
    alias = tmp_path / "scores.parquet"
    os.link(run / "last.pt", alias)
    before = digest(run / "last.pt")
    line = only_line(cl("score", run, tiny / "labels.parquet", "-o", alias, "--bootstrap", "10"))
    assert f"{alias}: is also an input of this command" in line
    assert digest(run / "last.pt") == before


def test_score_refuses_to_write_over_one_of_its_images(tiny_run, images_set):
    """`score ... -o images/x.png` where x.png is one of the images it reads: refused, the image kept."""
    _, run = tiny_run
    image = first_image(images_set)
    before = digest(image)
    line = only_line(cl("score", run, images_set / "labels.parquet", "-o", image, "--bootstrap", "10"))
    assert f"{image}: is also an input of this command" in line
    assert digest(image) == before


def test_localize_refuses_to_write_its_boxes_over_the_true_boxes(tiny_run, tmp_path):
    """`localize RUN labels -o loc --boxes loc/boxes.csv`: exit 1; the true boxes kept, nothing drawn."""
    tiny, run = tiny_run
    loc = tmp_path / "loc"
    loc.mkdir()
    truth = loc / "boxes.csv"
    shutil.copy(tiny / "BBox_List.csv", truth)
    before = digest(truth)
    line = error_line(cl("localize", run, tiny / "labels.parquet", "-o", loc, "--boxes", truth, "--overlays", "0"))
    assert f"{loc}: holds boxes.csv, which this command reads" in line
    assert digest(truth) == before
    assert sorted(p.name for p in loc.iterdir()) == ["boxes.csv"]


def test_label_refuses_to_write_over_a_file_of_its_lexicon(tmp_path):
    """`label --lexicon LEX -o LEX/labeler.yaml`: refused before any work; the lexicon file kept."""
    lexicon = tmp_path / "lex"
    shutil.copytree(SAMPLES.parent / "lexicons", lexicon)
    target = lexicon / "labeler.yaml"
    before = digest(target)
    line = error_line(label(SAMPLES / "reports", "-o", target, "--lexicon", lexicon))
    assert f"{target}: lies in {lexicon}, a folder this command reads" in line
    assert digest(target) == before


def test_label_writes_beside_its_reports_again_but_never_over_one(tmp_path):
    """Of a report folder only the reports are read: labels.parquet kept among them can be written again, a
    report given as the output is refused and kept."""
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "a.txt").write_text("Small left pneumothorax.")
    (folder / "b.txt").write_text("No effusion.")
    for _ in range(2):
        result = label(folder, "-o", folder / "labels.parquet")
        assert result.exit_code == 0, result.output
    line = error_line(label(folder, "-o", folder / "b.txt"))
    assert f"{folder / 'b.txt'}: lies in {folder}, a folder this command reads" in line
    assert (folder / "b.txt").read_text() == "No effusion."


# --- 2. Output folders: new, empty, or the same command's own -----------------------------------

@pytest.mark.parametrize("name", ["README.md", "labels.parquet"])
def test_sample_refuses_a_folder_holding_a_users_file(sample_labels_of_tests, tmp_path, name):
    """`sample -o DIR` where DIR holds the user's README.md or labels.parquet: exit 1 naming it; untouched."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_bytes(b"the user's own")
    line = only_line(rm("sample", sample_labels_of_tests, "-n", "5", "-o", folder))
    assert f"{folder}: is not empty ({name} was not made by `reportminer sample`)" in line
    assert (folder / name).read_bytes() == b"the user's own"
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_stats_refuses_a_folder_holding_a_users_counts(sample_labels_of_tests, tmp_path):
    """`stats -o DIR` where DIR holds the user's counts.csv: exit 1; the file untouched."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "counts.csv").write_text("mine\n")
    line = only_line(rm("stats", sample_labels_of_tests, "-o", folder))
    assert f"{folder}: is not empty (counts.csv was not made by `reportminer stats`)" in line
    assert (folder / "counts.csv").read_text() == "mine\n"


def test_stats_again_replaces_its_own_files_and_removes_the_stale_one(sample_labels_of_tests, tmp_path):
    """A second `stats` into its own folder works (its manifest says the files are its own); agreement.csv of
    the first run (with --compare) is removed when the second has no --compare, so nothing stale is left."""
    out = tmp_path / "stats"
    first = rm("stats", sample_labels_of_tests, "-o", out, "--compare", sample_labels_of_tests)
    assert first.exit_code == 0, first.output
    assert (out / "agreement.csv").exists()
    second = rm("stats", sample_labels_of_tests, "-o", out)
    assert second.exit_code == 0, second.output
    assert not (out / "agreement.csv").exists() and (out / "counts.csv").exists()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == "reportminer stats"
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)


def test_an_other_commands_folder_is_refused(sample_labels_of_tests, tmp_path):
    """`stats -o` a folder `sample` made: exit 1 naming the command whose output it holds; nothing replaced."""
    out = tmp_path / "sampled"
    assert rm("sample", sample_labels_of_tests, "-n", "5", "-o", out).exit_code == 0
    before = {p.name: digest(p) for p in out.iterdir() if p.is_file()}
    line = only_line(rm("stats", sample_labels_of_tests, "-o", out))
    assert f"{out}: is not empty (it holds the output of `reportminer sample`)" in line
    assert {p.name: digest(p) for p in out.iterdir() if p.is_file()} == before


def test_fit_refuses_a_folder_holding_a_users_config(tiny, tmp_path):
    """`fit -o DIR` where DIR holds the user's config.json: exit 1 before any training; the file untouched."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"mine": true}')
    line = error_line(cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", *FAST))
    assert f"{run}: is not empty (config.json was not made by `classifier fit`)" in line
    assert (run / "config.json").read_text() == '{"mine": true}'
    assert not (run / "last.pt").exists()


def test_synth_replaces_its_own_earlier_set_whole(tmp_path):
    """A second `synth` into its own folder replaces the earlier set: 3 images, not 3 new beside 5 old."""
    out = tmp_path / "set"
    assert cl("synth", "-o", out, "-n", "5", "--size", "32").exit_code == 0
    again = cl("synth", "-o", out, "-n", "3", "--size", "32", "--seed", "1")
    assert again.exit_code == 0, again.output
    assert len(list((out / "images").iterdir())) == 3
    assert len(pd.read_csv(out / "reports.csv")) == 3


def test_prepare_refuses_a_folder_holding_a_users_file(images_set, tmp_path):
    """`prepare -o DIR` where DIR holds a file of the user's: exit 1, the same rule and line as every command."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "notes.txt").write_text("mine")
    line = only_line(cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", store, "--workers", "1"))
    assert f"{store}: is not empty (notes.txt was not made by `classifier prepare`)" in line
    assert sorted(p.name for p in store.iterdir()) == ["notes.txt"]


# --- 3. Damaged stores: one line each -----------------------------------------------------------

@pytest.fixture()
def store(images_set, tmp_path) -> Path:
    out = tmp_path / "store"
    made = cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", out, "--workers", "1")
    assert made.exit_code == 0, made.output
    return out


def _score_store(tiny_run, images_set, store):
    _, run = tiny_run
    return cl("score", run, images_set / "labels.parquet", "--store", store, "-o", store.parent / "s.parquet",
              "--bootstrap", "10")


def test_store_json_without_its_size_is_one_line(tiny_run, images_set, store):
    meta = json.loads((store / "store.json").read_text())
    del meta["size"]
    (store / "store.json").write_text(json.dumps(meta))
    line = only_line(_score_store(tiny_run, images_set, store))
    assert f"{store / 'store.json'}: 'size' is None, not a whole number of at least 1; prepare the store again" in line


def test_store_index_without_its_ok_column_is_one_line(tiny_run, images_set, store):
    table = pq.read_table(store / "index.parquet")
    pq.write_table(table.drop(["ok"]), store / "index.parquet")
    line = only_line(_score_store(tiny_run, images_set, store))
    assert f"{store / 'index.parquet'}: column 'ok' is missing; prepare the store again" in line


def test_store_index_with_a_row_out_of_range_is_one_line(tiny_run, images_set, store):
    table = pq.read_table(store / "index.parquet")
    rows = table.column("row").to_numpy().copy()
    rows[5] = 10_000
    pq.write_table(table.set_column(table.schema.get_field_index("row"), "row", pa.array(rows)),
                   store / "index.parquet")
    line = only_line(_score_store(tiny_run, images_set, store))
    assert f"{store / 'index.parquet'}: image" in line and "on line 5 names row 10000 of the 64 images" in line


def test_resume_after_the_array_was_deleted_is_one_line(images_set, tmp_path):
    """A preparation stopped after its first chunk, then its array deleted: `--resume` is one line saying to
    start afresh, not a traceback; without --resume the unfinished folder is refused."""
    from classifier.store import PROGRESS, prepare_store

    frame = pd.read_parquet(images_set / "labels.parquet")
    images = [(i, images_set / p) for i, p in zip(frame["image_id"], frame["image_path"])]

    def stop(n: int) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare_store(images[:40] + images[:40], 48, out, 1, False, "test", say=lambda m: None, progress=stop)
    with pytest.raises(InputError, match="holds an unfinished preparation; pass --resume"):
        prepare_store(images[:40] + images[:40], 48, out, 1, False, "test", say=lambda m: None)
    (out / PROGRESS / "images.u8").unlink()
    with pytest.raises(InputError) as refused:
        prepare_store(images[:40] + images[:40], 48, out, 1, True, "test", say=lambda m: None)
    assert str(refused.value) == (f"{out / PROGRESS / 'images.u8'}: missing or not 80 images of 48 px, so the "
                                  f"preparation cannot go on; delete {out / PROGRESS} to start afresh")


# --- 4. Bounded decoding ------------------------------------------------------------------------

def test_a_12000_squared_png_is_skipped_by_the_pixel_budget(images_set, tmp_path):
    """A PNG claiming 12,000 x 12,000 pixels (below Pillow's bomb limit, 1.7 GB to decode): `prepare` names it as
    over the budget and skips it (exit 3); the other 63 images are in the store."""
    big = first_image(images_set)
    big.write_bytes(png_header(12_000, 12_000))
    result = cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", tmp_path / "store", "--workers", "1")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"{big}: refused, 12,000 x 12,000 pixels is over the budget of 25,000,000 per image" in result.output
    assert "63 of 64 images" in result.output


def test_max_pixels_bounds_a_real_image_both_ways(images_set, tmp_path):
    """A real 2,000 x 2,000 PNG: skipped under --max-pixels 1000000, decoded under the default budget."""
    big = first_image(images_set)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 2000), dtype=np.uint8)).save(big)
    tight = cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", tmp_path / "a", "--workers", "1",
               "--max-pixels", "1000000")
    assert tight.exit_code == EXIT_SKIPPED and "2,000 x 2,000 pixels is over the budget of 1,000,000" in tight.output
    roomy = cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", tmp_path / "b", "--workers", "1")
    assert roomy.exit_code == 0, roomy.output


@pytest.mark.slow
def test_a_fifo_named_png_is_skipped_not_waited_on(images_set, tmp_path):
    """A FIFO where an image belongs: `prepare` names it as not an image file and goes on (exit 3), within
    the timeout (a plain open would wait for a writer forever)."""
    fifo = first_image(images_set)
    fifo.unlink()
    os.mkfifo(fifo)
    result = run_cli("classifier", "prepare", images_set / "labels.parquet", "--size", "48", "-o",
                     tmp_path / "store", "--workers", "1", timeout=120)
    assert result.returncode == EXIT_SKIPPED, result.stderr
    assert f"{fifo}: is a FIFO (named pipe), not an image file" in result.stderr


# --- 5. Empty datasets and one exit status for skips --------------------------------------------

@pytest.mark.parametrize("source", ["nih", "chexpert", "mimic"])
def test_header_only_dataset_inputs_are_refused(source, tmp_path):
    """NIH, CheXpert or MIMIC-CXR-JPG label files with a header and no rows: exit 1, one line; no dataset."""
    out = tmp_path / "labels.parquet"
    if source == "nih":
        entries = tmp_path / "Data_Entry_2017.csv"
        entries.write_text(HEADER)
        args = ["--nih", entries]
    elif source == "chexpert":
        entries = tmp_path / "train.csv"
        entries.write_text("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding\n")
        args = ["--chexpert", entries]
    else:
        entries = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
        entries.write_text("subject_id,study_id,No Finding\n")
        metadata = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
        metadata.write_text("dicom_id,subject_id,study_id,ViewPosition\n")
        args = ["--mimic-labels", entries, "--mimic-metadata", metadata]
    line = only_line(rm("dataset", *args, "-o", out))
    assert f"{entries}: a header and no rows" in line
    assert not out.exists()


def test_score_names_a_missing_image_and_exits_3(tiny_run, images_set, tmp_path):
    """One image gone: `score` names it, writes the scores of the 63 others and exits 3 (as label, prepare and
    fit do), not 0."""
    _, run = tiny_run
    gone = first_image(images_set)
    gone.unlink()
    out = tmp_path / "scores.parquet"
    result = cl("score", run, images_set / "labels.parquet", "-o", out, "--bootstrap", "10")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped unreadable image {gone}: no such file" in result.output
    assert pd.read_parquet(out).iloc[:, 2:].notna().all(axis=1).sum() == 63


def test_a_parquet_file_at_best_pt_is_not_a_checkpoint(tiny, tmp_path):
    """A Parquet table saved as best.pt: one line `not a checkpoint`, not a warning about code in a pickle."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny / "labels.parquet", run / "best.pt")
    line = only_line(cl("score", run, tiny / "labels.parquet", "-o", tmp_path / "s.parquet"))
    assert f"{run / 'best.pt'}: not a checkpoint" in line
    assert "run code" not in line


# --- 6. A disk that refuses the data (issue 25) -------------------------------------------------

@pytest.mark.slow
def test_label_over_the_file_size_limit_is_one_line_and_keeps_the_labels(tmp_path):
    """`ulimit -f 4` (4 KB): `label` ends with one line naming the file it could not write, exit 1; the
    labels.parquet of an earlier run byte for byte as it was, no temporary file left."""
    out = tmp_path / "labels.parquet"
    assert label(SAMPLES / "reports", "-o", out).exit_code == 0
    before = digest(out)
    result = run_cli("reportminer", "label", SAMPLES / "reports", "-o", out, "--workers", "1", "--quiet",
                     ulimit_kb=4)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert "cannot be written: over the file size limit (ulimit -f)" in line and str(tmp_path) in line
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.parquet"]


@pytest.mark.slow
def test_prepare_over_the_file_size_limit_is_one_line(images_set, tmp_path):
    """`ulimit -f 50` (the store needs 144 KB): `prepare` is one line naming the array, exit 1; no store
    file and nothing to resume is left, so the next run starts afresh and works."""
    store = tmp_path / "store"
    result = run_cli("classifier", "prepare", images_set / "labels.parquet", "--size", "48", "-o", store,
                     "--workers", "1", ulimit_kb=50)
    assert result.returncode == 1, result.stderr
    assert f"{store / '.progress' / 'images.u8'}: cannot be written: over the file size limit" in one_line(
        result.stderr)
    assert [p.name for p in store.iterdir()] == [MANIFEST]
    again = cl("prepare", images_set / "labels.parquet", "--size", "48", "-o", store, "--workers", "1")
    assert again.exit_code == 0, again.output


# --- 7. Progress on a terminal, none in a log (issue 25) ----------------------------------------

def _stderr_on_a_terminal(*args) -> tuple[int, str]:
    """Run `python -m classifier.cli ARGS` with stderr on a pseudo-terminal; its exit status and what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([PYTHON, "-m", "classifier.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=follower, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(follower)
    shown, deadline = b"", time.time() + 240
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process closed its end
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), shown.decode(errors="replace")


@pytest.mark.slow
def test_score_and_localize_show_progress_on_a_terminal_and_not_in_a_log(tiny_run, tmp_path):
    """With stderr on a terminal, `score` and `localize` draw a bar that reaches every image (a user saw
    `localize` silent for eight minutes); with stderr in a pipe or a log, no bar at all."""
    tiny, run = tiny_run
    done = re.compile(r"(?<!\d)(\d+)/\1(?!\d)")  # a bar at its end: "13/13"
    code, shown = _stderr_on_a_terminal("score", run, tiny / "labels.parquet", "-o", tmp_path / "s.parquet",
                                        "--split", "test", "--bootstrap", "10")
    assert code == 0, shown
    assert "scoring" in shown and done.search(shown), shown
    code, shown = _stderr_on_a_terminal("localize", run, tiny / "labels.parquet", "-o", tmp_path / "loc",
                                        "--split", "test", "--overlays", "0", "--method", "cam", "--thresholds",
                                        "60,180")
    assert code == 0, shown
    assert "drawing" in shown and done.search(shown), shown
    logged = cl("score", run, tiny / "labels.parquet", "-o", tmp_path / "t.parquet", "--split", "test",
                "--bootstrap", "10")
    assert logged.exit_code == 0, logged.output
    assert "scoring" not in logged.output and not done.search(logged.output)


@pytest.fixture(scope="module")
def sample_labels_of_tests(tmp_path_factory) -> Path:
    """labels.parquet of the 34 bundled sample reports (read only by the tests)."""
    out = tmp_path_factory.mktemp("labels")
    result = label(SAMPLES / "reports", "-o", out / "labels.parquet")
    assert result.exit_code == 0, result.output
    return out / "labels.parquet"
