"""`classifier predict`: a trained run on films without labels, with real training, real files and the
real score and localize commands to compare against; the operating points it decides at; its inputs,
its resume, its page, and hostile input."""

import base64
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from classifier import predict as predict_module
from classifier.cli import main as classifier_main
from classifier.operating_points import POINTS_FILE, choose
from classifier.predict import Request, parts_folder, predict_images
from classifier.viewer import FILM_BUDGET
from cxrcore.output import exclusive

pytestmark = pytest.mark.slow  # every test here applies a trained network


def run(*args):
    return CliRunner().invoke(classifier_main, [str(a) for a in args])


def read(path):
    return pq.read_table(path).to_pandas().set_index("id")


def write_rows(labels, image_ids, out):
    """The rows of a labels.parquet with these image ids, as another labels.parquet."""
    table = pq.read_table(labels)
    pq.write_table(table.filter(pa.array(np.isin(table.column("image_id").to_pylist(), image_ids))), out)


def findings_of(run_dir):
    return list(json.loads((run_dir / POINTS_FILE).read_text())["findings"])


@pytest.fixture(scope="module")
def predicted(tiny_run, tmp_path_factory):
    """predict on the tiny set's image folder, as a user without labels would run it."""
    tiny, run_dir = tiny_run
    out = tmp_path_factory.mktemp("predicted") / "predictions.parquet"
    result = run("predict", run_dir, tiny / "images", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_predict_gives_the_probabilities_score_gives(tiny_run, predicted, tmp_path):
    tiny, run_dir = tiny_run
    result = run("score", run_dir, tiny / "labels.parquet", "-o", tmp_path / "scores.parquet", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(tmp_path / "scores.parquet").set_index("image_id")
    mine = read(predicted)
    findings = findings_of(run_dir)
    assert sorted(mine.index) == sorted(scores.index) and len(mine) == 64
    diff = np.abs(mine.loc[scores.index, findings].to_numpy() - scores[findings].to_numpy())
    assert diff.max() < 1e-5
    assert (mine["width"] == 48).all() and (mine["height"] == 48).all()


def test_decisions_follow_the_recorded_operating_points(tiny_run, predicted):
    _, run_dir = tiny_run
    recorded = json.loads((run_dir / POINTS_FILE).read_text())
    mine = read(predicted)
    for name, point in recorded["findings"].items():
        assert (mine[f"{name}_decision"] == (mine[name] >= point["threshold"]).astype(int)).all()
    meta = pq.read_schema(predicted).metadata
    thresholds = json.loads(meta[b"chestxray_toolkit.operating_points"])
    assert thresholds["Nodule"] == recorded["findings"]["Nodule"]["threshold"]


def test_fit_records_youden_points_on_the_validation_split(tiny_run, tmp_path):
    """The recorded thresholds are the ones chosen again, on the fly, from the run's validation split."""
    tiny, run_dir = tiny_run
    recorded = json.loads((run_dir / POINTS_FILE).read_text())
    assert recorded["rule"] == "youden" and recorded["split"] == "val" and recorded["images"] > 0
    older = tmp_path / "older"
    shutil.copytree(run_dir, older)
    (older / POINTS_FILE).unlink()  # a run trained before operating points were recorded
    result = run("predict", older, tiny / "images" / "synth_000000.png", "-o", tmp_path / "p.parquet", "--quiet")
    assert result.exit_code == 1 and "--labels" in result.output and len(result.output.strip().splitlines()) == 1
    result = run("predict", older, tiny / "images", "-o", tmp_path / "p.parquet", "--labels", tiny / "labels.parquet",
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert "chosen now" in result.output
    got = json.loads(pq.read_schema(tmp_path / "p.parquet").metadata[b"chestxray_toolkit.operating_points"])
    assert got == pytest.approx({f: p["threshold"] for f, p in recorded["findings"].items()}, abs=1e-6)


def test_youden_rule_midpoints_ties_and_fallbacks():
    labels = np.array([[1, 0], [0, 0], [1, np.nan], [0, -1], [0, 0]], float)
    probs = np.array([[.9, .1], [.2, .3], [.6, .2], [.7, .5], [.1, .4]], np.float32)
    points = choose(labels, probs, ["A", "B"])
    # A: calling 0.6 and above present finds both positives and one of three negatives (J = 2/3, the best);
    # the threshold sits halfway to the next lower probability, 0.2
    assert points["A"]["threshold"] == pytest.approx(0.4) and points["A"]["j"] == pytest.approx(2 / 3)
    assert points["B"] == {"threshold": 0.5, "fallback": "no positive label on the validation split",
                           "positives": 0, "negatives": 4}  # uncertain and unmentioned: left out, negative
    assert choose(labels[:0], probs[:0], ["A"])["A"]["fallback"] == "no validation split"


def test_threshold_option_overrides_all_or_one_finding(tiny_run, tmp_path):
    tiny, run_dir = tiny_run
    out = tmp_path / "p.parquet"
    result = run("predict", run_dir, tiny / "images", "-o", out, "--threshold", "0.3", "--threshold", "Nodule=0.9",
                 "--quiet")
    assert result.exit_code == 0, result.output
    mine = read(out)
    assert (mine["Nodule_decision"] == (mine["Nodule"] >= 0.9)).all()
    assert (mine["Effusion_decision"] == (mine["Effusion"] >= 0.3)).all()
    for bad, words in (("Nodul=0.3", "no finding 'Nodul'"), ("1.5", "between 0 and 1"), ("nan", "between 0 and 1")):
        result = run("predict", run_dir, tiny / "images", "-o", out, "--threshold", bad, "--quiet")
        assert result.exit_code == 1 and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_every_kind_of_input_names_the_same_images(tiny_run, predicted, tmp_path):
    """A file, a folder, a .txt list, a .csv list and a labels Parquet: the same images, ids and numbers."""
    tiny, run_dir = tiny_run
    names = [f"synth_{i:06d}.png" for i in (3, 7, 11)]
    (tmp_path / "list.txt").write_text("# three films\n" + "".join(f"images/{n}\n" for n in names) + "\n")
    pd.DataFrame({"id": ["a", "b", "c"], "path": [str(tiny / "images" / n) for n in names]}).to_csv(
        tmp_path / "list.csv", index=False)
    write_rows(tiny / "labels.parquet", names, tmp_path / "some.parquet")
    out = tmp_path / "p.parquet"
    result = run("predict", run_dir, tiny / "images" / names[0], tmp_path / "list.txt", tmp_path / "list.csv",
                 tmp_path / "some.parquet", "--images", tiny, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    mine = pq.read_table(out).to_pandas()
    assert mine["id"].tolist() == [names[0], *(f"images/{n}" for n in names), "a", "b", "c", *names]
    reference = read(predicted)
    findings = findings_of(run_dir)
    for row in mine.itertuples():
        name = os.path.basename(row.path)
        assert np.abs(np.array([getattr(row, f) for f in findings]) - reference.loc[name, findings]).max() < 1e-6


def test_boxes_and_heatmaps_are_localizes(tiny_run, tmp_path):
    """--boxes draws what `localize` draws (the run's built-in defaults), in the images' own pixels."""
    tiny, run_dir = tiny_run
    names = [f"synth_{i:06d}.png" for i in range(6)]
    write_rows(tiny / "labels.parquet", names, tmp_path / "six.parquet")
    result = run("localize", run_dir, tmp_path / "six.parquet", "--images", tiny, "-o", tmp_path / "loc",
                 "--overlays", "0")
    assert result.exit_code == 0, result.output
    theirs = pd.read_csv(tmp_path / "loc" / "boxes.csv")
    (tmp_path / "six.txt").write_text("".join(f"{tiny / 'images' / n}\n" for n in names))
    out = tmp_path / "p.parquet"
    result = run("predict", run_dir, tmp_path / "six.txt", "-o", out, "--boxes", "--heatmaps", "--quiet")
    assert result.exit_code == 0, result.output
    mine = pq.read_table(out).to_pandas()
    drawn = sorted((os.path.basename(path), b["finding"], *(round(b[k], 1) for k in "xywh"), round(b["score"], 4))
                   for path, found in zip(mine["path"], mine["boxes"]) for b in found)
    expected = sorted((r[0], r[1], *(round(v, 1) for v in r[2:6]), round(r[6], 4))
                      for r in theirs.itertuples(index=False))
    assert len(expected) > 0 and drawn == expected
    heat = Image.open(io.BytesIO(mine["Nodule_heatmap"][0]))
    assert heat.size == (48, 48) and heat.mode == "L" and np.asarray(heat).max() == 255


def test_a_corrupt_image_a_bomb_and_a_fifo_are_named_and_the_rest_written(tiny_run, tmp_path):
    from test_hostile import png_header

    tiny, run_dir = tiny_run
    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copy(tiny / "images" / "synth_000001.png", folder / "good.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "bomb.png").write_bytes(png_header(50_000, 50_000))
    os.mkfifo(folder / "pipe.png")
    (folder / "notes.txt").write_text("not an image: not searched")
    out = tmp_path / "p.parquet"
    result = run("predict", run_dir, folder, "-o", out, "--quiet")
    assert result.exit_code == 3, result.output
    named = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line for line in result.output.splitlines()
             if line.startswith("skipped") and ": " in line}
    assert sorted(named) == ["bomb.png", "corrupt.png", "pipe.png"]
    assert "refused" in named["bomb.png"] and "not a regular file" in named["pipe.png"]
    assert read(out).index.tolist() == ["good.png"]


def test_a_symlink_loop_in_a_folder_is_searched_once(tiny_run, tmp_path):
    tiny, run_dir = tiny_run
    folder = tmp_path / "films" / "inner"
    folder.mkdir(parents=True)
    shutil.copy(tiny / "images" / "synth_000001.png", folder / "a.png")
    (folder / "loop").symlink_to(tmp_path / "films")  # a link back up the tree
    (folder / "self.png").symlink_to(folder / "self.png")  # a link to itself
    out = tmp_path / "p.parquet"
    # its own process, so that a hang fails the test instead of stopping the suite
    result = subprocess.run([sys.executable, "-m", "classifier", "predict", str(run_dir), str(tmp_path / "films"),
                             "-o", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr  # the link to itself is a named skip
    assert "already searched" in result.stderr and "self.png" in result.stderr
    assert read(out).index.tolist() == ["inner/a.png"]


def test_an_output_that_is_an_input_is_refused_and_left_as_it_is(tiny_run, tmp_path):
    tiny, run_dir = tiny_run
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tiny / 'images' / 'synth_000001.png'}\n")
    before = listing.read_bytes()
    result = run("predict", run_dir, listing, "-o", listing)
    assert result.exit_code == 1 and "is also an input" in result.output
    assert listing.read_bytes() == before
    metrics = (run_dir / "metrics.json").read_bytes()
    result = run("predict", run_dir, listing, "-o", run_dir / "metrics.json")  # a file of the run is an input too
    assert result.exit_code == 1 and "is also an input" in result.output
    assert (run_dir / "metrics.json").read_bytes() == metrics
    folder = tmp_path / "films"
    folder.mkdir()
    shutil.copy(tiny / "images" / "synth_000001.png", folder / "a.png")
    film = (folder / "a.png").read_bytes()
    for option in ("-o", "--html"):
        other = ["-o", tmp_path / "p.parquet"] if option == "--html" else []
        result = run("predict", run_dir, folder, option, folder / "a.png", *other, "--quiet")
        assert result.exit_code == 1 and "a folder this command reads" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and (folder / "a.png").read_bytes() == film
    assert not (tmp_path / "p.parquet").exists()
    out = tmp_path / "p.parquet"
    out.write_bytes(b"an earlier output")
    listing.write_text(f"{folder / 'a.png'}\n{out}\n")  # a list naming the output among its images
    result = run("predict", run_dir, listing, "-o", out, "--quiet")
    assert result.exit_code == 1 and "is also an input" in result.output and out.read_bytes() == b"an earlier output"


def test_a_second_run_on_a_locked_output_is_refused_with_the_holders_pid(tiny_run, tmp_path):
    tiny, run_dir = tiny_run
    out = tmp_path / "p.parquet"
    with exclusive(out):
        result = run("predict", run_dir, tiny / "images", "-o", out)
    assert result.exit_code == 1 and f"pid {os.getpid()}" in result.output and not out.exists()


def test_an_interrupted_run_resumes_to_the_same_output(tiny_run, predicted, tmp_path, monkeypatch):
    tiny, run_dir = tiny_run
    monkeypatch.setattr(predict_module, "CHUNK", 16)
    out = tmp_path / "p.parquet"
    seen = []

    def stop_after_two_chunks(n):
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_images(run_dir, [tiny / "images"], out, Request(), say=lambda m: None, progress=stop_after_two_chunks)
    assert not out.exists() and len(list(parts_folder(out).glob("*.done.json"))) == 2
    result = run("predict", run_dir, tiny / "images", "-o", out, "--quiet")
    assert result.exit_code == 1 and "--resume" in result.output
    redone = []
    predict_images(run_dir, [tiny / "images"], out, Request(resume=True), say=lambda m: None, progress=redone.append)
    assert sum(redone) == 64 and not parts_folder(out).exists()
    pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(), pq.read_table(predicted).to_pandas())


def test_the_page_is_one_file_within_its_budget_with_nothing_to_fetch(tiny_run, cam_run, tmp_path):
    tiny, _ = tiny_run
    page = tmp_path / "view.html"
    result = run("predict", cam_run, tiny / "images", "-o", tmp_path / "p.parquet", "--html", page, "--html-films", "3",
                 "--quiet")
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "http://" not in text and "https://" not in text and "src=\"" not in text.replace('src="data:', "")
    data = json.loads(text.split('id="viewer-data">', 1)[1].split("</script>", 1)[0])
    assert [f["id"] for f in data["films"]] == [f"synth_{i:06d}.png" for i in range(3)]
    assert data["header"]["images"] == 64 and all(len(json.dumps(f)) <= FILM_BUDGET for f in data["films"])
    film = Image.open(io.BytesIO(base64.b64decode(data["films"][0]["film"].split(",", 1)[1])))
    assert film.format == "JPEG" and film.size == (48, 48)


def test_no_image_at_all_is_one_line(tiny_run, tmp_path):
    _, run_dir = tiny_run
    (tmp_path / "empty").mkdir()
    result = run("predict", run_dir, tmp_path / "empty", "-o", tmp_path / "p.parquet")
    assert result.exit_code == 1 and "no image in" in result.output and not (tmp_path / "p.parquet").exists()


def test_dicom_films_carry_their_uids_and_give_their_pngs_probabilities(tiny_run, predicted, tmp_path):
    """8-bit DICOM copies of two films, one named by its UID alone (no suffix), beside a PNG and a PDF
    renamed .dcm: the copies' probabilities are their originals', their UIDs are columns (null for the
    PNG), PatientID only when asked for, and the PDF is a named skip."""
    from test_dicom import write_dicom

    tiny, run_dir = tiny_run
    folder = tmp_path / "films"
    folder.mkdir()
    originals = {"a.dcm": "synth_000002.png", "1.2.826.0.1.3680043.8.498.77": "synth_000005.png"}
    for name, png in originals.items():
        write_dicom(folder / name, np.asarray(Image.open(tiny / "images" / png)))
    shutil.copy(tiny / "images" / "synth_000009.png", folder / "plain.png")
    (folder / "report.dcm").write_bytes(b"%PDF-1.4\n" + b"0" * 200)
    out = tmp_path / "p.parquet"
    result = run("predict", run_dir, folder, "-o", out, "--quiet")
    assert result.exit_code == 3 and "report.dcm" in result.output and "PDF" in result.output, result.output
    mine, reference = read(out), read(predicted)
    findings = findings_of(run_dir)
    for name, png in originals.items():
        assert np.abs(mine.loc[name, findings] - reference.loc[png, findings]).max() < 1e-6
        assert mine.loc[name, "StudyInstanceUID"] == "1.2.826.0.1.3680043.8.498.1"
        assert mine.loc[name, "SOPInstanceUID"].startswith("1.2.")
    assert mine.loc["plain.png", ["StudyInstanceUID", "SOPInstanceUID"]].isna().all()
    assert "PatientID" not in mine
    result = run("predict", run_dir, folder / "a.dcm", "-o", out, "--patient-id", "--quiet")
    assert result.exit_code == 0 and read(out).loc["a.dcm", "PatientID"] == "PAT-7"
