"""Overlay pictures a reader can check at a glance: the film, a finding's map in a colour scale with
its legend, true boxes (solid cyan) and predicted boxes (dashed magenta, each with its score)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.patches as patches
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from cxrcore.output import atomic_path

from .boxes import Box, normalise

TRUE_COLOUR, PREDICTED_COLOUR, MAP_COLOURS = "cyan", "magenta", "inferno"  # apart from each other and the map


def overlay(grey: np.ndarray, heatmap: np.ndarray, predicted: list[tuple[Box, float]], truth: list[Box], title: str,
            path: Path) -> None:
    """The 8-bit grey image, the map normalised to 0-255 as the boxes see it, the boxes; written atomically."""
    fig = Figure(figsize=(5.6, 5))
    ax = fig.subplots()
    ax.imshow(grey, cmap="gray")
    norm = normalise(heatmap)
    shown = np.zeros_like(heatmap, dtype=np.float32) if norm is None else norm.astype(np.float32)
    resized = np.asarray(Image.fromarray(shown, mode="F").resize(grey.shape[::-1], Image.BILINEAR))
    scale = ax.imshow(resized, cmap=MAP_COLOURS, alpha=0.4, vmin=0, vmax=255)
    legend = fig.colorbar(scale, ax=ax, fraction=0.046, pad=0.02, label="map (0-255, as thresholded)")
    legend.solids.set_alpha(1)
    for x, y, w, h in truth:
        ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor=TRUE_COLOUR, linewidth=1.6))
    for (x, y, w, h), score in predicted:
        ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor=PREDICTED_COLOUR, linewidth=1.6,
                                       linestyle="--"))
        ax.text(x, y, f"{score:.2f}", color="white", fontsize=7, va="bottom",
                bbox={"facecolor": PREDICTED_COLOUR, "edgecolor": "none", "pad": 1, "alpha": 0.8})
    ax.legend(handles=[Line2D([], [], color=TRUE_COLOUR, label="true"),
                       Line2D([], [], color=PREDICTED_COLOUR, linestyle="--", label="predicted (score)")],
              loc="lower right", fontsize=7, framealpha=0.6)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
