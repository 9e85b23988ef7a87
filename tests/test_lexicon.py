"""The shipped lexicon validates, every example behaves through the real labeler, broken lexicons give
clear errors, and the settings that used to be code are data that changes what the labeler does."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportminer.cli import main
from reportminer.errors import LexiconError
from reportminer.lexicon import load_lexicon
from reportminer.lexicon_check import cases, check_cases, check_lexicon, finding_failures
from reportminer.parse import load_model

from conftest import ROOT

LEXICON = load_lexicon(ROOT / "lexicons")
SCHEMAS = ("chestxray14", "chexpert")
CASES = cases(LEXICON)  # the rules are shared: the same examples, in this order, in every schema


def test_findings_follow_the_spec_order():
    assert LEXICON.finding_names == ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                                     "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                                     "Pleural_Thickening", "Hernia"]
    assert LEXICON.label_columns[-1] == "No_Finding"


def test_the_papers_rules_are_all_there():
    ids = {r.id for r in LEXICON.rules}
    for rule in ["neg.no", "neg.without", "neg.clear_of", "neg.without_evidence", "neg.no_evidence_of",
                 "unc.cannot_exclude", "unc.suggest", "unc.modal", "unc.difficult_to_exclude", "hedge.versus"]:
        assert rule in ids


@pytest.fixture(scope="module")
def checked(nlp):
    out = {}
    for schema in SCHEMAS:  # a hedge's kind is the schema's convention ("probable" is positive in ChestX-ray14)
        lexicon = load_lexicon(ROOT / "lexicons", schema)
        examples = cases(lexicon)
        assert [c.sentence for c in examples] == [c.sentence for c in CASES]
        out[schema] = check_cases(lexicon, nlp, examples)
    return out


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c.where.split(': ')[-1]}:{c.sentence}" for c in CASES])
def test_example_is_decided_as_written(index, checked):
    """A rule's match example is decided by that rule (not only matched); a no_match example is not matched;
    a settings example gets its kind; no two rules of equal priority both match it. It is checked in each
    schema whose findings it names (a support device only in CheXpert's), and must name one in some schema."""
    decided = {schema: checked[schema][index] for schema in SCHEMAS if checked[schema][index] is not None}
    assert decided and all(failures == [] for failures in decided.values()), decided


def test_every_finding_example_is_found_as_written():
    assert finding_failures(LEXICON) == []
    assert all(f.should_find and f.should_not_find for f in LEXICON.findings)


def copy_lexicon(tmp_path: Path) -> Path:
    copy = tmp_path / "lex"
    shutil.copytree(ROOT / "lexicons", copy, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return copy


def test_a_rule_shadowed_by_a_higher_one_is_reported(tmp_path, nlp):
    """The rule's pattern still matches its example, but a higher rule decides it: that is a failure."""
    folder = broken(tmp_path, "rules/uncertainty.yaml", "    priority: 80\n", "    priority: 30\n")  # unc.cannot_exclude
    _, failures, _ = check_lexicon(load_lexicon(folder), nlp)
    messages = [str(f) for f in failures]
    assert any("unc.cannot_exclude: '[Pneumonia] cannot be excluded.': decided negative by neg.negated_predicate, "
               "not uncertain by unc.cannot_exclude (rules that match: neg.negated_predicate (50), unc.modal (40), "
               "unc.cannot_exclude (30))" in m for m in messages), messages


def test_equal_priorities_that_both_match_are_refused(tmp_path, nlp):
    folder = copy_lexicon(tmp_path)
    rules = folder / "rules" / "negation.yaml"
    rules.write_text(rules.read_text() + '''
  - id: neg.no_twin
    kind: negative
    priority: 50
    pattern: "{lower:no} <-det- X"
    examples:
      match: ["No focal [consolidation]."]
''')
    _, failures, _ = check_lexicon(load_lexicon(folder), nlp)
    assert any("neg.no and neg.no_twin both match with priority 50; only file order would decide" in str(f)
               for f in failures), [str(f) for f in failures]


def test_parse_settings_are_data_that_the_labeler_uses(tmp_path, nlp):
    """Without "but" among the list breakers, "no X, but Y" negates Y: the example written for it fails."""
    folder = broken(tmp_path, "labeler.yaml", "breakers: [but, yet, although]", "breakers: [yet, although]")
    _, failures, _ = check_lexicon(load_lexicon(folder), nlp, strict=False)
    assert [f.message for f in failures] == [
        "'No focal consolidation but mild [atelectasis].': decided negative by neg.no, not positive by pos.default "
        "(rules that match: neg.no (50))",
        "'No pneumothorax, but small bilateral [effusions].': decided negative by neg.no, not positive by pos.default "
        "(rules that match: neg.no (50))"]


def test_the_default_assertion_is_data(tmp_path, nlp):
    from reportminer.labeler import Labeler
    from reportminer.readers import Report

    folder = broken(tmp_path, "labeler.yaml", "default: {kind: positive, rule: pos.default}",
                    "default: {kind: uncertain, rule: unc.unmatched}")
    [done] = Labeler(load_lexicon(folder), nlp).label([Report("r", "Small left pneumothorax.", "test")])
    assert [(m.assertion, m.rule) for m in done.mentions] == [("uncertain", "unc.unmatched")]
    assert done.labels["Pneumothorax"] == -1


def test_a_finding_example_that_is_not_found_is_reported(tmp_path):
    folder = broken(tmp_path, "schemas/chestxray14/findings.yaml", '"Small left [pleural effusion]."', '"Small left [pleural fluid collection]."')
    failures = [str(f) for f in finding_failures(load_lexicon(folder))]
    assert len(failures) == 1 and "Effusion: 'Small left [pleural fluid collection].': the [bracketed] words are " \
        "not found as Effusion (found: 'pleural fluid')" in failures[0]


def test_check_lexicon_command(tmp_path):
    good = CliRunner().invoke(main, ["check-lexicon", str(ROOT / "lexicons")])
    assert good.exit_code == 0, good.output
    count, _, skipped = check_lexicon(LEXICON, load_model(), strict=False)  # as the command checks two schemas
    assert skipped, "a shared example that names a CheXpert-only finding is left out of the ChestX-ray14 count"
    assert f"lexicons (chestxray14): 14 findings, {len(LEXICON.rules)} rules, {count} examples: every one behaves " \
           f"as written" in good.output
    assert "lexicons (chexpert): 13 findings" in good.output
    folder = broken(tmp_path, "labeler.yaml", "breakers: [but, yet, although]", "breakers: [yet, although]")
    bad = CliRunner().invoke(main, ["check-lexicon", str(folder)])
    assert bad.exit_code == 1
    assert "labeler.yaml:" in bad.output and "Error: " in bad.output and "2 do not behave as written" in bad.output


def test_label_refuses_a_users_lexicon_whose_examples_fail(tmp_path):
    from conftest import SAMPLES

    folder = broken(tmp_path, "labeler.yaml", "breakers: [but, yet, although]", "breakers: [yet, although]")
    result = CliRunner().invoke(main, ["label", str(SAMPLES / "reports"), "-o", str(tmp_path / "l.parquet"),
                                       "--lexicon", str(folder), "--workers", "1", "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert f"run `reportminer check-lexicon {folder} --schema chestxray14` to see all 2 problems" in result.output
    assert not (tmp_path / "l.parquet").exists()


def test_explain_shows_mentions_graph_rules_and_decision():
    result = CliRunner().invoke(main, ["explain", "No change in the left pleural effusion, but there is no pneumothorax.",
                                       "--finding", "Effusion"])
    assert result.exit_code == 0, result.output
    assert "parsed as: No change in the west opacity, but there is no opacity." in result.output
    assert "Effusion: 'pleural effusion' at 22-38 -> positive by pos.no_change_in" in result.output
    assert "change(1) -prep_in-> pleural effusion(5)*" in result.output  # the user's words, not the mask
    assert "pleural effusion(5)* -compound-> left(4)" in result.output  # "left", not the "west" parsed
    assert "pos.no_change_in (positive, priority 90) on: No change pleural effusion  <- decides" in result.output
    assert "Pneumothorax" not in result.output
    unknown = CliRunner().invoke(main, ["explain", "No effusion.", "--finding", "Effusions"])
    assert unknown.exit_code == 2 and "'Effusions' is not a finding of this lexicon" in unknown.output


def test_explain_cuts_a_text_into_the_sentences_label_sees():
    result = CliRunner().invoke(main, ["explain", "No pneumothorax. Small left pleural effusion."])
    assert result.exit_code == 0, result.output
    assert result.output.count("sentence:  ") == 2
    assert "Pneumothorax: 'pneumothorax' at 3-15 -> negative by neg.no" in result.output
    assert "Effusion: 'pleural effusion' at 11-27 -> positive by pos.default" in result.output


def console_blocks(path: Path) -> list[tuple[str, list[str]]]:
    """Each `$ command` of a doc's ```console blocks, with the lines it prints there."""
    out: list[tuple[str, list[str]]] = []
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line == "```console"
        elif inside and line.startswith("$ "):
            out.append((line[2:], []))
        elif inside:
            out[-1][1].append(line)
    return out


def test_the_console_blocks_of_rules_md_are_the_real_output(tmp_path):
    """docs/rules.md shows commands with their output: run each in a copy of the repo's lexicons and compare
    what it prints, line for line (so the page cannot go stale)."""
    shutil.copytree(ROOT / "lexicons", tmp_path / "lexicons")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    commands = console_blocks(ROOT / "docs" / "rules.md")
    assert any(c.startswith("reportminer explain") for c, _ in commands)
    for command, shown in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600)
        assert done.stdout.splitlines() == shown, f"docs/rules.md: `{command}` now prints:\n{done.stdout}"


def test_digest_changes_with_the_files(tmp_path):
    copy = tmp_path / "lex"
    shutil.copytree(ROOT / "lexicons", copy)
    before = load_lexicon(copy).digest
    path = copy / "schemas" / "chestxray14" / "findings.yaml"
    path.write_text(path.read_text() + "\n# a comment\n")
    assert load_lexicon(copy).digest != before


def broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = copy_lexicon(tmp_path)
    path = copy / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("file, old, new, message", [
    ("rules/negation.yaml", "kind: negative", "kind: denied", r"negation.yaml:\d+: neg.no -> kind: Input should be 'positive', 'negative' or 'uncertain', got 'denied'"),
    ("rules/negation.yaml", "priority: 50", "priority: high", r"negation.yaml:\d+: neg.no -> priority: Input should be a valid integer, got 'high'"),
    ("rules/negation.yaml", '"{lower:no|neither} <-*- X"', '"{lower:no} <-*- *"', r"negation.yaml:\d+: neg.no -> pattern\[1\]: pattern '\{lower:no\} <-\*- \*': needs exactly one X"),
    ("rules/negation.yaml", "id: neg.without", "id: neg.no", r"neg.no -> id: already defined at .*negation.yaml:\d+"),
    ("rules/negation.yaml", 'match: ["No [pneumothorax].",', 'match: ["No pneumothorax.",', r"negation.yaml:\d+: neg.no.examples -> match\[1\]: 'No pneumothorax.' must mark exactly one mention in \[brackets\]"),
    ("rules/uncertainty.yaml", "    priority: 40\n", "    priority: 40\n    colour: red\n", r"-> colour: unknown field"),
    ("schemas/chestxray14/findings.yaml", "name: Cardiomegaly", "name: cardio megaly", r"findings.yaml:\d+: findings\[2\] -> name: 'cardio megaly' must be capitalised words"),
    ("schemas/chestxray14/findings.yaml", "name: Cardiomegaly", "name: Atelectasis", r"Atelectasis -> name: finding defined twice"),
    ("labeler.yaml", "precedence: [positive, uncertain, negative]", "precedence: [positive, negative]", r"labeler.yaml:\d+: precedence: List should have at least 3 items after validation, not 2"),
    ("labeler.yaml", "{token: XXXX, replacement: sign}", "{token: XXXX, replacement: signs}", r"labeler.yaml:\d+: placeholders\[2\] -> replacement: 'signs' is longer than 'XXXX'; offsets must not move"),
    ("labeler.yaml", "precedence: [positive, uncertain, negative]", "precedence: [positive, uncertain, positive]",
     r"labeler.yaml:\d+: precedence: listed twice: 'positive'"),
    ("schemas/chestxray14/findings.yaml", "findings:\n", "findings: [\n", r"findings.yaml:\d+: not valid YAML"),
    ("labeler.yaml", "default: {kind: positive, rule: pos.default}", "default: {kind: sure, rule: pos.default}",
     r"labeler.yaml:\d+: assertions.default -> kind: Input should be 'positive', 'negative' or 'uncertain', got 'sure'"),
    ("labeler.yaml", "    links: [conj, appos]", "    linked: [conj, appos]", r"parse.lists -> linked: unknown field"),
    ("labeler.yaml", "sign: {kind: uncertain, rule: unc.indirect_sign}", "sign: {kind: uncertain, rule: neg.no}",
     r"negation.yaml:\d+: neg.no -> id: already defined at .*labeler.yaml \(assertions.sign\)"),
    ("schemas/chestxray14/findings.yaml", '      match: ["Small left [pleural effusion].", "Layering [pleural fluid] on the right."]\n', "",
     r"findings.yaml:\d+: Effusion.examples -> match: Field required"),
])
def test_broken_lexicon_names_file_line_rule_and_field(tmp_path, file, old, new, message):
    with pytest.raises(LexiconError, match=message):
        load_lexicon(broken(tmp_path, file, old, new))


def test_adding_a_finding_needs_no_code(tmp_path, nlp):
    from reportminer.labeler import Labeler
    from reportminer.readers import Report

    folder = broken(tmp_path, "schemas/chestxray14/findings.yaml", "  - name: Hernia",
                    "  - name: Fracture\n    synonyms: [fracture, rib fracture]\n"
                    "    examples: {match: [\"Acute left rib [fracture].\"], no_match: [\"Intact ribs.\"]}\n\n"
                    "  - name: Hernia")
    labeler = Labeler(load_lexicon(folder), nlp)
    [done] = labeler.label([Report("r1", "Acute left rib fracture. No pneumothorax.", "test")])
    assert done.labels["Fracture"] == 1 and done.labels["Pneumothorax"] == 0
