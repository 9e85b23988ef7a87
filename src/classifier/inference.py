"""Applying a network: device choice, mixed precision, batched probabilities, and AUC on known labels."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxrcore.errors import InputError

from .config import TrainConfig
from .data import collate, model_input
from .metrics import auc, auc_with_ci
from .models import WeaklySupervisedNet


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU; `cuda` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return torch.device(name)


def autocast_for(device: torch.device, cpu_bf16: bool) -> tuple[AbstractContextManager, bool]:
    """Mixed precision where it pays: bfloat16 on CUDA (float16 on GPUs without it); CPU by option.
    Returns the context and whether float16 needs loss scaling."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16), False


def predict(model: WeaklySupervisedNet, dataset: Dataset, batch_size: int, device: torch.device,
            config: TrainConfig, report: Callable[[str], None], size: int | None = None,
            progress: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """Probabilities (N, C), N = `size` or the dataset's length, by each sample's own position (a Subset
    of an ImageDataset fills only its positions); rows whose image could not be read are NaN.
    `progress` is told how many images each batch took (read or not)."""
    out = np.full((size or len(dataset), model.config.num_classes), np.nan, dtype=np.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=config.loader_workers,
                        collate_fn=collate)
    cast, _ = autocast_for(device, config.cpu_bf16)
    model.eval()
    with torch.no_grad():
        for batch, errors in loader:
            for message in errors:
                report(message)
            progress(len(errors) + (0 if batch is None else len(batch[2])))
            if batch is None:
                continue
            images, _, indices = batch
            images = model_input(images, device, config.channels_last)
            with cast:
                logits = model(images)
            out[indices.numpy()] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def known(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (truth, probability) pairs an AUC is computed on: not mentioned counts as negative, uncertain
    labels and unreadable images are left out."""
    truth = np.nan_to_num(labels, nan=0.0)
    keep = (truth != -1) & ~np.isnan(probs)
    return truth[keep], probs[keep]


def auc_intervals(labels: np.ndarray, probs: np.ndarray, findings: list[str]) -> dict[str, list[float]]:
    """Per-finding 95% bootstrap interval [low, high] of the AUC on known labels (NaN where undefined)."""
    out = {}
    for j, name in enumerate(findings):
        result = auc_with_ci(*known(labels[:, j], probs[:, j]))
        out[name] = [result["ci_low"], result["ci_high"]]
    return out


def mean_auc(labels: np.ndarray, probs: np.ndarray, findings: list[str]) -> tuple[float, dict[str, float]]:
    """Per-finding AUC on known labels, and their mean over findings where it is defined."""
    per = {name: auc(*known(labels[:, j], probs[:, j])) for j, name in enumerate(findings)}
    values = [v for v in per.values() if not np.isnan(v)]
    return (float(np.mean(values)) if values else float("nan")), per
