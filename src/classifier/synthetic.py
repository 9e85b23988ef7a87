"""Generated chest radiographs with known findings, boxes and reports, for demos and tests.

Each image is a grey frontal film: a torso, two dark lung fields crossed by ribs, a bright heart and
diaphragm, with the patient's size, position, exposure, blur and noise varied. Findings are drawn
where a radiologist would look for them, each with its true box:

- Nodule: a small round opacity inside a lung;  Mass: a larger lobulated one;
- Effusion: fluid filling a costophrenic angle with a meniscus;  Cardiomegaly: a wide heart;
- Pneumothorax: an apical lucency without lung markings, edged by a pleural line;
- Consolidation: a dense patchy opacity filling part of a lower lobe.

A short report is written for each image from templates: positives (some hedged, so the labeler
calls them uncertain), negated findings, and normal phrases. The generator writes the images, a
reports table the labeler reads, the boxes in the NIH `BBox_List` format (its odd header included),
and the true labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxrcore.output import OutputError, exclusive, make_folder

FINDINGS = ("Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax", "Consolidation")
PREVALENCE = {"Cardiomegaly": 0.25, "Effusion": 0.25, "Mass": 0.2, "Nodule": 0.25, "Pneumothorax": 0.2,
              "Consolidation": 0.25}
SIDES = ("right", "left")  # patient's right is the image's left


@dataclass
class Case:
    """One generated image: its findings with boxes (x, y, w, h in pixels) and its report."""

    image_id: str
    patient_id: str
    findings: dict[str, tuple[float, float, float, float]]
    report: str


class _Film:
    """The canvas and the anatomy of one patient, in pixel units of a `size` square."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xx, self.yy = xx / size, yy / size  # 0..1 coordinates
        scale = rng.uniform(0.85, 1.08)
        self.cx = 0.5 + rng.uniform(-0.04, 0.04)
        self.cy = 0.52 + rng.uniform(-0.03, 0.03)
        self.half_w = 0.36 * scale  # thorax half width
        self.top = self.cy - 0.34 * scale
        self.base = self.cy + 0.24 * scale
        self.lungs = []  # per side: (centre x, centre y, half width, half height)
        for side in (-1, 1):
            lx = self.cx + side * 0.17 * scale
            self.lungs.append((lx, (self.top + self.base) / 2, 0.13 * scale, (self.base - self.top) / 2))
        self.heart = [self.cx + 0.04 * scale, self.base - 0.1 * scale, 0.11 * scale, 0.09 * scale]
        self.image = np.zeros((size, size), np.float32)
        self.markings = np.zeros((size, size), np.float32)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, soft: float = 0.1) -> np.ndarray:
        """A filled ellipse mask (0..1) whose edge ramps over `soft` of its radius."""
        d = np.sqrt(((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2)
        return np.clip((1 - d) / soft, 0, 1)

    def texture(self, cell: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
        """Smooth random texture: uniform noise on a coarse grid, bilinearly enlarged."""
        grid = self.rng.uniform(low, high, (self.size // cell + 2, self.size // cell + 2)).astype(np.float32)
        big = Image.fromarray(grid, mode="F").resize((self.size + 2 * cell, self.size + 2 * cell), Image.BILINEAR)
        return np.asarray(big, np.float32)[cell: cell + self.size, cell: cell + self.size]

    def lung_mask(self, side: int) -> np.ndarray:
        lx, ly, rx, ry = self.lungs[side]
        return self.ellipse(lx, ly, rx, ry, soft=0.12)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        s = self.size
        x0, x1 = max(0.0, x0), min(1.0, x1)
        y0, y1 = max(0.0, y0), min(1.0, y1)
        return (round(x0 * s, 1), round(y0 * s, 1), round((x1 - x0) * s, 1), round((y1 - y0) * s, 1))


def _draw_anatomy(film: _Film, cardiomegaly: bool) -> tuple[float, float, float, float] | None:
    rng = film.rng
    img = film.image
    img += 0.15  # air outside the body
    img += 0.45 * film.ellipse(film.cx, film.cy + 0.05, film.half_w + 0.07, 0.5, soft=0.15)  # soft tissue
    lungs = np.maximum(film.lung_mask(0), film.lung_mask(1))
    img -= 0.38 * lungs
    # vessels: faint branching texture in the lungs (a pneumothorax takes them away)
    film.markings = 0.04 * film.texture(max(2, film.size // 40)) * lungs
    img += film.markings
    # ribs: curved bands over each lung
    for k in range(9):
        y = film.top + 0.03 + k * (film.base - film.top) / 9.5
        for side in (-1, 1):
            curve = y + 0.06 * ((film.xx - film.cx) * side) ** 2 / 0.05 - 0.02 * np.abs(film.xx - film.cx)
            band = np.exp(-((film.yy - curve) / 0.008) ** 2) * (np.sign(film.xx - film.cx) == side)
            img += 0.1 * band * np.clip(film.lung_mask(0 if side < 0 else 1) * 1.5, 0, 1)
    # mediastinum and spine
    img += 0.25 * film.ellipse(film.cx, film.cy - 0.08, 0.05, 0.25, soft=0.5)
    # heart (wider when cardiomegaly)
    hx, hy, hw, hh = film.heart
    if cardiomegaly:
        hw *= rng.uniform(1.45, 1.7)
        hh *= rng.uniform(1.15, 1.3)
    img += 0.4 * film.ellipse(hx, hy, hw, hh, soft=0.15)
    # diaphragm: bright below the lung bases
    dome = film.base + 0.03 * np.cos((film.xx - film.cx) * 6)
    img += 0.12 * np.clip((film.yy - dome) / 0.01, 0, 1) * film.ellipse(film.cx, film.cy + 0.2, film.half_w + 0.05, 0.45)
    if cardiomegaly:
        return film.box(hx - hw, hy - hh, hx + hw, hy + hh)
    return None


def _nodule(film: _Film, radius: float) -> tuple[float, float, float, float]:
    rng = film.rng
    side = int(rng.integers(2))
    lx, ly, rx, ry = film.lungs[side]
    x = lx + rng.uniform(-0.5, 0.5) * rx
    y = ly + rng.uniform(-0.55, 0.4) * ry
    blob = film.ellipse(x, y, radius, radius * rng.uniform(0.85, 1.15), soft=0.35)
    if radius > 0.04:  # a mass: lobulated
        for _ in range(3):
            blob = np.maximum(blob, film.ellipse(x + rng.uniform(-0.6, 0.6) * radius, y + rng.uniform(-0.6, 0.6) * radius,
                                                 radius * 0.6, radius * 0.6, soft=0.5))
    film.image += 0.42 * blob
    return film.box(x - radius * 1.3, y - radius * 1.3, x + radius * 1.3, y + radius * 1.3)


def _effusion(film: _Film, side: int) -> tuple[float, float, float, float]:
    lx, ly, rx, ry = film.lungs[side]
    level = film.base - ry * film.rng.uniform(0.35, 0.6)
    meniscus = level - 0.05 * np.abs(film.xx - lx) / rx * (1 if side == 0 else 1)
    fluid = np.clip((film.yy - meniscus) / 0.015, 0, 1) * film.lung_mask(side)
    film.image += 0.5 * fluid
    return film.box(lx - rx, level - 0.05, lx + rx, film.base + 0.02)


def _pneumothorax(film: _Film, side: int) -> tuple[float, float, float, float]:
    lx, ly, rx, ry = film.lungs[side]
    edge = film.top + ry * film.rng.uniform(0.45, 0.75)
    apex = film.lung_mask(side) * np.clip((edge - film.yy) / 0.02, 0, 1)
    film.image -= (film.markings + 0.05) * apex  # air with no lung markings, not darker than air outside
    line = np.exp(-((film.yy - edge) / 0.006) ** 2) * film.lung_mask(side)
    film.image += 0.25 * line  # the visceral pleural line
    return film.box(lx - rx, film.top - 0.01, lx + rx, edge + 0.02)


def _consolidation(film: _Film, side: int) -> tuple[float, float, float, float]:
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    cx, cy = lx + rng.uniform(-0.3, 0.3) * rx, ly + rng.uniform(0.0, 0.4) * ry
    w, h = rx * rng.uniform(0.5, 0.8), ry * rng.uniform(0.3, 0.45)
    patch = film.ellipse(cx, cy, w, h, soft=0.6) * film.lung_mask(side)
    film.image += 0.42 * patch * film.texture(max(2, film.size // 32), 0.5, 1.0)
    return film.box(cx - w, cy - h, cx + w, cy + h)


def _finish(film: _Film) -> np.ndarray:
    rng = film.rng
    img = film.image
    # blur a little (box filter), then exposure, gamma and noise
    k = int(rng.integers(1, 3))
    if k > 1:
        padded = np.pad(img, k, mode="edge")
        img = sum(padded[k + dy: k + dy + film.size, k + dx: k + dx + film.size]
                  for dy in range(-k + 1, k) for dx in range(-k + 1, k)) / (2 * k - 1) ** 2
    # a fixed scale, not this image's own min and max: those would let a finding that changes the
    # darkest or brightest pixel shift the whole film, a global cue a network would learn instead of the lesion
    img = np.clip((img - 0.1) / 1.35, 0, 1)
    img = img ** rng.uniform(0.8, 1.25) * rng.uniform(0.85, 1.0) + rng.uniform(0.0, 0.08)
    img += rng.normal(0, rng.uniform(0.01, 0.035), img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


POSITIVE = {
    "Cardiomegaly": ["The heart is enlarged.", "Moderate cardiomegaly.", "The cardiac silhouette is enlarged."],
    "Effusion": ["Small {side} pleural effusion.", "There is a {side} pleural effusion.", "Moderate {side} effusion."],
    "Mass": ["There is a mass in the {side} lung.", "Large {side} lung mass.", "A {side} mass lesion is present."],
    "Nodule": ["Small nodule in the {side} lung.", "There is a {side} pulmonary nodule.", "A {side} lung nodule is seen."],
    "Pneumothorax": ["{Side} apical pneumothorax.", "There is a small {side} pneumothorax.", "{Side} pneumothorax is present."],
    "Consolidation": ["{Side} basilar consolidation.", "There is consolidation in the {side} lower lobe.",
                      "Dense {side} lower lobe consolidation."],
}
HEDGED = {
    "Cardiomegaly": "Possible mild cardiomegaly.", "Effusion": "Possible small {side} effusion.",
    "Mass": "Possible {side} lung mass.", "Nodule": "Questionable {side} nodule.",
    "Pneumothorax": "Possible small {side} pneumothorax.", "Consolidation": "{Side} basilar opacity may represent consolidation.",
}
NEGATIVE = {
    "Cardiomegaly": "The heart is not enlarged.", "Effusion": "No pleural effusion.", "Mass": "No mass.",
    "Nodule": "No suspicious nodule.", "Pneumothorax": "No pneumothorax.", "Consolidation": "No focal consolidation.",
}


def _report(rng: np.random.Generator, findings: dict[str, str], hedge: float) -> str:
    """FINDINGS and IMPRESSION from templates; `findings` maps each present finding to its side."""
    sentences, impressions = [], []
    for name, side in findings.items():
        hedged = rng.random() < hedge
        template = HEDGED[name] if hedged else str(rng.choice(POSITIVE[name]))
        sentences.append(template.format(side=side, Side=side.capitalize()))
        impressions.append((HEDGED[name] if hedged else POSITIVE[name][0]).format(side=side, Side=side.capitalize()))
    absent = [f for f in FINDINGS if f not in findings]
    for name in rng.permutation(absent)[: int(rng.integers(1, 4))] if absent else []:
        sentences.append(NEGATIVE[str(name)])
    order = rng.permutation(len(sentences))
    body = " ".join(sentences[i] for i in order)
    impression = " ".join(impressions) or "No acute cardiopulmonary abnormality."
    return f"FINDINGS: {body}\nIMPRESSION: {impression}"


def generate_case(index: int, size: int, rng: np.random.Generator, hedge: float = 0.1) -> tuple[np.ndarray, Case]:
    """One image and its case record."""
    present = [f for f in FINDINGS if rng.random() < PREVALENCE[f]]
    film = _Film(size, rng)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    sides: dict[str, str] = {}
    heart = _draw_anatomy(film, "Cardiomegaly" in present)
    if heart is not None:
        boxes["Cardiomegaly"], sides["Cardiomegaly"] = heart, "left"
    for name in present:
        side = int(rng.integers(2))
        if name == "Effusion":
            boxes[name] = _effusion(film, side)
        elif name == "Pneumothorax":
            boxes[name] = _pneumothorax(film, side)
        elif name == "Consolidation":
            boxes[name] = _consolidation(film, side)
        elif name in ("Mass", "Nodule"):
            radius = rng.uniform(0.06, 0.09) if name == "Mass" else rng.uniform(0.026, 0.036)
            boxes[name] = _nodule(film, radius)
            side = 0 if boxes[name][0] + boxes[name][2] / 2 < film.cx * size else 1
        if name != "Cardiomegaly":
            sides[name] = SIDES[side]
    image = _finish(film)
    image_id = f"synth_{index:06d}.png"
    patient = f"P{index // 2:05d}"  # two studies per patient, so splits must respect patients
    return image, Case(image_id, patient, boxes, _report(rng, sides, hedge))


def generate(out_dir: str | Path, n: int, size: int = 128, seed: int = 0, hedge: float = 0.1) -> list[Case]:
    """Write N cases under `out_dir` (a new or empty folder, so no earlier set mixes with this one):
    images/, reports.csv, BBox_List.csv, truth.csv."""
    out = make_folder(out_dir)
    with exclusive(out):
        if any(p.name != ".lock" for p in out.iterdir()):
            raise OutputError(f"{out}: is not empty; generate into a new or empty folder, so that no image or "
                              f"table of an earlier set mixes with this one")
        return _write_set(out, n, size, seed, hedge)


def _write_set(out: Path, n: int, size: int, seed: int, hedge: float) -> list[Case]:
    (out / "images").mkdir()
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        image, case = generate_case(i, size, rng, hedge)
        Image.fromarray(image, mode="L").save(out / "images" / case.image_id)
        cases.append(case)
    with (out / "reports.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "image_id", "patient_id", "image_path", "text"])
        for c in cases:
            writer.writerow([c.image_id.removesuffix(".png"), c.image_id, c.patient_id, f"images/{c.image_id}", c.report])
    with (out / "BBox_List.csv").open("w", newline="") as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        for c in cases:
            for name, (x, y, w, h) in c.findings.items():
                fh.write(f"{c.image_id},{name},{x},{y},{w},{h}\n")
    with (out / "truth.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "patient_id", *FINDINGS])
        for c in cases:
            writer.writerow([c.image_id, c.patient_id, *[int(f in c.findings) for f in FINDINGS]])
    return cases
