"""A run as a ready network: build a model from a config, restore one from a checkpoint, load a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from cxrcore.errors import InputError
from cxrcore.runs import checkpoint_path

from .checkpoint import CheckpointError, load_checkpoint, load_state_dict
from .config import ModelConfig, TrainConfig
from .models import WeaklySupervisedNet


def build_model(config: TrainConfig, num_classes: int, weights: Path | None,
                say: Callable[[str], None]) -> tuple[WeaklySupervisedNet, TrainConfig]:
    """A new network for `num_classes` findings, and the config that records how it was built (the
    architecture's default stride resolved). `weights`: a torchvision state dict for the trunk."""
    try:
        model = WeaklySupervisedNet(replace(config.model, num_classes=num_classes))
    except ValueError as exc:  # a combination of options the architecture cannot build
        raise InputError(str(exc)) from None
    if weights is None:
        say(f"{model.config.arch}: starting from random weights (give --weights for a torchvision state dict)")
    else:
        loaded, missing = model.load_trunk_weights(load_state_dict(weights))
        if missing:  # half a trunk loaded is a different network, not a head start
            raise InputError(f"{weights}: {len(missing)} of {loaded + len(missing)} {model.config.arch} trunk tensors "
                             f"are missing or of another shape there (e.g. {missing[0]}); is it a "
                             f"{model.config.arch} state dict?")
        say(f"{model.config.arch}: loaded {loaded} trunk tensors from {weights}")
    return model, replace(config, model=model.config)


def model_from_state(state: dict[str, Any], device: torch.device, source: Path | str = "checkpoint") -> WeaklySupervisedNet:
    """The network a checkpoint describes, with its weights, in eval mode on `device`."""
    try:
        model = WeaklySupervisedNet(ModelConfig(**state["config"]["model"]))
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{source}: its weights do not fit the network its config describes ({first}); "
                              f"was it written by another version or edited?") from None
    return model.to(device).eval()


def load_run(run_dir: Path, device: torch.device) -> tuple[WeaklySupervisedNet, TrainConfig, list[str], dict]:
    """The best (else last) checkpoint of a run, as a ready model, its config, findings and origin."""
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    config = run_config(state, path)
    return (model_from_state(state, device, path), config, state["findings"],
            {"checkpoint": str(path), "epoch": state["epoch"]})


def run_config(state: dict[str, Any], source: Path | str) -> TrainConfig:
    """The TrainConfig a checkpoint records; one line naming what does not fit this version."""
    try:
        return TrainConfig.from_dict(state["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}: its config does not fit this version of classifier ({exc}); train it "
                              f"again, or use the version that wrote it") from None
