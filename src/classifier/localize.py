"""`classifier localize`: heatmaps → boxes, overlays, and the paper's localization metrics.

A finding's map is the transition activations weighted by its prediction-layer weights (a class
activation map, the paper's), or by option Grad-CAM read at an earlier layer; it is upsampled to
the image so that each cell sits on the pixel the trunk centres it on. Boxes are made as in the
paper: the map normalised to [0, 255], thresholded (60 and 180 by default), one box per connected
region, in the image's own pixel coordinates. With true boxes, each finding's accuracy and average
false positives are measured at T(IoBB) and T(IoU) thresholds, and, as a check of the maps that does
not depend on thresholds, the pointing accuracy: how often a map's maximum lies inside a true box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from reportminer.dataset import read_boxes  # noqa: E402
from reportminer.errors import InputError  # noqa: E402
from reportminer.output import atomic_path, atomic_text  # noqa: E402

from .data import ImageDataset, collate  # noqa: E402
from .models import WeaklySupervisedNet  # noqa: E402
from .score import load_run  # noqa: E402
from .train import json_text, pick_device, prepare  # noqa: E402

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
Box = tuple[float, float, float, float]  # x, y, w, h


def class_maps(model: WeaklySupervisedNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), maps (B, C, H, W) upsampled to the input size)."""
    features = model.forward_features(images)
    probs = torch.sigmoid(model.forward_head(features))
    stride, offset = model.cell_geometry()
    return probs, upsample(model.class_maps(features), images.shape[-2:], stride, offset)


def grad_cam_maps(model: WeaklySupervisedNet, images: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (B, C), Grad-CAM maps (B, C, H, W)) read at `layer`: its activations weighted by
    the mean gradient of each finding's logit, summed over channels, negative parts cut (Selvaraju et al.).

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
            maps.append(torch.relu((grad.mean((2, 3), keepdim=True) * start).sum(1)))
    return torch.sigmoid(logits).detach(), upsample(torch.stack(maps, 1).detach(), images.shape[-2:], stride, offset)


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


def boxes_from_map(heatmap: np.ndarray, thresholds: tuple[int, ...], scale: tuple[float, float]) -> list[tuple[Box, float]]:
    """Boxes (in pixels scaled by (sx, sy)) of the connected regions above each threshold of the
    [0, 255]-normalised map, each with its score (the region's mean normalised value / 255)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    if high - low < 1e-12:
        return []
    norm = (heatmap - low) / (high - low) * 255
    out = []
    sx, sy = scale
    for t in thresholds:
        regions, count = ndimage.label(norm >= t)
        for index, found in enumerate(ndimage.find_objects(regions), start=1):
            if found is None:
                continue
            ys, xs = found
            score = float(norm[regions == index].mean() / 255)
            out.append(((xs.start * sx, ys.start * sy, (xs.stop - xs.start) * sx, (ys.stop - ys.start) * sy), score))
    return out


def intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def iobb(truth: Box, detected: Box) -> float:
    """Intersection over the detected box's area (the paper's IoBB)."""
    area = detected[2] * detected[3]
    return intersection(truth, detected) / area if area > 0 else 0.0


def localization_metrics(predicted: pd.DataFrame, truth: pd.DataFrame, findings: list[str]) -> dict[str, Any]:
    """Per finding and threshold: accuracy (share of true boxes hit by a box of that finding on that image)
    and AFP (boxes hitting no true box, per evaluated image), for IoBB and IoU."""
    out: dict[str, Any] = {"iobb": {}, "iou": {}}
    for measure, thresholds, fn in (("iobb", IOBB_THRESHOLDS, iobb), ("iou", IOU_THRESHOLDS, iou)):
        for t in thresholds:
            table: dict[str, dict[str, float]] = {}
            for f in findings:
                gt = truth[truth["Finding Label"] == f]
                if gt.empty:
                    continue
                hits, false_pos, images = 0, 0, gt["Image Index"].unique()
                for image in images:
                    g = [tuple(r) for r in gt[gt["Image Index"] == image][["x", "y", "w", "h"]].to_numpy()]
                    p = predicted[(predicted["Image Index"] == image) & (predicted["Finding Label"] == f)]
                    p = [tuple(r) for r in p[["x", "y", "w", "h"]].to_numpy()]
                    hits += sum(any(fn(gb, pb) >= t for pb in p) for gb in g)
                    false_pos += sum(not any(fn(gb, pb) >= t for gb in g) for pb in p)
                table[f] = {"acc": hits / len(gt), "afp": false_pos / len(images)}
            if table:
                table["mean"] = {k: float(np.mean([v[k] for v in table.values()])) for k in ("acc", "afp")}
            out[measure][str(t)] = table
    return out


def pointing_accuracy(peaks: pd.DataFrame, truth: pd.DataFrame, findings: list[str]) -> dict[str, float]:
    """Per finding: share of (image, finding) pairs with true boxes whose map maximum (`peaks`: Image
    Index, Finding Label, x, y) lies inside one of them; and the mean over findings."""
    out: dict[str, float] = {}
    for f in findings:
        gt = truth[truth["Finding Label"] == f]
        if gt.empty:
            continue
        mine = peaks[peaks["Finding Label"] == f].merge(gt, on="Image Index", suffixes=("", "_box"))
        inside = ((mine["x"] >= mine["x_box"]) & (mine["x"] <= mine["x_box"] + mine["w"])
                  & (mine["y"] >= mine["y_box"]) & (mine["y"] <= mine["y_box"] + mine["h"]))
        out[f] = float(inside.groupby(mine["Image Index"]).any().sum() / gt["Image Index"].nunique())
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


def format_tables(metrics: dict[str, Any]) -> str:
    """The paper's tables: rows T(IoBB) / T(IoU), columns findings, acc and AFP."""
    lines = []
    for measure, title in (("iobb", "T(IoBB)"), ("iou", "T(IoU)")):
        thresholds = list(metrics[measure])
        if not thresholds or not metrics[measure][thresholds[0]]:
            continue
        names = list(metrics[measure][thresholds[0]])
        lines.append(f"{title:<9}" + "".join(f"{n[:12]:>13}" for n in names))
        for t in thresholds:
            row = metrics[measure][t]
            lines.append(f"{t:<5}Acc." + "".join(f"{row[n]['acc']:>13.3f}" for n in names))
            lines.append(f"{'':<5}AFP " + "".join(f"{row[n]['afp']:>13.3f}" for n in names))
        lines.append("")
    if metrics.get("pointing"):
        names = list(metrics["pointing"])
        lines.append(f"{'Pointing':<9}" + "".join(f"{n[:12]:>13}" for n in names))
        lines.append(f"{'':<5}Acc." + "".join(f"{metrics['pointing'][n]:>13.3f}" for n in names))
    return "\n".join(lines)


def overlay(image_path: Path, heatmap: np.ndarray, predicted: list[Box], truth: list[Box], title: str,
            path: Path) -> None:
    """The image, the map in a colour scale, predicted (yellow) and true (green) boxes."""
    with Image.open(image_path) as im:
        grey = np.asarray(im.convert("L"))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(grey, cmap="gray")
    resized = np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize(grey.shape[::-1], Image.BILINEAR))
    ax.imshow(resized, cmap="jet", alpha=0.35)
    for boxes, colour in ((predicted, "yellow"), (truth, "lime")):
        for x, y, w, h in boxes:
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=1.5))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def localize(run_dir: Path, labels_path: Path, images: Path | None, out_dir: Path, boxes_path: Path | None = None,
             thresholds: tuple[int, ...] = (60, 180), min_score: float = 0.5, split: str | None = None,
             device: str = "auto", overlays: int = 50, boxes_size: int | None = None, method: str = "cam",
             layer: str = "transition", say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Write boxes.csv, overlays/ and (with true boxes) localization.json into `out_dir`.

    `method`: "cam" (the paper's class activation maps) or "gradcam" read at `layer`.
    `boxes_size`: the true boxes are in pixels of images this many pixels wide (NIH: 1024); they are
    scaled to each image's own size. None: they are in the images' own pixels already.
    """
    dev = pick_device(device)
    model, config, findings, _ = load_run(run_dir, dev)
    if method == "gradcam" and layer not in model.map_layers():
        raise InputError(f"--layer {layer}: this {config.model.arch} has {', '.join(model.map_layers())}")
    data = prepare(labels_path, images, config.seed)
    truth = read_boxes(boxes_path, findings + [f for f in data.findings if f not in findings]) if boxes_path else None
    if truth is not None:
        truth = truth[truth["Finding Label"].isin(findings)].reset_index(drop=True)
    rows = np.flatnonzero(data.split == split) if split else np.arange(len(data.paths))
    image_ids = data.frame["image_id"].astype(str).to_numpy()
    if truth is not None:
        rows = rows[np.isin(image_ids[rows], truth["Image Index"].unique())]
        say(f"{len(rows)} images with true boxes")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = ImageDataset([data.paths[i] for i in rows], np.zeros((len(rows), len(findings)), np.float32), config.size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, collate_fn=collate)
    records, peaks, drawn = [], [], 0
    model.eval()
    with torch.no_grad():
        for batch, errors in loader:
            for message in errors:
                say(f"skipped unreadable image {message}")
            if batch is None:
                continue
            probs, maps = (class_maps(model, batch[0].to(dev)) if method == "cam"
                           else grad_cam_maps(model, batch[0].to(dev), layer))
            for k, index in enumerate(batch[2].tolist()):
                row = rows[index]
                path, image_id = data.paths[row], image_ids[row]
                with Image.open(path) as im:
                    width, height = im.size
                scale = (width / config.size, height / config.size)
                if truth is not None and boxes_size:
                    mine = truth["Image Index"] == image_id
                    for c, size in (("x", width), ("w", width), ("y", height), ("h", height)):
                        truth.loc[mine, c] = truth.loc[mine, c].astype(float) * size / boxes_size
                wanted = {f for f in truth[truth["Image Index"] == image_id]["Finding Label"]} if truth is not None else set()
                for j, f in enumerate(findings):
                    p = float(probs[k, j])
                    if p < min_score and f not in wanted:
                        continue
                    hm = maps[k, j].cpu().numpy()
                    found = boxes_from_map(hm, thresholds, scale)
                    if f in wanted:
                        py, px = np.unravel_index(int(hm.argmax()), hm.shape)
                        peaks.append({"Image Index": image_id, "Finding Label": f, "x": (px + 0.5) * scale[0],
                                      "y": (py + 0.5) * scale[1]})
                    records += [{"Image Index": image_id, "Finding Label": f, "x": b[0], "y": b[1], "w": b[2],
                                 "h": b[3], "score": round(p * s, 4)} for b, s in found]
                    if drawn < overlays and (f in wanted or truth is None):
                        gt = [] if truth is None else [tuple(r) for r in truth[(truth["Image Index"] == image_id) &
                                                                               (truth["Finding Label"] == f)][["x", "y", "w", "h"]].to_numpy()]
                        overlay(path, hm, [b for b, _ in found], gt, f"{image_id} {f} p={p:.2f}",
                                out_dir / "overlays" / f"{Path(image_id).stem}_{f}.png")
                        drawn += 1
    predicted = pd.DataFrame(records, columns=["Image Index", "Finding Label", "x", "y", "w", "h", "score"])
    with atomic_path(out_dir / "boxes.csv") as tmp:
        predicted.round({"x": 1, "y": 1, "w": 1, "h": 1}).to_csv(tmp, index=False)
    say(f"{len(predicted)} boxes on {predicted['Image Index'].nunique()} images → {out_dir / 'boxes.csv'}")
    if truth is None:
        return None
    scored = truth[truth["Image Index"].isin(image_ids[rows])]
    metrics = localization_metrics(predicted, scored, findings)
    metrics["heatmap"] = {"method": method, "layer": layer if method == "gradcam" else "transition",
                          "thresholds": list(thresholds)}
    metrics["pointing"] = pointing_accuracy(pd.DataFrame(peaks, columns=["Image Index", "Finding Label", "x", "y"]),
                                            scored, findings)
    atomic_text(out_dir / "localization.json", json_text(metrics))
    return metrics

