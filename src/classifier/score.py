"""`classifier score`: probabilities per image and finding, AUC with bootstrap intervals, ROC curves.

The three outputs (scores.parquet, .auc.json, .roc.png) are renamed together at the end; none may be a
file the command reads: the labels, the run's files, the store's, the images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.output import FolderOf, Outputs, encode_metadata, exclusive, json_text
from cxrcore.runs import run_files
from cxrcore.skips import Skips

from .data import ImageDataset, prepare
from .inference import known, pick_device, predict
from .metrics import auc_with_ci, plot_roc
from .runs import load_run


def score(run_dir: Path, labels_path: Path, images: Path | None, output: Path, split: str | None = None,
          device: str = "auto", batch_size: int | None = None, store: Path | None = None, n_boot: int = 1000,
          say: Callable[[str], None] = print, skips: Skips | None = None,
          progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Any]:
    """Write scores.parquet (+ auc.json, roc.png beside it), all at once; return the AUC table (its
    `skipped`: images that could not be read, each named through `skips`). `progress(done, total)`
    follows the images."""
    beside = [output.with_name(output.stem + ".auc.json"), output.with_name(output.stem + ".roc.png")]
    inputs = [labels_path, *run_files(run_dir), FolderOf(store) if store else None]
    with Outputs([output, *beside], inputs) as outputs, exclusive(output):
        summary = _score(run_dir, labels_path, images, output, split, device, batch_size, store, n_boot, say,
                         skips if skips is not None else Skips(say), progress, outputs)
        outputs.commit()
    return summary


def _score(run_dir: Path, labels_path: Path, images: Path | None, output: Path, split: str | None, device: str,
           batch_size: int | None, store: Path | None, n_boot: int, say: Callable[[str], None], skips: Skips,
           progress: Callable[[int, int], None], outputs: Outputs) -> dict[str, Any]:
    dev = pick_device(device)
    model, config, findings, origin = load_run(run_dir, dev)
    data = prepare(labels_path, images, config.seed, store)
    rows = data.rows(split)
    if store is None:
        outputs.add_inputs(*(data.paths[i] for i in rows))
    missing = [f for f in findings if f not in data.findings]
    if missing:
        say(f"note: {labels_path} has no column for {', '.join(missing)}; their AUC is not computed")
    dataset = ImageDataset.of(data, rows, config.size)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, len(rows))

    progress(0, len(rows))
    probs = predict(model, dataset, batch_size or config.batch_size, dev, config,
                    lambda m: skips(f"unreadable image {m}"), progress=advance)
    if len(rows) and np.isnan(probs).all():
        raise InputError(f"not one of the {len(rows)} images of {labels_path} could be read (each is named above); "
                         f"nothing was written")
    frame = data.frame.iloc[rows]
    columns = {"image_id": pa.array(frame.get("image_id", [None] * len(rows)).tolist(), pa.string()),
               "image_path": pa.array([str(data.paths[i]) for i in rows], pa.string())}
    for j, name in enumerate(findings):
        columns[name] = pa.array(probs[:, j], pa.float32(), mask=np.isnan(probs[:, j]))
    meta = {"run": str(run_dir), **origin, "labels": str(labels_path), "split": split or "all"}
    table = pa.table(columns).replace_schema_metadata(encode_metadata(meta))
    pq.write_table(table, outputs.path(output))
    results, curves = {}, {}
    for j, name in enumerate(findings):
        if name in data.findings:
            truth, scores = known(data.labels[rows, data.findings.index(name)], probs[:, j])
            results[name] = auc_with_ci(truth, scores, n_boot=n_boot)
            curves[name] = (truth, scores)
    scored = [r["auc"] for r in results.values() if not np.isnan(r["auc"])]
    summary = {"images": int(len(rows)), "mean_auc": float(np.mean(scored)) if scored else float("nan"),
               "skipped": len(skips), "per_finding": results, **meta}
    Path(outputs.path(output.with_name(output.stem + ".auc.json"))).write_text(json_text(summary), encoding="utf-8")
    plot_roc(curves, outputs.path(output.with_name(output.stem + ".roc.png")),
             f"ROC, {split or 'all'} images ({len(rows)}), mean AUC {summary['mean_auc']:.3f}")
    return summary
