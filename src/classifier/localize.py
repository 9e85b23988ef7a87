"""`classifier localize`: heatmaps → boxes, overlays, and the paper's localization metrics.

A finding's map is a class activation map (the paper's) or Grad-CAM read at an earlier layer
(heatmaps.py). Boxes are drawn from it as the paper did (boxes.py) in the image's own pixels. With
true boxes, each finding's accuracy and average false positives are measured at T(IoBB) and T(IoU)
thresholds, and, as a check of the maps that does not depend on thresholds, the pointing accuracy:
how often a map's maximum lies inside a true box (metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from cxrcore.boxes import read_boxes
from cxrcore.errors import InputError
from cxrcore.output import atomic_path, atomic_text, exclusive, json_text, make_folder

from .boxes import boxes_from_map
from .data import ImageDataset, collate, prepare
from .heatmaps import heatmaps
from .inference import pick_device
from .metrics import localization_metrics, pointing_accuracy
from .overlays import overlay
from .runs import load_run

BOX_FIELDS = ["Image Index", "Finding Label", "x", "y", "w", "h", "score"]


@dataclass
class Drawing:
    """What `localize` asks for, and what it has drawn so far."""

    thresholds: tuple[int, ...]
    min_score: float
    overlays: int
    boxes_size: int | None
    out_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)  # predicted boxes
    peaks: list[dict[str, Any]] = field(default_factory=list)  # each map's maximum, for the pointing game
    drawn: int = 0


def localize(run_dir: Path, labels_path: Path, images: Path | None, out_dir: Path, boxes_path: Path | None = None,
             thresholds: tuple[int, ...] = (60, 180), min_score: float = 0.5, split: str | None = None,
             device: str = "auto", overlays: int = 50, boxes_size: int | None = None, method: str = "cam",
             layer: str = "transition", say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Write boxes.csv, overlays/ and (with true boxes) localization.json into `out_dir`.

    `method`: "cam" (the paper's class activation maps) or "gradcam" read at `layer`.
    `boxes_size`: the true boxes are in pixels of images this many pixels wide (NIH: 1024); they are
    scaled to each image's own size. None: they are in the images' own pixels already.
    """
    out_dir = make_folder(out_dir, [labels_path, *([boxes_path] if boxes_path else [])])
    with exclusive(out_dir):
        return _localize(run_dir, labels_path, images, out_dir, boxes_path, thresholds, min_score, split, device,
                         overlays, boxes_size, method, layer, say)


def _localize(run_dir: Path, labels_path: Path, images: Path | None, out_dir: Path, boxes_path: Path | None,
              thresholds: tuple[int, ...], min_score: float, split: str | None, device: str, overlays: int,
              boxes_size: int | None, method: str, layer: str, say: Callable[[str], None]) -> dict[str, Any] | None:
    dev = pick_device(device)
    model, config, findings, _ = load_run(run_dir, dev)
    if method == "gradcam" and layer not in model.map_layers():
        raise InputError(f"--layer {layer}: this {config.model.arch} has {', '.join(model.map_layers())}")
    data = prepare(labels_path, images, config.seed)
    truth = None
    if boxes_path:
        truth = read_boxes(boxes_path, findings + [f for f in data.findings if f not in findings])
        truth = truth[truth["Finding Label"].isin(findings)].reset_index(drop=True)
    rows = data.rows(split)
    image_ids = data.frame["image_id"].astype(str).to_numpy()
    if truth is not None:
        rows = rows[np.isin(image_ids[rows], truth["Image Index"].unique())]
        say(f"{len(rows)} images with true boxes")
    drawing = Drawing(thresholds, min_score, overlays, boxes_size, out_dir)
    dataset = ImageDataset.of(data, rows, config.size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, collate_fn=collate)
    model.eval()
    with torch.no_grad():  # Grad-CAM turns gradients on for itself
        for batch, errors in loader:
            for message in errors:
                say(f"skipped unreadable image {message}")
            if batch is None:
                continue
            probs, maps = heatmaps(model, batch[0].to(dev), method, layer)
            for k, index in enumerate(batch[2].tolist()):
                row = rows[index]
                _draw_image(data.paths[row], image_ids[row], probs[k].cpu().numpy(), maps[k].cpu().numpy(),
                            findings, config.size, truth, drawing)
    return _write(drawing, truth, image_ids[rows], findings, method, layer, say)


def _draw_image(path: Path, image_id: str, probs: np.ndarray, maps: np.ndarray, findings: list[str], size: int,
                truth: pd.DataFrame | None, drawing: Drawing) -> None:
    """Boxes, map peaks and overlays of one image, for its probable findings and its true ones."""
    with Image.open(path) as im:
        width, height = im.size
    scale = (width / size, height / size)
    mine = truth["Image Index"] == image_id if truth is not None else None
    if truth is not None and drawing.boxes_size:
        for c, extent in (("x", width), ("w", width), ("y", height), ("h", height)):
            truth.loc[mine, c] = truth.loc[mine, c].astype(float) * extent / drawing.boxes_size
    wanted = set(truth.loc[mine, "Finding Label"]) if truth is not None else set()
    for j, finding in enumerate(findings):
        p = float(probs[j])
        if p < drawing.min_score and finding not in wanted:
            continue
        hm = maps[j]
        found = boxes_from_map(hm, drawing.thresholds, scale)
        if finding in wanted:
            py, px = np.unravel_index(int(hm.argmax()), hm.shape)
            drawing.peaks.append({"Image Index": image_id, "Finding Label": finding, "x": (px + 0.5) * scale[0],
                                  "y": (py + 0.5) * scale[1]})
        drawing.records += [{"Image Index": image_id, "Finding Label": finding, "x": b[0], "y": b[1], "w": b[2],
                             "h": b[3], "score": round(p * s, 4)} for b, s in found]
        if drawing.drawn < drawing.overlays and (finding in wanted or truth is None):
            gt = [] if truth is None else [tuple(r) for r in truth.loc[mine & (truth["Finding Label"] == finding),
                                                                       ["x", "y", "w", "h"]].to_numpy()]
            overlay(path, hm, [b for b, _ in found], gt, f"{image_id} {finding} p={p:.2f}",
                    drawing.out_dir / "overlays" / f"{Path(image_id).stem}_{finding}.png")
            drawing.drawn += 1


def _write(drawing: Drawing, truth: pd.DataFrame | None, image_ids: np.ndarray, findings: list[str], method: str,
           layer: str, say: Callable[[str], None]) -> dict[str, Any] | None:
    """boxes.csv, and with true boxes the metrics in localization.json (returned)."""
    out_dir = drawing.out_dir
    predicted = pd.DataFrame(drawing.records, columns=BOX_FIELDS)
    with atomic_path(out_dir / "boxes.csv") as tmp:
        predicted.round({"x": 1, "y": 1, "w": 1, "h": 1}).to_csv(tmp, index=False)
    say(f"{len(predicted)} boxes on {predicted['Image Index'].nunique()} images → {out_dir / 'boxes.csv'}")
    if truth is None:
        return None
    scored = truth[truth["Image Index"].isin(image_ids)]
    metrics = localization_metrics(predicted, scored, findings)
    metrics["heatmap"] = {"method": method, "layer": layer if method == "gradcam" else "transition",
                          "thresholds": list(drawing.thresholds)}
    peaks = pd.DataFrame(drawing.peaks, columns=["Image Index", "Finding Label", "x", "y"])
    metrics["pointing"] = pointing_accuracy(peaks, scored, findings)
    atomic_text(out_dir / "localization.json", json_text(metrics))
    return metrics
