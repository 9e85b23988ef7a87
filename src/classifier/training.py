"""`classifier fit`: train the weakly supervised network on image-level labels only.

Reproducible: with one `seed`, the weights, the shuffling and the augmentation of each epoch are
drawn from seeds derived from it, so a run resumed after epoch k ends exactly where an
uninterrupted run does. `last.pt` is written after every epoch and `best.pt` whenever the mean
validation AUC improves, both atomically.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrcore.errors import InputError, ToolkitError
from cxrcore.output import atomic_text, exclusive, json_text, make_folder
from cxrcore.runs import BEST, CONFIG, LAST, LOG, METRICS, checkpoint_path

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageDataset, Prepared, collate, keep_findings, prepare
from .images import ImageCache
from .inference import autocast_for, mean_auc, pick_device, predict
from .losses import loss_function, targets_and_mask
from .runs import build_model, model_from_state, run_config

SPLITS = ("train", "val", "test")


class TrainingError(ToolkitError):
    """Training cannot go on (no readable image, a loss that is no longer a number); nothing bad was saved."""


@dataclass
class Trainer:
    """One `fit` call's model, optimiser and data: what every epoch needs."""

    config: TrainConfig
    data: Prepared
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    cache: ImageCache | None
    subsets: dict[str, np.ndarray]
    report: Callable[[str], None]  # names an unreadable image once
    cast: Any  # the autocast context of every forward pass
    scaler: torch.amp.GradScaler  # loss scaling, enabled for float16 only

    def dataset(self, split: str, augment: bool = False) -> ImageDataset:
        return ImageDataset.of(self.data, self.subsets[split], self.config.size, self.cache, augment)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(labels_path: Path, images: Path | None, run_dir: Path, config: TrainConfig, weights: Path | None = None,
        resume: bool = False, cache_dir: Path | None = None, say: Callable[[str], None] = print,
        progress: Any = None, pause_after: int | None = None) -> dict[str, Any] | None:
    """Train, validate each epoch, keep best and last checkpoints; return the final metrics.

    `pause_after` stops after that many epochs of this call (for time-limited or preemptible jobs);
    `resume` continues the run's own plan (its config, epochs included) from `last.pt`. The run folder
    is locked for the whole call: a second `fit` on it is refused.
    """
    run_dir = make_folder(run_dir, [labels_path])
    with exclusive(run_dir):
        return _fit(labels_path, images, run_dir, config, weights, resume, cache_dir, say, progress, pause_after)


def _fit(labels_path: Path, images: Path | None, run_dir: Path, config: TrainConfig, weights: Path | None,
         resume: bool, cache_dir: Path | None, say: Callable[[str], None], progress: Any,
         pause_after: int | None) -> dict[str, Any] | None:
    state = _resume_state(run_dir, resume)
    if state is not None:
        if state["config"]["epochs"] != config.epochs:
            say(f"resuming with the run's own plan: {state['config']['epochs']} epochs")
        config = run_config(state, run_dir / LAST)
    data = _training_data(prepare(labels_path, images, config.seed), labels_path, state, say)
    trainer, start_epoch, best_auc = _start(data, config, weights, state, cache_dir, say)
    if state is not None:
        say(f"resuming {run_dir} after epoch {start_epoch}")
    atomic_text(run_dir / CONFIG, json.dumps({**trainer.config.to_dict(), "findings": data.findings}, indent=2))
    end = config.epochs if pause_after is None else min(config.epochs, start_epoch + pause_after)
    for epoch in range(start_epoch, end):
        loss, rate = train_epoch(trainer, epoch, progress)
        val_auc, per = validate(trainer)
        entry = {"epoch": epoch + 1, "loss": loss, "images_per_s": rate, "val_mean_auc": val_auc, "val_auc": per}
        with (run_dir / LOG).open("a") as fh:
            fh.write(json_text(entry, indent=None) + "\n")
        say(f"epoch {epoch + 1}: loss {loss:.4f}, {rate:.1f} img/s, val mean AUC {val_auc:.3f}")
        # Better only by a finite validation AUC; with no validation images, the latest epoch is the best.
        improved = val_auc > best_auc if np.isfinite(val_auc) else len(trainer.subsets["val"]) == 0
        if improved and np.isfinite(val_auc):
            best_auc = val_auc
        _save(trainer, run_dir, epoch, best_auc, improved)
    if end < config.epochs:
        say(f"paused after epoch {end} of {config.epochs}; continue with --resume")
        return None
    return final_metrics(run_dir, trainer)


def _save(trainer: Trainer, run_dir: Path, epoch: int, best_auc: float, improved: bool) -> None:
    """last.pt (and best.pt when improved), never with a weight that is not a number."""
    bad = next((n for n, p in trainer.model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()),
               None)
    if bad is not None:
        raise TrainingError(f"epoch {epoch + 1}: weight {bad} is no longer a number; nothing of this epoch is saved "
                            f"(lower --lr; {run_dir / LAST} keeps the previous epoch)")
    content = {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
               "scheduler": trainer.scheduler.state_dict(), "epoch": epoch + 1, "best_auc": float(best_auc),
               "config": trainer.config.to_dict(), "findings": trainer.data.findings}
    if improved:
        save_checkpoint(run_dir / BEST, **content)
    save_checkpoint(run_dir / LAST, **content)


def _resume_state(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The last checkpoint to continue from; a run folder already in use without --resume is an error."""
    last = run_dir / LAST
    if resume and last.exists():
        return load_checkpoint(last)
    if last.exists():
        raise InputError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose another -o")
    return None


def _training_data(data: Prepared, labels_path: Path, state: dict[str, Any] | None,
                   say: Callable[[str], None]) -> Prepared:
    """The findings a run trains on: a resumed run's own, else those with a positive label in train."""
    if not (data.split == "train").any():
        raise InputError(f"{labels_path}: no training images after the split")
    if state is not None:
        return keep_findings(data, state["findings"])
    trainable = [f for j, f in enumerate(data.findings) if (data.labels[data.split == "train", j] == 1).any()]
    if not trainable:
        raise InputError(f"{labels_path}: no finding has a positive label in the training split")
    dropped = [f for f in data.findings if f not in trainable]
    if dropped:
        say(f"not trained (no positive label in the training split): {', '.join(dropped)}")
    return keep_findings(data, trainable)


def _start(data: Prepared, config: TrainConfig, weights: Path | None, state: dict[str, Any] | None,
           cache_dir: Path | None, say: Callable[[str], None]) -> tuple[Trainer, int, float]:
    """The model (seeded, or restored from `state`), optimiser and schedule; the epoch and best AUC so far."""
    if not (np.isfinite(config.lr) and config.lr > 0 and np.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise InputError(f"learning rate {config.lr} and weight decay {config.weight_decay}: both must be finite, "
                         f"the first above 0")
    device = pick_device(config.device)
    seed_everything(config.seed)
    model, config = build_model(config, len(data.findings), weights if state is None else None, say)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    subsets = {s: np.flatnonzero(data.split == s) for s in SPLITS}
    say(f"{len(data.findings)} findings; images: " + ", ".join(f"{s} {len(i)}" for s, i in subsets.items())
        + f"; device {device}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * max(1, -(-len(subsets["train"]) // config.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    start_epoch, best_auc = 0, -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_auc = state["epoch"], state["best_auc"]
    cache = ImageCache(cache_dir, config.size) if cache_dir else None
    cast, use_scaler = autocast_for(device, config.cpu_bf16)
    trainer = Trainer(config, data, model, optimizer, scheduler, device, cache, subsets, _reporter(say), cast,
                      torch.amp.GradScaler("cuda", enabled=use_scaler))
    return trainer, start_epoch, best_auc


def _reporter(say: Callable[[str], None]) -> Callable[[str], None]:
    """A function that names each unreadable image once, however many epochs meet it."""
    seen: set[str] = set()

    def report(message: str) -> None:
        if message not in seen:
            seen.add(message)
            say(f"skipped unreadable image {message}")
    return report


def train_epoch(trainer: Trainer, epoch: int, progress: Any = None) -> tuple[float, float]:
    """One pass over the training split; returns (mean loss, images per second)."""
    config, device = trainer.config, trainer.device
    train_set = trainer.dataset("train", augment=True)
    torch.manual_seed(config.seed * 1000 + epoch)  # this epoch's augmentation and shuffling
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                        drop_last=len(train_set) > config.batch_size, num_workers=config.loader_workers,
                        collate_fn=collate, generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
    criterion, scaler = loss_function(config.loss), trainer.scaler
    trainer.model.train()
    seen, total_loss, started = 0, 0.0, time.perf_counter()
    task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(loader), loss="", speed="") if progress else None
    for batch, errors in loader:
        for message in errors:
            trainer.report(message)
        if batch is not None:
            images, labels, _ = batch
            images, labels = images.to(device), labels.to(device)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets, mask = targets_and_mask(labels, config.uncertain)
            with trainer.cast:
                logits = trainer.model(images)
            loss = criterion(logits, targets, mask)
            if not torch.isfinite(loss):
                raise TrainingError(f"epoch {epoch + 1}: the loss is {loss.item()} after {seen} images; training "
                                    f"diverged, nothing of this epoch is saved (lower --lr, or check the labels)")
            trainer.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(trainer.optimizer)
            scaler.update()
            seen += len(images)
            total_loss += loss.item() * len(images)
        trainer.scheduler.step()
        if progress:
            rate = seen / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, loss=f"loss {total_loss / max(seen, 1):.4f}", speed=f"{rate:.1f} img/s")
    if seen == 0:
        raise TrainingError(f"epoch {epoch + 1}: not one training image could be read (each is named above); "
                            f"check --images and the image paths")
    return total_loss / max(seen, 1), seen / (time.perf_counter() - started)


def validate(trainer: Trainer) -> tuple[float, dict[str, float]]:
    """Mean and per-finding AUC on the validation split (NaN and {} without one)."""
    rows = trainer.subsets["val"]
    if len(rows) == 0:
        return float("nan"), {}
    probs = predict(trainer.model, trainer.dataset("val"), trainer.config.batch_size, trainer.device, trainer.config,
                    trainer.report)
    return mean_auc(trainer.data.labels[rows], probs, trainer.data.findings)


def final_metrics(run_dir: Path, trainer: Trainer) -> dict[str, Any]:
    """Per-finding AUC of the best checkpoint on val and test, written to metrics.json."""
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    model = model_from_state(state, trainer.device, path)
    data, config = trainer.data, trainer.config
    metrics: dict[str, Any] = {"findings": data.findings, "checkpoint_epoch": state["epoch"]}
    for split in ("val", "test"):
        rows = trainer.subsets[split]
        if len(rows) == 0:
            continue
        probs = predict(model, trainer.dataset(split), config.batch_size, trainer.device, config, trainer.report)
        mean, per = mean_auc(data.labels[rows], probs, data.findings)
        metrics[split] = {"images": int(len(rows)), "mean_auc": mean, "auc": per}
    atomic_text(run_dir / METRICS, json_text(metrics))
    return metrics
