"""Boxes from heatmaps, as the paper draws them, and the geometry that scores them (IoU, IoBB)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x, y, w, h


def boxes_from_map(heatmap: np.ndarray, thresholds: tuple[int, ...], scale: tuple[float, float]) -> list[tuple[Box, float]]:
    """Boxes (in pixels scaled by (sx, sy)) of the connected regions above each threshold of the
    [0, 255]-normalised map, each with its score (the region's mean normalised value / 255)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    if high - low < 1e-12:
        return []
    norm = (heatmap - low) / (high - low) * 255
    out = []
    sx, sy = scale
    for t in thresholds:
        regions, count = ndimage.label(norm >= t)
        for index, found in enumerate(ndimage.find_objects(regions), start=1):
            if found is None:
                continue
            ys, xs = found
            score = float(norm[regions == index].mean() / 255)
            out.append(((xs.start * sx, ys.start * sy, (xs.stop - xs.start) * sx, (ys.stop - ys.start) * sy), score))
    return out


def intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def iobb(truth: Box, detected: Box) -> float:
    """Intersection over the detected box's area (the paper's IoBB)."""
    area = detected[2] * detected[3]
    return intersection(truth, detected) / area if area > 0 else 0.0
