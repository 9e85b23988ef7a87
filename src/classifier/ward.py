"""A second family of generated films: bedside (AP, supine) chest films, written from this description
alone, never tuned on what the first family (films.py) gives, so that localization defaults can be
judged on films they were not chosen on.

The description it follows, against the first family point by point:

- **Anatomy**: a 40 cm field; lungs as rounded trapezoids (superellipses narrowing to the apex), one
  of them narrower (a rotated patient), hemidiaphragms at different heights; a globular, magnified AP
  heart; a spine of vertebral blocks; clavicles as oblique bright bands across both apices; humeral
  heads in the upper corners; a collimation border (unexposed, bright) of random width on each edge;
  devices: ECG leads (small bright rings) and, on half the films, a tube down the midline.
- **Contrast**: low (scatter of a bedside film), a logarithmic detector response, and a heel-effect
  ramp across the film.
- **Noise**: quantum noise that grows with exposure, a coarse mottle, and on some films the fine
  horizontal lines of an anti-scatter grid.
- **Findings**, each with its own shape and size: a spiculated nodule of 0.8 to 2.5 cm; an irregular
  mass of 4 to 8 cm made of merged lobes; a layering effusion (supine), a veil over the lower half of a
  hemithorax with no meniscus; a globular heart 1.25 to 1.6 times wide; a lateral pneumothorax, a
  lucent band along the chest wall edged by a pleural line; a lobar consolidation cut straight by a
  fissure; plate-like atelectasis, a thin band 0.4 to 1.2 cm thick and 4 to 9 cm long; an infiltrate of
  scattered small nodular opacities over 6 to 12 cm; a pneumonia of merged soft patches, 5 to 10 cm.

A box is the lesion's extent where its mask reaches 0.3 plus a 0.4 cm margin. Reports, the boxes'
format and the tables written are those of the first family (synthetic.py), so the same commands read
both: `classifier synth --family ward`.
"""

from __future__ import annotations

import numpy as np

from .films import Lesion, mask_box
from .synthetic import FINDINGS, Case, _report

CM = 1 / 40
MARGIN = 0.4 * CM
PREVALENCE = 0.17
STRENGTH = (0.45, 1.0)


class Ward:
    """One bedside film in 0..1 units of a `size`-pixel square: canvas, anatomy and its lesions."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.x, self.y = (xx + 0.5) / size, (yy + 0.5) / size
        self.cx = 0.5 + rng.uniform(-0.05, 0.05)
        self.top, self.floor = rng.uniform(0.14, 0.22), rng.uniform(0.66, 0.76)
        narrow = rng.uniform(0.85, 1.0)  # rotation: one lung narrower
        widths = (0.17 * narrow, 0.17) if rng.random() < 0.5 else (0.17, 0.17 * narrow)
        gap = rng.uniform(0.04, 0.06)
        # per side (0: the image's left, the patient's right): centre x, half width, apex y, base y
        self.lungs = [(self.cx - gap - widths[0], widths[0], self.top, self.floor - rng.uniform(0.0, 0.03)),
                      (self.cx + gap + widths[1], widths[1], self.top + 0.01, self.floor + rng.uniform(0.0, 0.04))]
        self.image = np.zeros((size, size), np.float32)

    def blob(self, cx: float, cy: float, rx: float, ry: float, edge: float = 0.3, angle: float = 0.0) -> np.ndarray:
        """A soft ellipse (0..1), rotated by `angle`, whose border ramps over `edge` of its radius."""
        c, s = np.cos(angle), np.sin(angle)
        u, v = (self.x - cx) * c + (self.y - cy) * s, -(self.x - cx) * s + (self.y - cy) * c
        return np.clip((1 - np.sqrt((u / rx) ** 2 + (v / ry) ** 2)) / edge, 0, 1)

    def lung(self, side: int) -> np.ndarray:
        """A lung: a superellipse of exponent 3 narrowing towards its apex."""
        lx, half, apex, base = self.lungs[side]
        t = np.clip((self.y - apex) / (base - apex), 0, 1)
        width = half * (0.55 + 0.45 * np.sqrt(t))
        d = np.abs((self.x - lx) / width) ** 3 + np.abs((self.y - (apex + base) / 2) / ((base - apex) / 2)) ** 3
        return np.clip((1 - d) / 0.25, 0, 1)

    def noise_field(self, cells: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        """Smooth random values on a `cells`-square grid, bicubic-free (nearest then box-smoothed)."""
        grid = self.rng.uniform(low, high, (cells, cells)).astype(np.float32)
        idx = np.minimum((np.arange(self.size) * cells) // self.size, cells - 1)
        field = grid[idx][:, idx]
        k = max(1, self.size // cells)
        kernel = np.ones(k, np.float32) / k
        field = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, field)
        return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, field)

    def lesion(self, mask: np.ndarray, side: int | None, size_cm: float = 0.0) -> Lesion:
        """The box of `mask`'s extent at 0.3 plus the margin, with side and zone."""
        box, middle = mask_box(mask, MARGIN)
        zone = ""
        if side is not None:
            _, _, apex, base = self.lungs[side]
            zone = ("upper", "mid", "lower")[int(np.clip((middle - apex) / (base - apex) * 3, 0, 2))]
        return Lesion(box, side, zone, round(size_cm, 1))

    def point_in_lung(self, side: int, top: float = 0.1, bottom: float = 0.9) -> tuple[float, float]:
        """A point well inside a lung, between `top` and `bottom` of its height."""
        lx, half, apex, base = self.lungs[side]
        y = apex + (base - apex) * self.rng.uniform(top, bottom)
        width = half * (0.55 + 0.45 * np.sqrt((y - apex) / (base - apex)))
        return lx + self.rng.uniform(-0.6, 0.6) * width, y


def anatomy(w: Ward, heart_scale: float) -> np.ndarray:
    """Body, lungs, spine, clavicles, shoulders, heart, diaphragm and devices; returns the heart's mask."""
    rng = w.rng
    body = np.clip((0.46 - np.abs(w.x - w.cx)) / 0.04, 0, 1) * np.clip((w.y - 0.04) / 0.05, 0, 1)
    w.image += 0.1 + 0.5 * body
    lungs = np.maximum(w.lung(0), w.lung(1))
    vessels = w.noise_field(max(8, w.size // 12), -1, 1)
    w.image += lungs * (-0.32 + 0.05 * vessels * (1.2 - w.y))
    spine = np.clip((0.035 - np.abs(w.x - w.cx)) / 0.01, 0, 1)
    blocks = 0.5 + 0.5 * np.cos(2 * np.pi * (w.y - rng.uniform(0, 0.05)) / 0.045)
    w.image += spine * (0.18 + 0.08 * blocks)
    for side in (-1, 1):
        slope = rng.uniform(0.25, 0.4)
        line = w.top + 0.02 - slope * (w.x - w.cx) * side
        reach = np.clip((0.3 - np.abs(w.x - w.cx)) / 0.03, 0, 1) * (np.sign(w.x - w.cx) == side)
        w.image += 0.16 * np.exp(-((w.y - line) / 0.012) ** 2) * reach
        w.image += 0.3 * w.blob(w.cx + side * 0.43, rng.uniform(0.06, 0.12), 0.07, 0.08, edge=0.2)
    _, half, apex, base = w.lungs[1]
    heart = w.blob(w.cx + 0.05, w.floor - 0.08, 0.12 * heart_scale, 0.1 * (0.85 + 0.15 * heart_scale), edge=0.12)
    w.image += 0.38 * heart
    for side in (0, 1):
        lx, half, _, base = w.lungs[side]
        dome = base - 0.04 * np.cos(np.clip((w.x - lx) / half, -1.5, 1.5))
        w.image += 0.2 * np.clip((w.y - dome) / 0.015, 0, 1) * np.clip((half * 1.2 - np.abs(w.x - lx)) / 0.02, 0, 1)
    for _ in range(int(rng.integers(0, 5))):  # ECG leads
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.8)
        ring = np.abs(np.sqrt((w.x - cx) ** 2 + (w.y - cy) ** 2) - 0.012)
        w.image += 0.5 * np.exp(-(ring / 0.003) ** 2)
    if rng.random() < 0.5:  # a tube down the midline, drifting
        path = w.cx + rng.uniform(-0.02, 0.02) + 0.03 * np.sin(w.y * rng.uniform(2, 5))
        w.image += 0.35 * np.exp(-((w.x - path) / 0.004) ** 2) * (w.y < rng.uniform(0.4, 0.7))
    return heart


def nodule(w: Ward, side: int, strength: float, diameter: float) -> Lesion:
    """A spiculated nodule: a core with radial spikes reaching up to 1.5 times its radius."""
    cx, cy = w.point_in_lung(side)
    r = diameter / 2 * CM
    angle = np.arctan2(w.y - cy, w.x - cx)
    spikes = 1 + 0.5 * np.maximum(0, np.cos(int(w.rng.integers(5, 10)) * angle + w.rng.uniform(0, 6))) ** 4
    dist = np.sqrt((w.x - cx) ** 2 + (w.y - cy) ** 2) / (r * spikes)
    mask = np.clip((1 - dist) / 0.3, 0, 1)
    w.image += 0.4 * strength * mask
    return w.lesion(mask, side, diameter)


def mass(w: Ward, side: int, strength: float, diameter: float) -> Lesion:
    """An irregular mass: four merged lobes around a centre."""
    cx, cy = w.point_in_lung(side, 0.2, 0.8)
    r = diameter / 2 * CM
    mask = w.blob(cx, cy, r * 0.7, r * 0.7)
    for _ in range(4):
        a, d = w.rng.uniform(0, 2 * np.pi), w.rng.uniform(0.2, 0.45) * r
        mask = np.maximum(mask, w.blob(cx + d * np.cos(a), cy + d * np.sin(a), r * 0.55, r * 0.5, angle=a))
    w.image += 0.38 * strength * mask
    return w.lesion(mask, side, diameter)


def effusion(w: Ward, side: int, strength: float) -> Lesion:
    """A layering effusion of a supine patient: haze thickening downwards over the lower hemithorax."""
    _, _, apex, base = w.lungs[side]
    start = apex + (base - apex) * w.rng.uniform(0.35, 0.6)
    mask = np.clip((w.y - start) / (base - start), 0, 1) ** 0.7 * np.clip(w.lung(side) * 3, 0, 1)
    w.image += 0.3 * strength * mask
    return w.lesion(mask, side)


def pneumothorax(w: Ward, side: int, strength: float) -> Lesion:
    """A lateral pneumothorax: a lucent band along the chest wall, 1 to 3 cm, edged by the pleural line."""
    lx, half, apex, base = w.lungs[side]
    depth = w.rng.uniform(1.0, 3.0) * CM
    lung = w.lung(side)
    outer = lx + (half if side else -half) * (0.55 + 0.45 * np.sqrt(np.clip((w.y - apex) / (base - apex), 0, 1)))
    inside = (outer - w.x) if side else (w.x - outer)  # distance in from the lateral wall
    low = apex + (base - apex) * w.rng.uniform(0.45, 0.75)
    band = (inside < depth) * (lung > 0.2) * (w.y < low)
    mask = band.astype(np.float32)
    w.image -= 0.08 * strength * mask
    w.image += 0.25 * strength * np.exp(-((inside - depth) / 0.004) ** 2) * (lung > 0.2) * (w.y < low)
    return w.lesion(mask, side)


def consolidation(w: Ward, side: int, strength: float) -> Lesion:
    """Lobar consolidation: dense opacity above or below a straight fissure, fading elsewhere."""
    lx, half, apex, base = w.lungs[side]
    upper = w.rng.random() < 0.5
    fissure = apex + (base - apex) * w.rng.uniform(0.35, 0.55) + w.rng.uniform(-0.15, 0.15) * (w.x - lx)
    cut = np.clip(((fissure - w.y) if upper else (w.y - fissure)) / 0.006, 0, 1)
    extent = w.rng.uniform(3.0, 6.0) * CM
    fade = np.clip(1 - np.abs(w.y - fissure) / (2.5 * extent), 0, 1)
    mask = cut * fade * np.clip(w.lung(side) * 2, 0, 1)
    w.image += 0.4 * strength * mask
    return w.lesion(mask, side)


def atelectasis(w: Ward, side: int, strength: float) -> Lesion:
    """Plate-like atelectasis: a thin tilted band, 0.4 to 1.2 cm thick and 4 to 9 cm long."""
    cx, cy = w.point_in_lung(side, 0.45, 0.85)
    length, thick = w.rng.uniform(4, 9) * CM / 2, w.rng.uniform(0.4, 1.2) * CM / 2
    mask = w.blob(cx, cy, length, thick, edge=0.5, angle=w.rng.uniform(-0.35, 0.35)) * np.clip(w.lung(side) * 2, 0, 1)
    w.image += 0.45 * strength * mask
    return w.lesion(mask, side)


def infiltration(w: Ward, side: int, strength: float) -> Lesion:
    """Scattered small nodular opacities (0.5 to 1.2 cm) over a region 6 to 12 cm wide."""
    cx, cy = w.point_in_lung(side, 0.3, 0.7)
    spread = w.rng.uniform(6, 12) * CM / 2
    mask = np.zeros_like(w.image)
    for _ in range(int(w.rng.integers(6, 16))):
        r = w.rng.uniform(0.5, 1.2) * CM / 2
        mask = np.maximum(mask, w.blob(cx + w.rng.uniform(-1, 1) * spread, cy + w.rng.uniform(-1, 1) * spread, r, r, 0.6))
    mask *= np.clip(w.lung(side) * 2, 0, 1)
    w.image += 0.3 * strength * mask
    return w.lesion(mask, side)


def pneumonia(w: Ward, side: int, strength: float) -> Lesion:
    """Patchy airspace opacity: two to four soft patches merged, 5 to 10 cm overall."""
    cx, cy = w.point_in_lung(side, 0.2, 0.8)
    size = w.rng.uniform(5, 10) * CM / 2
    mask = np.zeros_like(w.image)
    for _ in range(int(w.rng.integers(2, 5))):
        mask = np.maximum(mask, w.blob(cx + w.rng.uniform(-0.5, 0.5) * size, cy + w.rng.uniform(-0.5, 0.5) * size,
                                       size * w.rng.uniform(0.4, 0.6), size * w.rng.uniform(0.4, 0.6), edge=0.7))
    mask *= np.clip(w.lung(side) * 2, 0, 1)
    w.image += 0.35 * strength * mask * (0.7 + 0.3 * w.noise_field(max(4, w.size // 20)))
    return w.lesion(mask, side)


DRAWERS = {"Effusion": effusion, "Pneumothorax": pneumothorax, "Consolidation": consolidation,
           "Atelectasis": atelectasis, "Infiltration": infiltration, "Pneumonia": pneumonia}


def expose(w: Ward) -> np.ndarray:
    """Heel effect, logarithmic response, low contrast, collimation, quantum noise, mottle and grid lines."""
    rng = w.rng
    img = w.image * (1 + rng.uniform(-0.12, 0.12) * (w.x - 0.5))
    img = np.log1p(4 * np.clip(img, 0, None)) / np.log1p(4 * 1.2)
    img = 0.2 + img * rng.uniform(0.55, 0.8)
    border = [rng.uniform(0, 0.06) for _ in range(4)]
    outside = (w.x < border[0]) | (w.x > 1 - border[1]) | (w.y < border[2]) | (w.y > 1 - border[3])
    img = np.where(outside, 0.9, img)
    img = img + 0.05 * (w.noise_field(max(4, w.size // 32), -1, 1))
    if rng.random() < 0.4:  # anti-scatter grid lines, about 2 mm apart
        img = img + 0.015 * np.cos(2 * np.pi * w.y / (0.2 * CM))
    img = img + rng.normal(0, 1, img.shape) * rng.uniform(0.015, 0.04) * np.sqrt(np.clip(img, 0.05, 1))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def generate_case(index: int, size: int, rng: np.random.Generator, hedge: float = 0.1) -> tuple[np.ndarray, Case]:
    """One bedside film and its case record (as synthetic.generate_case)."""
    present = [f for f in FINDINGS if rng.random() < PREVALENCE]
    w = Ward(size, rng)
    scale = rng.uniform(1.25, 1.6) if "Cardiomegaly" in present else rng.uniform(0.95, 1.08)
    heart = anatomy(w, scale)
    lesions: dict[str, Lesion] = {}
    if "Cardiomegaly" in present:
        lesions["Cardiomegaly"] = w.lesion(heart, None)
    for name in present:
        side, strength = int(rng.integers(2)), float(rng.uniform(*STRENGTH))
        if name == "Nodule":
            lesions[name] = nodule(w, side, strength, float(rng.uniform(0.8, 2.5)))
        elif name == "Mass":
            lesions[name] = mass(w, side, strength, float(rng.uniform(4.0, 8.0)))
        elif name != "Cardiomegaly":
            lesions[name] = DRAWERS[name](w, side, strength)
    image = expose(w)
    image_id = f"ward_{index:06d}.png"
    boxes = {name: lesion.box for name, lesion in lesions.items()}
    return image, Case(image_id, f"W{index // 2:05d}", boxes, _report(rng, lesions, hedge), lesions)
