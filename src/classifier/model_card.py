"""RUN_DIR/model_card.md, written at the end of `fit`: what the network was trained on, how, how well it
did with what uncertainty, and what it must not be used for, in one page a reviewer can read without
running anything.

The card is built from the run's own records (the labels file's digest, the splits as trained, the
config, metrics.json's intervals, operating_points.json when present) and holds no clock time, so
two runs that trained alike write the same card. `classifier export` stores it with the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cxrcore.output import atomic_text

from . import __version__
from .config import TrainConfig
from .data import Prepared

CARD = "model_card.md"
SPLITS = ("train", "val", "test")
POINTS = "operating_points.json"  # written by `fit` (operating_points.py) before the card


def write_model_card(run_dir: Path, labels_path: Path, images: Path | None, store: Path | None, data: Prepared,
                     config: TrainConfig, metrics: dict[str, Any], weights: Path | None, resumed: bool) -> Path:
    """Write RUN_DIR/model_card.md all at once, from what `fit` was given and what it measured."""
    path = run_dir / CARD
    source = f"the prepared store `{store}`" if store else f"files under `{images or labels_path.parent}`"
    start = (f"the torchvision state dict `{weights}`" if weights else "random weights") if not resumed else \
        "as the run's first session was told (this session resumed it from last.pt)"
    parts = [_model(run_dir, config, data, metrics, start), _data(labels_path, source, data),
             _metrics(metrics, data.findings), _points(run_dir), _settings(config), _limits(config, data, metrics)]
    atomic_text(path, "\n\n".join(p for p in parts if p) + "\n")
    return path


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model(run_dir: Path, config: TrainConfig, data: Prepared, metrics: dict[str, Any], start: str) -> str:
    m = config.model
    head = "LSE pooling (r = {:g})".format(m.lse_r) if m.pool == "lse" else f"{m.pool} pooling"
    return "\n".join([
        f"# Model card: {run_dir.name}",
        "",
        f"A weakly supervised chest X-ray classifier (ChestX-ray8's design) written by chestxray-toolkit "
        f"{__version__}: {m.arch} trunk ({m.trunk_stages} stages, output stride {m.output_stride}), transition "
        f"layer of {m.transition_channels} channels, {head}, one sigmoid output per finding. It reads a "
        f"{config.size} x {config.size} grey film; the checkpoint is best.pt (epoch {metrics.get('checkpoint_epoch')} "
        f"of {config.epochs}, chosen by the mean validation AUC).",
        "",
        f"- Findings ({len(data.findings)}): {', '.join(data.findings)}",
        f"- Started from: {start}",
    ])


def _data(labels_path: Path, images: str, data: Prepared) -> str:
    rows = [f"| {name} | " + " | ".join(_count(data, split, j) for split in SPLITS) + " |"
            for j, name in enumerate(data.findings)]
    patients = data.frame["patient_id"] if "patient_id" in data.frame else None
    sizes = []
    for split in SPLITS:
        mask = data.split == split
        known = patients[mask].dropna().nunique() if patients is not None else None
        sizes.append(f"{int(mask.sum()):,} images" + (f", {known:,} patients" if known is not None else ""))
    return "\n".join([
        "## Data",
        "",
        f"- Labels: `{labels_path}`, {len(data.paths):,} rows, SHA-256 `{file_digest(labels_path)}`",
        f"- Images: {images}",
        "- Splits (no patient in two): " + "; ".join(f"{s} {n}" for s, n in zip(SPLITS, sizes)),
        "",
        "Labels per finding and split: positive (uncertain)",
        "",
        "| finding | train | val | test |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ])


def _count(data: Prepared, split: str, column: int) -> str:
    labels = data.labels[data.split == split, column]
    return f"{int((labels == 1).sum()):,} ({int((labels == -1).sum()):,})"


def _metrics(metrics: dict[str, Any], findings: list[str]) -> str:
    splits = [s for s in ("val", "test") if s in metrics]
    if not splits:
        return "## Metrics\n\nNo validation or test split: nothing was measured."
    lines = ["## Metrics", "",
             "ROC AUC of best.pt per finding, with 95% bootstrap intervals over images (1,000 resamples); "
             "uncertain labels and unreadable images are left out, a finding not mentioned counts as negative.",
             "", "| finding | " + " | ".join(f"{s} AUC (95% CI)" for s in splits) + " |",
             "| --- |" + " ---: |" * len(splits)]
    for name in findings:
        lines.append(f"| {name} | " + " | ".join(_auc(metrics[s], name) for s in splits) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{_num(metrics[s]['mean_auc'])}** ({metrics[s]['images']:,} images)"
                                              for s in splits) + " |")
    return "\n".join(lines)


def _auc(split: dict[str, Any], name: str) -> str:
    value = split["auc"].get(name)
    low, high = split.get("auc_ci", {}).get(name, (None, None))
    if value is None or not np.isfinite(value):
        return "n/a (one class only)"
    return f"{value:.3f} ({_num(low)}-{_num(high)})"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _points(run_dir: Path) -> str:
    """The operating points `fit` recorded, when it did."""
    try:
        recorded = json.loads((run_dir / POINTS).read_text(encoding="utf-8"))
        findings = recorded["findings"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    lines = ["## Operating points", "",
             f"`predict` calls a finding present at or above its threshold, chosen on the {recorded.get('split', 'val')} "
             f"split by the `{recorded.get('rule', '?')}` rule ({POINTS}).", "",
             "| finding | threshold | sensitivity | specificity |", "| --- | ---: | ---: | ---: |"]
    for name, point in findings.items():
        if "fallback" in point:
            lines.append(f"| {name} | {point['threshold']:.3f} | {point['fallback']} | |")
        else:
            lines.append(f"| {name} | {point['threshold']:.3f} | {point['sensitivity']:.3f} | {point['specificity']:.3f} |")
    return "\n".join(lines)


def _settings(config: TrainConfig) -> str:
    flat = {**{f"model.{k}": v for k, v in config.to_dict()["model"].items()},
            **{k: v for k, v in config.to_dict().items() if k != "model"}}
    return "\n".join(["## Training settings", "", "| setting | value |", "| --- | --- |",
                      *(f"| {k} | {v} |" for k, v in flat.items())])


def _limits(config: TrainConfig, data: Prepared, metrics: dict[str, Any]) -> str:
    tested = metrics.get("test", {}).get("images", 0)
    return "\n".join([
        "## Intended use and limits",
        "",
        "- For research: to study weakly supervised detection and localization on chest films, and to "
        "triage an archive for human review. It is not a medical device, was not validated clinically, and "
        "must not be used to diagnose or treat a patient.",
        "- Its labels were read from reports (rules or another labeler), not from the films: they are noisy, "
        f"and uncertain mentions were handled by the `{config.uncertain}` policy. The AUCs above measure "
        "agreement with those labels, not with the truth.",
        f"- Measured on {tested:,} test images from the same source as its training films. Another hospital, "
        "scanner, population, view (it was not told PA from AP) or preprocessing can lower it by much; "
        "check it on local data first (`classifier score`).",
        f"- It reads films as 8-bit grey at {config.size} px, stretched to their own range (DICOM after its "
        "modality and VOI LUTs, MONOCHROME1 inverted); findings smaller than a few of those pixels are "
        "beyond it.",
        "- Probabilities are not calibrated to any clinic's prevalence; the operating points, where "
        "recorded, trade sensitivity for specificity on the validation split only.",
        "- Findings without a positive training label were not trained and are absent: "
        "a film is never called free of them.",
    ])
