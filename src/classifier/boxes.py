"""Boxes from a heatmap as a reader would draw them, and the geometry that scores them (IoU, IoBB).

The paper drew one box per connected region above each of two thresholds: on a map with a
strong peak and a few weak blobs that is a large low-threshold box plus a small box per blob, most
of them false (measured: five false boxes per image). The rules here, each tested on hand-made maps:

1. **Hysteresis**: a region above the low threshold is kept only if it reaches the high one, so a
   weak blob never makes a box while a strong lesion keeps its full low-threshold extent.
2. **Size floor**: a region smaller than `min_area` (a share of the map) is dropped.
3. **Merge**: boxes that overlap by at least `merge` of the smaller one's area become their union
   (two halves of one lesion split by a dip in the map are one finding).
4. **At most `max_boxes`** per map, the highest scored first; a box's score is its region's peak.

How far a box reaches is the `level` rule, because a box that is only the map's brightest core scores
well by IoBB (which divides by the box's own area) and badly by IoU:

- `fixed`: the region at the low threshold (the map is scaled to its own peak, so that is already a
  fraction of the peak);
- `otsu`: the region at this map's own Otsu level, a level that adapts to how sharp the map is;
- `prior`: each core (a region at the high threshold) grown, by lowering the level, until its area is
  closest to `prior_scale` times the finding's median area among NIH's 984 radiologist boxes
  (`size_prior.json`, written by `benchmarks/localization_size_prior.py`); a finding without a prior
  keeps the fixed level.

Last, each box is enlarged by `grow` about its centre (readers draw a margin around a lesion),
within the map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x, y, w, h
LEVELS = ("fixed", "otsu", "prior")
GROWTH = tuple(range(250, 0, -10))  # the levels a core is grown through, from its own down
PRIOR_FILE = Path(__file__).with_name("size_prior.json")


@lru_cache(maxsize=1)
def size_prior() -> dict[str, float]:
    """Finding → median box area as a share of the film, from NIH's radiologist boxes (shipped file)."""
    data = json.loads(PRIOR_FILE.read_text(encoding="utf-8"))
    return {finding: float(v["area_q50"]) for finding, v in data["findings"].items()}


@dataclass(frozen=True)
class BoxRules:
    """How boxes are drawn from a map normalised to [0, 255]."""

    low: int = 60
    high: int = 180
    min_area: float = 0.001
    merge: float = 0.5
    max_boxes: int = 3
    level: str = "fixed"
    prior_scale: float = 1.0
    grow: float = 1.0

    def check(self) -> None:
        """ValueError naming the rule that cannot work."""
        if not 0 <= self.low <= self.high <= 255:
            raise ValueError(f"thresholds must satisfy 0 <= low <= high <= 255, got {self.low},{self.high}")
        if not 0 <= self.min_area < 1 or not 0 < self.merge <= 1 or self.max_boxes < 1:
            raise ValueError(f"min_area in [0, 1), merge in (0, 1] and max_boxes >= 1, got {self.min_area}, "
                             f"{self.merge}, {self.max_boxes}")
        if self.level not in LEVELS or not 0 < self.prior_scale <= 10 or not 1 <= self.grow <= 3:
            raise ValueError(f"level one of {', '.join(LEVELS)}, prior_scale in (0, 10] and grow in [1, 3], got "
                             f"{self.level}, {self.prior_scale}, {self.grow}")


@dataclass(frozen=True)
class Region:
    """A connected region above the low threshold: its peak (0-255), pixel area and box in map pixels."""

    peak: float
    area: int
    box: Box


def normalise(heatmap: np.ndarray) -> np.ndarray | None:
    """The map scaled to [0, 255] (the paper's normalisation); None for a flat map, which shows nothing."""
    low, high = float(heatmap.min()), float(heatmap.max())
    if high - low < 1e-12:
        return None
    return (heatmap - low) / (high - low) * 255


@dataclass(frozen=True)
class Core:
    """A region at a high threshold and, per level of GROWTH at or below its own, the box of the region
    holding it: what growing it to a size prior needs, computed once per map."""

    peak: float
    growth: tuple[tuple[int, Box], ...]  # (level, box), highest level first


def otsu(norm: np.ndarray) -> float:
    """Otsu's level of a 0-255 map: the one that best splits its values into two classes."""
    counts = np.bincount(np.clip(norm, 0, 255).astype(np.int64).ravel(), minlength=256).astype(float)
    weight = np.cumsum(counts)
    total = weight[-1]
    mean = np.cumsum(counts * np.arange(256))
    between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    return float(np.argmax(between[:-1]) + 1)


def cores(norm: np.ndarray, highs: tuple[float, ...]) -> dict[float, list[Core]]:
    """Per high threshold, the regions at it, each with the box of the region holding its peak at every
    lower level of GROWTH (each level labelled once for all the thresholds)."""
    seeds: dict[float, tuple[np.ndarray, list[tuple[int, int]]]] = {}
    for high in highs:
        labelled, count = ndimage.label(norm >= high)
        index = np.arange(1, count + 1)
        where = [tuple(int(v) for v in p) for p in ndimage.maximum_position(norm, labelled, index)] if count else []
        seeds[high] = (np.asarray(ndimage.maximum(norm, labelled, index)) if count else np.zeros(0), where)
    tables: dict[float, list[list[tuple[int, Box]]]] = {h: [[] for _ in where] for h, (_, where) in seeds.items()}
    for level in GROWTH:
        wanted = [h for h in highs if level <= h and seeds[h][1]]
        if not wanted:
            continue
        grown, _ = ndimage.label(norm >= level)
        objects = ndimage.find_objects(grown)
        for high in wanted:
            for k, (py, px) in enumerate(seeds[high][1]):
                label = grown[py, px]
                ys, xs = objects[label - 1]
                tables[high][k].append((level, (xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)))
    return {high: [Core(float(p), tuple(t)) for p, t in zip(seeds[high][0], tables[high]) if t] for high in highs}


def grown_boxes(found: list[Core], target: float, rules: BoxRules) -> list[tuple[Box, float]]:
    """Each core's box at the level where the box's area is closest (in ratio) to `target` pixels."""
    out = []
    for core in found:
        _, box = min(core.growth, key=lambda g: abs(np.log(g[1][2] * g[1][3] / target)))
        out.append((box, core.peak / 255))
    return merge_boxes(sorted(out, key=lambda b: -b[1]), rules.merge)[: rules.max_boxes]


def enlarge(box: Box, grow: float, shape: tuple[int, int]) -> Box:
    """`box` scaled by `grow` about its centre, within a map of `shape` (height, width)."""
    if grow == 1:
        return box
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0.0, cx - w * grow / 2), max(0.0, cy - h * grow / 2)
    x1, y1 = min(float(shape[1]), cx + w * grow / 2), min(float(shape[0]), cy + h * grow / 2)
    return (x0, y0, x1 - x0, y1 - y0)


def regions(norm: np.ndarray, low: float) -> list[Region]:
    """Every connected region of a normalised map at or above `low`."""
    labelled, count = ndimage.label(norm >= low)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    peaks = ndimage.maximum(norm, labelled, index)
    areas = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    out = []
    for peak, area, found in zip(peaks, areas, ndimage.find_objects(labelled)):
        ys, xs = found
        out.append(Region(float(peak), int(area), (xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)))
    return out


def select(found: list[Region], rules: BoxRules, pixels: int) -> list[tuple[Box, float]]:
    """Rules 1-4 on the regions of one map of `pixels` pixels: (box in map pixels, score in [0, 1])."""
    kept = [(r.box, r.peak / 255) for r in found if r.peak >= rules.high and r.area >= rules.min_area * pixels]
    kept = merge_boxes(sorted(kept, key=lambda b: -b[1]), rules.merge)
    return kept[: rules.max_boxes]


def merge_boxes(boxes: list[tuple[Box, float]], overlap: float) -> list[tuple[Box, float]]:
    """Boxes (highest score first) with every two that overlap by at least `overlap` of the smaller's
    area replaced by their union, until none do; a union keeps the higher score."""
    out: list[tuple[Box, float]] = []
    for box, score in boxes:
        for k, (kept, best) in enumerate(out):
            smaller = min(kept[2] * kept[3], box[2] * box[3])
            if smaller > 0 and intersection(kept, box) >= overlap * smaller:
                out[k] = (union(kept, box), best)
                break
        else:
            out.append((box, score))
    return out if len(out) == len(boxes) else merge_boxes(out, overlap)


@dataclass(frozen=True)
class MapView:
    """What drawing needs of one normalised map, found once: its regions at each low level (and at its own
    Otsu level), its cores at each high level, its size in pixels and its shape."""

    regions: dict[float, list[Region]]
    otsu: list[Region]
    cores: dict[float, list[Core]]
    pixels: int
    shape: tuple[int, int]


def view(norm: np.ndarray, lows: tuple[float, ...], highs: tuple[float, ...],
         levels: tuple[str, ...] = LEVELS) -> MapView:
    """The regions and cores of `norm` that `levels` drawn at `lows` and `highs` can use."""
    return MapView({low: regions(norm, low) for low in lows},
                   regions(norm, otsu(norm)) if "otsu" in levels else [],
                   cores(norm, highs) if "prior" in levels else {}, norm.size, norm.shape)


def map_boxes(found: MapView, rules: BoxRules, finding: str) -> list[tuple[Box, float]]:
    """The boxes of one map (its view) by `rules`, in map pixels, with their scores."""
    target = size_prior().get(finding) if rules.level == "prior" else None
    if target is not None:
        drawn = grown_boxes(found.cores[rules.high], target * rules.prior_scale * found.pixels, rules)
    else:
        drawn = select(found.otsu if rules.level == "otsu" else found.regions[rules.low], rules, found.pixels)
    return [(enlarge(b, rules.grow, found.shape), s) for b, s in drawn]


def boxes_from_map(heatmap: np.ndarray, rules: BoxRules, scale: tuple[float, float],
                   finding: str = "") -> list[tuple[Box, float]]:
    """The boxes of one map of `finding` by `rules`, in pixels scaled by (sx, sy), each with its score."""
    norm = normalise(heatmap)
    if norm is None:
        return []
    sx, sy = scale
    found = view(norm, (rules.low,), (rules.high,), (rules.level,))
    return [((x * sx, y * sy, w * sx, h * sy), score) for (x, y, w, h), score in map_boxes(found, rules, finding)]


def union(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    return (x0, y0, max(a[0] + a[2], b[0] + b[2]) - x0, max(a[1] + a[3], b[1] + b[3]) - y0)


def intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union_area = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union_area if union_area > 0 else 0.0


def iobb(truth: Box, detected: Box) -> float:
    """Intersection over the detected box's area (the paper's IoBB)."""
    area = detected[2] * detected[3]
    return intersection(truth, detected) / area if area > 0 else 0.0
