"""`classifier localize`: class activation maps → boxes, overlays, and the paper's localization metrics.

A finding's map is the transition activations weighted by its prediction-layer weights (a class
activation map), at the transition resolution, upsampled to the image. Boxes are made as in the
paper: the map normalised to [0, 255], thresholded (60 and 180 by default), one box per connected
region, in the image's own pixel coordinates. With true boxes, each finding's accuracy and average
false positives are measured at T(IoBB) and T(IoU) thresholds.
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
    maps = torch.einsum("cd,bdhw->bchw", model.prediction.weight, features)
    return probs, F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)


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
             device: str = "auto", overlays: int = 50, boxes_size: int | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Write boxes.csv, overlays/ and (with true boxes) localization.json into `out_dir`.

    `boxes_size`: the true boxes are in pixels of images this many pixels wide (NIH: 1024); they are
    scaled to each image's own size. None: they are in the images' own pixels already.
    """
    dev = pick_device(device)
    model, config, findings, _ = load_run(run_dir, dev)
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
    records, drawn = [], 0
    model.eval()
    with torch.no_grad():
        for batch, errors in loader:
            for message in errors:
                say(f"skipped unreadable image {message}")
            if batch is None:
                continue
            probs, maps = class_maps(model, batch[0].to(dev))
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
                    found = boxes_from_map(maps[k, j].cpu().numpy(), thresholds, scale)
                    records += [{"Image Index": image_id, "Finding Label": f, "x": b[0], "y": b[1], "w": b[2],
                                 "h": b[3], "score": round(p * s, 4)} for b, s in found]
                    if drawn < overlays and (f in wanted or truth is None):
                        gt = [] if truth is None else [tuple(r) for r in truth[(truth["Image Index"] == image_id) &
                                                                               (truth["Finding Label"] == f)][["x", "y", "w", "h"]].to_numpy()]
                        hm = maps[k, j].cpu().numpy()
                        overlay(path, hm, [b for b, _ in found], gt, f"{image_id} {f} p={p:.2f}",
                                out_dir / "overlays" / f"{Path(image_id).stem}_{f}.png")
                        drawn += 1
    predicted = pd.DataFrame(records, columns=["Image Index", "Finding Label", "x", "y", "w", "h", "score"])
    with atomic_path(out_dir / "boxes.csv") as tmp:
        predicted.round({"x": 1, "y": 1, "w": 1, "h": 1}).to_csv(tmp, index=False)
    say(f"{len(predicted)} boxes on {predicted['Image Index'].nunique()} images → {out_dir / 'boxes.csv'}")
    if truth is None:
        return None
    metrics = localization_metrics(predicted, truth[truth["Image Index"].isin(image_ids[rows])], findings)
    atomic_text(out_dir / "localization.json", json_text(metrics))
    return metrics

