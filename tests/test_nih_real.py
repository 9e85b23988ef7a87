"""The real NIH metadata in ../shared/data/nih (skipped when absent)."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from reportminer.cli import main
from cxrcore.output import read_metadata

from conftest import SHARED

pytestmark = pytest.mark.realdata
NIH = SHARED / "nih"


@pytest.fixture(scope="module")
def nih_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("nih") / "labels.parquet"
    result = CliRunner().invoke(main, ["dataset", "--nih", str(NIH / "Data_Entry_2017_v2020.csv.gz"),
                                       "--train-val-list", str(NIH / "train_val_list.txt"),
                                       "--test-list", str(NIH / "test_list.derived.txt"),
                                       "--boxes", str(NIH / "BBox_List_2017.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_all_images_patients_and_the_files_own_counts(nih_dataset):
    frame = pq.read_table(nih_dataset).to_pandas()
    raw = pd.read_csv(NIH / "Data_Entry_2017_v2020.csv.gz")
    assert len(frame) == 112_120 and frame["patient_id"].nunique() == 30_805
    own = raw["Finding Labels"].str.split("|").explode().value_counts()
    for finding, count in own.items():
        column = {"No Finding": "No_Finding"}.get(finding, finding)
        assert int(frame[column].sum()) == count, finding


def test_official_split_sizes_and_no_shared_patient(nih_dataset):
    frame = pq.read_table(nih_dataset).to_pandas()
    sizes = frame["split"].value_counts()
    assert sizes["train"] + sizes["val"] == 86_524 and sizes["test"] == 25_596
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()
    splits = json.loads(read_metadata(nih_dataset)["splits"])
    assert splits["shared_patients"]["count"] == 0


def test_boxes_table_is_clean(nih_dataset):
    boxes = pd.read_csv(nih_dataset.with_name("boxes.csv"))
    assert len(boxes) == 984 and boxes["Image Index"].nunique() == 880
    assert "Infiltrate" not in set(boxes["Finding Label"]) and (boxes["Finding Label"] == "Infiltration").sum() == 123
