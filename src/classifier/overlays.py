"""Overlay pictures: the image, a finding's heatmap in a colour scale, predicted and true boxes."""

from __future__ import annotations

from pathlib import Path

import matplotlib.patches as patches
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cxrcore.output import atomic_path

from .boxes import Box


def overlay(image_path: Path, heatmap: np.ndarray, predicted: list[Box], truth: list[Box], title: str,
            path: Path) -> None:
    """The image, the map in a colour scale, predicted (yellow) and true (green) boxes; written atomically."""
    with Image.open(image_path) as im:
        grey = np.asarray(im.convert("L"))
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
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
