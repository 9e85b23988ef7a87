"""The ChestX-ray8 network: a torchvision trunk without its classifier, a transition layer, global
pooling (LSE by default) and a prediction layer with one logit per finding.

`forward_features` returns the transition activations (B, D, S, S) and `prediction.weight` holds
(C, D): their product is a class activation map, which is what the localizer needs. `output_stride`
(config.py: 16 by default for a ResNet) 16 or 8 dilates the trunk's last stages (torchvision's `replace_stride_with_dilation`) so the map is
fine enough to place a small lesion. `trunk_stages` 3 ends a ResNet after its third stage (layer3), as
the CAM paper cut GoogLeNet after inception4e: at output stride 8 the maps are as fine as a full trunk's
for about a third of its cost, and its features see less of the whole film, so they stay more local.
"""

from __future__ import annotations

import math
import re

import torch
import torchvision
from torch import nn

from .choices import ARCHS, POOLS
from .config import ModelConfig


class LSEPool(nn.Module):
    """Log-sum-exp pooling: (1/r) log(mean exp(r x)); r large → max, r small → average."""

    def __init__(self, r: float) -> None:
        super().__init__()
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return (torch.logsumexp(self.r * flat, dim=2) - math.log(flat.shape[2])) / self.r


def _trunk(arch: str, output_stride: int, stages: int = 4) -> tuple[nn.Module, int]:
    """The trunk's convolutional part and its number of output channels."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    if stages not in (3, 4) or (stages == 3 and not arch.startswith("resnet")):
        raise ValueError(f"trunk_stages must be 4, or 3 for a ResNet; got {stages} for {arch}")
    if stages == 3 and output_stride == 32:
        raise ValueError("a 3-stage ResNet trunk ends at stride 16; choose output_stride 16 or 8")
    if arch in ("resnet50", "resnet18"):
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
        if arch == "resnet18":
            net = torchvision.models.resnet18(weights=None)
            _dilate_basic(net, dilate)
            channels = 512
        else:
            net = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilate)
            channels = 2048
        layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
        if stages == 3:
            return nn.Sequential(*layers[:-1]), channels // 2
        return nn.Sequential(*layers), channels
    if arch == "densenet121":
        if output_stride != 32:
            raise ValueError("densenet121 supports output_stride 32 only")
        net = torchvision.models.densenet121(weights=None)
        return nn.Sequential(net.features, nn.ReLU(inplace=True)), 1024
    raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")


def _dilate_basic(net: torchvision.models.ResNet, dilate: list[bool]) -> None:
    """ResNet-18's BasicBlock refuses torchvision's dilation flag: trade each flagged stage's stride for
    dilation by hand (stride 1, and every 3x3 conv of the stage dilated like the stride it replaced)."""
    dilation = 1
    for layer, flag in zip((net.layer2, net.layer3, net.layer4), dilate):
        if not flag:
            continue
        dilation *= 2
        for block in layer:
            for conv in (block.conv1, block.conv2):
                conv.stride, conv.dilation, conv.padding = (1, 1), (dilation, dilation), (dilation, dilation)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)


class WeaklySupervisedNet(nn.Module):
    """Trunk → transition (conv to D channels) → pooling → prediction (one logit per finding)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.pool not in POOLS:
            raise ValueError(f"unknown pool {config.pool!r}; choose one of {', '.join(POOLS)}")
        if config.pool == "lse" and not (math.isfinite(config.lse_r) and config.lse_r > 0):
            raise ValueError(f"LSE pooling needs r above 0 (it divides by r), got {config.lse_r}")
        config = config.resolved()
        self.config = config
        self.trunk, channels = _trunk(config.arch, config.output_stride, config.trunk_stages)
        if config.transition_channels > 0:
            self.transition: nn.Module = nn.Sequential(
                nn.Conv2d(channels, config.transition_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(config.transition_channels), nn.ReLU(inplace=True))
        else:  # no transition layer: the trunk's own features (CheXNet's head)
            self.transition = nn.Identity()
        self.pool = {"lse": LSEPool(config.lse_r), "max": nn.AdaptiveMaxPool2d(1),
                     "avg": nn.AdaptiveAvgPool2d(1)}[config.pool]
        self.prediction = nn.Linear(config.transition_channels or channels, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Transition activations (B, D, S, S)."""
        return self.transition(self.trunk(x))

    def cell_geometry(self) -> tuple[int, float]:
        """(stride, offset): feature cell i is centred on input pixel offset + i * stride. A ResNet centres
        cell i on pixel i * stride (every stride-2 layer is padded symmetrically; tests/test_localize.py
        measures it on a real trunk's gradients). DenseNet's three 2x2 average-pooling transitions each
        move it by half a cell of their input, 2 + 4 + 8 = 14 pixels (derived, not measured: its
        receptive field is too wide for the gradient measurement to separate 14 from 16)."""
        if self.config.arch == "densenet121":
            return 32, 14.0
        return self.config.output_stride, 0.0

    def map_layers(self) -> dict[str, tuple[int | None, int, float]]:
        """Layers a heatmap can be read from: name → (index in the trunk, or None for the transition
        layer; stride; offset). A ResNet's layer1 and layer2 are at strides 4 and 8 whatever the output
        stride; dilation holds layer3 at 8 or 16 and layer4 at the output stride."""
        stride, offset = self.cell_geometry()
        layers: dict[str, tuple[int | None, int, float]] = {}
        if self.config.arch.startswith("resnet"):
            strides = {"layer1": 4, "layer2": 8, "layer3": min(16, stride), "layer4": stride}
            for index, name in enumerate(["layer1", "layer2", "layer3", "layer4"][: self.config.trunk_stages], start=4):
                layers[name] = (index, strides[name], 0.0)
        layers["transition"] = (None, stride, offset)
        return layers

    def class_maps(self, features: torch.Tensor) -> torch.Tensor:
        """Class activation maps (B, C, S, S): the prediction layer applied at every position."""
        return nn.functional.conv2d(features, self.prediction.weight[:, :, None, None], self.prediction.bias)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.prediction(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def load_trunk_weights(self, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
        """Copy a torchvision state dict's trunk weights; return (tensors loaded, trunk keys not found)."""
        mapping = _trunk_key_map(self.config.arch)
        state = modern_keys(state)
        own = self.trunk.state_dict()
        loaded, missing = 0, []
        for key, target in mapping(own).items():
            if key in state and state[key].shape == own[target].shape:
                own[target] = state[key]
                loaded += 1
            else:
                missing.append(key)
        self.trunk.load_state_dict(own)
        return loaded, missing


def _trunk_key_map(arch: str):
    """torchvision key → this trunk's key, for every trunk tensor."""
    if arch.startswith("resnet"):
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]

        def mapping(own: dict) -> dict:
            out = {}
            for key in own:
                index, rest = key.split(".", 1)
                out[f"{names[int(index)]}.{rest}"] = key
            return out
        return mapping

    def dense(own: dict) -> dict:
        return {key.replace("0.", "features.", 1): key for key in own if key.startswith("0.")}
    return dense


_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def modern_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision state dict with DenseNet's old key names ("norm.1.weight", as the published weights
    still spell them) renamed as torchvision's modules name them today ("norm1.weight")."""
    return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
