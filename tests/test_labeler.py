"""The labeler on the bundled hand-written reports: every expected label, and the evidence behind it."""

import csv

import pytest

from reportminer.aggregate import aggregate
from reportminer.readers import ReadSettings, Report, read_inputs

from conftest import SAMPLES

EXPECTED = list(csv.DictReader((SAMPLES / "expected.csv").open()))


@pytest.fixture(scope="module")
def sample_labels(labeler):
    reports = list(read_inputs([SAMPLES / "reports"], ReadSettings(labeler.lexicon.sections.table_columns)))
    return {done.report.report_id: done for done in labeler.label(reports)}


def test_there_are_thirty_or_more_sample_reports(sample_labels):
    assert len(sample_labels) >= 30
    assert {row["report_id"] for row in EXPECTED} == set(sample_labels)


@pytest.mark.parametrize("row", EXPECTED, ids=[f"{r['report_id']}-{r['finding']}" for r in EXPECTED])
def test_sample_label(sample_labels, row):
    assert sample_labels[row["report_id"]].labels[row["finding"]] == int(row["label"]), row["why"]


def test_findings_not_in_expected_are_not_mentioned(sample_labels, lexicon):
    listed = {(r["report_id"], r["finding"]) for r in EXPECTED}
    extra = [(rid, f, v) for rid, done in sample_labels.items() for f, v in done.labels.items()
             if v is not None and (rid, f) not in listed]
    assert extra == []


def test_evidence_points_into_the_report_text(sample_labels):
    done = sample_labels["s15"]
    by_finding = {m.finding: m for m in done.mentions}
    m = by_finding["Effusion"]
    assert done.report.text[m.start:m.end] == m.text == "pleural effusion"
    assert m.sentence == "There are no XXXX of a pleural effusion."
    assert (m.section, m.assertion, m.rule) == ("FINDINGS", "negative", "neg.no_evidence_of")


def test_repeated_sentences_are_decided_once(lexicon, nlp):
    from reportminer.labeler import Labeler

    labeler = Labeler(lexicon, nlp)
    reports = [Report(f"r{i}", "No pneumothorax. Heart size is normal.", "t") for i in range(50)]
    out = list(labeler.label(reports))
    assert len(out) == 50 and all(d.labels["Pneumothorax"] == 0 for d in out)
    assert len(labeler._cache) == 2


@pytest.mark.parametrize("pairs, expected", [
    ([("Effusion", "negative"), ("Effusion", "positive")], {"Effusion": 1, "No_Finding": 0}),
    ([("Effusion", "negative"), ("Effusion", "uncertain")], {"Effusion": -1, "No_Finding": -1}),
    ([("Effusion", "negative")], {"Effusion": 0, "No_Finding": 1}),
    ([], {"Effusion": None, "No_Finding": 1}),
])
def test_aggregation_precedence(pairs, expected, lexicon):
    labels = aggregate(pairs, ["Effusion"], ("positive", "uncertain", "negative"), lexicon.schema)
    assert labels == expected


def test_masking_replaces_synonyms_keeps_patterns_and_merges_overlaps(lexicon):
    from reportminer.labeler import mask_mentions
    from reportminer.mentions import Match

    sentence = "No parenchymal infiltrates or pleural effusions, heart is not enlarged."
    matches = [Match("Infiltration", 15, 26), Match("Effusion", 30, 47), Match("Pleural_Thickening", 30, 37),
               Match("Cardiomegaly", 49, 70, maskable=False)]
    text, spans = mask_mentions(sentence, matches, lexicon.parse)
    assert text == "No parenchymal opacities or opacities, heart is not enlarged."
    assert [text[a:b] for a, b in spans] == ["opacities", "opacities", "opacities", "heart is not enlarged"]
