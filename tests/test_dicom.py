"""DICOM read right: copies of generated films made here (MONOCHROME2 and MONOCHROME1, 8-, 12- and 16-bit,
modality and VOI LUTs, one compressed) give their PNG originals' pixels and a trained network's
probabilities; hostile files are one line each."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import get_encoder  # noqa: E402
from pydicom.uid import (JPEG2000Lossless, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian,  # noqa: E402
                         JPEGLosslessSV1, generate_uid)

from classifier.cli import main as classifier_main  # noqa: E402
from cxrcore.cli import EXIT_SKIPPED  # noqa: E402
from classifier.data import model_input  # noqa: E402
from classifier.dicom import identifiers  # noqa: E402
from classifier.images import ImageError, decode  # noqa: E402
from classifier.runs import load_run  # noqa: E402


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                syntax=ExplicitVRLittleEndian, **attributes) -> None:
    """A single-frame DX film holding `pixels` as stored values, with the given header attributes."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.PatientID, ds.Modality = "1.2.826.0.1.3680043.8.498.1", "PAT-7", "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits_stored or bits, (bits_stored or bits) - 1, 0
    ds.PixelData = pixels.tobytes()
    for name, value in attributes.items():
        setattr(ds, name, value)
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, encoding_plugin="pylibjpeg")
    ds.save_as(path, enforce_file_format=True)


def voi_lut(bits: int, curve) -> Dataset:
    """A VOI LUT Sequence item mapping every stored value v to round(curve(v))."""
    item = Dataset()
    item.LUTDescriptor = [0, 0, 16]  # 0 entries means 65,536, starting at stored value 0
    item.LUTData = np.rint(curve(np.arange(2 ** bits, dtype=np.float64))).astype("<u2").tobytes()
    return item


def copies(png, folder) -> dict[str, object]:
    """DICOM copies of one 8-bit PNG film p, each stored so that reading it right gives back p."""
    p = np.asarray(Image.open(png), np.uint16)
    stem = png.stem
    made = {}

    def add(name, *args, **kwargs):
        made[name] = folder / f"{stem}.{name}.dcm"
        write_dicom(made[name], *args, **kwargs)

    add("m2-8bit", p.astype(np.uint8))
    # A non-linear VOI LUT: stored values are p squared on 16 bits, the LUT takes the root back to 0-255.
    add("m2-16bit-voilut", np.rint(65535 * (p / 255.0) ** 2).astype(np.uint16),
        VOILUTSequence=[voi_lut(16, lambda v: 255 * np.sqrt(v / 65535))])
    # MONOCHROME1 (dense is dark), with a rescale and a window wide enough to clip nothing.
    stored = (65535 - p * 257).astype(np.uint16)
    modality = stored * 0.25 - 1000
    window = dict(RescaleSlope=0.25, RescaleIntercept=-1000, WindowCenter=float(modality.min() + modality.max()) / 2 + 0.5,
                  WindowWidth=float(modality.max() - modality.min()) + 2)
    add("m1-16bit-window", stored, "MONOCHROME1", **window)
    # 12 bits, MONOCHROME1 with a negative slope: the two inversions cancel only if both are applied.
    add("m1-12bit-negative-slope", (p * 16).astype(np.uint16), "MONOCHROME1", bits_stored=12,
        RescaleSlope=-1, RescaleIntercept=4095)
    if get_encoder(JPEG2000Lossless).is_available:
        add("m1-16bit-j2k", stored, "MONOCHROME1", syntax=JPEG2000Lossless, **window)
    return made


@pytest.mark.slow
def test_dicom_copies_give_the_pixels_and_probabilities_of_their_png_originals(tiny_run, tmp_path):
    tiny, run = tiny_run
    model, config, findings, _ = load_run(run, torch.device("cpu"))
    pngs = sorted((tiny / "images").glob("*.png"))[:6]
    made = {png: copies(png, tmp_path) for png in pngs}
    if not get_encoder(JPEG2000Lossless).is_available:  # no plugin: the compressed copy is refused in one line
        write_dicom(tmp_path / "raw.dcm", np.zeros((8, 8), np.uint16))
        _compress_in_place(tmp_path / "raw.dcm", JPEGLosslessSV1)
        with pytest.raises(ImageError, match=r"raw.dcm: compressed as .*pip install 'chestxray-toolkit\[dicom\]'"):
            decode(tmp_path / "raw.dcm", 48)
    else:
        assert all(len(m) == 5 for m in made.values())

    def probabilities(paths) -> np.ndarray:
        batch = torch.stack([torch.from_numpy(decode(p, config.size)[0]) for p in paths])
        with torch.no_grad():
            return torch.sigmoid(model(model_input(batch, torch.device("cpu")))).numpy()

    originals = probabilities(pngs)
    for name in next(iter(made.values())):
        dicoms = [made[png][name] for png in pngs]
        for png, dcm in zip(pngs, dicoms):
            gap = np.abs(decode(png, config.size)[0].astype(int) - decode(dcm, config.size)[0].astype(int)).max()
            assert gap <= 1, f"{dcm.name}: {gap} grey levels from its PNG"
        assert np.abs(probabilities(dicoms) - originals).max() < 1e-3, name
    # The 16-bit copy read without its LUTs or inversion is another picture: the comparison above can fail.
    raw = pydicom.dcmread(made[pngs[0]]["m1-16bit-window"]).pixel_array.astype(np.float32)
    assert np.corrcoef(raw.ravel(), decode(pngs[0], 48)[0].ravel().astype(np.float32))[0, 1] < -0.9


def _compress_in_place(path, syntax) -> None:
    """Relabel a film as compressed with `syntax` (its fragment is not real JPEG: the decoder is never reached)."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


def test_a_missing_decoder_plugin_is_one_line_naming_what_to_install(tmp_path):
    write_dicom(tmp_path / "lossless.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    _compress_in_place(tmp_path / "lossless.dcm", JPEGLosslessSV1)
    # A user without pylibjpeg's plugins: they cannot be imported in this process.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pylibjpeg"] = None
        from classifier.images import ImageError, decode
        try:
            decode({str(tmp_path / "lossless.dcm")!r}, 32)
        except ImageError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"{tmp_path / 'lossless.dcm'}: compressed as JPEG Lossless, Non-Hierarchical, "
                                  f"First-Order Prediction (Process 14 [Selection Value 1]); decoding it needs a "
                                  f"plugin: pip install 'chestxray-toolkit[dicom]' (pylibjpeg, pylibjpeg-libjpeg, "
                                  f"pylibjpeg-openjpeg)")


def test_hostile_dicom_files_are_one_line_each(tmp_path):
    film = np.tile(np.arange(32, dtype=np.uint16) * 100, (32, 1))
    (tmp_path / "report.dcm").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" * 20)
    write_dicom(tmp_path / "good.dcm", film)
    whole = (tmp_path / "good.dcm").read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(whole[: len(whole) - 700])
    write_dicom(tmp_path / "huge.dcm", film, Rows=50_000, Columns=50_000)  # a header claiming 2.5 billion pixels
    write_dicom(tmp_path / "cine.dcm", np.concatenate([film, film]), Rows=32, NumberOfFrames=2)
    write_dicom(tmp_path / "report-only.dcm", film)
    ds = pydicom.dcmread(tmp_path / "report-only.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "report-only.dcm", enforce_file_format=True)
    expected = {
        "report.dcm": "not a DICOM file (it is a PDF; no 'DICM' marker after the 128-byte preamble)",
        "truncated.dcm": "cannot decode the DICOM pixel data (",
        "huge.dcm": "refused, its header claims 50,000 x 50,000 pixels, over the budget of",
        "cine.dcm": "a multi-frame DICOM (2 frames); only single films are read",
        "report-only.dcm": "a DICOM without pixel data (Digital X-Ray Image Storage - For Presentation)",
    }
    for name, message in expected.items():
        with pytest.raises(ImageError) as caught:
            decode(tmp_path / name, 32)
        text = str(caught.value)
        assert text.startswith(f"{tmp_path / name}: ") and message in text and "\n" not in text, text
    assert decode(tmp_path / "good.dcm", 32)[1] == (32, 32)


def test_a_film_named_by_its_uid_is_read_as_dicom_and_its_identifiers_are_carried(tmp_path):
    film = np.tile(np.arange(32, dtype=np.uint16) * 100, (32, 1))
    write_dicom(tmp_path / "1.2.3.4.5", film, PhotometricInterpretation="MONOCHROME1")
    image = decode(tmp_path / "1.2.3.4.5", 32)[0]
    assert image[:, 0].mean() > 250 and image[:, -1].mean() < 5  # inverted: the low stored values are bright
    ids = identifiers(tmp_path / "1.2.3.4.5")
    assert ids["StudyInstanceUID"] == "1.2.826.0.1.3680043.8.498.1" and ids["SOPInstanceUID"].startswith("1.2.")
    assert "PatientID" not in ids
    assert identifiers(tmp_path / "1.2.3.4.5", patient=True)["PatientID"] == "PAT-7"
    (tmp_path / "x.dcm").write_bytes(b"")
    with pytest.raises(ImageError, match=r"x.dcm: not a DICOM file \(empty; "):
        identifiers(tmp_path / "x.dcm")


@pytest.mark.slow
def test_score_names_a_pdf_renamed_dcm_and_scores_the_dicom_films(tiny_run, tmp_path):
    tiny, run = tiny_run
    table = pq.read_table(tiny / "labels.parquet").slice(0, 3)
    png = tiny / table.column("image_path")[0].as_py()
    write_dicom(tmp_path / "film.dcm", np.asarray(Image.open(png), np.uint8))
    (tmp_path / "scan.dcm").write_bytes(b"%PDF-1.4\n" + b"x" * 400)
    paths = [str(png), str(tmp_path / "film.dcm"), str(tmp_path / "scan.dcm")]
    table = table.set_column(table.schema.get_field_index("image_path"), "image_path", pa.array(paths, pa.string()))
    pq.write_table(table, tmp_path / "labels.parquet")
    result = CliRunner().invoke(classifier_main, ["score", str(run), str(tmp_path / "labels.parquet"), "-o",
                                                  str(tmp_path / "scores.parquet"), "--bootstrap", "0"])
    assert result.exit_code in (0, EXIT_SKIPPED), result.output  # written; exit 3 where score counts its skips
    assert f"skipped unreadable image {tmp_path / 'scan.dcm'}: not a DICOM file (it is a PDF;" in result.output
    scores = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    first = [c for c in scores.columns if c not in ("image_id", "image_path")]
    assert np.abs(scores.loc[0, first].to_numpy(float) - scores.loc[1, first].to_numpy(float)).max() < 1e-5
    assert scores.loc[2, first].isna().all()
