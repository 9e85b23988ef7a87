"""Hostile inputs and environments: special files, locks, huge or broken input, killed runs, NaN training.

Every test runs the real commands on real files (real Parquet, the real spaCy model, real torch for a
step or two) and checks what a user sees: the exit status and the one line that explains it.
Exit statuses: 0 done, 1 a user error (one `Error: ` line), 2 a bad command line, 3 written but some
inputs skipped (each named), 70 a bug (traceback and a report request), 130 interrupted.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import click
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxrcore.splits import patient_splits
import torch
import torchvision
from click.testing import CliRunner

from classifier.cli import main as classifier_main
from cxrcore.cli import EXIT_BUG, EXIT_INTERRUPTED, EXIT_SKIPPED, OneLineErrors
from cxrcore.errors import ToolkitError
from cxrcore.output import exclusive
from reportminer.cli import main as reportminer_main
from reportminer.engine import parts_folder

from conftest import FAST, SAMPLES
from test_engine import write_corpus

GOLD = SAMPLES / "hand_gold.csv"
GOOD_REPORT = "Small left pneumothorax."
ROOT = os.geteuid() == 0


# --- helpers ------------------------------------------------------------------------------------

def rm(*args):
    """`reportminer ARGS` as a user runs it (in this process, output and errors together)."""
    return CliRunner().invoke(reportminer_main, [str(a) for a in args])


def label(*args):
    return rm("label", *args, "--workers", "1", "--quiet")


def cl(*args):
    """`classifier ARGS`."""
    return CliRunner().invoke(classifier_main, [str(a) for a in args])


def error_line(result, code: int = 1) -> str:
    """The one `Error: ` line of a failed command (other progress lines may come before it); no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def only_line(result, code: int = 1) -> str:
    """The whole output is exactly one `Error: ` line."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def usage_error(result) -> str:
    """A click usage error: exit 2, its `Error: ` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    return error_line(result, 2)


def good_folder(folder: Path, **extra: str | bytes) -> Path:
    """A report folder holding good.txt and the given extra files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.txt").write_text(GOOD_REPORT)
    for name, content in extra.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return folder


def copy_images(tiny: Path, dest: Path) -> Path:
    """A copy of the tiny set's images/ under dest (labels' image_path is images/NAME)."""
    shutil.copytree(tiny / "images", dest / "images")
    return dest


def no_checkpoints(run: Path) -> bool:
    return not (run / "best.pt").exists() and not (run / "last.pt").exists()


@pytest.fixture(scope="module")
def sample_labels(tmp_path_factory) -> Path:
    """labels.parquet and mentions.parquet of the 34 bundled sample reports (read only by the tests)."""
    out = tmp_path_factory.mktemp("sample_labels")
    result = label(SAMPLES / "reports", "-o", out / "labels.parquet", "--evidence", out / "mentions.parquet")
    assert result.exit_code == 0, result.output
    return out / "labels.parquet"


# --- 1. Special files at an output path ---------------------------------------------------------

def _make_special(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        if not ROOT:
            pytest.skip("creating a character device (os.mknod) needs root")
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        (path.parent / "real.txt").write_text("keep me")
        os.symlink(path.parent / "real.txt", path)


def _still_special(kind: str, path: Path) -> bool:
    mode = os.lstat(path).st_mode
    if kind == "fifo":
        return stat.S_ISFIFO(mode)
    if kind == "device":
        return stat.S_ISCHR(mode) and os.lstat(path).st_rdev == os.makedev(1, 3)
    return (stat.S_ISLNK(mode) and os.readlink(path) == str(path.parent / "real.txt")
            and (path.parent / "real.txt").read_text() == "keep me")


SPECIAL_WORDS = {"fifo": "is a FIFO (named pipe)", "device": "is a device", "symlink": "is a symbolic link"}


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink"])
@pytest.mark.parametrize("command", ["label", "evaluate", "score"])
def test_special_file_at_an_output_is_refused_and_left_as_it_is(kind, command, tmp_path, request):
    """A FIFO, a device or a symlink where an output file goes: exit 1, one line, the special file untouched."""
    target = tmp_path / "out"
    _make_special(kind, target)
    if command == "label":
        result = label(SAMPLES / "reports", "-o", target)
    elif command == "evaluate":
        result = rm("evaluate", request.getfixturevalue("sample_labels"), GOLD, "--json", target)
    else:
        tiny, run = request.getfixturevalue("tiny_run")
        result = cl("score", run, tiny / "labels.parquet", "-o", target, "--bootstrap", "10")
    line = error_line(result)
    assert f"{target}: {SPECIAL_WORDS[kind]}; refusing to replace it" in line
    assert _still_special(kind, target)


def test_stats_output_folder_that_is_a_file_is_refused(sample_labels, tmp_path):
    """`reportminer stats -o FILE`: refused (a bad command line, exit 2) naming the file; the file is untouched."""
    target = tmp_path / "some_file"
    target.write_text("mine")
    line = usage_error(rm("stats", sample_labels, "-o", target))
    assert f"Directory '{target}' is a file" in line  # click's check of the option comes first
    assert target.read_text() == "mine"


def test_fit_output_folder_that_is_a_file_is_refused(tiny, tmp_path):
    """`classifier fit -o FILE`: refused (a bad command line, exit 2) naming the file; the file is untouched."""
    target = tmp_path / "some_file"
    target.write_text("mine")
    line = usage_error(cl("fit", tiny / "labels.parquet", "-o", target, "--epochs", "1", *FAST))
    assert f"Directory '{target}' is a file" in line  # click's check of the option comes first
    assert target.read_text() == "mine"


def test_outputs_get_the_users_umask(tmp_path):
    """A new labels.parquet has the mode the user's umask gives (0o644 under umask 022), not mkstemp's 0o600."""
    previous = os.umask(0o022)
    try:
        result = label(good_folder(tmp_path / "in"), "-o", tmp_path / "labels.parquet")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(tmp_path / "labels.parquet").st_mode) == 0o644


# --- 2. Two runs on one output ------------------------------------------------------------------

def test_second_label_run_on_a_locked_output_is_refused_with_the_holders_pid(tmp_path):
    """While another run holds the output, `label` names that run's pid and writes nothing; afterwards it works
    and leaves no lock file."""
    folder = good_folder(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "labels.parquet"
    with exclusive(out):
        line = only_line(label(folder, "-o", out))
        assert f"{out}: another run (pid {os.getpid()}) is writing it" in line
        assert sorted(p.name for p in out_dir.iterdir()) == [".labels.parquet.lock"]  # ours only
    result = label(folder, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["labels.parquet"]


@pytest.mark.slow
def test_second_fit_on_a_locked_run_folder_is_refused_with_the_holders_pid(tiny, tmp_path):
    """While another run holds RUN/.lock, `fit -o RUN` names that run's pid and saves nothing; afterwards it
    trains and leaves no lock file."""
    run = tmp_path / "run"
    run.mkdir()
    with exclusive(run):
        assert (run / ".lock").exists()
        line = error_line(cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", *FAST))
        assert f"{run}: another run (pid {os.getpid()}) is writing it" in line
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    result = cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", *FAST)
    assert result.exit_code == 0, result.output
    assert (run / "last.pt").exists() and not (run / ".lock").exists()


# --- 3. Oversized reports -----------------------------------------------------------------------

def test_report_over_the_length_limit_is_skipped_and_named(tmp_path):
    """A 200,000-character report (limit 100,000) is named and skipped (exit 3); the normal one is labeled."""
    folder = good_folder(tmp_path / "in", **{"big.txt": "Small left effusion " * 10_000})
    result = label(folder, "-o", tmp_path / "labels.parquet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert (f"skipped {folder / 'big.txt'}: report big has 200,000 characters, more than the 100,000 a report "
            f"may have") in result.output
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert labels["report_id"].tolist() == ["good"] and labels["Pneumothorax"].tolist() == [1]


@pytest.mark.slow
def test_one_endless_sentence_is_cut_into_bounded_sentences(tmp_path):
    """A 60,000-character report without a period is labeled; no evidence sentence exceeds 1,000 characters."""
    text = "small left pleural effusion and " * 1875
    assert len(text) == 60_000
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "long.txt").write_text(text)
    result = label(folder, "-o", tmp_path / "labels.parquet", "--evidence", tmp_path / "mentions.parquet")
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "labels.parquet")["Effusion"].tolist() == [1]
    mentions = pd.read_parquet(tmp_path / "mentions.parquet")
    assert len(mentions) > 0
    assert mentions["sentence"].str.len().max() <= 1000


# --- 4. Training that would end NaN -------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--lse-r", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1")])
def test_fit_refuses_numbers_that_make_training_nan(tiny, tmp_path, option, value):
    """`--lse-r 0`, `--lr nan` and the like are bad parameters (exit 2), refused before anything is written."""
    line = usage_error(cl("fit", tiny / "labels.parquet", "-o", tmp_path / "run", *FAST, option, value))
    assert option in line and "must be a finite number above 0" in line
    assert not (tmp_path / "run").exists()


def test_fit_refuses_an_infinite_label(tiny, tmp_path):
    """A labels.parquet whose finding column holds inf: exit 1 naming the column and row; nothing saved."""
    table = pq.read_table(tiny / "labels.parquet")
    frame = table.to_pandas()
    frame["Effusion"] = frame["Effusion"].astype("float64")
    frame.loc[7, "Effusion"] = np.inf
    bad = tmp_path / "labels.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   bad)
    assert pq.read_schema(bad).field("Effusion").type == pa.float64()
    run = tmp_path / "run"
    line = error_line(cl("fit", bad, "--images", tiny, "-o", run, "--epochs", "1", *FAST))
    assert f"{bad}[row 7]: Effusion = " in line and "inf" in line
    assert "a label must be 1, 0, -1 or empty" in line
    assert no_checkpoints(run)


def test_fit_refuses_weights_holding_nan(tiny, tmp_path):
    """`--weights` whose state dict holds a NaN tensor: exit 1, one line naming the tensor; nothing saved."""
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    run = tmp_path / "run"
    line = error_line(cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", "--weights",
                         tmp_path / "nan.pth", *FAST))
    assert "tensor 'layer2.0.conv1.weight' holds NaN or infinite values" in line
    assert no_checkpoints(run)


@pytest.mark.slow
def test_diverging_training_stops_and_saves_nothing_of_that_epoch(tiny, tmp_path):
    """A learning rate that blows the loss up: exit 1 saying so; no best.pt or last.pt is written."""
    run = tmp_path / "run"
    result = cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", *FAST, "--lr", "1e12")
    line = error_line(result)
    assert "is no longer a number" in line or "diverged" in line
    assert "epoch 1: " in line and "nothing of this epoch is saved" in line
    assert no_checkpoints(run)


# --- 5. Silent overwrites -----------------------------------------------------------------------

def test_label_refuses_to_write_over_its_input_table(tmp_path):
    """`label t.parquet -o t.parquet`: exit 1, the input table is byte-identical."""
    table = tmp_path / "t.parquet"
    pd.DataFrame([{"report_id": "r1", "text": "No effusion."}]).to_parquet(table)
    before = table.read_bytes()
    line = only_line(label(table, "-o", table))
    assert f"{table}: is also an input of this command" in line
    assert table.read_bytes() == before


def test_label_refuses_one_path_for_two_outputs(tmp_path):
    """`-o X --evidence X`: exit 1 naming X; nothing written."""
    out = tmp_path / "x.parquet"
    line = only_line(label(good_folder(tmp_path / "in"), "-o", out, "--evidence", out))
    assert f"{out}: given for two outputs of this command" in line
    assert not out.exists()


def test_score_refuses_to_write_over_its_labels(tiny_run, tmp_path):
    """`classifier score RUN labels.parquet -o labels.parquet`: exit 1, the labels byte-identical."""
    tiny, run = tiny_run
    labels = tmp_path / "labels.parquet"
    shutil.copy(tiny / "labels.parquet", labels)
    before = labels.read_bytes()
    line = error_line(cl("score", run, labels, "--images", tiny, "-o", labels, "--bootstrap", "10"))
    assert f"{labels}: is also an input of this command" in line
    assert labels.read_bytes() == before


def test_a_run_where_every_report_fails_keeps_the_previous_labels(tmp_path):
    """Only broken reports: exit 1 `no report could be labeled`, and the earlier good labels are byte-identical."""
    out = tmp_path / "labels.parquet"
    assert label(good_folder(tmp_path / "good"), "-o", out).exit_code == 0
    before = out.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.txt").write_text("")
    (bad / "blank.txt").write_text("  \n")
    (bad / "broken.xml").write_text("<eCitation><uId id='X'>")
    result = label(bad, "-o", out)
    line = error_line(result)
    assert "no report could be labeled (3 skipped, each named above)" in line
    assert f"skipped {bad / 'zero.txt'}: empty report" in result.output
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "labels.parquet"]


def test_evidence_under_a_file_keeps_the_previous_labels(tmp_path):
    """`--evidence afile/m.parquet` where afile is a file: exit 1 before any work; the labels byte-identical."""
    folder = good_folder(tmp_path / "in")
    out = tmp_path / "labels.parquet"
    assert label(folder, "-o", out).exit_code == 0
    before = out.read_bytes()
    (tmp_path / "afile").write_text("a file")
    line = only_line(label(folder, "-o", out, "--evidence", tmp_path / "afile" / "m.parquet"))
    assert f"{tmp_path / 'afile'} is a file, not a folder" in line
    assert out.read_bytes() == before


# --- 6. Unreadable input ------------------------------------------------------------------------

def _without_read_override() -> list[str]:
    """A prefix that runs a command without root's power to read what permissions forbid."""
    if not ROOT:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and util-linux `setpriv` is missing: cannot drop CAP_DAC_OVERRIDE to make "
                    "a file unreadable")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def label_process(*args, prefix=(), timeout=120):
    """`python -m reportminer.cli label ARGS --workers 1 --quiet` in its own process."""
    command = [*prefix, sys.executable, "-m", "reportminer.cli", "label", *map(str, args), "--workers", "1", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_unreadable_report_and_folder_are_skipped_and_named(tmp_path):
    """A report with mode 000 and a subfolder with mode 000 are each named and skipped (exit 3); the readable
    report is labeled and no .parts folder is left."""
    prefix = _without_read_override()
    folder = good_folder(tmp_path / "in", **{"locked.txt": "No effusion."})
    sub = folder / "sub"
    sub.mkdir()
    (sub / "inner.txt").write_text("No effusion.")
    out = tmp_path / "labels.parquet"
    os.chmod(folder / "locked.txt", 0)
    os.chmod(sub, 0)
    try:
        result = label_process(folder, "-o", out, prefix=prefix)
    finally:
        os.chmod(sub, 0o755)
        os.chmod(folder / "locked.txt", 0o644)
    assert result.returncode == EXIT_SKIPPED, result.stderr
    assert f"skipped {folder / 'locked.txt'}: cannot read (Permission denied)" in result.stderr
    assert f"skipped {sub}: cannot read this folder (Permission denied)" in result.stderr
    assert "Traceback" not in result.stderr
    assert pd.read_parquet(out)["report_id"].tolist() == ["good"]
    assert not parts_folder(out).exists()


@pytest.mark.slow
def test_fifo_among_reports_is_skipped_without_hanging(tmp_path):
    """A FIFO named x.txt in a report folder is skipped as not a regular file; the run does not block on it."""
    folder = good_folder(tmp_path / "in")
    os.mkfifo(folder / "x.txt")
    out = tmp_path / "labels.parquet"
    result = label_process(folder, "-o", out, timeout=90)
    assert result.returncode == EXIT_SKIPPED, result.stderr
    assert f"skipped {folder / 'x.txt'}: not a regular file" in result.stderr
    assert pd.read_parquet(out)["report_id"].tolist() == ["good"]


# --- 7. No image can be read --------------------------------------------------------------------

def test_fit_with_no_readable_image_fails_and_saves_nothing(tiny, tmp_path):
    """`fit --images EMPTY`: exit 1 `not one training image could be read`; no best.pt or last.pt."""
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    result = cl("fit", tiny / "labels.parquet", "--images", tmp_path / "empty", "-o", run, "--epochs", "1", *FAST)
    line = error_line(result)
    assert "epoch 1: not one training image could be read" in line
    assert "skipped unreadable image" in result.output  # each one is named first
    assert no_checkpoints(run)


def test_score_with_no_readable_image_writes_nothing(tiny_run, tmp_path):
    """`score --images EMPTY` on a real run: exit 1; no scores file (nor its .auc.json/.roc.png)."""
    tiny, run = tiny_run
    (tmp_path / "empty").mkdir()
    out = tmp_path / "scores.parquet"
    result = cl("score", run, tiny / "labels.parquet", "--images", tmp_path / "empty", "-o", out, "--bootstrap", "10")
    line = error_line(result)
    assert "not one of the 64 images" in line and "could be read" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# --- 8. A decompression bomb among the images ---------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that is only its signature, an IHDR claiming width x height 8-bit grey pixels, and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.slow
def test_an_image_claiming_50000_squared_pixels_is_refused_and_training_goes_on(tiny, tmp_path):
    """An image whose header claims 50000x50000 pixels is named as too large and left out; fit trains on the
    others and exits 3, like every command that skipped something."""
    root = copy_images(tiny, tmp_path)
    labels = pd.read_parquet(tiny / "labels.parquet")
    split = patient_splits(labels["patient_id"], (0.7, 0.1, 0.2), 0)  # fit's own split of these labels
    bomb = root / labels.loc[split == "test", "image_path"].iloc[0]  # every test image is read after training
    bomb.write_bytes(png_header(50_000, 50_000))
    run = tmp_path / "run"
    result = cl("fit", tiny / "labels.parquet", "--images", root, "-o", run, "--epochs", "1", *FAST)
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"{bomb}: refused, too large to decode safely" in result.output
    assert (run / "last.pt").exists()


# --- 9. Text columns that are not text ----------------------------------------------------------

def test_binary_text_column_is_decoded_and_labeled(tmp_path):
    """A Parquet `text` column of binary: b"No pleural effusion." is labeled Effusion 0."""
    table = pa.table({"report_id": ["r1"], "text": pa.array([b"No pleural effusion."], pa.binary())})
    pq.write_table(table, tmp_path / "t.parquet")
    result = label(tmp_path / "t.parquet", "-o", tmp_path / "labels.parquet")
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert labels["Effusion"].tolist() == [0]


def test_integer_text_column_is_refused(tmp_path):
    """A Parquet `text` column of int64: exit 1 naming the column and `not text`."""
    pq.write_table(pa.table({"report_id": ["r1"], "text": pa.array([7], pa.int64())}), tmp_path / "t.parquet")
    line = only_line(label(tmp_path / "t.parquet", "-o", tmp_path / "labels.parquet"))
    assert f"{tmp_path / 't.parquet'}: column 'text' is int64, not text" in line
    assert not (tmp_path / "labels.parquet").exists()


def test_jsonl_text_that_is_a_list_or_object_is_skipped_and_named(tmp_path):
    """JSONL rows whose text is a list or an object are skipped (file:line, type, `not text`); the rest labeled."""
    rows = [{"report_id": "r1", "text": "No effusion."}, {"report_id": "r2", "text": ["No", "effusion."]},
            {"report_id": "r3", "text": {"findings": "No effusion."}}, {"report_id": "r4", "text": GOOD_REPORT}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = label(path, "-o", tmp_path / "labels.parquet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped {path}:2: column 'text' holds list" in result.output
    assert f"skipped {path}:3: column 'text' holds dict" in result.output
    assert result.output.count("not text") == 2
    assert pd.read_parquet(tmp_path / "labels.parquet")["report_id"].tolist() == ["r1", "r4"]


# --- 10. A damaged NIH Data_Entry file ----------------------------------------------------------

HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
ENTRIES = HEADER + """a_000.png,Cardiomegaly,0,1,57,M,PA
a_001.png,Cardiomegaly|Infiltrate,1,1,58,M,AP
b_000.png,No Finding,0,2,40,F,PA
c_000.png,Effusion|Mass,0,3,70,F,LL
d_000.png,No Finding,0,4,33,M,PA
"""


def test_nih_entries_cut_mid_line_name_the_line(tmp_path):
    """A Data_Entry CSV cut in its last line: exit 1 naming line 6 and the empty column; nothing written."""
    entries = tmp_path / "d.csv"
    entries.write_text(ENTRIES[: ENTRIES.index("d_000.png") + len("d_000.png,No Fin")])
    line = only_line(rm("dataset", "--nih", entries, "-o", tmp_path / "out.parquet"))
    assert f"{entries}:6: 'Patient ID' is empty (the file may be cut short)" in line
    assert not (tmp_path / "out.parquet").exists()


def test_nih_entries_with_a_blank_patient_name_the_line(tmp_path):
    """A blank Patient ID on line 4: exit 1 naming line 4."""
    entries = tmp_path / "d.csv"
    entries.write_text(ENTRIES.replace("b_000.png,No Finding,0,2,", "b_000.png,No Finding,0,,"))
    line = only_line(rm("dataset", "--nih", entries, "-o", tmp_path / "out.parquet"))
    assert f"{entries}:4: 'Patient ID' is empty; every row needs one" in line


def test_truncated_gzip_entries_are_one_line_not_aborted(tmp_path):
    """A .csv.gz cut to half its bytes: exit 1, one line `cut short or damaged` (not click's `Aborted!`)."""
    rows = "".join(f"x_{i:05d}.png,No Finding,0,{i},40,F,PA\n" for i in range(3000))
    whole = gzip.compress((HEADER + rows).encode())
    entries = tmp_path / "Data_Entry_2017.csv.gz"
    entries.write_bytes(whole[: len(whole) // 2])
    result = rm("dataset", "--nih", entries, "-o", tmp_path / "out.parquet")
    line = only_line(result)
    assert f"{entries}: the file is cut short or damaged" in line
    assert "Aborted!" not in result.output
    assert not (tmp_path / "out.parquet").exists()


# --- 11. Killing the main labeling process ------------------------------------------------------

def _start_with_workers(tmp_path: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """`label --workers 2` on a few thousand reports, once its two worker processes exist."""
    corpus = write_corpus(tmp_path / "corpus.jsonl", 3000, seed=2)
    command = [sys.executable, "-m", "reportminer.cli", "label", str(corpus), "-o", str(tmp_path / "labels.parquet"),
               "--workers", "2", "--chunk-size", "50", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        children = main.children(recursive=True)
        workers = [c for c in children if _is_worker(c)]
        if len(workers) >= 2:
            time.sleep(1.0)  # let them start on the work
            return proc, main.children(recursive=True)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"the run never had 2 worker processes (exit {proc.returncode}): {proc.stderr.read()}")


def _is_worker(process: psutil.Process) -> bool:
    try:
        return "python" in process.name().lower() and "resource_tracker" not in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie whose new parent has not reaped it yet counts as gone)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = [p for p in processes if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in processes if not _gone(p)]


@pytest.mark.slow
def test_killing_the_main_process_takes_its_workers_down(tmp_path):
    """SIGKILL to `label --workers 2`: every worker it started exits within 10 s instead of running on."""
    proc, children = _start_with_workers(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        left = _wait_gone(children, 10)
        assert not left, [(p.pid, p.cmdline()) for p in left]
    finally:
        for p in children:
            if not _gone(p):
                p.kill()


@pytest.mark.slow
def test_sigterm_interrupts_cleanly_with_exit_130_and_no_workers_left(tmp_path):
    """SIGTERM to `label --workers 2`: exit 130 with the `Interrupted` line; every worker gone within 10 s."""
    proc, children = _start_with_workers(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == EXIT_INTERRUPTED, stderr
        assert "Interrupted; finished work is kept" in stderr
        assert "Traceback" not in stderr
        left = _wait_gone(children, 10)
        assert not left, [(p.pid, p.cmdline()) for p in left]
        assert not (tmp_path / "labels.parquet").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in children:
            if not _gone(p):
                p.kill()


# --- 12. One-line errors instead of tracebacks --------------------------------------------------

def test_unknown_encoding_is_a_usage_error_before_any_work(tmp_path):
    """`--encoding utf-9`: exit 2 `is not an encoding`; no .parts folder."""
    out = tmp_path / "labels.parquet"
    line = usage_error(label(good_folder(tmp_path / "in"), "-o", out, "--encoding", "utf-9"))
    assert "'utf-9' is not an encoding" in line
    assert not parts_folder(out).exists() and not out.exists()


def test_evaluate_with_the_files_swapped_is_one_line(sample_labels):
    """`evaluate GOLD LABELS` (swapped): exit 1, one line."""
    line = only_line(rm("evaluate", GOLD, sample_labels))
    assert f"{GOLD}: cannot read as Parquet" in line


def test_evaluate_evidence_that_is_the_gold_csv_is_one_line(sample_labels, tmp_path):
    """`--evidence GOLD.csv`: exit 1, one line saying what --evidence wants; no errors file written."""
    result = rm("evaluate", sample_labels, GOLD, "--uncertain", "positive", "--errors", tmp_path / "e.csv",
                "--evidence", GOLD)
    line = error_line(result)
    assert f"{GOLD}: cannot read as Parquet" in line and "--evidence wants the mentions.parquet" in line
    assert not (tmp_path / "e.csv").exists()


def test_stats_output_under_a_file_is_one_line(sample_labels, tmp_path):
    """`stats -o afile/out` where afile is a file: exit 1 `is a file, not a folder`."""
    (tmp_path / "afile").write_text("a file")
    line = only_line(rm("stats", sample_labels, "-o", tmp_path / "afile" / "out"))
    assert f"{tmp_path / 'afile'} is a file, not a folder" in line


def test_fit_lr_that_is_not_a_number_is_a_usage_error(tiny, tmp_path):
    """`fit --lr abc`: exit 2."""
    line = usage_error(cl("fit", tiny / "labels.parquet", "-o", tmp_path / "run", "--lr", "abc"))
    assert "'abc' is not a number" in line


def test_checkpoint_of_another_architecture_is_one_line(tiny_run, tmp_path):
    """A best.pt whose config says resnet50 but whose weights are resnet18: `score` exits 1 `do not fit`."""
    tiny, run = tiny_run
    state = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    state["config"]["model"]["arch"] = "resnet50"
    other = tmp_path / "other_run"
    other.mkdir()
    torch.save(state, other / "best.pt")
    out = tmp_path / "scores.parquet"
    line = error_line(cl("score", other, tiny / "labels.parquet", "-o", out, "--bootstrap", "10"))
    assert f"{other / 'best.pt'}: its weights do not fit the network its config describes" in line
    assert not out.exists()


def test_a_damaged_store_is_one_line_and_an_undecodable_image_is_named(tiny, tmp_path):
    """A store whose index is garbage: `fit --store` is one line; an image that could not be decoded
    when the store was prepared is named by `prepare` (exit 3) and skipped when read."""
    images = tmp_path / "set"
    shutil.copytree(tiny, images)
    broken = pd.read_parquet(images / "labels.parquet")["image_path"].iloc[3]
    (images / broken).write_bytes(b"not a png")
    store = tmp_path / "store"
    made = cl("prepare", images / "labels.parquet", "--size", "48", "-o", store, "--workers", "1")
    assert made.exit_code == 3, made.output
    assert "skipped unreadable image" in made.output and f"{Path(broken).name}: cannot decode" in made.output
    (store / "index.parquet").write_bytes(os.urandom(300))
    line = error_line(cl("fit", images / "labels.parquet", "--store", store, "-o", tmp_path / "run", "--epochs", "1",
                         *FAST))
    assert f"{store}: not a prepared store" in line
    assert not (tmp_path / "run" / "last.pt").exists()


# --- 13. Bad lines and missing columns ----------------------------------------------------------

def test_one_bad_jsonl_line_is_skipped_and_named(tmp_path):
    """`{not json` among good JSONL lines: that line is named (file:LINE) and skipped; the rest labeled; exit 3."""
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"report_id": "r1", "text": "No effusion."}) + "\n{not json\n"
                    + json.dumps({"report_id": "r2", "text": GOOD_REPORT}) + "\n")
    result = label(path, "-o", tmp_path / "labels.parquet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped {path}:2: not a JSON object" in result.output
    assert pd.read_parquet(tmp_path / "labels.parquet")["report_id"].tolist() == ["r1", "r2"]


def test_manifest_without_patient_id_is_one_line(sample_labels, tmp_path):
    """`dataset LABELS --manifest M` where M has no patient_id: exit 1 mentioning patient_id; nothing written."""
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"report_id": f"s{n:02d}", "image_id": f"s{n:02d}.png", "image_path": f"img/s{n:02d}.png"}
                  for n in range(1, 35)]).to_csv(manifest, index=False)
    out = tmp_path / "out.parquet"
    line = only_line(rm("dataset", sample_labels, "--manifest", manifest, "-o", out))
    assert "patient_id" in line
    assert not out.exists()


# --- 14. evaluate on awkward gold files ---------------------------------------------------------

def _gold(path: Path, rows: list[str], header: str | None = None) -> Path:
    header = header or GOLD.read_text().splitlines()[0]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_evaluate_gold_with_none_of_the_reports_is_one_line(sample_labels, tmp_path):
    """A gold file sharing no report id with the labels: exit 1 `none of the`."""
    zeros = ",".join(["0"] * 14)
    gold = _gold(tmp_path / "gold.csv", [f"x1,{zeros}", f"x2,{zeros}"])
    line = only_line(rm("evaluate", sample_labels, gold))
    assert f"none of the 2 reports of {gold} is in {sample_labels}" in line


def test_evaluate_gold_with_an_extra_column_notes_it(sample_labels, tmp_path):
    """A gold column `Foo` that is no label: exit 0, and the output says it is not scored."""
    lines = GOLD.read_text().splitlines()
    gold = tmp_path / "gold.csv"
    gold.write_text("\n".join([lines[0] + ",Foo"] + [row + ",7" for row in lines[1:]]) + "\n")
    result = rm("evaluate", sample_labels, gold)
    assert result.exit_code == 0, result.output
    assert "gold column 'Foo' is not a label" in result.output


def test_evaluate_bad_gold_value_after_a_blank_line_names_the_file_line(sample_labels, tmp_path):
    """A bad value in the 4th data row, after a blank line, is named by its line in the file (line 6)."""
    rows = GOLD.read_text().splitlines()[1:5]
    fields = rows[3].split(",")
    fields[3] = "x"  # Effusion
    gold = tmp_path / "gold.csv"
    header = GOLD.read_text().splitlines()[0]
    # line 1 header, 2-4 data rows 1-3, 5 blank, 6 data row 4
    gold.write_text("\n".join([header, *rows[:3], "", ",".join(fields)]) + "\n")
    line = only_line(rm("evaluate", sample_labels, gold))
    assert f"{gold}:6: column Effusion must be 1, 0, -1 or blank, got 'x'" in line


# --- 15. Minor hazards --------------------------------------------------------------------------

def test_weights_of_another_resnet_are_refused(tiny, tmp_path):
    """`--weights` a resnet50 state dict on `--arch resnet18`: exit 1 `is it a resnet18 state dict`."""
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    run = tmp_path / "run"
    line = error_line(cl("fit", tiny / "labels.parquet", "-o", run, "--epochs", "1", "--weights",
                         tmp_path / "resnet50.pth", *FAST))
    assert f"{tmp_path / 'resnet50.pth'}: " in line and "is it a resnet18 state dict?" in line
    assert no_checkpoints(run)


def test_control_characters_in_an_id_are_shown_escaped(tmp_path):
    """A report id holding ESC is printed as `\\x1b` in its skip line, never as a raw terminal escape."""
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"report_id": "a\x1b[31mb", "text": ""}) + "\n"
                    + json.dumps({"report_id": "r2", "text": GOOD_REPORT}) + "\n")
    result = label(path, "-o", tmp_path / "labels.parquet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped {path}:1: report a\\x1b[31mb: empty report text" in result.output
    assert "\x1b" not in result.output


def test_synth_into_a_folder_that_holds_a_file_is_refused(tmp_path):
    """`classifier synth -o DIR` where DIR holds a file: exit 1 `is not empty`; the file is untouched."""
    (tmp_path / "mine.txt").write_text("keep")
    line = only_line(cl("synth", "-o", tmp_path, "-n", "2", "--size", "32"))
    assert f"{tmp_path}: is not empty" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_stale_temporary_file_of_a_dead_run_is_removed(tmp_path):
    """A `.labels.parquet.999999.abcd.tmp` left by a dead process is removed by the next successful label."""
    if psutil.pid_exists(999999):
        pytest.skip("pid 999999 is alive here")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale = out_dir / ".labels.parquet.999999.abcd.tmp"
    stale.write_bytes(b"half a parquet file")
    result = label(good_folder(tmp_path / "in"), "-o", out_dir / "labels.parquet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["labels.parquet"]


XML_LATIN1 = """<eCitation><uId id="CXR9"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">Toux</AbstractText>
<AbstractText Label="FINDINGS">Épanchement absent. No pneumothorax.</AbstractText>
<AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
</Abstract></Article></MedlineCitation>
<parentImage id="CXR9_1_IM-0001-1001"/></eCitation>""".encode("latin-1")


def test_latin1_xml_without_a_declaration_suggests_the_encoding_and_reads_with_it(tmp_path):
    """A Latin-1 OpenI XML with no encoding declaration is skipped with `re-run with --encoding latin-1`;
    with `--encoding latin-1` it is labeled."""
    folder = good_folder(tmp_path / "in", **{"9.xml": XML_LATIN1})
    result = label(folder, "-o", tmp_path / "a.parquet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped {folder / '9.xml'}: not valid utf-8" in result.output
    assert "re-run with --encoding latin-1" in result.output
    again = label(folder, "-o", tmp_path / "b.parquet", "--encoding", "latin-1")
    assert again.exit_code == 0, again.output
    labels = pd.read_parquet(tmp_path / "b.parquet")
    assert sorted(labels["report_id"]) == ["CXR9", "good"]
    assert labels.set_index("report_id").loc["CXR9", "Pneumothorax"] == 0


# --- 16. A genuine bug versus a user error ------------------------------------------------------

@click.group(cls=OneLineErrors)
def toy() -> None:
    """A group built like both CLIs."""


@toy.command()
def crash() -> None:
    raise RuntimeError("an invariant broke")


@toy.command()
def mistake() -> None:
    raise ToolkitError("data.csv:3: column x must be a number; fix the row")


def test_a_bug_gives_the_traceback_a_report_request_and_exit_70():
    """An unexpected exception: exit 70, the traceback, then `please report it`."""
    result = CliRunner().invoke(toy, ["crash"])
    assert result.exit_code == EXIT_BUG == 70
    assert "Traceback (most recent call last)" in result.output
    assert "RuntimeError: an invariant broke" in result.output
    assert "This is a bug in chestxray-toolkit" in result.output and "please report it" in result.output
    assert result.output.index("Traceback") < result.output.index("please report it")


def test_a_toolkit_error_is_exactly_one_line_and_exit_1():
    """A `ToolkitError`: exit 1 and exactly one `Error: ` line, no traceback."""
    result = CliRunner().invoke(toy, ["mistake"])
    assert result.output.splitlines() == ["Error: data.csv:3: column x must be a number; fix the row"]
    assert result.exit_code == 1
