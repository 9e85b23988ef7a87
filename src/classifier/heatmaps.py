"""Heatmaps of where a finding is: the paper's class activation maps, or Grad-CAM at a chosen layer
(alone, per activation as LayerCAM, or times the input's saliency), upsampled to the image so that
each cell sits on the pixel the trunk centres it on."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from .data import ImageDataset, Prepared, collate, model_input
from .models import WeaklySupervisedNet


def class_maps(model: WeaklySupervisedNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), maps (B, C, H, W) upsampled to the input size)."""
    features = model.forward_features(images)
    probs = torch.sigmoid(model.forward_head(features))
    stride, offset = model.cell_geometry()
    return probs, upsample(model.class_maps(features), images.shape[-2:], stride, offset)


def grad_cam_maps(model: WeaklySupervisedNet, images: torch.Tensor, layer: str,
                  kind: str = "gradcam") -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), maps (B, C, H, W)) read at `layer`, by `kind`:

    - "gradcam" (Selvaraju et al.): the layer's activations weighted by the mean gradient of each
      finding's logit, summed over channels, negative parts cut;
    - "layercam" (Jiang et al. 2021): each activation weighted by its own positive gradient;
    - "saliency-gradcam": Grad-CAM times the saliency of the input (the magnitude of the logit's
      gradient with respect to each pixel, Simonyan et al. 2014), smoothed at a quarter of the layer's
      stride. The two fail differently: Grad-CAM is specific to the finding but coarse, and a network
      trained from scratch can signal a lesion a few cells away from it (measured on generated films:
      class-map maxima 20 pixels below the nodule); the input gradient peaks on the lesion itself but
      lights every edge the network reads. Their product keeps the places where both agree, as Guided
      Grad-CAM does with guided backpropagation. Calibrated on the README demo's run, it scores 0.78
      at T(IoBB) = 0.5 at layer1, where Grad-CAM at its best layer scores 0.53 (docs/classifier.md)."""
    index, stride, offset = model.map_layers()[layer]
    saliency = kind == "saliency-gradcam"
    source = images.detach().requires_grad_(saliency)
    with torch.enable_grad() if saliency else torch.no_grad():
        start = model.forward_features(source) if index is None else model.trunk[: index + 1](source)
    if not saliency:
        start.requires_grad_(True)
    with torch.enable_grad():
        features = start if index is None else model.transition(model.trunk[index + 1:](start))
        logits = model.forward_head(features)
        maps, fine = [], []
        wrt = (start, source) if saliency else (start,)
        for c in range(logits.shape[1]):
            grads = torch.autograd.grad(logits[:, c].sum(), wrt, retain_graph=c < logits.shape[1] - 1)
            weight = torch.relu(grads[0]) if kind == "layercam" else grads[0].mean((2, 3), keepdim=True)
            maps.append(torch.relu((weight * start).sum(1)))
            if saliency:
                fine.append(grads[1].abs().sum(1))
    out = upsample(torch.stack(maps, 1).detach(), images.shape[-2:], stride, offset)
    if saliency:
        sigma = stride / 4
        kernel = 2 * int(3 * sigma) + 1
        out = out * gaussian_blur(torch.stack(fine, 1).detach(), [kernel, kernel], [sigma, sigma])
    return torch.sigmoid(logits).detach(), out


def heatmaps(model: WeaklySupervisedNet, images: torch.Tensor, method: str,
             layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, maps) by `method`: "cam", or "gradcam", "layercam" or "saliency-gradcam" at `layer`."""
    return class_maps(model, images) if method == "cam" else grad_cam_maps(model, images, layer, method)


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
