"""Which text is labeled, as other hospitals write reports: sections are lexicon data (labeler.yaml)."""

import pandas as pd
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from reportminer.readers import Report
from reportminer.sections import select_sections, split_sentences


def spans(report: Report, lexicon) -> list[tuple[str, str]]:
    return [(name, report.text[a:b].strip()) for name, a, b in select_sections(report, lexicon.sections)]


def label(labeler, text: str) -> dict:
    [done] = labeler.label([Report("r", text, "test")])
    return done.labels


def test_a_report_with_only_history_and_conclusion_is_labeled_from_the_conclusion(labeler):
    labels = label(labeler, "HISTORY: Rule out pneumothorax. ?effusion\nCONCLUSION: No pneumothorax. Lungs clear.")
    assert labels["Pneumothorax"] == 0 and labels["Effusion"] is None


@pytest.mark.parametrize("header", ["IMPRESSIONS", "OPINION", "SUMMARY", "FINDINGS AND IMPRESSION", "Conclusion",
                                    "ADDENDUM", "REPORT"])
def test_other_names_of_labeled_sections(header, labeler):
    labels = label(labeler, f"INDICATION: Evaluate for pneumonia.\n{header}: Right lower lobe pneumonia.")
    assert labels["Pneumonia"] == 1


def test_text_under_no_header_is_the_body_when_there_is_no_findings_section(lexicon):
    report = Report("b", "Clinical details: ?consolidation\nThe lungs are clear.\nOpinion: Normal chest.", "t")
    assert spans(report, lexicon) == [("TEXT", "The lungs are clear."), ("IMPRESSION", "Normal chest.")]


def test_untitled_text_is_left_out_when_a_findings_section_exists(lexicon):
    report = Report("m", "PORTABLE AP CHEST ___ 05:30\nINDICATION: Hypoxia, rule out edema.\n"
                         "FINDINGS: Mild edema.\nIMPRESSION: Edema.", "t")
    assert spans(report, lexicon) == [("FINDINGS", "Mild edema."), ("IMPRESSION", "Edema.")]


def test_a_never_labeled_header_alone_on_its_line_runs_to_the_next_header(lexicon):
    report = Report("h", "HISTORY:\nPrior pneumonia.\nSmoker.\nIMPRESSION: Clear lungs.", "t")
    assert spans(report, lexicon) == [("IMPRESSION", "Clear lungs.")]


def test_xml_labels_and_table_columns_use_the_same_names(tmp_path, lexicon):
    pd.DataFrame([{"report_id": "t1", "findings_and_impression": "Small left effusion."}]).to_csv(
        tmp_path / "t.csv", index=False)
    result = CliRunner().invoke(main, ["label", str(tmp_path / "t.csv"), "-o", str(tmp_path / "l.parquet"),
                                       "--evidence", str(tmp_path / "m.parquet"), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    mentions = pd.read_parquet(tmp_path / "m.parquet")
    assert mentions[["finding", "section", "assertion"]].values.tolist() == [["Effusion", "FINDINGS", "positive"]]


def test_capitals_blanks_and_numbered_impressions(labeler):
    labels = label(labeler, "REASON FOR EXAM: FALL.\nOPINION:\nNO PNEUMOTHORAX OR HEMOTHORAX.\n"
                            "1. Small left pleural effusion, new since ___.\n2. No focal consolidation, ___ edema or "
                            "large pneumothorax.")
    assert labels["Pneumothorax"] == 0 and labels["Effusion"] == 1 and labels["Consolidation"] == 0
    assert labels["Edema"] == 0


def test_british_spellings(labeler):
    labels = label(labeler, "Conclusion: Left haemothorax. Mild interstitial oedema. Hiatus hernia.")
    assert (labels["Effusion"], labels["Edema"], labels["Hernia"]) == (1, 1, 1)


def test_a_question_is_uncertain(labeler):
    labels = label(labeler, "FINDINGS:\n?Early right basal consolidation.\nIMPRESSION: Effusion?")
    assert labels["Consolidation"] == -1 and labels["Effusion"] == -1


def test_stated_absence_makes_a_negative_label_without_a_name(labeler):
    labels = label(labeler, "FINDINGS: Heart size is normal. The lungs are clear.")
    assert labels["Cardiomegaly"] == 0 and labels["No_Finding"] == 1


def test_sentences_are_trimmed_bare_markers_dropped_and_long_ones_cut_at_spaces():
    text = "Heart normal.\n\n" + "1" * 30 + ".\n\n2.\n\n" + "word " * 12 + "end.\n\nNo effusion."
    spans = split_sentences(text, 0, len(text), 20)
    pieces = [text[a:b] for a, b in spans]
    assert pieces[0] == "Heart normal." and pieces[-1] == "No effusion."
    assert "1" * 30 + "." not in pieces and "2." not in pieces  # bare list markers, however long, are dropped
    assert all(len(p) <= 20 and p == p.strip() for p in pieces)
    assert " ".join(pieces[1:-1]) == ("word " * 12 + "end.").strip()  # the long sentence, cut at spaces
