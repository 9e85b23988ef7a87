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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x, y, w, h


@dataclass(frozen=True)
class BoxRules:
    """How boxes are drawn from a map normalised to [0, 255]."""

    low: int = 60
    high: int = 180
    min_area: float = 0.001
    merge: float = 0.5
    max_boxes: int = 3

    def check(self) -> None:
        """ValueError naming the rule that cannot work."""
        if not 0 <= self.low <= self.high <= 255:
            raise ValueError(f"thresholds must satisfy 0 <= low <= high <= 255, got {self.low},{self.high}")
        if not 0 <= self.min_area < 1 or not 0 < self.merge <= 1 or self.max_boxes < 1:
            raise ValueError(f"min_area in [0, 1), merge in (0, 1] and max_boxes >= 1, got {self.min_area}, "
                             f"{self.merge}, {self.max_boxes}")


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


def boxes_from_map(heatmap: np.ndarray, rules: BoxRules, scale: tuple[float, float]) -> list[tuple[Box, float]]:
    """The boxes of one map by `rules`, in pixels scaled by (sx, sy), each with its score."""
    norm = normalise(heatmap)
    if norm is None:
        return []
    sx, sy = scale
    return [((x * sx, y * sy, w * sx, h * sy), score)
            for (x, y, w, h), score in select(regions(norm, rules.low), rules, norm.size)]


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
