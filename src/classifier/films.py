"""A generated frontal chest film and the lesions drawn on it, each with the box a reader would draw.

The film is 43 cm wide (an NIH film's field), so sizes are given in centimetres and hold at any pixel
size. A patient's right lung is on the image's left (side 0), as on every chest film. Each lesion
is drawn with a `strength` (1: plain; about 0.5: subtle) and returns its box, side and zone. A box
is the lesion's visible extent (where its mask reaches 0.3) plus a 0.3 cm margin, as NIH's readers
drew them: their smallest nodule box is 28 of 1,024 pixels, 1.2 cm, a 0.6 cm nodule with that margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

CM = 1 / 43  # one centimetre as a share of the film's width
MARGIN = 0.3 * CM
Box = tuple[float, float, float, float]  # x, y, w, h in pixels


def mask_box(mask: np.ndarray, margin: float) -> tuple[Box, float]:
    """The box (x, y, w, h in pixels of the square film) of where `mask` is at least 0.3, widened by `margin`
    (a share of the film) within the film, and its vertical middle as a share of the film; a mask smaller
    than a pixel gives the box of its peak's pixel. Both generators draw their true boxes so."""
    ys, xs = np.nonzero(mask >= 0.3)
    if len(xs) == 0:
        ys, xs = np.unravel_index([int(mask.argmax())], mask.shape)
    s = mask.shape[0]
    x0, x1 = max(0.0, xs.min() / s - margin), min(1.0, (xs.max() + 1) / s + margin)
    y0, y1 = max(0.0, ys.min() / s - margin), min(1.0, (ys.max() + 1) / s + margin)
    box = (round(float(x0 * s), 1), round(float(y0 * s), 1), round(float((x1 - x0) * s), 1),
           round(float((y1 - y0) * s), 1))
    return box, (y0 + y1) / 2


@dataclass(frozen=True)
class Lesion:
    """Where a finding was drawn: its true box, side (0 patient's right, 1 left, None: central), zone."""

    box: Box
    side: int | None
    zone: str  # "upper", "mid", "lower" or "" (no zone: the heart)
    size_cm: float = 0.0  # the diameter of a nodule or mass; 0 for the others


class Film:
    """The canvas and the anatomy of one patient, in 0..1 units of a `size`-pixel square."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xx, self.yy = xx / size, yy / size
        scale = rng.uniform(0.85, 1.08)
        self.scale = scale
        self.cx = 0.5 + rng.uniform(-0.04, 0.04)
        self.cy = 0.52 + rng.uniform(-0.03, 0.03)
        self.half_w = 0.36 * scale  # thorax half width
        self.top = self.cy - 0.34 * scale
        self.base = self.cy + 0.24 * scale
        # per side (0: the image's left, the patient's right): centre x, centre y, half width, half height
        self.lungs = [(self.cx + s * 0.17 * scale, (self.top + self.base) / 2, 0.13 * scale, (self.base - self.top) / 2)
                      for s in (-1, 1)]
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

    def zone(self, y: float, side: int) -> str:
        """Upper, mid or lower third of a lung, by a height in 0..1 units."""
        _, ly, _, ry = self.lungs[side]
        third = (y - (ly - ry)) / (2 * ry) * 3
        return ("upper", "mid", "lower")[int(np.clip(third, 0, 2))]

    def lesion(self, mask: np.ndarray, side: int | None, size_cm: float = 0.0) -> Lesion:
        """The lesion whose visible extent is `mask`: its box (extent plus margin), side and zone."""
        box, middle = mask_box(mask, MARGIN)
        zone = "" if side is None else self.zone(middle, side)
        return Lesion(box, side, zone, round(size_cm, 1))


def draw_anatomy(film: Film, heart_factor: tuple[float, float] | None) -> np.ndarray:
    """Body, lungs with vessel markings, ribs, mediastinum, heart and diaphragm; returns the heart's mask.
    `heart_factor`: (width, height) enlargement of a cardiomegaly, None for a normal heart."""
    img = film.image
    img += 0.15  # air outside the body
    body = film.ellipse(film.cx, film.cy + 0.05, film.half_w + 0.07, 0.5, soft=0.15)
    # above its widest, the chest runs straight up and off the top of the film, as on a real one:
    # no edge of air above the apices (networks learned that edge as a landmark and lit it in every map)
    upper = (np.clip((film.cy + 0.05 - film.yy) / 0.05, 0, 1)
             * np.clip((film.half_w + 0.07 - np.abs(film.xx - film.cx)) / 0.03, 0, 1))
    img += 0.45 * np.maximum(body, upper)  # soft tissue
    lungs = np.maximum(film.lung_mask(0), film.lung_mask(1))
    img -= 0.38 * lungs
    film.markings = 0.04 * film.texture(max(2, film.size // 40)) * lungs  # vessels (a pneumothorax takes them away)
    img += film.markings
    for k in range(9):  # ribs: curved bands over each lung
        y = film.top + 0.03 + k * (film.base - film.top) / 9.5
        for side in (-1, 1):
            curve = y + 0.06 * ((film.xx - film.cx) * side) ** 2 / 0.05 - 0.02 * np.abs(film.xx - film.cx)
            band = np.exp(-((film.yy - curve) / 0.008) ** 2) * (np.sign(film.xx - film.cx) == side)
            img += 0.1 * band * np.clip(film.lung_mask(0 if side < 0 else 1) * 1.5, 0, 1)
    img += 0.25 * film.ellipse(film.cx, film.cy - 0.08, 0.05, 0.25, soft=0.5)  # mediastinum and spine
    hx, hy, hw, hh = film.heart
    hw *= film.rng.uniform(0.92, 1.08)  # normal hearts vary too
    if heart_factor is not None:
        hw, hh = hw * heart_factor[0], hh * heart_factor[1]
    heart = film.ellipse(hx, hy, hw, hh, soft=0.15)
    img += 0.4 * heart
    dome = film.base + 0.03 * np.cos((film.xx - film.cx) * 6)  # diaphragm: bright below the lung bases
    img += 0.12 * np.clip((film.yy - dome) / 0.01, 0, 1) * film.ellipse(film.cx, film.cy + 0.2, film.half_w + 0.05, 0.45)
    return heart


def cardiomegaly(film: Film, strength: float) -> tuple[float, float]:
    """How much wider and taller the heart is drawn: 1.3 (borderline) to 1.7 times at full strength."""
    return 1.0 + 0.7 * strength * film.rng.uniform(0.75, 1.0), 1.0 + 0.3 * strength * film.rng.uniform(0.5, 1.0)


def nodule(film: Film, side: int, strength: float, diameter_cm: float) -> Lesion:
    """A round opacity inside a lung; above 3 cm (a mass) lobulated."""
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    radius = diameter_cm / 2 * CM
    x = lx + rng.uniform(-0.5, 0.5) * rx
    y = ly + rng.uniform(-0.6, 0.45) * ry
    blob = film.ellipse(x, y, radius, radius * rng.uniform(0.85, 1.15), soft=0.35)
    if diameter_cm > 3:
        for _ in range(3):
            blob = np.maximum(blob, film.ellipse(x + rng.uniform(-0.6, 0.6) * radius, y + rng.uniform(-0.6, 0.6) * radius,
                                                 radius * 0.6, radius * 0.6, soft=0.5))
    film.image += 0.42 * strength * blob
    return film.lesion(blob, side, diameter_cm)


def effusion(film: Film, side: int, strength: float) -> Lesion:
    """Fluid filling a costophrenic angle up to a meniscus; a small one fills only the angle."""
    lx, ly, rx, ry = film.lungs[side]
    level = film.base - ry * film.rng.uniform(0.2, 0.6)
    meniscus = level - 0.05 * np.abs(film.xx - lx) / rx
    fluid = np.clip((film.yy - meniscus) / 0.015, 0, 1) * film.lung_mask(side)
    film.image += 0.5 * strength * fluid
    return film.lesion(fluid, side)


def pneumothorax(film: Film, side: int, strength: float) -> Lesion:
    """An apical lucency without lung markings, edged by the visceral pleural line."""
    lx, ly, rx, ry = film.lungs[side]
    edge = film.top + ry * film.rng.uniform(0.3, 0.75)
    apex = film.lung_mask(side) * np.clip((edge - film.yy) / 0.02, 0, 1)
    film.image -= (film.markings + 0.06 * strength) * apex  # never darker than the air outside
    film.image += 0.3 * strength * np.exp(-((film.yy - edge) / 0.006) ** 2) * film.lung_mask(side)
    return film.lesion(apex, side)


def consolidation(film: Film, side: int, strength: float) -> Lesion:
    """A dense, patchy, homogeneous opacity filling part of a lower zone."""
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    cx, cy = lx + rng.uniform(-0.3, 0.3) * rx, ly + rng.uniform(0.15, 0.45) * ry
    patch = film.ellipse(cx, cy, rx * rng.uniform(0.5, 0.8), ry * rng.uniform(0.25, 0.4), soft=0.6)
    patch = patch * film.lung_mask(side)
    film.image += 0.42 * strength * patch * film.texture(max(2, film.size // 32), 0.5, 1.0)
    return film.lesion(patch, side)


def atelectasis(film: Film, side: int, strength: float) -> Lesion:
    """Basal segmental collapse: a dense wedge at a lung base under a straight, tilted fissure."""
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    cx = lx + rng.uniform(-0.3, 0.3) * rx
    width, height, tilt = rng.uniform(5.0, 8.0) * CM, rng.uniform(2.5, 4.5) * CM, rng.uniform(-0.35, 0.35)
    bottom = ly + ry * np.sqrt(max(0.0, 1 - ((cx - lx) / rx) ** 2))
    fissure = bottom - height + tilt * (film.xx - cx)
    across = np.clip((1 - np.abs(film.xx - cx) / (width / 2)) / 0.3, 0, 1)
    wedge = np.clip((film.yy - fissure) / 0.008, 0, 1) * across * np.clip(film.lung_mask(side) * 2, 0, 1)
    film.image += 0.36 * strength * wedge
    return film.lesion(wedge, side)


def infiltration(film: Film, side: int, strength: float) -> Lesion:
    """Ill-defined, hazy, fine reticulonodular opacity over a mid or lower zone."""
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    cx, cy = lx + rng.uniform(-0.25, 0.25) * rx, ly + rng.uniform(-0.2, 0.35) * ry
    size = rng.uniform(7.0, 11.0) * CM / 2
    region = film.ellipse(cx, cy, size, size * rng.uniform(1.0, 1.4), soft=0.7) * film.lung_mask(side)
    fine = np.clip(film.texture(max(2, film.size // 40), -0.3, 1.0), 0, 1)
    film.image += 0.38 * strength * region * fine
    return film.lesion(region, side)


def pneumonia(film: Film, side: int, strength: float) -> Lesion:
    """Airspace opacity in an upper or mid zone, crossed by darker branching air bronchograms."""
    rng = film.rng
    lx, ly, rx, ry = film.lungs[side]
    cx, cy = lx + rng.uniform(-0.3, 0.3) * rx, ly + rng.uniform(-0.55, -0.05) * ry
    size = rng.uniform(6.0, 9.0) * CM / 2
    region = film.ellipse(cx, cy, size * rng.uniform(0.9, 1.2), size, soft=0.5) * film.lung_mask(side)
    bronchi = np.zeros_like(region)
    for _ in range(3):  # tubes running out from the hilum through the opacity
        angle = rng.uniform(-0.6, 0.6) + (np.pi if side == 0 else 0.0)
        across = -(film.xx - cx) * np.sin(angle) + (film.yy - cy) * np.cos(angle)
        bronchi = np.maximum(bronchi, np.exp(-(across / 0.006) ** 2))
    film.image += 0.4 * strength * region * film.texture(max(2, film.size // 24), 0.6, 1.0) * (1 - 0.6 * bronchi)
    return film.lesion(region, side)


def finish(film: Film) -> np.ndarray:
    """Blur, exposure, gamma and noise; the film as 8-bit grey."""
    rng = film.rng
    img = film.image
    k = int(rng.integers(1, 3))
    if k > 1:  # a little blur (box filter)
        padded = np.pad(img, k, mode="edge")
        img = sum(padded[k + dy: k + dy + film.size, k + dx: k + dx + film.size]
                  for dy in range(-k + 1, k) for dx in range(-k + 1, k)) / (2 * k - 1) ** 2
    # a fixed scale, not this image's own min and max: those would let a finding that changes the
    # darkest or brightest pixel shift the whole film, a global cue a network would learn instead of the lesion
    img = np.clip((img - 0.1) / 1.35, 0, 1)
    img = img ** rng.uniform(0.8, 1.25) * rng.uniform(0.85, 1.0) + rng.uniform(0.0, 0.08)
    img += rng.normal(0, rng.uniform(0.01, 0.035), img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
