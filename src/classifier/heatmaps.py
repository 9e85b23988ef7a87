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
    probs, maps = grad_cam_kinds(model, images, layer, (kind,))
    return probs, maps[kind]


def grad_cam_kinds(model: WeaklySupervisedNet, images: torch.Tensor, layer: str, kinds: tuple[str, ...],
                   wanted: list[list[int]] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(probabilities, kind → maps) for several kinds of `grad_cam_maps` at one layer from one backward
    pass per finding: calibration tries every kind at every layer, and this is its costly part. With
    `wanted` (per image, the findings whose maps are needed), a pass serves one finding of every image at
    once (the images of a batch do not mix in an evaluating network), so a batch costs as many passes as
    its most boxed image has findings, not one per finding; the maps not wanted are left at zero."""
    index, stride, offset = model.map_layers()[layer]
    saliency = "saliency-gradcam" in kinds
    source = images.detach().requires_grad_(saliency)
    with torch.enable_grad() if saliency else torch.no_grad():
        start = model.forward_features(source) if index is None else model.trunk[: index + 1](source)
    if not saliency:
        start.requires_grad_(True)
    with torch.enable_grad():
        features = start if index is None else model.transition(model.trunk[index + 1:](start))
        logits = model.forward_head(features)
        count, batch = logits.shape[1], logits.shape[0]
        if wanted is None:
            rounds = [[c] * batch for c in range(count)]
        else:
            depth = max((len(w) for w in wanted), default=0)
            rounds = [[w[r] if r < len(w) else -1 for w in wanted] for r in range(depth)]
        maps = {k: start.new_zeros((batch, count, *start.shape[2:])) for k in kinds}
        fine = source.new_zeros((batch, count, *source.shape[2:])) if saliency else None
        wrt = (start, source) if saliency else (start,)
        for r, chosen in enumerate(rounds):
            rows = torch.tensor([i for i, c in enumerate(chosen) if c >= 0], dtype=torch.long)
            cols = torch.tensor([c for c in chosen if c >= 0], dtype=torch.long)
            if not len(rows):
                continue
            grads = torch.autograd.grad(logits[rows, cols].sum(), wrt, retain_graph=r < len(rounds) - 1)
            cam = torch.relu((grads[0].mean((2, 3), keepdim=True) * start).sum(1))
            for kind in kinds:
                value = torch.relu((torch.relu(grads[0]) * start).sum(1)) if kind == "layercam" else cam
                maps[kind][rows, cols] = value[rows].detach()
            if saliency:
                fine[rows, cols] = grads[1].abs().sum(1)[rows]
    out = {k: upsample(v, images.shape[-2:], stride, offset) for k, v in maps.items()}
    if saliency:
        sigma = stride / 4
        kernel = 2 * int(3 * sigma) + 1
        out["saliency-gradcam"] = out["saliency-gradcam"] * gaussian_blur(fine, [kernel, kernel], [sigma, sigma])
    return torch.sigmoid(logits).detach(), out


def heatmaps(model: WeaklySupervisedNet, images: torch.Tensor, method: str,
             layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, maps) by `method`: "cam", or "gradcam", "layercam" or "saliency-gradcam" at `layer`."""
    return class_maps(model, images) if method == "cam" else grad_cam_maps(model, images, layer, method)


def map_batches(model: WeaklySupervisedNet, data: Prepared, rows: np.ndarray, size: int, batch_size: int,
                device: torch.device, method: str, layer: str,
                unreadable: Callable[[str], None]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(row, probabilities (C,), maps (C, size, size)) of each readable image of `rows`; an unreadable
    one is left out, and `unreadable` is told which and why."""
    for row, probs, maps in kinds_batches(model, data, rows, size, batch_size, device, (method,), layer, unreadable):
        yield row, probs, maps[method]


def kinds_batches(model: WeaklySupervisedNet, data: Prepared, rows: np.ndarray, size: int, batch_size: int,
                  device: torch.device, methods: tuple[str, ...], layer: str, unreadable: Callable[[str], None],
                  wanted: Callable[[int], list[int]] | None = None
                  ) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
    """As `map_batches`, with the maps of several `methods` ("cam" alone, or Grad-CAM kinds) at one layer;
    `wanted(row)`: the findings (indices) whose maps that row needs (default: all)."""
    loader = torch.utils.data.DataLoader(ImageDataset.of(data, rows, size), batch_size=batch_size, collate_fn=collate)
    model.eval()
    with torch.no_grad():  # Grad-CAM turns gradients on for itself
        for batch, errors in loader:
            for message in errors:
                unreadable(message)
            if batch is None:
                continue
            images = model_input(batch[0], device)
            if methods == ("cam",):
                probs, one = class_maps(model, images)
                maps = {"cam": one}
            else:
                need = None if wanted is None else [wanted(int(rows[i])) for i in batch[2].tolist()]
                probs, maps = grad_cam_kinds(model, images, layer, methods, need)
            for k, index in enumerate(batch[2].tolist()):
                yield (int(rows[index]), probs[k].float().cpu().numpy(),
                       {m: v[k].float().cpu().numpy() for m, v in maps.items()})


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
