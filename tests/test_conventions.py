"""Conventions (conventions.yaml): every example under every value it names, profiles, the command line,
the metadata, evaluate's agreement per value and per rule, and the JSON Schema generated from the models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cxrcore.output import read_metadata
from reportminer.cli import main
from reportminer.conventions import example_failures, load_conventions
from reportminer.errors import LexiconError
from reportminer.labeler import Labeler
from reportminer.lexicon import load_lexicon
from reportminer.lexicon_models import MODELS, json_schema
from reportminer.readers import Report

ROOT = Path(__file__).resolve().parents[1]
LEXICONS = ROOT / "lexicons"
SPEC = load_conventions(LEXICONS / "conventions.yaml")


def _labels(lexicon, nlp, text: str) -> dict[str, int | None]:
    labeled = next(Labeler(lexicon, nlp, cache=False).label([Report("r", text, "test")]))
    return labeled.labels


@pytest.mark.parametrize("schema", ["chestxray14", "chexpert"])
def test_each_convention_example_behaves_as_written_under_each_value(schema, nlp):
    count, failures = example_failures(LEXICONS, schema, nlp)
    assert count >= len(SPEC.conventions) and failures == []


def test_a_convention_example_that_no_longer_holds_is_named(tmp_path, nlp):
    folder = tmp_path / "lexicons"
    shutil.copytree(LEXICONS, folder)
    path = folder / "conventions.yaml"
    path.write_text(path.read_text().replace("labels: {latest: {Pneumothorax: 0}, all: {Pneumothorax: -1}}",
                                             "labels: {latest: {Pneumothorax: 1}, all: {Pneumothorax: -1}}"))
    _, failures = example_failures(folder, "chestxray14", nlp)
    assert len(failures) == 1 and "conventions.revisions.examples[1] under revisions=latest" in failures[0]
    assert "gives {'Pneumothorax': 0}, not {'Pneumothorax': 1}" in failures[0]


def test_the_clinical_profile_sets_its_values_and_changes_the_digest():
    default, clinical = load_lexicon(LEXICONS), load_lexicon(LEXICONS, profile="clinical")
    assert dict(default.conventions)["differential"] == "positive"
    assert dict(clinical.conventions) | SPEC.profiles["clinical"] == dict(clinical.conventions)
    assert default.digest != clinical.digest  # the decision cache never mixes them
    assert load_lexicon(LEXICONS, conventions={"differential": "uncertain"}).digest not in (default.digest, clinical.digest)


def test_organ_headings_keep_the_negation_scope(nlp):
    text = "Indication: cough.\nLungs: Clear.\nPleura: No effusion or pneumothorax.\nHeart and mediastinum: Normal."
    labels = _labels(load_lexicon(LEXICONS, profile="clinical"), nlp, text)
    assert (labels["Pneumothorax"], labels["Effusion"], labels["Cardiomegaly"], labels["Infiltration"]) == (0, 0, 0, 0)


def test_label_records_the_values_used_and_refuses_unknown_ones_in_one_line(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text("Findings: Right basal atelectasis versus pneumonia. ? small left effusion.")
    out = tmp_path / "labels.parquet"
    runner = CliRunner()
    result = runner.invoke(main, ["label", str(reports), "-o", str(out), "--workers", "1", "--quiet", "--profile",
                                  "clinical", "--convention", "differential=positive"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    values = json.loads(meta["conventions"]) if isinstance(meta["conventions"], str) else meta["conventions"]
    assert values["differential"] == "positive" and values["opacity"] == "infiltration" and meta["profile"] == "clinical"
    row = pd.read_parquet(out).iloc[0]
    assert (row["Atelectasis"], row["Pneumonia"], row["Effusion"]) == (1, 1, -1)
    for bad, words in ((["--convention", "differential=maybe"], "differential is one of positive, uncertain"),
                       (["--convention", "colour=red"], "no convention 'colour'"),
                       (["--convention", "differential"], "write KEY=VALUE"),
                       (["--profile", "lenient"], "no profile 'lenient'")):
        result = runner.invoke(main, ["label", str(reports), "-o", str(tmp_path / "x.parquet"), "--quiet", *bad])
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_evaluate_shows_each_conventions_agreement_and_each_rules_errors(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text("Findings: Left basal opacity, atelectasis versus pneumonia. Heart not enlarged.")
    (reports / "b.txt").write_text("Findings: Probable right lower lobe pneumonia. No pneumothorax.")
    gold = tmp_path / "gold.csv"
    gold.write_text("report_id,Atelectasis,Pneumonia,Cardiomegaly,Pneumothorax\na,-1,-1,0,\nb,,1,,0\n")
    runner = CliRunner()
    assert runner.invoke(main, ["label", str(reports), "-o", str(tmp_path / "labels.parquet"), "--evidence",
                                str(tmp_path / "mentions.parquet"), "--workers", "1", "--quiet"]).exit_code == 0
    result = runner.invoke(main, ["evaluate", str(tmp_path / "labels.parquet"), str(gold), "--by-rule",
                                  "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("differential"))
    assert "2 mentions" in line and "positive* 0.000" in line and "uncertain 1.000" in line
    assert "hedged_positive" in result.output and "positive* 1.000" in result.output.split("hedged_positive")[1]
    rules = result.output.split("worst first")[1]
    assert rules.splitlines()[1].split()[:4] == ["hedge.versus", "1", "0", "0.000"]
    assert "a Atelectasis: gave 1, gold -1: Left basal opacity, atelectasis versus pneumonia." in rules
    assert "neg.no" in rules and "neg.stated_absent" in rules


def test_a_conventions_file_error_names_file_line_and_place(tmp_path):
    folder = tmp_path / "lexicons"
    shutil.copytree(LEXICONS, folder)
    path = folder / "conventions.yaml"
    text = path.read_text()
    path.write_text(text.replace("    schema_default: {chestxray14: positive}\n    kinds: [hedge.versus,",
                                 "    schema_default: {chestxray14: positive}\n    colour: red\n    kinds: [hedge.versus,", 1))
    with pytest.raises(LexiconError, match=r"conventions\.yaml:\d+: conventions\.differential -> colour: unknown field; "
                                           r"allowed: about, default, examples, kinds, only, schema_default, synonyms, values"):
        load_lexicon(folder)
    path.write_text(text.replace("kinds: [hedge.versus, hedge.versus_object, hedge.or]", "kinds: [hedge.versus, hedge.nope]"))
    with pytest.raises(LexiconError, match="conventions.differential: no rule 'hedge.nope'"):
        load_lexicon(folder)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_shipped_json_schemas_are_the_models_own(name):
    """`python -m reportminer.lexicon_models` writes them; an edit of the models without them fails here."""
    assert (LEXICONS / "schema" / f"{name}.schema.json").read_text() == json_schema(name)


def _line_of(path: Path, start: str) -> int:
    """The number of the first line of `path` that starts (after indentation) with `start`: a mapping's line is
    that of its first key (where the loader's `__line__` puts it)."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(start))


@pytest.mark.parametrize("file, old, new, entry, problem", [
    ("rules/positive.yaml", "    priority: 90\n", "    priority: high\n", "- id: pos.no_change_in",
     "pos.no_change_in -> priority: Input should be a valid integer, got 'high'"),
    ("labeler.yaml", "    links: [conj, appos]", "    linked: [conj, appos]", "linked:",
     "parse.lists -> linked: unknown field; allowed: breakers, clause_heads, links, shared_dependents, sibling_relations"),
    ("schemas/chexpert/schema.yaml", "uncertain: null", "uncertain: true", "column:",
     "no_finding -> uncertain: must be a number or null, not true"),
    ("conventions.yaml", "    default: uncertain\n", "    default: maybe\n", "about:",
     "conventions.differential: 'maybe' is not one of the values (positive, uncertain)"),
    ("rules/negation.yaml", "  - id: neg.without\n", "  - id: neg.no  # was neg.without\n", "- id: neg.no  # was",
     "neg.no -> id: already defined at "),
])
def test_load_and_check_lexicon_give_one_complaint_from_the_same_models(tmp_path, file, old, new, entry, problem):
    """`check-lexicon` (the real command) and `load_lexicon` (what `label --lexicon` runs) check a file with the
    same models: the same one line, naming the file, the line of the entry, the place, the field and the problem."""
    folder = tmp_path / "lexicons"
    shutil.copytree(LEXICONS, folder)
    path = folder / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    schema = "chexpert" if "chexpert" in file else "chestxray14"
    with pytest.raises(LexiconError) as caught:
        load_lexicon(folder, schema)
    assert str(caught.value).startswith(f"{path}:{_line_of(path, entry)}: {problem}"), str(caught.value)
    result = CliRunner().invoke(main, ["check-lexicon", str(folder)])
    assert result.exit_code == 1 and result.output == f"Error: {caught.value}\n", result.output


def test_the_shipped_lexicon_fits_its_models():
    for schema in ("chestxray14", "chexpert"):
        assert load_lexicon(LEXICONS, schema).findings
