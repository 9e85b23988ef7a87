"""`classifier fit`: train the weakly supervised network on image-level labels only.

Reproducible: with one `seed`, the weights, the shuffling and the augmentation of each epoch are
drawn from seeds derived from it, so a run resumed after epoch k ends exactly where an
uninterrupted run does. `last.pt` is written after every epoch and `best.pt` whenever the mean
validation AUC improves, both atomically.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from reportminer.errors import InputError
from reportminer.output import atomic_text

from .checkpoint import load_checkpoint, load_state_dict, save_checkpoint
from .data import ImageDataset, assign_splits, collate, finding_columns, resolve_paths
from .images import ImageCache
from .losses import loss_function, targets_and_mask
from .metrics import auc
from .models import ModelConfig, WeaklySupervisedNet


@dataclass
class TrainConfig:
    """Everything `fit` was asked to do; saved in each checkpoint and in config.json."""

    model: ModelConfig = field(default_factory=ModelConfig)
    size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    loss: str = "weighted"
    uncertain: str = "ignore"
    device: str = "auto"
    loader_workers: int = 0
    channels_last: bool = False
    cpu_bf16: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**{**data, "model": ModelConfig(**data["model"])})


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON with NaN written as null (an AUC is NaN when a split has one class only)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and np.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), indent=indent, allow_nan=False)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    return torch.device(name)


def autocast_for(device: torch.device, cpu_bf16: bool):
    """Mixed precision where it pays: bfloat16 on CUDA (float16 on GPUs without it); CPU by option."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_bf16), False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Prepared:
    """The table, its findings, image paths, label matrix and split of every row."""

    findings: list[str]
    paths: list[Path]
    labels: np.ndarray  # float32 (N, C): 1, 0, -1, NaN
    split: np.ndarray
    frame: Any


def prepare(labels_path: Path, images: Path | None, seed: int) -> Prepared:
    try:
        frame = pq.read_table(labels_path).to_pandas()
    except (OSError, ValueError) as exc:
        raise InputError(f"{labels_path}: cannot read as Parquet ({exc})") from None
    findings = finding_columns(labels_path, frame)
    matrix = frame[findings].astype("float32").to_numpy(dtype=np.float32, na_value=np.nan)
    split = assign_splits(frame, labels_path, seed).to_numpy()
    return Prepared(findings, resolve_paths(frame, labels_path, images), matrix, split, frame)


def keep_findings(data: Prepared, findings: list[str]) -> Prepared:
    """The same rows with only the given finding columns, in that order."""
    missing = [f for f in findings if f not in data.findings]
    if missing:
        raise InputError(f"the labels have no column for {', '.join(missing)}, which this run was trained on")
    columns = [data.findings.index(f) for f in findings]
    return Prepared(list(findings), data.paths, data.labels[:, columns], data.split, data.frame)


def build_model(config: TrainConfig, num_classes: int, weights: Path | None, say: Callable[[str], None]) -> WeaklySupervisedNet:
    model_config = ModelConfig(**{**asdict(config.model), "num_classes": num_classes})
    config.model = model_config
    try:
        model = WeaklySupervisedNet(model_config)
    except ValueError as exc:  # a combination of options the architecture cannot build
        raise InputError(str(exc)) from None
    if weights is None:
        say(f"{model_config.arch}: starting from random weights (give --weights for a torchvision state dict)")
    else:
        loaded, missing = model.load_trunk_weights(load_state_dict(weights))
        say(f"{model_config.arch}: loaded {loaded} trunk tensors from {weights}"
            + (f"; {len(missing)} not found there (e.g. {missing[0]})" if missing else ""))
        if loaded == 0:
            raise InputError(f"{weights}: no tensor matches a {model_config.arch} trunk; is it the right architecture?")
    return model


def predict(model: WeaklySupervisedNet, dataset: ImageDataset, batch_size: int, device: torch.device,
            config: TrainConfig, report: Callable[[str], None]) -> np.ndarray:
    """Probabilities (N, C); rows whose image could not be read are NaN."""
    out = np.full((len(dataset), model.config.num_classes), np.nan, dtype=np.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=config.loader_workers,
                        collate_fn=collate)
    cast, _ = autocast_for(device, config.cpu_bf16)
    model.eval()
    with torch.no_grad():
        for batch, errors in loader:
            for message in errors:
                report(message)
            if batch is None:
                continue
            images, _, indices = batch
            images = images.to(device)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with cast:
                logits = model(images)
            out[indices.numpy()] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def mean_auc(labels: np.ndarray, probs: np.ndarray, findings: list[str]) -> tuple[float, dict[str, float]]:
    """Per-finding AUC on rows with a known label (1 or 0, not-mentioned as 0, uncertain left out)."""
    per = {}
    for j, name in enumerate(findings):
        truth = np.nan_to_num(labels[:, j], nan=0.0)
        keep = (truth != -1) & ~np.isnan(probs[:, j])
        per[name] = auc(truth[keep], probs[keep, j])
    values = [v for v in per.values() if not np.isnan(v)]
    return (float(np.mean(values)) if values else float("nan")), per


def fit(labels_path: Path, images: Path | None, run_dir: Path, config: TrainConfig, weights: Path | None = None,
        resume: bool = False, cache_dir: Path | None = None, say: Callable[[str], None] = print,
        progress: Any = None, pause_after: int | None = None) -> dict[str, Any] | None:
    """Train, validate each epoch, keep best and last checkpoints; return the final metrics.

    `pause_after` stops after that many epochs of this call (for time-limited or preemptible jobs);
    `resume` continues the run's own plan (its config, epochs included) from `last.pt`.
    """
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        if state["config"]["epochs"] != config.epochs:
            say(f"resuming with the run's own plan: {state['config']['epochs']} epochs")
        config = TrainConfig.from_dict(state["config"])
    elif last_path.exists() and not resume:
        raise InputError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose another -o")
    else:
        state = None
    data = prepare(labels_path, images, config.seed)
    if state is not None:
        data = keep_findings(data, state["findings"])
    else:
        trainable = [f for j, f in enumerate(data.findings) if (data.labels[data.split == "train", j] == 1).any()]
        dropped = [f for f in data.findings if f not in trainable]
        if not trainable:
            raise InputError(f"{labels_path}: no finding has a positive label in the training split")
        if dropped:
            say(f"not trained (no positive label in the training split): {', '.join(dropped)}")
        data = keep_findings(data, trainable)
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = build_model(config, len(data.findings), weights if state is None else None, say).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cache = ImageCache(cache_dir, config.size) if cache_dir else None
    subsets = {s: np.flatnonzero(data.split == s) for s in ("train", "val", "test")}
    if len(subsets["train"]) == 0:
        raise InputError(f"{labels_path}: no training images after the split")
    say(f"{len(data.findings)} findings; images: " + ", ".join(f"{s} {len(i)}" for s, i in subsets.items())
        + f"; device {device}")
    train_set = ImageDataset([data.paths[i] for i in subsets["train"]], data.labels[subsets["train"]], config.size,
                             cache, augment=True)
    val_set = ImageDataset([data.paths[i] for i in subsets["val"]], data.labels[subsets["val"]], config.size, cache)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * max(1, -(-len(train_set) // config.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    criterion = loss_function(config.loss)
    cast, use_scaler = autocast_for(device, config.cpu_bf16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    start_epoch, best_auc = 0, -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_auc = state["epoch"], state["best_auc"]
        say(f"resuming {run_dir} after epoch {start_epoch}")
    atomic_text(run_dir / "config.json", json.dumps({**config.to_dict(), "findings": data.findings}, indent=2))
    bad_images: set[str] = set()

    def report(message: str) -> None:
        if message not in bad_images:
            bad_images.add(message)
            say(f"skipped unreadable image {message}")

    log = run_dir / "train_log.jsonl"
    end = config.epochs if pause_after is None else min(config.epochs, start_epoch + pause_after)
    for epoch in range(start_epoch, end):
        torch.manual_seed(config.seed * 1000 + epoch)  # this epoch's augmentation and shuffling
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=len(train_set) > config.batch_size,
                            num_workers=config.loader_workers, collate_fn=collate,
                            generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
        model.train()
        seen, total_loss, started = 0, 0.0, time.perf_counter()
        task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(loader), loss="", speed="") if progress else None
        for batch, errors in loader:
            for message in errors:
                report(message)
            if batch is not None:
                images, labels, _ = batch
                images, labels = images.to(device), labels.to(device)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets, mask = targets_and_mask(labels, config.uncertain)
                with cast:
                    logits = model(images)
                loss = criterion(logits, targets, mask)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                seen += len(images)
                total_loss += loss.item() * len(images)
            scheduler.step()
            if progress:
                rate = seen / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, loss=f"loss {total_loss / max(seen, 1):.4f}", speed=f"{rate:.1f} img/s")
        seconds = time.perf_counter() - started
        val_probs = predict(model, val_set, config.batch_size, device, config, report) if len(val_set) else None
        val_auc, per = mean_auc(data.labels[subsets["val"]], val_probs, data.findings) if val_probs is not None else (float("nan"), {})
        entry = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "images_per_s": seen / seconds,
                 "val_mean_auc": val_auc, "val_auc": per}
        with log.open("a") as fh:
            fh.write(json_text(entry, indent=None) + "\n")
        say(f"epoch {epoch + 1}: loss {entry['loss']:.4f}, {entry['images_per_s']:.1f} img/s, val mean AUC {val_auc:.3f}")
        improved = np.isnan(val_auc) or val_auc > best_auc  # without validation, the latest is the best
        if improved and not np.isnan(val_auc):
            best_auc = val_auc
        content = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "epoch": epoch + 1, "best_auc": float(best_auc), "config": config.to_dict(), "findings": data.findings}
        if improved:
            save_checkpoint(best_path, **content)
        save_checkpoint(last_path, **content)
    if end < config.epochs:
        say(f"paused after epoch {end} of {config.epochs}; continue with --resume")
        return None
    return final_metrics(run_dir, data, config, device, cache, report)


def model_from_state(state: dict[str, Any], device: torch.device) -> WeaklySupervisedNet:
    """The network a checkpoint describes, with its weights, in eval mode on `device`."""
    model = WeaklySupervisedNet(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def final_metrics(run_dir: Path, data: Prepared, config: TrainConfig, device: torch.device, cache: ImageCache | None,
                  report: Callable[[str], None]) -> dict[str, Any]:
    """Per-finding AUC of the best checkpoint on val and test, written to metrics.json."""
    state = load_checkpoint(run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt")
    model = model_from_state(state, device)
    metrics: dict[str, Any] = {"findings": data.findings, "checkpoint_epoch": state["epoch"]}
    for split in ("val", "test"):
        rows = np.flatnonzero(data.split == split)
        if len(rows) == 0:
            continue
        dataset = ImageDataset([data.paths[i] for i in rows], data.labels[rows], config.size, cache)
        probs = predict(model, dataset, config.batch_size, device, config, report)
        mean, per = mean_auc(data.labels[rows], probs, data.findings)
        metrics[split] = {"images": int(len(rows)), "mean_auc": mean, "auc": per}
    atomic_text(run_dir / "metrics.json", json_text(metrics))
    return metrics
