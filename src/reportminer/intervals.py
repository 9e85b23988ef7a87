"""Percentile bootstrap over reports: how sure a precision, recall or F1 measured on a few hundred
hand-labeled reports is.

Reports, not labels, are resampled (with replacement), because one report's 14 labels are read by
one reviewer from one text and are not independent. When the reports are a stratified sample, each
stratum is resampled on its own with its own size, as the sample was drawn. A stratum with a single
gold report cannot vary when resampled on its own, so its (often large) weight would carry no
uncertainty and the interval would shrink, to zero width when every stratum has one report: such
strata are pooled and resampled together (the survey statistician's collapsed strata), a lone one
with the smallest other stratum, and a note says so. A figure's interval is
the 2.5th and 97.5th percentiles of that figure over the resamples where it is defined (level
0.95). With a handful of gold positives the interval says little: a resample cannot do better than
the reports it draws from, so an F1 of 1.0 on three positives gets the interval 1.0-1.0.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def draw_counts(n: int, draws: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """How often each of `n` reports is drawn in each resample: a (draws, n) float array whose rows
    sum to n (and, per stratum, to the stratum's size)."""
    rng = np.random.default_rng(seed)
    groups = np.zeros(n, dtype=int) if strata is None else np.unique(strata, return_inverse=True)[1]
    counts = np.zeros((draws, n), dtype=np.float64)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=draws)
    return counts


def pooled_strata(strata: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The groups to resample within: the strata, with those holding one report pooled into one
    group (a lone such stratum joins the smallest other stratum), and a note saying what was pooled;
    the strata themselves and None when every stratum has two reports or more."""
    names, inverse, sizes = np.unique(strata, return_inverse=True, return_counts=True)
    single = sizes == 1
    if not single.any() or len(strata) < 2:
        return strata, None
    groups = inverse.copy()
    if single.sum() > 1:
        groups[single[inverse]] = -1
        return groups, (f"{int(single.sum())} strata have one gold report each; the bootstrap resamples them together "
                        f"(alone, a report cannot vary and its stratum's weight would carry no uncertainty)")
    others = np.flatnonzero(~single)
    host = others[np.argmin(sizes[others])]
    groups[single[inverse]] = host
    return groups, (f"stratum {names[single][0]} has one gold report; the bootstrap resamples it with stratum "
                    f"{names[host]} (alone, a report cannot vary and its stratum's weight would carry no uncertainty)")


def prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 (2tp / (2tp + fp + fn)) of count arrays; NaN where a resample leaves
    a figure undefined (no prediction, no gold positive), so that resample does not count for it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
                "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
                "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)}


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """[low, high]: the central `level` share of the defined bootstrap values (NaN when none is)."""
    values = values[~np.isnan(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def intervals(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, level: float = LEVEL) -> dict[str, list[float]]:
    """Intervals of precision, recall and F1 from per-resample counts."""
    return {name: percentile_interval(values, level) for name, values in prf(tp, fp, fn).items()}
