"""What builds a model and what `fit` was asked to do: plain dataclasses, saved in every checkpoint.

`ModelConfig.output_stride` None means the architecture's own default (16 for a ResNet, whose last
stage is then dilated so that class activation maps are fine enough to place a lesion; 32 for
DenseNet, which cannot dilate): library callers and the command line get the same model, and a run
records the stride it was built with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

DEFAULT_STRIDE = {"resnet50": 16, "resnet18": 16, "densenet121": 32}


@dataclass(frozen=True)
class ModelConfig:
    """What builds a model."""

    arch: str = "resnet50"
    num_classes: int = 14
    pool: str = "lse"
    lse_r: float = 10.0
    transition_channels: int = 1024
    output_stride: int | None = None
    trunk_stages: int = 4

    def resolved(self) -> "ModelConfig":
        """The same config with the architecture's default stride filled in."""
        if self.output_stride is not None:
            return self
        return replace(self, output_stride=DEFAULT_STRIDE.get(self.arch, 32))


@dataclass(frozen=True)
class TrainConfig:
    """Everything `fit` was asked to do; saved in each checkpoint and in config.json."""

    model: ModelConfig = field(default_factory=ModelConfig)
    size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    loss: str = "weighted"
    uncertain: str = "ignore"
    device: str = "auto"
    loader_workers: int = 0
    channels_last: bool | None = None  # None: on GPUs, where it measured faster; off on the CPU
    cpu_bf16: bool = False
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0  # linear warm-up for the cosine, plateau and constant schedules
    accumulate: int = 1  # micro-batches per optimiser step: an effective batch of batch_size x accumulate
    augment: str = "affine"
    preset: str | None = None  # the named recipe that set these options, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**{**data, "model": ModelConfig(**data["model"])})
