"""The optimiser and the learning-rate schedule of `fit`, by name, resumable through their state dicts.

- onecycle (the default): one cycle per run, up for 15% of the steps then down (OneCycleLR);
- cosine: linear warm-up for `warmup_epochs`, then cosine decay to 0;
- constant: linear warm-up, then the given rate;
- plateau: linear warm-up, then the rate cut tenfold when the validation AUC has not improved for an
  epoch (CheXNet's schedule).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cxrcore.errors import InputError

from .config import TrainConfig


def make_optimizer(parameters: Any, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    raise InputError(f"--optimizer {config.optimizer!r}: choose adamw, adam or sgd")


class Schedule:
    """Steps the learning rate per optimiser step (`step`) and, for plateau, per epoch (`epoch_end`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        total = max(1, config.epochs * steps_per_epoch)
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        self.name = config.schedule
        if self.name == "onecycle":
            self.per_step = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                                pct_start=0.15)
        elif self.name in ("cosine", "constant", "plateau"):
            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                if self.name != "cosine":
                    return 1.0
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            self.per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:
            raise InputError(f"--schedule {self.name!r}: choose onecycle, cosine, plateau or constant")
        self.warmup = warmup
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=1) \
            if self.name == "plateau" else None

    def step(self) -> None:
        if self.plateau is None or self.per_step.last_epoch < self.warmup:
            self.per_step.step()

    def epoch_end(self, val_auc: float) -> None:
        if self.plateau is not None and math.isfinite(val_auc) and self.per_step.last_epoch >= self.warmup:
            self.plateau.step(val_auc)

    def state_dict(self) -> dict[str, Any]:
        state = {"per_step": self.per_step.state_dict()}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "per_step" not in state:  # a run saved before schedules had names: OneCycleLR's own state
            state = {"per_step": state}
        self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and "plateau" in state:
            self.plateau.load_state_dict(state["plateau"])
