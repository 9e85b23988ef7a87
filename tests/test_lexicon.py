"""The shipped lexicon validates, every rule example behaves, and broken lexicons give clear errors."""

import shutil
from pathlib import Path

import pytest

from reportminer.labeler import parse_mentions
from reportminer.lexicon import load_lexicon
from reportminer.mentions import Match, MentionFinder
from reportminer.sections import normalise
from reportminer.errors import LexiconError

from conftest import ROOT

LEXICON = load_lexicon(ROOT / "lexicons")
EXAMPLES = [(r.id, s, True) for r in LEXICON.rules for s in r.should_match] + \
           [(r.id, s, False) for r in LEXICON.rules for s in r.should_not_match]


def test_findings_follow_the_spec_order():
    assert LEXICON.finding_names == ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                                     "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                                     "Pleural_Thickening", "Hernia"]
    assert LEXICON.label_columns[-1] == "No_Finding"


def test_the_papers_rules_are_all_there():
    ids = {r.id for r in LEXICON.rules}
    for rule in ["neg.no", "neg.without", "neg.clear_of", "neg.without_evidence", "neg.no_evidence_of",
                 "unc.cannot_exclude", "unc.suggest", "unc.modal", "unc.difficult_to_exclude", "unc.versus"]:
        assert rule in ids


@pytest.mark.parametrize("rule_id, example, should_fire", EXAMPLES, ids=[f"{r}:{s}" for r, s, _ in EXAMPLES])
def test_rule_example(rule_id, example, should_fire, nlp):
    """Each example is parsed as the labeler parses it (mentions masked) and the rule fires or not."""
    rule = next(r for r in LEXICON.rules if r.id == rule_id)
    a, b = example.index("["), example.index("]")
    text = normalise(example[:a] + example[a + 1:b] + example[b + 1:], LEXICON.placeholders)
    found = [m for m in MentionFinder(LEXICON).find(text) if (m.start, m.end) == (a, b - 1)]
    mention = found[0] if found else Match("example", a, b - 1, maskable=False)
    [(graph, [head])] = list(parse_mentions(nlp, [(text, [mention])]))
    assert (rule.match(graph, head) is not None) == should_fire


def test_digest_changes_with_the_files(tmp_path):
    copy = tmp_path / "lex"
    shutil.copytree(ROOT / "lexicons", copy)
    before = load_lexicon(copy).digest
    path = copy / "findings.yaml"
    path.write_text(path.read_text() + "\n# a comment\n")
    assert load_lexicon(copy).digest != before


def broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "lex"
    shutil.copytree(ROOT / "lexicons", copy)
    path = copy / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("file, old, new, message", [
    ("rules/negation.yaml", "kind: negative", "kind: denied", r"negation.yaml:\d+: neg.no -> kind: 'denied' must be one of"),
    ("rules/negation.yaml", "priority: 50", "priority: high", r"neg.no -> priority: must be an integer"),
    ("rules/negation.yaml", '"{lower:no} <-*- X"', '"{lower:no} <-*- *"', r"neg.no -> pattern: .*exactly one X"),
    ("rules/negation.yaml", "id: neg.without", "id: neg.no", r"neg.no -> id: already defined at .*negation.yaml:\d+"),
    ("rules/negation.yaml", 'match: ["No [pneumothorax].",', 'match: ["No pneumothorax.",', r"neg.no -> examples: .* \[brackets\]"),
    ("rules/uncertainty.yaml", "    priority: 40\n", "    priority: 40\n    colour: red\n", r"-> colour: unknown field"),
    ("findings.yaml", "name: Cardiomegaly", "name: cardio megaly", r"findings.yaml:\d+: cardio megaly -> name"),
    ("findings.yaml", "name: Cardiomegaly", "name: Atelectasis", r"Atelectasis -> name: finding defined twice"),
    ("labeler.yaml", "precedence: [positive, uncertain, negative]", "precedence: [positive, negative]", r"precedence: must order"),
    ("labeler.yaml", "{token: XXXX, replacement: sign}", "{token: XXXX, replacement: signs}", r"replacement: 'signs' is longer"),
    ("findings.yaml", "findings:\n", "findings: [\n", r"findings.yaml:\d+: not valid YAML"),
])
def test_broken_lexicon_names_file_line_rule_and_field(tmp_path, file, old, new, message):
    with pytest.raises(LexiconError, match=message):
        load_lexicon(broken(tmp_path, file, old, new))


def test_adding_a_finding_needs_no_code(tmp_path, nlp):
    from reportminer.labeler import Labeler
    from reportminer.readers import Report

    folder = broken(tmp_path, "findings.yaml", "  - name: Hernia",
                    "  - name: Fracture\n    synonyms: [fracture, rib fracture]\n\n  - name: Hernia")
    labeler = Labeler(load_lexicon(folder), nlp)
    [done] = labeler.label([Report("r1", "Acute left rib fracture. No pneumothorax.", "test")])
    assert done.labels["Fracture"] == 1 and done.labels["Pneumothorax"] == 0
