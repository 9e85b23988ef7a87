"""Choosing the heatmap and the box thresholds on true boxes held apart from the ones that are scored.

Every candidate heatmap (the class activation map, and each kind of Grad-CAM at each layer the network
offers) is computed once on the calibration images; the regions of each map are found once per low threshold;
then every (low, high) pair is tried per finding. A pair is judged by what the issue asks of the
boxes, mean accuracy at T(IoBB) = 0.5 and at IoU > 0.5, less a quarter per false box per image:

    objective = acc(IoBB >= 0.5) + acc(IoU > 0.5) - 0.25 AFP(IoBB 0.5)

The heatmap whose findings score best on average, with the pair best over all findings, is the
default; a finding with at least `MIN_BOXES` calibration boxes gets its own heatmap and pair, the
best of all it was tried with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import numpy as np

from .boxes import Box, BoxRules, Region, normalise, regions, select
from .defaults import Choice
from .metrics import count_hits

LOWS = (40, 60, 80, 100, 120, 140, 160, 180, 200)
HIGHS = (100, 140, 180, 220, 250)
MIN_BOXES = 5
FALSE_BOX_COST = 0.25
OBJECTIVE = "acc(IoBB>=0.5) + acc(IoU>0.5) - 0.25 AFP(IoBB 0.5), per finding, mean over findings"


@dataclass(frozen=True)
class Entry:
    """One calibration map: its finding, the true boxes (image pixels), the map's regions per low
    threshold (map pixels), its size in pixels, the scale to image pixels, and whether its peak is in a box."""

    finding: str
    truth: list[Box]
    found: dict[int, list[Region]]
    pixels: int
    scale: tuple[float, float]
    pointed: bool


def entry(finding: str, heatmap: np.ndarray, truth: list[Box], scale: tuple[float, float]) -> Entry | None:
    """The calibration record of one map (None for a flat map, which draws nothing)."""
    norm = normalise(heatmap)
    if norm is None:
        return None
    py, px = np.unravel_index(int(norm.argmax()), norm.shape)
    x, y = (px + 0.5) * scale[0], (py + 0.5) * scale[1]
    pointed = any(b[0] <= x <= b[0] + b[2] and b[1] <= y <= b[1] + b[3] for b in truth)
    return Entry(finding, truth, {low: regions(norm, low) for low in LOWS}, norm.size, scale, pointed)


def measure(entries: Iterable[Entry], rules: BoxRules) -> dict[str, float]:
    """Accuracy at IoBB >= 0.5 and IoU > 0.5, AFP at IoBB 0.5, pointing, and the objective, over `entries`."""
    hit_iobb = hit_iou = false = boxes = images = pointed = 0
    for e in entries:
        sx, sy = e.scale
        drawn = [(x * sx, y * sy, w * sx, h * sy) for (x, y, w, h), _ in select(e.found[rules.low], rules, e.pixels)]
        h, f = count_hits(e.truth, drawn, "iobb", 0.5)
        hit_iobb, false = hit_iobb + h, false + f
        hit_iou += count_hits(e.truth, drawn, "iou", 0.5, strict=True)[0]
        boxes, images, pointed = boxes + len(e.truth), images + 1, pointed + e.pointed
    if not images:
        return {}
    out = {"acc_iobb_0.5": hit_iobb / boxes, "acc_iou>0.5": hit_iou / boxes, "afp_iobb_0.5": false / images,
           "pointing": pointed / images}
    out["objective"] = out["acc_iobb_0.5"] + out["acc_iou>0.5"] - FALSE_BOX_COST * out["afp_iobb_0.5"]
    return out


def pairs(fixed: Pair | None) -> list[Pair]:
    """The (low, high) pairs to try: the given one only, or every pair of the grid with low <= high."""
    return [fixed] if fixed else [(low, high) for low in LOWS for high in HIGHS if high >= low]


Pair = tuple[int, int]  # (low, high)


def choose_thresholds(entries: list[Entry], rules: BoxRules,
                      fixed: Pair | None) -> tuple[Pair, dict[str, Pair], dict[str, dict[str, float]]]:
    """(the best pair over all findings, each finding's own best pair where it has enough boxes, and the
    figures per finding with those pairs)."""
    findings = sorted({e.finding for e in entries})
    by_finding = {f: [e for e in entries if e.finding == f] for f in findings}
    tried = {(f, p): measure(by_finding[f], replace(rules, low=p[0], high=p[1]))
             for f in findings for p in pairs(fixed)}
    overall = max(pairs(fixed), key=lambda p: np.mean([tried[f, p]["objective"] for f in findings]))
    own = {}
    for f in findings:
        if sum(len(e.truth) for e in by_finding[f]) >= MIN_BOXES and not fixed:
            own[f] = max(pairs(fixed), key=lambda p: (tried[f, p]["objective"], p == overall))
    figures = {f: tried[f, own.get(f, overall)] for f in findings}
    return overall, own, figures


def summary(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean of each figure over findings."""
    return {k: float(np.mean([v[k] for v in figures.values()])) for k in next(iter(figures.values()))}


def calibrate(maps: Callable[[str, str], list[Entry]], candidates: list[tuple[str, str]], rules: BoxRules,
              fixed: Pair | None, say: Callable[[str], None]) -> tuple[Choice, dict[str, Choice], dict[str, Any]]:
    """The best heatmap overall with its thresholds, and each finding's own best heatmap and thresholds
    where it has enough boxes. `maps(method, layer)` gives the calibration entries of one heatmap.
    Returns ((method, layer, low, high) overall, finding → its own choice, report)."""
    report: dict[str, Any] = {"objective": OBJECTIVE, "candidates": []}
    tried = []
    for method, layer in candidates:
        entries = maps(method, layer)
        if not entries:
            say(f"calibration: {method} at {layer} draws nothing on these images (flat maps); left out")
            continue
        overall, own, figures = choose_thresholds(entries, rules, fixed)
        mean = summary(figures)
        report["candidates"].append({"method": method, "layer": layer, **{k: round(v, 4) for k, v in mean.items()}})
        say(f"calibration: {method:<16} {layer:<10} objective {mean['objective']:.3f} (IoBB 0.5 "
            f"{mean['acc_iobb_0.5']:.3f}, IoU>0.5 {mean['acc_iou>0.5']:.3f}, AFP {mean['afp_iobb_0.5']:.2f})")
        tried.append((mean["objective"], (method, layer, *overall), own, figures))
    if not tried:
        raise ValueError("no heatmap draws anything on the calibration images")
    _, best, _, figures = max(tried, key=lambda t: t[0])
    chosen: dict[str, Choice] = {}
    for f in figures:
        mine = [(t[3][f]["objective"], (*t[1][:2], *t[2][f]), t[3][f]) for t in tried if f in t[2]]
        if mine:
            _, chosen[f], figures[f] = max(mine, key=lambda m: m[0])
    report["figures"] = {f: {k: round(v, 4) for k, v in fig.items()} for f, fig in figures.items()}
    return best, chosen, report
