"""What a run is judged by: AUC per finding with bootstrap intervals and ROC curves; for boxes, the
paper's accuracy and average false positives at T(IoBB) and T(IoU) thresholds, and the pointing game."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from .boxes import Box, iobb, iou

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when the truth has only one class."""
    if len(np.unique(truth)) < 2:
        return float("nan")
    return float(roc_auc_score(truth, scores))


def auc_with_ci(truth: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> dict[str, float]:
    """AUC and a percentile bootstrap interval over images (resamples with one class are skipped)."""
    point = auc(truth, scores)
    n = len(truth)
    draws = _bootstrap_aucs(truth, scores, n_boot if not np.isnan(point) else 0, seed)
    tail = (1 - level) / 2 * 100
    low, high = (np.percentile(draws, [tail, 100 - tail]) if draws else (float("nan"), float("nan")))
    return {"auc": point, "ci_low": float(low), "ci_high": float(high), "positives": int(truth.sum()), "n": int(n)}


def _bootstrap_aucs(truth: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """The AUC of each of `n_boot` resamples of the images that has both classes, as roc_auc_score gives it
    (ties count half), computed by ranks for a block of resamples at once: a thousand resamples of a
    few hundred images take milliseconds, not the seconds of one roc_auc_score call each. The resamples
    are the ones `n_boot` draws of rng.integers(0, n, n) give, in that order."""
    rng = np.random.default_rng(seed)
    n, truth, scores = len(truth), np.asarray(truth, np.float64), np.asarray(scores, np.float64)
    block = max(1, 2_000_000 // max(n, 1))  # resamples per block: a bounded amount of memory
    out: list[float] = []
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, (min(block, n_boot - start), n))
        positive = truth[idx] == 1
        count = positive.sum(axis=1)
        both = (count > 0) & (count < n)
        ranks = rankdata(scores[idx[both]], axis=1)  # average ranks: a tie counts half
        pos = count[both]
        u = (ranks * positive[both]).sum(axis=1) - pos * (pos + 1) / 2
        out.extend((u / (pos * (n - pos))).tolist())
    return out


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> None:
    """One ROC curve per finding (truth, scores), with its AUC in the legend, as a PNG at `path`."""
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    for name, (truth, scores) in curves.items():
        if len(np.unique(truth)) < 2:
            continue
        fpr, tpr, _ = roc_curve(truth, scores)
        ax.plot(fpr, tpr, label=f"{name} ({roc_auc_score(truth, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")


Pairs = dict[str, list[tuple[list[Box], list[Box]]]]


def box_pairs(predicted: pd.DataFrame, truth: pd.DataFrame, findings: list[str]) -> Pairs:
    """Per finding with true boxes: for each image holding one, (its true boxes, its predicted boxes)."""
    columns = ["x", "y", "w", "h"]
    mine = {key: [tuple(r) for r in group[columns].to_numpy(float)]
            for key, group in predicted.groupby(["Image Index", "Finding Label"], sort=False)}
    out: Pairs = {}
    for f in findings:
        gt = truth[truth["Finding Label"] == f]
        if not gt.empty:
            out[f] = [([tuple(r) for r in group[columns].to_numpy(float)], mine.get((image, f), []))
                      for image, group in gt.groupby("Image Index", sort=False)]
    return out


def count_hits(truth: list[Box], predicted: list[Box], measure: str, t: float, strict: bool = False) -> tuple[int, int]:
    """(true boxes hit by a predicted box, predicted boxes hitting no true box) at `measure` ("iou" or
    "iobb") at least `t`, or above it when `strict`."""
    fn = iou if measure == "iou" else iobb
    hit = np.array([[fn(g, p) for p in predicted] for g in truth]).reshape(len(truth), len(predicted))
    hit = hit > t if strict else hit >= t
    return int(hit.any(1).sum()), int((~hit.any(0)).sum())


def accuracy_and_afp(pairs: list[tuple[list[Box], list[Box]]], measure: str, t: float,
                     strict: bool = False) -> dict[str, float]:
    """A finding's accuracy (share of its true boxes hit) and AFP (false boxes per image with the finding)."""
    hits, false, boxes = 0, 0, 0
    for truth, predicted in pairs:
        h, f = count_hits(truth, predicted, measure, t, strict)
        hits, false, boxes = hits + h, false + f, boxes + len(truth)
    return {"acc": hits / boxes, "afp": false / len(pairs)}


def _with_mean(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    if table:
        keys = next(iter(table.values())).keys()
        table["mean"] = {k: float(np.mean([v[k] for v in table.values()])) for k in keys}
    return table


def localization_metrics(predicted: pd.DataFrame, truth: pd.DataFrame, findings: list[str],
                         peaks: pd.DataFrame | None = None) -> dict[str, Any]:
    """The paper's tables: per finding and threshold, accuracy (share of true boxes hit by a box of that
    finding on that image) and AFP (boxes hitting no true box, per image with the finding), for IoBB and
    IoU at least each threshold. Beside them, with each map's maximum (`peaks`: Image Index, Finding
    Label, x, y), the pointing game, and the figures as recent papers report them (`recent`): accuracy
    at IoU above 0.1 and above 0.5, AFP at IoU above 0.1, and pointing; and the true boxes counted."""
    pairs = box_pairs(predicted, truth, findings)
    out: dict[str, Any] = {"iobb": {}, "iou": {}}
    for measure, thresholds in (("iobb", IOBB_THRESHOLDS), ("iou", IOU_THRESHOLDS)):
        for t in thresholds:
            out[measure][str(t)] = _with_mean({f: accuracy_and_afp(p, measure, t) for f, p in pairs.items()})
    if peaks is None:
        return out
    out["pointing"] = pointing_accuracy(peaks, truth, findings)
    recent = {}
    for f, p in pairs.items():
        loose, tight = accuracy_and_afp(p, "iou", 0.1, strict=True), accuracy_and_afp(p, "iou", 0.5, strict=True)
        recent[f] = {"acc_iou>0.1": loose["acc"], "acc_iou>0.5": tight["acc"], "afp_iou>0.1": loose["afp"],
                     "pointing": out["pointing"][f]}
    out["recent"] = _with_mean(recent)
    out["true_boxes"] = {f: sum(len(t) for t, _ in p) for f, p in pairs.items()}
    return out


def pointing_accuracy(peaks: pd.DataFrame, truth: pd.DataFrame, findings: list[str]) -> dict[str, float]:
    """Per finding: share of (image, finding) pairs with true boxes whose map maximum (`peaks`: Image
    Index, Finding Label, x, y) lies inside one of them; and the mean over findings."""
    out: dict[str, float] = {}
    for f in findings:
        gt = truth[truth["Finding Label"] == f]
        if gt.empty:
            continue
        mine = peaks[peaks["Finding Label"] == f].merge(gt, on="Image Index", suffixes=("", "_box"))
        inside = ((mine["x"] >= mine["x_box"]) & (mine["x"] <= mine["x_box"] + mine["w"])
                  & (mine["y"] >= mine["y_box"]) & (mine["y"] <= mine["y_box"] + mine["h"]))
        out[f] = float(inside.groupby(mine["Image Index"]).any().sum() / gt["Image Index"].nunique())
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


RECENT_ROWS = (("acc_iou>0.1", "IoU>0.1 Acc."), ("acc_iou>0.5", "IoU>0.5 Acc."), ("afp_iou>0.1", "IoU>0.1 AFP"),
               ("pointing", "Pointing"))


def format_tables(metrics: dict[str, Any]) -> str:
    """The paper's tables (rows T(IoBB) / T(IoU), columns findings, acc and AFP), then the recent
    papers' figures (IoU above 0.1 and 0.5, AFP, pointing) per finding."""
    lines = []
    for measure, title in (("iobb", "T(IoBB)"), ("iou", "T(IoU)")):
        thresholds = list(metrics[measure])
        if not thresholds or not metrics[measure][thresholds[0]]:
            continue
        names = list(metrics[measure][thresholds[0]])
        lines.append(f"{title:<13}" + "".join(f"{n[:12]:>13}" for n in names))
        for t in thresholds:
            row = metrics[measure][t]
            lines.append(f"{t:<9}Acc." + "".join(f"{row[n]['acc']:>13.3f}" for n in names))
            lines.append(f"{'':<9}AFP " + "".join(f"{row[n]['afp']:>13.3f}" for n in names))
        lines.append("")
    if metrics.get("recent"):
        names = list(metrics["recent"])
        lines.append(f"{'Recent':<13}" + "".join(f"{n[:12]:>13}" for n in names))
        for key, title in RECENT_ROWS:
            lines.append(f"{title:<13}" + "".join(f"{metrics['recent'][n][key]:>13.3f}" for n in names))
    return "\n".join(lines)
