"""The paper's weighted cross-entropy, plain BCE, and the policy for uncertain labels.

Targets arrive as 1 / 0 / -1 (uncertain) / NaN (not mentioned). Not mentioned is negative; uncertain
follows `--uncertain`: ignore (masked out of the loss), ones, or zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .choices import LOSSES, UNCERTAIN_POLICIES


def targets_and_mask(labels: torch.Tensor, uncertain: str) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 float targets and a 0/1 mask of the entries that count, from raw 1/0/-1/NaN labels."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    labels = torch.nan_to_num(labels, nan=0.0)
    is_uncertain = labels == -1
    targets = torch.where(is_uncertain, torch.full_like(labels, 1.0 if uncertain == "ones" else 0.0), labels)
    mask = (~is_uncertain).float() if uncertain == "ignore" else torch.ones_like(labels)
    return targets, mask


def batch_counts(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per finding, the batch's positives and negatives that count, then the number of counted entries:
    what the losses normalise by. Several processes sum these over their slices of the global batch."""
    positives = (targets * mask).sum(0)
    negatives = ((1 - targets) * mask).sum(0)
    return torch.cat([positives, negatives, mask.sum().reshape(1)])


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor | None = None,
                 scale: float = 1.0) -> torch.Tensor:
    """W-CEL: β_P = (|P|+|N|)/|P| on positives, β_N = (|P|+|N|)/|N| on negatives, counted per finding
    in the (global) batch (entries masked out do not count), averaged over the counted entries.
    `counts`: `batch_counts` of the global batch (default: this batch's); `scale` multiplies the result."""
    counts = batch_counts(targets, mask) if counts is None else counts
    classes = targets.shape[1]
    positives, negatives, counted = counts[:classes], counts[classes:2 * classes], counts[-1]
    total = positives + negatives
    beta_p = torch.where(positives > 0, total / positives.clamp(min=1), torch.zeros_like(total))
    beta_n = torch.where(negatives > 0, total / negatives.clamp(min=1), torch.zeros_like(total))
    weights = (targets * beta_p + (1 - targets) * beta_n) * mask
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return scale * (weights * losses).sum() / counted.clamp(min=1) / 2


def plain_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor | None = None,
              scale: float = 1.0) -> torch.Tensor:
    counts = batch_counts(targets, mask) if counts is None else counts
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return scale * (losses * mask).sum() / counts[-1].clamp(min=1)


def loss_function(name: str):
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return weighted_bce if name == "weighted" else plain_bce
