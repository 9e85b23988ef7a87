"""Readers: every input kind, and bad input reported (file, row, reason) without stopping the rest."""

import json

import pandas as pd
import pytest

from cxrcore.errors import InputError
from reportminer.readers import ReadSettings, Report, Skipped, read_inputs
from reportminer.sections import normalise, select_sections, split_sentences

from conftest import write_bad_reports

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR9"/><MedlineCitation><Article><Abstract>
<AbstractText Label="INDICATION">Cough</AbstractText>
<AbstractText Label="FINDINGS">No pneumothorax.</AbstractText>
<AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
</Abstract></Article></MedlineCitation>
<parentImage id="CXR9_1_IM-0001-1001"/><parentImage id="CXR9_1_IM-0001-2001"/></eCitation>"""


def records(*paths, **kw):
    return list(read_inputs(list(paths), ReadSettings(**kw)))


def test_openi_xml_gives_id_sections_and_images(tmp_path):
    (tmp_path / "9.xml").write_text(XML)
    [report] = records(tmp_path)
    assert report.report_id == "CXR9"
    assert [img for img, _ in report.images] == ["CXR9_1_IM-0001-1001", "CXR9_1_IM-0001-2001"]
    names = {name: report.text[a:b] for name, a, b in report.sections}
    assert names == {"INDICATION": "Cough", "FINDINGS": "No pneumothorax.", "IMPRESSION": "Normal chest x-XXXX."}


def test_txt_folder_is_searched_recursively_and_sections_found(tmp_path, lexicon):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "r7.txt").write_text("HISTORY: cough\nFINDINGS: No effusion.\nIMPRESSION: Normal.\n")
    [report] = records(tmp_path)
    assert report.report_id == "r7"
    chosen = [report.text[a:b].strip() for _, a, b in select_sections(report, lexicon.sections)]
    assert chosen == ["No effusion.", "Normal."]


def test_whole_text_when_no_header(lexicon):
    report = Report("x", "Heart is enlarged. No effusion.", "t")
    assert select_sections(report, lexicon.sections) == [("TEXT", 0, len(report.text))]


def test_tables_csv_jsonl_parquet_agree(tmp_path):
    rows = [{"report_id": "r1", "text": "No effusion.", "image_id": "i1", "patient_id": "p1"},
            {"report_id": "r1", "text": "No effusion.", "image_id": "i2", "patient_id": "p1"},
            {"report_id": "r2", "text": "Small pneumothorax.", "image_id": "i3", "patient_id": "p2"}]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        reports = records(tmp_path / name)
        assert [(r.report_id, [i for i, _ in r.images], r.patient_id) for r in reports] == \
               [("r1", ["i1", "i2"], "p1"), ("r2", ["i3"], "p2")], name


def test_section_columns_instead_of_text(tmp_path):
    pd.DataFrame([{"report_id": "r1", "findings": "No effusion.", "impression": "Normal."}]).to_csv(tmp_path / "t.csv", index=False)
    [report] = records(tmp_path / "t.csv")
    assert [report.text[a:b] for _, a, b in report.sections] == ["No effusion.", "Normal."]


def test_missing_column_is_a_clear_error(tmp_path):
    pd.DataFrame([{"id": "r1", "text": "x"}]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"t.csv: missing column 'report_id' \(columns are: id, text\)"):
        records(tmp_path / "t.csv")


def test_bad_rows_and_files_are_skipped_with_reasons(tmp_path):
    folder = write_bad_reports(tmp_path / "reports", "No pneumothorax.")
    got = records(folder)
    skipped = {r.source.split("/")[-1]: r.reason for r in got if isinstance(r, Skipped)}
    assert [r.report_id for r in got if isinstance(r, Report)] == ["good"]
    assert skipped["empty.txt"] == skipped["zero.txt"] == "empty report"
    assert "broken XML" in skipped["bad.xml"]
    assert "not valid utf-8 (byte 0xc9 at offset 0); re-run with --encoding latin-1" in skipped["latin.txt"]
    # ...and the named encoding reads it.
    assert [r.text for r in records(folder / "latin.txt", encoding="latin-1")] == ["Épanchement pleural."]


def test_table_row_with_empty_text_names_its_line(tmp_path):
    (tmp_path / "t.csv").write_text("report_id,text\nr1,No effusion.\nr2,\n")
    got = records(tmp_path / "t.csv")
    assert [r.report_id for r in got if isinstance(r, Report)] == ["r1"]
    [skip] = [r for r in got if isinstance(r, Skipped)]
    assert skip.source.endswith("t.csv:3") and "r2: empty report text" in skip.reason


def test_placeholders_keep_offsets_and_sentences_split():
    text = "There are no XXXX of effusion. Normal chest x-XXXX. 1. Stable."
    from reportminer.lexicon import Placeholder
    norm = normalise(text, (Placeholder("x-XXXX", "x-ray"), Placeholder("XXXX", "sign")))
    assert len(norm) == len(text)
    assert norm.startswith("There are no sign of effusion. Normal chest x-ray .")
    assert [text[a:b] for a, b in split_sentences(norm, 0, len(norm), 1000)] == \
           ["There are no XXXX of effusion.", "Normal chest x-XXXX.", "Stable."]
