"""What a run is judged by: AUC per finding with bootstrap intervals and ROC curves; for boxes, the
paper's accuracy and average false positives at T(IoBB) and T(IoU) thresholds, and the pointing game."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from .boxes import iobb, iou

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
    rng = np.random.default_rng(seed)
    draws = []
    n = len(truth)
    for _ in range(n_boot if not np.isnan(point) else 0):
        idx = rng.integers(0, n, n)
        if truth[idx].min() != truth[idx].max():
            draws.append(roc_auc_score(truth[idx], scores[idx]))
    tail = (1 - level) / 2 * 100
    low, high = (np.percentile(draws, [tail, 100 - tail]) if draws else (float("nan"), float("nan")))
    return {"auc": point, "ci_low": float(low), "ci_high": float(high), "positives": int(truth.sum()), "n": int(n)}


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


def localization_metrics(predicted: pd.DataFrame, truth: pd.DataFrame, findings: list[str]) -> dict[str, Any]:
    """Per finding and threshold: accuracy (share of true boxes hit by a box of that finding on that image)
    and AFP (boxes hitting no true box, per evaluated image), for IoBB and IoU."""
    out: dict[str, Any] = {"iobb": {}, "iou": {}}
    for measure, thresholds, fn in (("iobb", IOBB_THRESHOLDS, iobb), ("iou", IOU_THRESHOLDS, iou)):
        for t in thresholds:
            table: dict[str, dict[str, float]] = {}
            for f in findings:
                gt = truth[truth["Finding Label"] == f]
                if gt.empty:
                    continue
                hits, false_pos, images = 0, 0, gt["Image Index"].unique()
                for image in images:
                    g = [tuple(r) for r in gt[gt["Image Index"] == image][["x", "y", "w", "h"]].to_numpy()]
                    p = predicted[(predicted["Image Index"] == image) & (predicted["Finding Label"] == f)]
                    p = [tuple(r) for r in p[["x", "y", "w", "h"]].to_numpy()]
                    hits += sum(any(fn(gb, pb) >= t for pb in p) for gb in g)
                    false_pos += sum(not any(fn(gb, pb) >= t for gb in g) for pb in p)
                table[f] = {"acc": hits / len(gt), "afp": false_pos / len(images)}
            if table:
                table["mean"] = {k: float(np.mean([v[k] for v in table.values()])) for k in ("acc", "afp")}
            out[measure][str(t)] = table
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


def format_tables(metrics: dict[str, Any]) -> str:
    """The paper's tables: rows T(IoBB) / T(IoU), columns findings, acc and AFP."""
    lines = []
    for measure, title in (("iobb", "T(IoBB)"), ("iou", "T(IoU)")):
        thresholds = list(metrics[measure])
        if not thresholds or not metrics[measure][thresholds[0]]:
            continue
        names = list(metrics[measure][thresholds[0]])
        lines.append(f"{title:<9}" + "".join(f"{n[:12]:>13}" for n in names))
        for t in thresholds:
            row = metrics[measure][t]
            lines.append(f"{t:<5}Acc." + "".join(f"{row[n]['acc']:>13.3f}" for n in names))
            lines.append(f"{'':<5}AFP " + "".join(f"{row[n]['afp']:>13.3f}" for n in names))
        lines.append("")
    if metrics.get("pointing"):
        names = list(metrics["pointing"])
        lines.append(f"{'Pointing':<9}" + "".join(f"{n[:12]:>13}" for n in names))
        lines.append(f"{'':<5}Acc." + "".join(f"{metrics['pointing'][n]:>13.3f}" for n in names))
    return "\n".join(lines)
