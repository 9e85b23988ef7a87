"""`classifier score`: probabilities per image and finding, AUC with bootstrap intervals, ROC curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from reportminer.output import atomic_path, atomic_text, encode_metadata

from .checkpoint import load_checkpoint
from .data import ImageDataset
from .images import ImageCache
from .metrics import auc_with_ci, plot_roc
from .models import WeaklySupervisedNet
from .train import TrainConfig, json_text, model_from_state, pick_device, predict, prepare


def load_run(run_dir: Path, device: torch.device) -> tuple[WeaklySupervisedNet, TrainConfig, list[str], dict]:
    """The best (else last) checkpoint of a run, as a ready model."""
    path = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    return model_from_state(state, device), config, state["findings"], {"checkpoint": str(path), "epoch": state["epoch"]}


def score(run_dir: Path, labels_path: Path, images: Path | None, output: Path, split: str | None = None,
          device: str = "auto", batch_size: int | None = None, cache_dir: Path | None = None, n_boot: int = 1000,
          say: Callable[[str], None] = print) -> dict[str, Any]:
    """Write scores.parquet (+ auc.json, roc.png beside it); return the AUC table."""
    dev = pick_device(device)
    model, config, findings, origin = load_run(run_dir, dev)
    config.device = device
    data = prepare(labels_path, images, config.seed)
    missing = [f for f in findings if f not in data.findings]
    if missing:
        say(f"note: {labels_path} has no column for {', '.join(missing)}; their AUC is not computed")
    rows = np.flatnonzero(data.split == split) if split else np.arange(len(data.paths))
    cache = ImageCache(cache_dir, config.size) if cache_dir else None
    dataset = ImageDataset([data.paths[i] for i in rows], np.zeros((len(rows), len(findings)), np.float32),
                           config.size, cache)
    probs = predict(model, dataset, batch_size or config.batch_size, dev, config,
                    lambda m: say(f"skipped unreadable image {m}"))
    frame = data.frame.iloc[rows]
    columns = {"image_id": pa.array(frame.get("image_id", [None] * len(rows)).tolist(), pa.string()),
               "image_path": pa.array([str(data.paths[i]) for i in rows], pa.string())}
    for j, name in enumerate(findings):
        columns[name] = pa.array(probs[:, j], pa.float32(), mask=np.isnan(probs[:, j]))
    meta = {"run": str(run_dir), **origin, "labels": str(labels_path), "split": split or "all"}
    table = pa.table(columns).replace_schema_metadata(encode_metadata(meta))
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp)
    results, curves = {}, {}
    for j, name in enumerate(findings):
        if name not in data.findings:
            continue
        truth = np.nan_to_num(data.labels[rows, data.findings.index(name)], nan=0.0)
        keep = (truth != -1) & ~np.isnan(probs[:, j])
        results[name] = auc_with_ci(truth[keep], probs[keep, j], n_boot=n_boot)
        curves[name] = (truth[keep], probs[keep, j])
    scored = [r["auc"] for r in results.values() if not np.isnan(r["auc"])]
    summary = {"images": int(len(rows)), "mean_auc": float(np.mean(scored)) if scored else float("nan"),
               "per_finding": results, **meta}
    atomic_text(output.with_name(output.stem + ".auc.json"), json_text(summary))
    with atomic_path(output.with_name(output.stem + ".roc.png")) as tmp:
        plot_roc(curves, tmp, f"ROC, {split or 'all'} images ({len(rows)}), mean AUC {summary['mean_auc']:.3f}")
    return summary
