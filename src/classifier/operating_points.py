"""Operating points: the probability at or above which `predict` calls a finding present.

The rule: per finding, on the run's validation split, the threshold that maximises Youden's J
(sensitivity + specificity - 1), placed halfway between the lowest probability it calls present and
the next lower one (the validation decisions are the same; a new film a hair below the last called
one is not turned away by rounding). Ties go to the higher threshold (fewer false alarms).

Why J and not F1: J weighs the two errors by their rates within each class, so the threshold it picks
depends on how the network scores sick and healthy films, not on how many of each the validation
split holds. F1 rewards precision, which falls with prevalence: a threshold chosen by F1 on a split
where a fifth of the films show a finding is wrong for a clinic where a fiftieth do. A finding with
no positive or no negative label on the validation split (or a run without one) cannot be placed
by either rule and gets 0.5, recorded with the reason.

`fit` records the points in RUN_DIR/operating_points.json at its end, chosen with the best checkpoint;
for a run trained before that, `predict --labels` chooses them on the fly from its validation split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from cxrcore.errors import InputError
from cxrcore.output import atomic_text, json_text

from .inference import known

POINTS_FILE = "operating_points.json"
RULE = "youden"
FALLBACK = 0.5


def choose(labels: np.ndarray, probs: np.ndarray, findings: list[str]) -> dict[str, dict[str, Any]]:
    """Finding → {threshold, sensitivity, specificity, j, positives, negatives} (or the 0.5 fallback and
    its reason) from validation labels (1, 0, -1 uncertain, NaN not mentioned) and probabilities."""
    out = {}
    for j, name in enumerate(findings):
        truth, scores = known(labels[:, j], probs[:, j]) if len(labels) else (np.empty(0), np.empty(0))
        positives, negatives = int((truth == 1).sum()), int((truth == 0).sum())
        if positives == 0 or negatives == 0:
            reason = "no validation split" if len(labels) == 0 else \
                f"{'no positive' if positives == 0 else 'no negative'} label on the validation split"
            out[name] = {"threshold": FALLBACK, "fallback": reason, "positives": positives, "negatives": negatives}
            continue
        fpr, tpr, cuts = roc_curve(truth, scores, drop_intermediate=False)
        best = int(np.argmax(tpr - fpr))
        below = cuts[best + 1] if best + 1 < len(cuts) else 0.0
        threshold = 1.0 if not math.isfinite(cuts[best]) else float((cuts[best] + below) / 2)
        out[name] = {"threshold": threshold, "sensitivity": float(tpr[best]), "specificity": float(1 - fpr[best]),
                     "j": float(tpr[best] - fpr[best]), "positives": positives, "negatives": negatives}
    return out


def record(run_dir: Path, labels: np.ndarray, probs: np.ndarray, findings: list[str], epoch: int) -> Path:
    """Choose the points on the validation labels and probabilities and write them into the run."""
    path = run_dir / POINTS_FILE
    atomic_text(path, json_text({"rule": RULE, "split": "val", "images": int(len(labels)), "checkpoint_epoch": epoch,
                                 "findings": choose(labels, probs, findings)}))
    return path


def read(run_dir: Path, findings: list[str]) -> dict[str, float] | None:
    """Finding → threshold as the run recorded them; None for a run that has none."""
    path = run_dir / POINTS_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["findings"]
        points = {name: float(recorded[name]["threshold"]) for name in findings}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc}); delete it and give --labels to "
                         f"choose the points again, or give --threshold") from None
    bad = next((n for n, t in points.items() if not 0 <= t <= 1), None)
    if bad is not None:
        raise InputError(f"{path}: {bad}'s threshold {points[bad]} is not between 0 and 1; delete the file and give "
                         f"--labels, or give --threshold")
    return points


def parse_overrides(values: tuple[str, ...], findings: list[str]) -> dict[str, float]:
    """`--threshold` values: `0.3` (every finding) or `Nodule=0.3`; later ones win. Finding → threshold."""
    out: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        if name and name not in findings:
            raise InputError(f"--threshold {value}: this run has no finding {name!r}; it has {', '.join(findings)}")
        try:
            threshold = float(number)
        except ValueError:
            threshold = float("nan")
        if not 0 <= threshold <= 1:  # NaN fails too
            raise InputError(f"--threshold {value}: give a probability between 0 and 1, as 0.3 or Nodule=0.3")
        out.update({name: threshold} if name else dict.fromkeys(findings, threshold))
    return out
