"""Heatmaps of where a finding is: the paper's class activation maps, or Grad-CAM at a chosen layer,
upsampled to the image so that each cell sits on the pixel the trunk centres it on."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageDataset, Prepared, collate, model_input
from .models import WeaklySupervisedNet


def class_maps(model: WeaklySupervisedNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), maps (B, C, H, W) upsampled to the input size)."""
    features = model.forward_features(images)
    probs = torch.sigmoid(model.forward_head(features))
    stride, offset = model.cell_geometry()
    return probs, upsample(model.class_maps(features), images.shape[-2:], stride, offset)


def grad_cam_maps(model: WeaklySupervisedNet, images: torch.Tensor, layer: str,
                  local: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), Grad-CAM maps (B, C, H, W)) read at `layer`: its activations weighted by
    the mean gradient of each finding's logit, summed over channels, negative parts cut (Selvaraju et al.).
    `local`: LayerCAM (Jiang et al. 2021) instead, each activation weighted by its own positive gradient,
    which keeps a shallow layer's maps on the places that moved the logit.

    An earlier layer sees less of the film: in a network trained from scratch the transition layer
    can learn to signal a lesion a few cells away from it (measured on generated films: nodule
    maxima 20 pixels below the nodule), while layer2's gradients stay on it."""
    index, stride, offset = model.map_layers()[layer]
    with torch.no_grad():
        start = model.forward_features(images) if index is None else model.trunk[: index + 1](images)
    start.requires_grad_(True)
    with torch.enable_grad():
        features = start if index is None else model.transition(model.trunk[index + 1:](start))
        logits = model.forward_head(features)
        maps = []
        for c in range(logits.shape[1]):
            (grad,) = torch.autograd.grad(logits[:, c].sum(), start, retain_graph=c < logits.shape[1] - 1)
            weight = torch.relu(grad) if local else grad.mean((2, 3), keepdim=True)
            maps.append(torch.relu((weight * start).sum(1)))
    return torch.sigmoid(logits).detach(), upsample(torch.stack(maps, 1).detach(), images.shape[-2:], stride, offset)


def heatmaps(model: WeaklySupervisedNet, images: torch.Tensor, method: str, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, maps) by `method`: "cam", or "gradcam" or "layercam" at `layer`."""
    return class_maps(model, images) if method == "cam" else grad_cam_maps(model, images, layer, method == "layercam")


def map_batches(model: WeaklySupervisedNet, data: Prepared, rows: np.ndarray, size: int, batch_size: int,
                device: torch.device, method: str, layer: str,
                say: Callable[[str], None]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(row, probabilities (C,), maps (C, size, size)) of each readable image of `rows`; an unreadable
    one is named and left out."""
    loader = torch.utils.data.DataLoader(ImageDataset.of(data, rows, size), batch_size=batch_size, collate_fn=collate)
    model.eval()
    with torch.no_grad():  # Grad-CAM turns gradients on for itself
        for batch, errors in loader:
            for message in errors:
                say(f"skipped unreadable image {message}")
            if batch is None:
                continue
            probs, maps = heatmaps(model, model_input(batch[0], device), method, layer)
            for k, index in enumerate(batch[2].tolist()):
                yield int(rows[index]), probs[k].float().cpu().numpy(), maps[k].float().cpu().numpy()


def upsample(maps: torch.Tensor, size: tuple[int, int], stride: int, offset: float) -> torch.Tensor:
    """Bilinear upsampling that puts cell i on input pixel offset + i * stride, where the trunk centres it.

    `F.interpolate(align_corners=False)` would put it at (i + 0.5) * stride: half a cell too far right
    and down (4 pixels at stride 8), enough to push a nodule's box off the nodule."""
    def axis(pixels: int, cells: int) -> torch.Tensor:
        u = (torch.arange(pixels, dtype=maps.dtype, device=maps.device) - offset) / stride
        return 2 * u / max(cells - 1, 1) - 1
    ys, xs = axis(size[0], maps.shape[-2]), axis(size[1], maps.shape[-1])
    grid = torch.stack((xs[None, :].expand(len(ys), -1), ys[:, None].expand(-1, len(xs))), dim=-1)
    return F.grid_sample(maps, grid[None].expand(len(maps), -1, -1, -1), mode="bilinear", padding_mode="border",
                         align_corners=True)
