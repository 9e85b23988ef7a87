"""AUC per finding with bootstrap confidence intervals, and ROC curves as a picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


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
    """One ROC curve per finding (truth, scores), with its AUC in the legend."""
    fig, ax = plt.subplots(figsize=(7, 7))
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
    plt.close(fig)
