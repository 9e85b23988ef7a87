"""Archive-scale labeling: workers, chunks, a Dask cluster and resume give the same output as one process."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from reportminer.engine import parts_folder
from reportminer.readers import ReadSettings, Report, Skipped, read_inputs

from conftest import SAMPLES


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """N reports resampled from the bundled sample reports' sentences, as JSONL (two images each)."""
    sentences = [s.strip() + "." for p in sorted((SAMPLES / "reports").glob("*.txt"))
                 for line in p.read_text().splitlines() for s in line.split(":")[-1].split(".") if s.strip()]
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            text = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 6)))
            for image in ("a", "b"):
                fh.write(json.dumps({"report_id": f"R{i}", "text": text, "image_id": f"R{i}{image}"}) + "\n")
    return path


def tables(out: Path, evidence: Path):
    return pq.read_table(out), pq.read_table(evidence)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", 400)


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    result = run("label", corpus, "-o", out / "labels.parquet", "--evidence", out / "mentions.parquet",
                 "--workers", "1", "--chunk-size", "100000", "--quiet")
    assert result.exit_code == 0, result.output
    return tables(out / "labels.parquet", out / "mentions.parquet")


@pytest.mark.slow
def test_workers_and_chunks_give_identical_rows(corpus, single, tmp_path):
    result = run("label", corpus, "-o", tmp_path / "l.parquet", "--evidence", tmp_path / "m.parquet",
                 "--workers", "2", "--chunk-size", "37", "--quiet")
    assert result.exit_code == 0, result.output
    labels, mentions = tables(tmp_path / "l.parquet", tmp_path / "m.parquet")
    assert labels.num_rows == 800
    assert labels.equals(single[0]) and mentions.equals(single[1])
    assert pq.ParquetFile(tmp_path / "l.parquet").num_row_groups == 11  # ceil(400 / 37) parts, in order
    assert not parts_folder(tmp_path / "l.parquet").exists()


@pytest.mark.slow
def test_dask_cluster_gives_the_same_rows(corpus, single, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run("label", corpus, "-o", tmp_path / "l.parquet", "--evidence", tmp_path / "m.parquet",
                     "--engine", "dask", "--scheduler", cluster.scheduler_address, "--chunk-size", "50", "--quiet")
    assert result.exit_code == 0, result.output
    labels, mentions = tables(tmp_path / "l.parquet", tmp_path / "m.parquet")
    assert labels.equals(single[0]) and mentions.equals(single[1])


def test_dask_without_a_scheduler_is_a_clear_error(corpus, tmp_path):
    result = run("label", corpus, "-o", tmp_path / "l.parquet", "--engine", "dask")
    assert result.exit_code == 1
    assert "--engine dask needs --scheduler ADDRESS" in result.output


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(tmp_path):
    corpus = write_corpus(tmp_path / "big.jsonl", 6000, seed=1)
    whole = tmp_path / "whole"
    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "reportminer.cli", "label", str(corpus), "--workers", "1",
               "--chunk-size", "200", "--quiet"]
    subprocess.run(command + ["-o", str(whole / "labels.parquet"), "--evidence", str(whole / "m.parquet")], check=True,
                   capture_output=True)

    args = ["-o", str(cut / "labels.parquet"), "--evidence", str(cut / "m.parquet")]
    proc = subprocess.Popen(command + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = parts_folder(cut / "labels.parquet")
    deadline = time.time() + 120
    while len(list(parts.glob("*.done.json"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("*.done.json")))
    assert 3 <= done_before < 30, "the run should have been killed part way"
    assert not (cut / "labels.parquet").exists()

    again = subprocess.run(command + args, capture_output=True, text=True)
    assert again.returncode == 1 and "holds an unfinished run; pass --resume to continue it" in again.stderr

    resumed = subprocess.run(command + args + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "labeled 6000 reports (12000 rows)" in resumed.stderr
    for name in ("labels.parquet", "m.parquet"):
        assert pq.read_table(cut / name).equals(pq.read_table(whole / name))
        assert pq.read_schema(cut / name).metadata == pq.read_schema(whole / name).metadata
    assert not parts.exists()


def test_resume_refuses_parts_from_other_inputs(tmp_path, corpus):
    out = tmp_path / "labels.parquet"
    parts = parts_folder(out)
    parts.mkdir()
    (parts / "state.json").write_text(json.dumps({"fingerprint": "something else"}))
    result = run("label", corpus, "-o", out, "--resume", "--workers", "1", "--quiet")
    assert result.exit_code == 1
    assert "was made from other inputs or settings; delete it to start afresh" in result.output


def test_table_rows_of_one_report_must_be_adjacent(tmp_path):
    rows = [{"report_id": "r1", "text": "No effusion.", "image_id": "a"},
            {"report_id": "r2", "text": "Small pneumothorax.", "image_id": "b"},
            {"report_id": "r1", "text": "No effusion.", "image_id": "c"}]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    records = list(read_inputs([tmp_path / "t.csv"], ReadSettings()))
    assert [r.report_id for r in records if isinstance(r, Report)] == ["r1", "r2"]
    [skip] = [r for r in records if isinstance(r, Skipped)]
    assert skip.source.endswith("t.csv:4")
    assert skip.reason == f"report r1 was already read at {tmp_path / 't.csv'}:2; rows of one report must be adjacent"
