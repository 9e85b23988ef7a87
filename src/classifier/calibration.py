"""Choosing the heatmap and the box rules on true boxes held apart from the ones that are scored.

Every candidate heatmap (the class activation map, and each kind of Grad-CAM at each layer the network
offers; the kinds of one layer from one backward pass) is computed once on the calibration images; the
regions and cores of each map are found once (boxes.view); then every box rule of the grid is tried per
finding: the fixed level at each (low, high) pair, the map's own Otsu level, and growth to the
finding's size prior at each scale, each with each enlargement. A rule is judged by the boxes' extent,
not only their place: IoU, which IoBB is not (IoBB divides by the drawn box's own area, so a speck
inside the true box scores perfectly), less a quarter per false box per image:

    objective = acc(IoU > 0.5) + mean IoU of each true box with its best drawn box - 0.25 AFP(IoBB 0.5)

The heatmap whose findings score best on average, with the rule best over all findings, is the
default; a finding with at least `MIN_BOXES` calibration boxes gets its own heatmap and rule, the best
of all it was tried with. IoBB stays in the tables for the paper's comparison, never in the objective.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import numpy as np

from .boxes import Box, BoxRules, MapView, enlarge, intersection, map_boxes, normalise, view
from .defaults import Choice

LOWS = (40, 60, 80, 100, 120, 140, 160, 180, 200)
HIGHS = (100, 140, 180, 220, 250)
GROWS = (1.0, 1.2, 1.4)
SCALES = (0.5, 1.0, 2.0, 4.0)
MIN_BOXES = 5
FALSE_BOX_COST = 0.25
OBJECTIVE = ("acc(IoU>0.5) + mean best IoU - 0.25 AFP(IoBB 0.5), per finding, mean over findings "
             "(worst family first when chosen across families)")


@dataclass(frozen=True)
class Entry:
    """One calibration map: its finding, the true boxes (image pixels), its regions and cores (map
    pixels), the scale to image pixels, and whether its peak is in a true box."""

    finding: str
    truth: list[Box]
    found: MapView
    scale: tuple[float, float]
    pointed: bool


def entry(finding: str, heatmap: np.ndarray, truth: list[Box], scale: tuple[float, float]) -> Entry:
    """The calibration record of one map; a flat map draws nothing, and its true boxes count as missed."""
    norm = normalise(heatmap)
    if norm is None:
        empty = MapView({low: [] for low in LOWS}, [], {high: [] for high in HIGHS}, heatmap.size, heatmap.shape)
        return Entry(finding, truth, empty, scale, False)
    py, px = np.unravel_index(int(norm.argmax()), norm.shape)
    x, y = (px + 0.5) * scale[0], (py + 0.5) * scale[1]
    pointed = any(b[0] <= x <= b[0] + b[2] and b[1] <= y <= b[1] + b[3] for b in truth)
    return Entry(finding, truth, view(norm, LOWS, HIGHS), scale, pointed)


def grid(fixed: tuple[int, int] | None, base: BoxRules) -> list[BoxRules]:
    """The rules to try: with thresholds given, those at every level rule and enlargement; else the whole grid."""
    pairs = [fixed] if fixed else [(low, high) for low in LOWS for high in HIGHS if high >= low]
    highs = sorted({high for _, high in pairs})
    out = [replace(base, low=low, high=high, level="fixed", grow=g) for low, high in pairs for g in GROWS]
    out += [replace(base, high=high, level="otsu", grow=g) for high in highs for g in GROWS]
    out += [replace(base, high=high, level="prior", prior_scale=s, grow=g) for high in highs for s in SCALES
            for g in GROWS]
    return [r for r in out if r.level != "fixed" or r.low in LOWS]


def scores(truth: list[Box], drawn: list[Box]) -> tuple[int, float, int, int]:
    """(true boxes hit at IoU > 0.5, sum of each true box's best IoU, true boxes hit at IoBB >= 0.5,
    drawn boxes at IoBB < 0.5 with every true box) of one map."""
    if not drawn:
        return 0, 0.0, 0, 0
    inter = np.array([[intersection(t, d) for d in drawn] for t in truth])
    t_area = np.array([t[2] * t[3] for t in truth])[:, None]
    d_area = np.array([d[2] * d[3] for d in drawn])[None, :]
    iou = inter / np.maximum(t_area + d_area - inter, 1e-12)
    iobb = inter / np.maximum(d_area, 1e-12)
    best = iou.max(1)
    covered = iobb >= 0.5
    return int((best > 0.5).sum()), float(best.sum()), int(covered.any(1).sum()), int((~covered.any(0)).sum())


def measure(entries: Iterable[Entry], rules: BoxRules) -> dict[str, float]:
    """Accuracy at IoU > 0.5, mean best IoU, accuracy and AFP at IoBB 0.5, pointing, and the objective."""
    entries = list(entries)
    return score_drawn(entries, [[b for b, _ in map_boxes(e.found, rules, e.finding)] for e in entries])


def score_drawn(entries: list[Entry], drawn: list[list[Box]]) -> dict[str, float]:
    """The figures of `measure` for boxes already drawn on each entry's map (map pixels)."""
    hit_iou = hit_iobb = false = boxes = pointed = 0
    total_iou = 0.0
    for e, mine in zip(entries, drawn):
        sx, sy = e.scale
        h, s, hb, f = scores(e.truth, [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in mine])
        hit_iou, total_iou, hit_iobb, false = hit_iou + h, total_iou + s, hit_iobb + hb, false + f
        boxes, pointed = boxes + len(e.truth), pointed + e.pointed
    if not entries:
        return {}
    out = {"acc_iou>0.5": hit_iou / boxes, "mean_iou": total_iou / boxes, "acc_iobb_0.5": hit_iobb / boxes,
           "afp_iobb_0.5": false / len(entries), "pointing": pointed / len(entries)}
    out["objective"] = out["acc_iou>0.5"] + out["mean_iou"] - FALSE_BOX_COST * out["afp_iobb_0.5"]
    return out


def sweep(entries: list[Entry], rules: list[BoxRules]) -> dict[tuple[str, BoxRules], dict[str, float]]:
    """Every rule's figures on each finding's entries; the boxes of rules that differ only in their
    enlargement are found once."""
    by_finding: dict[str, list[Entry]] = {}
    for e in entries:
        by_finding.setdefault(e.finding, []).append(e)
    variants: dict[BoxRules, list[BoxRules]] = {}
    for r in rules:
        variants.setdefault(replace(r, grow=1.0), []).append(r)
    out = {}
    for f, mine in by_finding.items():
        for base, grown in variants.items():
            drawn = [[b for b, _ in map_boxes(e.found, base, f)] for e in mine]
            for r in grown:
                out[f, r] = score_drawn(mine, [[enlarge(b, r.grow, e.found.shape) for b in d]
                                               for e, d in zip(mine, drawn)])
    return out


def choose_rules(entries: list[Entry], rules: list[BoxRules]) -> tuple[BoxRules, dict[str, BoxRules],
                                                                       dict[str, dict[str, float]]]:
    """(the best rule over all findings, each finding's own best rule where it has enough boxes, and the
    figures per finding with those rules)."""
    tried = sweep(entries, rules)
    findings = sorted({f for f, _ in tried})
    overall = max(rules, key=lambda r: np.mean([tried[f, r]["objective"] for f in findings]))
    own = {}
    for f in findings:
        if sum(len(e.truth) for e in entries if e.finding == f) >= MIN_BOXES and len(rules) > 1:
            own[f] = max(rules, key=lambda r: (tried[f, r]["objective"], r == overall))
    figures = {f: tried[f, own.get(f, overall)] for f in findings}
    return overall, own, figures


def summary(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean of each figure over findings."""
    return {k: float(np.mean([v[k] for v in figures.values()])) for k in next(iter(figures.values()))}


def rules_text(rules: BoxRules) -> str:
    """A rule as one short phrase: `fixed 60/180`, `otsu /180`, `prior x2 /220`, with its enlargement."""
    level = {"fixed": f"fixed {rules.low}/{rules.high}", "otsu": f"otsu /{rules.high}",
             "prior": f"prior x{rules.prior_scale:g} /{rules.high}"}[rules.level]
    return level + (f" grow {rules.grow:g}" if rules.grow != 1 else "")


def calibrate(maps: Callable[[list[str], str], dict[str, list[Entry]]], candidates: list[tuple[str, str]],
              rules: BoxRules, fixed: tuple[int, int] | None,
              say: Callable[[str], None]) -> tuple[Choice, dict[str, Choice], dict[str, Any]]:
    """The best heatmap overall with its rule, and each finding's own best heatmap and rule where it has
    enough boxes. `maps(methods, layer)` gives the calibration entries of each of `methods` at `layer`, in
    one pass over the images. Returns ((method, layer, rules) overall, finding → its own choice, report)."""
    report: dict[str, Any] = {"objective": OBJECTIVE, "candidates": []}
    tried = []
    options = grid(fixed, rules)
    layers: dict[str, list[str]] = {}
    for method, layer in candidates:
        layers.setdefault(layer, []).append(method)
    for layer, methods in layers.items():
        for method, entries in maps(methods, layer).items():
            if all(not e.found.regions[LOWS[0]] for e in entries):
                say(f"calibration: {method} at {layer} draws nothing on these images (flat maps); left out")
                continue
            overall, own, figures = choose_rules(entries, options)
            mean = summary(figures)
            report["candidates"].append({"method": method, "layer": layer, **{k: round(v, 4) for k, v in mean.items()}})
            say(f"calibration: {method:<16} {layer:<10} objective {mean['objective']:.3f} (IoU>0.5 "
                f"{mean['acc_iou>0.5']:.3f}, mean IoU {mean['mean_iou']:.3f}, IoBB 0.5 {mean['acc_iobb_0.5']:.3f}, "
                f"AFP {mean['afp_iobb_0.5']:.2f})")
            tried.append((mean["objective"], (method, layer, overall), own, figures))
    if not tried:
        raise ValueError("no heatmap draws anything on the calibration images")
    _, best, _, figures = max(tried, key=lambda t: t[0])
    chosen: dict[str, Choice] = {}
    for f in figures:
        mine = [(t[3][f]["objective"], (*t[1][:2], t[2][f]), t[3][f]) for t in tried if f in t[2]]
        if mine:
            _, chosen[f], figures[f] = max(mine, key=lambda m: m[0])
    report["figures"] = {f: {k: round(v, 4) for k, v in fig.items()} for f, fig in figures.items()}
    return best, chosen, report
