"""Generated chest radiographs with known findings, boxes and reports, for demos and tests.

Each image is a grey frontal film (films.py: a torso, two dark lung fields crossed by ribs, a bright
heart and diaphragm, the patient's size, position, exposure, blur and noise varied) with the eight
findings NIH's readers boxed, and Consolidation, drawn where a radiologist would look for them:

- Nodule: a round opacity of 0.6 to 3 cm in a lung;  Mass: a lobulated one of 3.5 to 6.5 cm;
- Effusion: fluid in a costophrenic angle with a meniscus;  Cardiomegaly: a wide heart;
- Pneumothorax: an apical lucency without lung markings, edged by a pleural line;
- Consolidation: a dense patchy opacity in a lower zone;  Pneumonia: an airspace opacity with air
  bronchograms in an upper or mid zone;  Infiltration: a hazy fine reticular opacity;
- Atelectasis: a dense wedge of collapsed lung at a base, under a straight fissure.

Each finding is on either side, at a strength from plain to subtle, and a film often holds two or
more. A short report is written for each image from templates, naming each finding with its side
(and zone): positives (some hedged, so the labeler calls them uncertain), negated findings, and
normal phrases. The generator writes the images, a reports table the labeler reads, the boxes in the
NIH `BBox_List` format (its odd header included), and the true labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cxrcore.output import OutputFolder

from . import films
from .films import Box, Film, Lesion

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
            "Consolidation")
PREVALENCE = {"Atelectasis": 0.18, "Cardiomegaly": 0.2, "Effusion": 0.2, "Infiltration": 0.18, "Mass": 0.15,
              "Nodule": 0.22, "Pneumonia": 0.18, "Pneumothorax": 0.18, "Consolidation": 0.18}
SIDES = ("right", "left")  # side 0, the image's left, is the patient's right
STRENGTH = (0.5, 1.0)  # a lesion's contrast, from subtle to plain
NODULE_CM, MASS_CM = (0.6, 3.0), (3.5, 6.5)
DRAWERS = {"Effusion": films.effusion, "Pneumothorax": films.pneumothorax, "Consolidation": films.consolidation,
           "Atelectasis": films.atelectasis, "Infiltration": films.infiltration, "Pneumonia": films.pneumonia}


@dataclass
class Case:
    """One generated image: its findings with boxes (x, y, w, h in pixels) and its report."""

    image_id: str
    patient_id: str
    findings: dict[str, Box]
    report: str
    lesions: dict[str, Lesion]  # each finding's side, zone and size


POSITIVE = {
    "Atelectasis": ["{Side} basal atelectasis.", "Atelectasis at the {side} base."],
    "Cardiomegaly": ["The heart is enlarged.", "Moderate cardiomegaly.", "The cardiac silhouette is enlarged."],
    "Effusion": ["{Size} {side} pleural effusion.", "There is a {size} {side} pleural effusion."],
    "Infiltration": ["There is an infiltrate in the {side} {zone} zone.", "Hazy {side} {zone} zone infiltrates."],
    "Mass": ["There is a {cm} cm mass in the {side} {zone} zone.", "{Side} {zone} zone mass."],
    "Nodule": ["{Side} {zone} zone nodule.", "There is a {cm} cm nodule in the {side} {zone} zone."],
    "Pneumonia": ["{Side} {zone} zone pneumonia.",
                  "Airspace opacity in the {side} {zone} zone, in keeping with pneumonia."],
    "Pneumothorax": ["{Side} apical pneumothorax.", "There is a small {side} pneumothorax."],
    "Consolidation": ["{Side} basilar consolidation.", "There is consolidation in the {side} lower zone."],
}
HEDGED = {
    "Atelectasis": "Possible {side} basilar atelectasis.", "Cardiomegaly": "Possible mild cardiomegaly.",
    "Effusion": "Possible small {side} effusion.", "Infiltration": "Possible {side} {zone} zone infiltrate.",
    "Mass": "Possible {side} lung mass.", "Nodule": "Questionable {side} {zone} zone nodule.",
    "Pneumonia": "Possible {side} {zone} zone pneumonia.", "Pneumothorax": "Possible small {side} pneumothorax.",
    "Consolidation": "{Side} basilar opacity may represent consolidation.",
}
NEGATIVE = {
    "Atelectasis": "No atelectasis.", "Cardiomegaly": "The heart is not enlarged.", "Effusion": "No pleural effusion.",
    "Infiltration": "No infiltrate.", "Mass": "No mass.", "Nodule": "No suspicious nodule.",
    "Pneumonia": "No pneumonia.",
    "Pneumothorax": "No pneumothorax.", "Consolidation": "No focal consolidation.",
}


def _words(lesion: Lesion, name: str) -> dict[str, str]:
    """What a template may say of a lesion: side, zone, size."""
    side = SIDES[lesion.side] if lesion.side is not None else ""
    size = "small" if name == "Effusion" and lesion.box[3] < lesion.box[2] else "moderate"
    return {"side": side, "Side": side.capitalize(), "zone": lesion.zone, "size": size, "Size": size.capitalize(),
            "cm": f"{lesion.size_cm:.1f}".removesuffix(".0")}


def _report(rng: np.random.Generator, lesions: dict[str, Lesion], hedge: float) -> str:
    """FINDINGS and IMPRESSION from templates, each present finding named with its side and zone."""
    sentences, impressions = [], []
    for name, lesion in lesions.items():
        words = _words(lesion, name)
        hedged = rng.random() < hedge
        template = HEDGED[name] if hedged else str(rng.choice(POSITIVE[name]))
        sentences.append(template.format(**words))
        impressions.append((HEDGED[name] if hedged else POSITIVE[name][0]).format(**words))
    absent = [f for f in FINDINGS if f not in lesions]
    for name in rng.permutation(absent)[: int(rng.integers(1, 4))] if absent else []:
        sentences.append(NEGATIVE[str(name)])
    order = rng.permutation(len(sentences))
    body = " ".join(sentences[i] for i in order)
    impression = " ".join(impressions) or "No acute cardiopulmonary abnormality."
    return f"FINDINGS: {body}\nIMPRESSION: {impression}"


def _draw(film: Film, name: str, side: int, strength: float) -> Lesion:
    """One finding drawn on a lung."""
    if name in ("Mass", "Nodule"):
        low, high = NODULE_CM if name == "Nodule" else MASS_CM
        return films.nodule(film, side, strength, float(film.rng.uniform(low, high)))
    return DRAWERS[name](film, side, strength)


def generate_case(index: int, size: int, rng: np.random.Generator, hedge: float = 0.1) -> tuple[np.ndarray, Case]:
    """One image and its case record."""
    present = [f for f in FINDINGS if rng.random() < PREVALENCE[f]]
    film = Film(size, rng)
    enlarged = films.cardiomegaly(film, rng.uniform(*STRENGTH)) if "Cardiomegaly" in present else None
    heart = films.draw_anatomy(film, enlarged)
    lesions: dict[str, Lesion] = {}
    if enlarged is not None:
        lesions["Cardiomegaly"] = film.lesion(heart, None)
    for name in present:
        if name != "Cardiomegaly":
            lesions[name] = _draw(film, name, int(rng.integers(2)), float(rng.uniform(*STRENGTH)))
    image = films.finish(film)
    image_id = f"synth_{index:06d}.png"
    patient = f"P{index // 2:05d}"  # two studies per patient, so splits must respect patients
    boxes = {name: lesion.box for name, lesion in lesions.items()}
    return image, Case(image_id, patient, boxes, _report(rng, lesions, hedge), lesions)


CaseMaker = Callable[[int, int, np.random.Generator, float], tuple[np.ndarray, "Case"]]


def generate(out_dir: str | Path, n: int, size: int = 128, seed: int = 0, hedge: float = 0.1,
             make_case: CaseMaker | None = None) -> list[Case]:
    """Write N cases under `out_dir`: images/, reports.csv, BBox_List.csv, truth.csv. The folder is new, empty
    or an earlier set's (cxrcore.output.OutputFolder), whose files this set replaces all at once at the end,
    so no image or table of an earlier set mixes with this one. `make_case` draws one case (this module's
    films by default; ward.generate_case for the bedside family)."""
    with OutputFolder(out_dir, "classifier synth") as folder:
        cases = _write_set(folder, n, size, seed, hedge, make_case or generate_case)
        folder.commit()
        return cases


def _write_set(folder: OutputFolder, n: int, size: int, seed: int, hedge: float, make_case: CaseMaker) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        image, case = make_case(i, size, rng, hedge)
        Image.fromarray(image, mode="L").save(folder.path(f"images/{case.image_id}"), format="PNG")
        cases.append(case)
    with open(folder.path("reports.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "image_id", "patient_id", "image_path", "text"])
        for c in cases:
            writer.writerow([c.image_id.removesuffix(".png"), c.image_id, c.patient_id, f"images/{c.image_id}", c.report])
    with open(folder.path("BBox_List.csv"), "w", newline="") as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        for c in cases:
            for name, (x, y, w, h) in c.findings.items():
                fh.write(f"{c.image_id},{name},{x},{y},{w},{h}\n")
    with open(folder.path("truth.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "patient_id", *FINDINGS])
        for c in cases:
            writer.writerow([c.image_id, c.patient_id, *[int(f in c.findings) for f in FINDINGS]])
    return cases
