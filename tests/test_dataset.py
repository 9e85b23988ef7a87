"""`reportminer dataset`: NIH labels and labeler output as a split dataset; bad rows named."""

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from cxrcore.errors import InputError
from cxrcore.boxes import read_boxes
from cxrcore.splits import patient_splits
from reportminer.dataset import read_nih_entries

from conftest import SAMPLES

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
ENTRIES = HEADER + """a_000.png,Cardiomegaly,0,1,57,M,PA
a_001.png,Cardiomegaly|Infiltrate,1,1,58,M,AP
b_000.png,No Finding,0,2,40,F,PA
c_000.png,Effusion|Mass,0,3,70,F,LL
d_000.png,No Finding,0,4,33,M,PA
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write(path, text):
    path.write_text(text)
    return path


def test_nih_labels_become_spec_columns(tmp_path):
    frame = read_nih_entries(write(tmp_path / "d.csv", ENTRIES), FINDINGS, "No_Finding")
    assert frame["image_id"].tolist() == ["a_000.png", "a_001.png", "b_000.png", "c_000.png", "d_000.png"]
    assert frame["Infiltration"].tolist() == [0, 1, 0, 0, 0]  # NIH's "Infiltrate" spelling
    assert frame["No_Finding"].tolist() == [0, 0, 1, 0, 1]
    assert frame["Cardiomegaly"].tolist() == [1, 1, 0, 0, 0]


@pytest.mark.parametrize("text, message", [
    (ENTRIES.replace("Patient ID", "Patient"), r"d.csv: missing column 'Patient ID' \(columns are: Image Index, "),
    (ENTRIES.replace("Effusion|Mass", "Effusion|Masses"), r"d.csv:5: unknown finding 'Masses' in 'Finding Labels'"),
    (ENTRIES.replace("d_000.png", "a_001.png"), r"d.csv:6: image a_001.png listed twice \(also on line 3\)"),
])
def test_bad_nih_rows_are_named(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_nih_entries(write(tmp_path / "d.csv", text), FINDINGS, "No_Finding")


def test_official_lists_carve_val_by_patient_and_frontal_only(tmp_path):
    entries = write(tmp_path / "d.csv", ENTRIES)
    tv = write(tmp_path / "tv.txt", "a_000.png\na_001.png\nb_000.png\nc_000.png\n")
    test = write(tmp_path / "test.txt", "d_000.png\n")
    out = tmp_path / "labels.parquet"
    result = run("dataset", "--nih", entries, "--train-val-list", tv, "--test-list", test, "--val-fraction", "0.34",
                 "--frontal-only", "-o", out)
    assert result.exit_code == 0, result.output
    frame = pq.read_table(out).to_pandas()
    assert "c_000.png" not in frame["image_id"].tolist()  # lateral view dropped
    split = dict(zip(frame["image_id"], frame["split"]))
    assert split["d_000.png"] == "test"
    assert split["a_000.png"] == split["a_001.png"]  # one patient, one split
    assert sorted(set(split.values())) == ["test", "train", "val"]
    assert "patients in two splits: 0" in result.output


def test_a_patient_in_both_given_lists_is_an_error(tmp_path):
    entries = write(tmp_path / "d.csv", ENTRIES)
    tv = write(tmp_path / "tv.txt", "a_000.png\nb_000.png\nc_000.png\nd_000.png\n")
    test = write(tmp_path / "test.txt", "a_001.png\n")
    result = run("dataset", "--nih", entries, "--train-val-list", tv, "--test-list", test, "-o", tmp_path / "x.parquet")
    assert result.exit_code == 1
    assert f"{entries}:3: patient 1 is in 'test' here and in 'train' at {entries}:2" in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_an_image_in_neither_list_is_an_error(tmp_path):
    entries = write(tmp_path / "d.csv", ENTRIES)
    tv = write(tmp_path / "tv.txt", "a_000.png\na_001.png\nb_000.png\n")
    test = write(tmp_path / "test.txt", "d_000.png\n")
    result = run("dataset", "--nih", entries, "--train-val-list", tv, "--test-list", test, "-o", tmp_path / "x.parquet")
    assert result.exit_code == 1
    assert f"{entries}:5: image c_000.png is in neither" in result.output


def test_seeded_patient_split_is_reproducible_and_patient_safe():
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(300)], "patient_id": [f"p{i // 3}" for i in range(300)]})
    a = patient_splits(frame["patient_id"], (0.7, 0.1, 0.2), seed=3)
    assert a.equals(patient_splits(frame["patient_id"], (0.7, 0.1, 0.2), seed=3))
    assert not a.equals(patient_splits(frame["patient_id"], (0.7, 0.1, 0.2), seed=4))
    assert (frame.assign(split=a).groupby("patient_id")["split"].nunique() == 1).all()
    assert a.value_counts().to_dict() == {"train": 210, "test": 60, "val": 30}


@pytest.fixture()
def sample_labels(tmp_path):
    out = tmp_path / "labels.parquet"
    assert run("label", SAMPLES / "reports", "-o", out, "--workers", "1", "--quiet").exit_code == 0
    return out


def manifest_rows(split=None):
    rows = []
    for n in range(1, 35):
        for view in ("PA", "LL"):
            row = {"report_id": f"s{n:02d}", "image_id": f"s{n:02d}_{view}.png", "patient_id": f"p{n % 20}",
                   "image_path": f"img/s{n:02d}_{view}.png", "view_position": view}
            if split:
                row["split"] = split(n)
            rows.append(row)
    return rows


def test_labeler_output_joined_to_a_manifest(tmp_path, sample_labels):
    manifest = tmp_path / "images.csv"
    rows = manifest_rows() + [{"report_id": "s99", "image_id": "s99.png", "patient_id": "p1", "image_path": "x",
                               "view_position": "PA"}]
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp_path / "dataset.parquet"
    result = run("dataset", sample_labels, "--manifest", manifest, "--frontal-only", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"{manifest}:70: report s99 has no labels" in result.output
    frame = pq.read_table(out).to_pandas()
    assert len(frame) == 34 and set(frame["view_position"]) == {"PA"}
    labels = pq.read_table(sample_labels).to_pandas().set_index("report_id")
    row = frame.set_index("report_id").loc["s11"]
    assert row["Cardiomegaly"] == labels.loc["s11", "Cardiomegaly"] == 1
    assert pd.isna(row["Mass"])
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()


def test_manifest_split_with_a_patient_in_two_splits_names_the_rows(tmp_path, sample_labels):
    manifest = tmp_path / "images.csv"
    pd.DataFrame(manifest_rows(split=lambda n: "test" if n == 21 else "train")).to_csv(manifest, index=False)
    result = run("dataset", sample_labels, "--manifest", manifest, "-o", tmp_path / "d.parquet")
    assert result.exit_code == 1
    # s21 (lines 42-43) belongs to patient p1, whose s01 images (lines 2-3) are in train.
    assert f"{manifest}:42: patient p1 is in 'test' here and in 'train' at {manifest}:2" in result.output


BOXES = """Image Index,Finding Label,Bbox [x,y,w,h],,,
a_000.png,Atelectasis,225.08,547.01,86.77,79.18
b_000.png,Infiltrate,686.1,131.5,185.4,313.4
"""


def test_nih_box_file_reads_as_it_is(tmp_path):
    boxes = read_boxes(write(tmp_path / "BBox.csv", BOXES), FINDINGS)
    assert boxes.columns.tolist() == ["Image Index", "Finding Label", "x", "y", "w", "h"]
    assert boxes["Finding Label"].tolist() == ["Atelectasis", "Infiltration"]
    assert boxes["w"].tolist() == [86.77, 185.4]


def test_bad_box_value_names_the_line(tmp_path):
    with pytest.raises(InputError, match=r"BBox.csv:3: y = 'abc' is not a number"):
        read_boxes(write(tmp_path / "BBox.csv", BOXES.replace("131.5", "abc")), FINDINGS)
