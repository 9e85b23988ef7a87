"""A lexicon from a stranger is input too (issue 25): bounded YAML and regular expressions, special files
in the lexicon folder, and report text no parser should see raw.

Each test builds the hostile thing for real (a FIFO, a link to /dev/zero, a "billion laughs" alias
chain, a backtracking pattern, a lone surrogate in JSONL) and checks what a user sees: one `Error: `
line naming the file (and line) with exit 1, or the report skipped and named, within a time limit.
What a refusal costs in seconds and MB is measured by `benchmarks/hostile_lexicon.py`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cxrcore.cli import EXIT_INTERRUPTED, EXIT_SKIPPED
from reportminer.cli import main as reportminer_main
from reportminer.errors import LexiconError
from reportminer.lexicon import load_lexicon
from reportminer.lexicon_yaml import LIMITS

from conftest import ROOT

FINDINGS = Path("schemas") / "chestxray14" / "findings.yaml"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
       "PYTHONUNBUFFERED": "1"}


def rm(*args):
    return CliRunner().invoke(reportminer_main, [str(a) for a in args])


@contextmanager
def within(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks or runs longer than `seconds`."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def lexicon_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "lexicon"
    shutil.copytree(ROOT / "lexicons", folder)
    return folder


def refusal(folder: Path) -> str:
    """`check-lexicon FOLDER` refuses it: exit 1, exactly one `Error: ` line (returned), no traceback."""
    with within(30):
        result = rm("check-lexicon", folder)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def add_to_findings(folder: Path, key: str, line: str) -> None:
    """Insert a list entry first under the first `key:` of findings.yaml (Cardiomegaly's)."""
    path = folder / FINDINGS
    text = path.read_text()
    assert f"    {key}:\n" in text
    path.write_text(text.replace(f"    {key}:\n", f"    {key}:\n      - {line}\n", 1))


# --- YAML that would expand, nest or decode into trouble ----------------------------------------

def test_a_billion_laughs_alias_chain_is_refused_before_it_is_expanded(tmp_path):
    """Nine levels of nine aliases (9^9 strings once expanded) as a finding's synonyms: `check-lexicon`, a
    real process, refuses it within the time limit with one short line, naming file and line, and echoes
    none of it (it used to run 116 s, take 8.7 GB and print a 2 GB line)."""
    folder = lexicon_copy(tmp_path)
    lines = ["lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = folder / FINDINGS
    path.write_text("\n".join(lines) + "\n" + path.read_text().replace("    synonyms: [", "    synonyms: *a9\n    x: [", 1))
    start = time.monotonic()
    done = subprocess.run(["reportminer", "check-lexicon", str(folder)], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [f"Error: {path}:5: more than 50,000 entries (an alias counts as all it "
                                        f"stands for)"]
    assert "lol" not in done.stderr and not done.stdout
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("text, where, problem", [
    ("rules: &r [*r]\n", 1, "the alias *'r' refers to itself"),
    ("rules: [a, *x]\n", 1, "not valid YAML (found undefined alias"),
    ("rules: " + "[" * 40 + "]" * 40 + "\n", 1, "nested more than 32 levels deep"),
    ("rules:\n  - id: neg.x\n    1: 2\n", 3, "the key 1 is int, not text; put it in quotes"),
    ("rules:\n  - id: neg.x\n    yes: 2\n", 3, "the key True is bool, not text; put it in quotes"),
    ("rules:\n  - id: \"neg.\\e[2Jx\"\n", 2, "a text holds the character U+001B"),
    ("rules:\n  - id: !!int abc\n", 2, "cannot read this value"),
    ("rules:\n  - id: !!python/object:os.system echo\n", 2, "not valid YAML (could not determine a constructor"),
    ("rules:\n  - id: neg.x\n    note: " + "x" * 3000 + "\n", 3, "a text of 3,000 characters, beyond the 2,000"),
    ("rules:\n  - id: neg.\0x\n", 2, "not valid YAML"),
])
def test_yaml_that_would_expand_nest_or_decode_badly_is_one_line_with_file_and_line(tmp_path, text, where, problem):
    folder = lexicon_copy(tmp_path)
    (folder / "rules" / "zz.yaml").write_text(text)
    line = refusal(folder)
    assert line.startswith(f"Error: {folder / 'rules' / 'zz.yaml'}:{where}: "), line
    assert problem in line, line


def test_a_date_is_text_and_an_impossible_one_no_traceback(tmp_path):
    folder = lexicon_copy(tmp_path)
    (folder / "rules" / "zz.yaml").write_text("rules:\n  - id: 2001-13-45\n")
    assert refusal(folder) == (f"Error: {folder / 'rules' / 'zz.yaml'}:2: rules[1] -> id: '2001-13-45' must look like "
                               f"neg.no_evidence_of (lower case, dot-separated)")


def test_a_key_with_a_line_break_and_900_characters_is_named_short_on_one_line(tmp_path):
    """A stranger's unknown key (or a value's) is shown quoted and cut short, never printed as written."""
    folder = lexicon_copy(tmp_path)
    path = folder / "rules" / "zz.yaml"
    path.write_text('rules:\n  - id: neg.x\n    kind: negative\n    priority: 1\n    "evil\\nkey' + "x" * 900 + '": 1\n'
                    '    pattern: "{lower:no} <-det- X"\n    examples: {match: ["No [effusion]."]}\n')
    line = refusal(folder)
    assert line.startswith(f"Error: {path}:2: neg.x -> 'evil\\nkeyxxx"), line
    assert line.endswith("xxx': unknown field; allowed: examples, id, kind, note, pattern, priority, schema_kinds")
    assert len(line) < len(str(path)) + 250


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    folder = lexicon_copy(tmp_path)
    big = folder / "rules" / "big.yaml"
    big.write_text("# " + "x" * LIMITS.file_bytes + "\n")
    assert refusal(folder) == (f"Error: {big}: {big.stat().st_size:,} bytes or more, beyond the "
                               f"{LIMITS.file_bytes:,} a lexicon file may have")


def test_the_whole_folder_has_a_budget(tmp_path):
    """Files each under the file limit but together over the folder's are refused at the first that passes it."""
    folder = lexicon_copy(tmp_path)
    for n in range(6):
        (folder / "rules" / f"pad{n}.yaml").write_text("rules: []\n# " + "x" * (LIMITS.file_bytes - 100) + "\n")
    line = refusal(folder)
    assert f"left of the {LIMITS.folder_bytes:,} bytes a whole lexicon may have" in line


def test_too_many_rule_files_are_refused(tmp_path):
    folder = lexicon_copy(tmp_path)
    for n in range(LIMITS.rule_files + 1):
        (folder / "rules" / f"r{n:03}.yaml").write_text("rules: []\n")
    assert f"more than the {LIMITS.rule_files} a lexicon may have" in refusal(folder)


def test_a_synonym_list_over_the_limit_is_refused(tmp_path):
    """Every synonym is tried against every sentence: a list beyond the limit is refused, naming the finding."""
    folder = lexicon_copy(tmp_path)
    path = folder / FINDINGS
    many = ", ".join(f"word{n}" for n in range(LIMITS.list_entries))
    path.write_text(path.read_text().replace("    synonyms: [", f"    synonyms: [{many}, ", 1))
    line = refusal(folder)
    assert line == (f"Error: {path}:18: Atelectasis -> synonyms: List should have at most {LIMITS.list_entries} "
                    f"items after validation, not {LIMITS.list_entries + 6}")  # and Atelectasis's own 6


# --- Files that are not regular files ---------------------------------------------------------

@pytest.mark.parametrize("kind, word", [("fifo", "a FIFO"), ("dev_zero", "a device"), ("folder", "a folder"),
                                        ("link_loop", "cannot read (Too many levels of symbolic links)")])
def test_a_rule_file_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind, word):
    """A FIFO (which blocked forever), a link to /dev/zero (read until the kernel killed it at 22 GB), a
    folder named like a rule file and a link to itself (both tracebacks): one line each, at once."""
    folder = lexicon_copy(tmp_path)
    path = folder / "rules" / "special.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    line = refusal(folder)
    assert line.startswith(f"Error: {path}: {word}"), line


def test_a_required_file_that_is_a_fifo_is_refused_and_so_is_explain_with_it(tmp_path):
    folder = lexicon_copy(tmp_path)
    (folder / "labeler.yaml").unlink()
    os.mkfifo(folder / "labeler.yaml")
    assert refusal(folder) == f"Error: {folder / 'labeler.yaml'}: a FIFO, not a YAML file; a lexicon folder holds only regular files"
    with within(30):
        result = rm("explain", "No effusion.", "--lexicon", folder)
    assert result.exit_code == 1 and "a FIFO, not a YAML file" in result.output


def test_an_unreadable_rule_file_is_one_line(tmp_path):
    """A rule file its reader may not open: `cannot read (Permission denied)`. Root reads anything, so as
    root the check runs in a child that has become `nobody`."""
    folder = Path(tempfile.mkdtemp(dir="/tmp")) / "lexicon"  # /tmp: a place `nobody` can reach
    try:
        shutil.copytree(ROOT / "lexicons", folder)
        for path in [folder.parent, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        secret = folder / "rules" / "secret.yaml"
        secret.write_text("rules: []\n")
        secret.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(LexiconError) as caught:
                load_lexicon(folder)
            message = str(caught.value)
        else:
            message = _load_as_nobody(folder)
        assert message == f"{secret}: cannot read (Permission denied); a lexicon's files must be readable"
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def _load_as_nobody(folder: Path) -> str:
    """load_lexicon(folder)'s error message, from a forked child running as uid/gid 65534."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: everything it needs is already imported
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_lexicon(folder)
                message = "loaded"
            except LexiconError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        message = fh.read().decode()
    os.waitpid(pid, 0)
    return message


# --- Regular expressions that cannot run away ---------------------------------------------------

@pytest.mark.parametrize("pattern, problem", [
    ("'(?<!no )heart'", "RE2, the linear-time engine lexicon patterns run on, cannot run it (invalid perl operator: (?<!)"),
    ("'(heart)\\1'", "cannot run it (invalid escape sequence: \\1)"),
    ("'a++'", "cannot run it (bad repetition operator: ++)"),
    ("'x*'", "it matches the empty string"),
    ("'(unclosed'", "cannot run it (missing ): (unclosed)"),
])
def test_a_pattern_re2_cannot_run_is_refused_at_load_and_named(tmp_path, pattern, problem):
    folder = lexicon_copy(tmp_path)
    add_to_findings(folder, "patterns", pattern)
    line = refusal(folder)
    assert f"{folder / FINDINGS}:" in line and ": Cardiomegaly -> patterns: " in line, line
    assert problem in line, line


def test_a_backtracking_pattern_cannot_hang_label(tmp_path):
    """`(a+)+$` in a finding's patterns and a report of sixty "a"s: Python's `re` would backtrack for ages
    (uninterruptibly); on RE2 `label --lexicon` finishes, and the report is labeled."""
    folder = lexicon_copy(tmp_path)
    add_to_findings(folder, "patterns", "'(a+)+$'")
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"report_id": ["r1", "r2"], "text": ["a" * 60 + "!", "Heart size normal. " + "a" * 60]}).to_csv(
        reports, index=False)
    out = tmp_path / "labels.parquet"
    done = subprocess.run(["reportminer", "label", str(reports), "-o", str(out), "--lexicon", str(folder),
                           "--workers", "1"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == f"labeled 2 reports (2 rows) → {out}"
    labels = pd.read_parquet(out).set_index("report_id")
    assert labels.loc["r2", "Cardiomegaly"] == 1  # the sixty a's at the end are the pattern's mention


@pytest.mark.parametrize("pattern, problem", [
    ("X <-*+- * -*+-> {lower:no}", "3 tokens and 2 `+` edges"),
    ("X -*-> * -*-> * -*-> * -*-> * -*-> * -*-> {lower:no}", "7 tokens and 0 `+` edges"),
])
def test_a_graph_pattern_whose_walks_would_explode_is_refused(tmp_path, pattern, problem):
    """Each `+` edge and token multiplies the walks tried on every mention (two `+` edges: 0.07 s a mention on
    a long sentence, times every rule): beyond 6 tokens or one `+` edge a rule is refused, named."""
    folder = lexicon_copy(tmp_path)
    path = folder / "rules" / "negation.yaml"
    lines = path.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if line.startswith('    pattern: "'))
    lines[n] = f'    pattern: ["{pattern}", ' + lines[n][len("    pattern: "):].rstrip("\n") + "]\n"
    path.write_text("".join(lines))
    line = refusal(folder)
    assert f"{path}:" in line and "-> pattern[1]: pattern " in line and problem in line, line
    assert line.endswith("split it into two rules")


# --- Report text no parser should see raw -------------------------------------------------------

def test_a_lone_surrogate_in_jsonl_text_is_replaced_and_in_an_id_skipped_and_named(tmp_path):
    """`\\udcff` in a report's text crashed the run (exit 70): now the character is replaced and the report
    labeled; in a report_id (which UTF-8 outputs cannot hold) the report is skipped and named."""
    reports = tmp_path / "reports.jsonl"
    reports.write_text('{"report_id": "ok", "text": "Small \\udcff left \\u001b[2J pneumothorax."}\n'
                       '{"report_id": "bad\\udcff", "text": "No effusion."}\n'
                       '{"report_id": "blank", "text": "\\u0000\\u0007"}\n')
    out, evidence = tmp_path / "labels.parquet", tmp_path / "mentions.parquet"
    result = rm("label", reports, "-o", out, "--evidence", evidence, "--workers", "1", "--quiet")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert f"skipped {reports}:2: report bad\\udcff: an id or image path holds half a surrogate pair" in result.output
    assert f"skipped {reports}:3: report blank: nothing but control characters" in result.output
    assert pd.read_parquet(out).set_index("report_id").loc["ok", "Pneumothorax"] == 1
    assert pd.read_parquet(evidence)["sentence"].tolist() == ["Small \ufffd left  [2J pneumothorax."]


def test_explain_escapes_control_characters_and_survives_a_lone_surrogate():
    """Terminal escapes in the sentence are printed escaped (they could retitle or repaint the terminal)."""
    result = rm("explain", "Small left \x1b]0;pwned\x07 pneumothorax \udcff.")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "sentence:  Small left \\x1b]0;pwned\\x07 pneumothorax \\udcff." in result.output
    assert "Pneumothorax: 'pneumothorax' at 22-34 -> positive by pos.default" in result.output


def test_explain_applies_labels_per_report_limits(tmp_path):
    """A text over limits.report_chars is one line; a 3,000-character sentence is cut as `label` cuts it
    (at most limits.sentence_chars each) instead of being parsed whole."""
    limits = load_lexicon(ROOT / "lexicons").limits
    over = rm("explain", "a" * (limits.report_chars + 1))
    assert over.exit_code == 1
    assert over.output == (f"Error: the text has {limits.report_chars + 1:,} characters, more than the "
                           f"{limits.report_chars:,} `label` reads in one report (labeler.yaml limits.report_chars); "
                           f"explain a part of it\n")
    long = " ".join(["small pleural effusion"] * 130)
    with within(120):
        result = rm("explain", long)
    assert result.exit_code == 0, result.output
    assert result.output.count("sentence:  ") == -(-len(long) // limits.sentence_chars)
    assert all(len(line) <= limits.sentence_chars + 11 for line in result.output.splitlines()
               if line.startswith("sentence:  "))


def test_a_failed_label_in_a_log_is_the_error_line_alone(tmp_path):
    """stderr not a terminal: no progress bar, so no leftover bar line before the one-line error; and a
    run of one report says `1 report`."""
    reports = tmp_path / "r.csv"
    reports.write_text("report_id,text\n1,Small effusion.\n")
    done = subprocess.run(["reportminer", "label", str(reports), "-o", "/dev/null", "--workers", "1"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["Error: /dev/null: is a device; refusing to replace it with an output file "
                                        "(choose another path)"]
    result = rm("label", reports, "-o", tmp_path / "l.parquet", "--workers", "1")
    assert result.exit_code == 0 and result.output.splitlines() == [f"labeled 1 report (1 row) → {tmp_path / 'l.parquet'}"]


def test_sigterm_stops_check_lexicon_while_it_parses_examples(tmp_path):
    """SIGTERM while `check-lexicon` runs the second schema's examples through the parser: exit 130 within
    seconds, with the `Interrupted` line and no traceback."""
    proc = subprocess.Popen(["reportminer", "check-lexicon", str(ROOT / "lexicons")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = proc.stdout.readline()  # the first schema's summary: the second one's examples are next
        assert "(chestxray14)" in first, first
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == EXIT_INTERRUPTED, stderr
        assert stderr.startswith("Interrupted") and "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_limits_leave_the_shipped_lexicon_room():
    """The shipped lexicon loads in both schemas, each file under a twentieth of the file limit."""
    for schema in ("chestxray14", "chexpert"):
        assert load_lexicon(ROOT / "lexicons", schema).findings
    assert max(p.stat().st_size for p in (ROOT / "lexicons").rglob("*.yaml")) * 20 < LIMITS.file_bytes
