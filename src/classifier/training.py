"""`classifier fit`: train the weakly supervised network on image-level labels only.

Reproducible: with one `seed`, the weights, the shuffling and the augmentation of each epoch are
drawn from seeds derived from it (augmentation per image, see data.py), so a run resumed after epoch
k ends exactly where an uninterrupted run does, and N processes under torchrun train like one process
with the same global batch (distributed.py). `last.pt` is written after every epoch and `best.pt`
whenever the mean validation AUC improves, both atomically, by the first process only.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from cxrcore.errors import InputError, ToolkitError
from cxrcore.output import FolderOf, OutputFolder, atomic_text, json_text
from cxrcore.runs import BEST, CONFIG, FIT_FILES, LAST, LOG, METRICS, SHARED_FILES, checkpoint_path
from cxrcore.skips import Skips

from . import distributed, operating_points
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageDataset, Prepared, collate, keep_findings, model_input, prepare
from .inference import auc_intervals, autocast_for, mean_auc, pick_device, predict
from .losses import batch_counts, loss_function, targets_and_mask
from .model_card import write_model_card
from .runs import build_model, model_from_state, run_config
from .schedules import Schedule, make_optimizer

SPLITS = ("train", "val", "test")


class TrainingError(ToolkitError):
    """Training cannot go on (no readable image, a loss that is no longer a number); nothing bad was saved."""


@dataclass
class Trainer:
    """One `fit` call's model, optimiser and data: what every epoch needs."""

    config: TrainConfig
    data: Prepared
    model: torch.nn.Module  # wrapped in DistributedDataParallel when there are several processes
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    device: torch.device
    ctx: distributed.Context
    subsets: dict[str, np.ndarray]
    report: Callable[[str], None]  # names an unreadable image once, counted in `skips`
    skips: Skips
    cast: Any  # the autocast context of every forward pass
    scaler: torch.amp.GradScaler  # loss scaling, enabled for float16 only

    @property
    def network(self) -> torch.nn.Module:
        """The model itself (what is saved and evaluated), without the distributed wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def dataset(self, split: str) -> ImageDataset:
        return ImageDataset.of(self.data, self.subsets[split], self.config.size)

    def say(self, message: str, say: Callable[[str], None]) -> None:
        if self.ctx.main:
            say(message)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(labels_path: Path, images: Path | None, run_dir: Path, config: TrainConfig, weights: Path | None = None,
        resume: bool = False, store: Path | None = None, say: Callable[[str], None] = print,
        progress: Any = None, pause_after: int | None = None, skips: Skips | None = None) -> dict[str, Any] | None:
    """Train, validate each epoch, keep best and last checkpoints; return the final metrics.

    `pause_after` stops after that many epochs of this call (for time-limited or preemptible jobs);
    `resume` continues the run's own plan (its config, epochs included) from `last.pt`. Under
    torchrun, every process runs this; the first holds the run folder's lock and writes the files.
    `skips` names each unreadable image once and counts them (over all processes, at the end).
    """
    device = pick_device(config.device)
    ctx = distributed.setup(device)
    skips = skips if skips is not None else Skips(say)
    try:
        if not ctx.main:
            distributed.barrier(ctx)  # the first process checks and creates the run folder
            return _fit(labels_path, images, run_dir, config, weights, resume, store, say, progress, pause_after, ctx,
                        skips)
        inputs = [labels_path, weights, FolderOf(store) if store else None]
        with OutputFolder(run_dir, "classifier fit", inputs, shared=SHARED_FILES) as folder:
            folder.declare(*FIT_FILES)
            distributed.barrier(ctx)
            return _fit(labels_path, images, run_dir, config, weights, resume, store, say, progress, pause_after, ctx,
                        skips)
    finally:
        distributed.shutdown()


def _fit(labels_path: Path, images: Path | None, run_dir: Path, config: TrainConfig, weights: Path | None,
         resume: bool, store: Path | None, say: Callable[[str], None], progress: Any, pause_after: int | None,
         ctx: distributed.Context, skips: Skips) -> dict[str, Any] | None:
    state = _resume_state(run_dir, resume)
    if state is not None:
        if state["config"]["epochs"] != config.epochs and ctx.main:
            say(f"resuming with the run's own plan: {state['config']['epochs']} epochs")
        config = run_config(state, run_dir / LAST)
    data = _training_data(prepare(labels_path, images, config.seed, store), labels_path, state,
                          say if ctx.main else lambda message: None)
    trainer, start_epoch, best_auc = _start(data, config, weights, state, ctx, say, skips)
    if state is not None:
        trainer.say(f"resuming {run_dir} after epoch {start_epoch}", say)
    if ctx.main:
        atomic_text(run_dir / CONFIG, json.dumps({**trainer.config.to_dict(), "findings": data.findings}, indent=2))
    end = config.epochs if pause_after is None else min(config.epochs, start_epoch + pause_after)
    for epoch in range(start_epoch, end):
        loss, rate = train_epoch(trainer, epoch, progress if ctx.main else None)
        val_auc, per = validate(trainer)
        trainer.schedule.epoch_end(val_auc)
        # Better only by a finite validation AUC; with no validation images, the latest epoch is the best.
        improved = val_auc > best_auc if np.isfinite(val_auc) else len(trainer.subsets["val"]) == 0
        if improved and np.isfinite(val_auc):
            best_auc = val_auc
        if ctx.main:
            entry = {"epoch": epoch + 1, "loss": loss, "images_per_s": rate, "val_mean_auc": val_auc, "val_auc": per}
            with (run_dir / LOG).open("a") as fh:
                fh.write(json_text(entry, indent=None) + "\n")
            say(f"epoch {epoch + 1}: loss {loss:.4f}, {rate:.1f} img/s, val mean AUC {val_auc:.3f}")
            _save(trainer, run_dir, epoch, best_auc, improved)
        distributed.barrier(ctx)
    if end < config.epochs:
        trainer.say(f"paused after epoch {end} of {config.epochs}; continue with --resume", say)
        _count_skips(trainer)
        return None
    metrics = final_metrics(run_dir, trainer)
    if ctx.main:
        write_model_card(run_dir, labels_path, images, store, data, trainer.config, metrics, weights, state is not None)
    _count_skips(trainer)
    return metrics


def _count_skips(trainer: Trainer) -> None:
    """Every process learns how many images the others skipped (each names its own)."""
    if trainer.ctx.distributed:
        own = len(trainer.skips.seen)
        total = distributed.sum_over_ranks(trainer.ctx, torch.tensor([own], dtype=torch.float64))
        trainer.skips.elsewhere = int(total.item()) - own


def _save(trainer: Trainer, run_dir: Path, epoch: int, best_auc: float, improved: bool) -> None:
    """last.pt (and best.pt when improved), never with a weight that is not a number."""
    weights = trainer.network.state_dict()
    bad = next((n for n, p in weights.items() if p.is_floating_point() and not torch.isfinite(p).all()), None)
    if bad is not None:
        raise TrainingError(f"epoch {epoch + 1}: weight {bad} is no longer a number; nothing of this epoch is saved "
                            f"(lower --lr; {run_dir / LAST} keeps the previous epoch)")
    content = {"model": weights, "optimizer": trainer.optimizer.state_dict(),
               "scheduler": trainer.schedule.state_dict(), "epoch": epoch + 1, "best_auc": float(best_auc),
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
           ctx: distributed.Context, say: Callable[[str], None], skips: Skips) -> tuple[Trainer, int, float]:
    """The model (seeded, or restored from `state`), optimiser and schedule; the epoch and best AUC so far."""
    if not (np.isfinite(config.lr) and config.lr > 0 and np.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise InputError(f"learning rate {config.lr} and weight decay {config.weight_decay}: both must be finite, "
                         f"the first above 0")
    device = distributed.device_for(ctx, pick_device(config.device))
    seed_everything(config.seed)
    model, config = build_model(config, len(data.findings), weights if state is None else None,
                                say if ctx.main else lambda message: None)
    if config.channels_last is None:
        config = replace(config, channels_last=device.type == "cuda")
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed:  # before the optimiser is made: the new layers' parameters are the ones it must hold
        model = distributed.synchronise_batchnorm(model, device)
    subsets = {s: np.flatnonzero(data.split == s) for s in SPLITS}
    if ctx.main:
        say(f"{len(data.findings)} findings; images: " + ", ".join(f"{s} {len(i)}" for s, i in subsets.items())
            + f"; device {device}" + (f"; {ctx.world} processes" if ctx.distributed else ""))
    optimizer = make_optimizer(model.parameters(), config)
    batches = distributed.GlobalBatchSampler.batches(len(subsets["train"]), config.batch_size)
    schedule = Schedule(optimizer, config, max(1, -(-batches // config.accumulate)))
    start_epoch, best_auc = 0, -1.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        start_epoch, best_auc = state["epoch"], state["best_auc"]
    if ctx.distributed:
        if len(subsets["train"]) < ctx.world:
            raise InputError(f"{len(subsets['train'])} training images cannot be shared by {ctx.world} processes")
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    cast, use_scaler = autocast_for(device, config.cpu_bf16)
    trainer = Trainer(config, data, model, optimizer, schedule, device, ctx, subsets, _reporter(skips, ctx), skips,
                      cast, torch.amp.GradScaler("cuda", enabled=use_scaler))
    return trainer, start_epoch, best_auc


def _reporter(skips: Skips, ctx: distributed.Context) -> Callable[[str], None]:
    """A function that names each unreadable image once, however many epochs meet it."""
    where = f" (process {ctx.rank})" if ctx.distributed else ""
    return lambda message: skips(f"unreadable image {message}{where}")


def train_epoch(trainer: Trainer, epoch: int, progress: Any = None) -> tuple[float, float]:
    """One pass over the training split; returns (mean loss over all processes, images per second)."""
    config, ctx = trainer.config, trainer.ctx
    train_set = trainer.dataset("train")
    sampler = distributed.GlobalBatchSampler(len(train_set), config.batch_size, config.seed, epoch, ctx)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=config.loader_workers, collate_fn=collate)
    criterion = loss_function(config.loss)
    trainer.model.train()
    totals, started = torch.zeros(2, dtype=torch.float64), time.perf_counter()  # (sum of step losses, images)
    task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(loader), loss="", speed="") if progress else None
    for step, (batch, errors) in enumerate(loader):
        for message in errors:
            trainer.report(message)
        last = (step + 1) % config.accumulate == 0 or step + 1 == len(loader)
        group = min(config.accumulate, len(loader) - step // config.accumulate * config.accumulate)
        totals += _train_step(trainer, batch, criterion, epoch, group, sync=last)
        if last:
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.schedule.step()
        if progress:
            rate = float(totals[1]) / max(time.perf_counter() - started, 1e-9)
            shown = float(totals[0]) * ctx.world / (step + 1)  # this process's share, as if every share were like it
            progress.update(task, advance=1, loss=f"loss {shown:.4f}", speed=f"{rate:.1f} img/s")
    totals = distributed.sum_over_ranks(ctx, totals)
    if totals[1] == 0:
        raise TrainingError(f"epoch {epoch + 1}: not one training image could be read (each is named above); "
                            f"check --images (or --store) and the image paths")
    return float(totals[0]) / max(len(loader), 1), float(totals[1]) / (time.perf_counter() - started)


def _train_step(trainer: Trainer, batch: Any, criterion: Callable, epoch: int, group: int, sync: bool) -> torch.Tensor:
    """Forward and backward of one (micro-)batch; returns (this process's share of the batch's mean loss,
    its images): the shares summed over processes are the global batch's mean loss.

    The loss is normalised by counts summed over all processes, so averaging the processes' gradients
    gives the gradient of the global batch; `group` is the number of batches this optimiser step
    accumulates (fewer in an epoch's last step), whose mean gradient it takes. A process whose images
    all failed still runs a pass with zero weight: the others wait for its share of the batch
    statistics and gradients."""
    config, device, ctx = trainer.config, trainer.device, trainer.ctx
    if batch is None:
        images = torch.zeros(1, config.size, config.size, dtype=torch.uint8)
        labels, positions = torch.zeros(1, len(trainer.data.findings)), torch.zeros(1, dtype=torch.long)
        mask_out = True
    else:
        images, labels, positions = batch
        mask_out = False
    images = model_input(images, device, config.channels_last, config.augment, config.seed, epoch, positions)
    labels = labels.to(device)
    targets, mask = targets_and_mask(labels, config.uncertain)
    if mask_out:
        mask = torch.zeros_like(mask)
    counts = distributed.sum_over_ranks(ctx, batch_counts(targets, mask))
    context = trainer.model.no_sync() if ctx.distributed and not sync else contextlib.nullcontext()
    with context:
        with trainer.cast:
            logits = trainer.model(images)
        loss = criterion(logits, targets, mask, counts, scale=ctx.world / group)  # group: batches of this step
        if not torch.isfinite(loss):
            raise TrainingError(f"epoch {epoch + 1}: the loss is {loss.item()}; training diverged, nothing of this "
                                f"epoch is saved (lower --lr, or check the labels)")
        trainer.scaler.scale(loss).backward()
    seen = 0 if mask_out else len(images)
    return torch.tensor([loss.item() * group / ctx.world, seen], dtype=torch.float64)


def predict_split(trainer: Trainer, model: torch.nn.Module, split: str) -> np.ndarray:
    """Probabilities for every image of `split`, each process predicting its shard, gathered on all."""
    dataset = trainer.dataset(split)
    positions = distributed.shard(trainer.ctx, len(dataset))
    probs = predict(model, Subset(dataset, positions.tolist()), trainer.config.batch_size, trainer.device,
                    trainer.config, trainer.report, size=len(dataset))
    return distributed.gather_rows(trainer.ctx, positions, probs[positions], len(dataset))


def validate(trainer: Trainer) -> tuple[float, dict[str, float]]:
    """Mean and per-finding AUC on the validation split (NaN and {} without one)."""
    rows = trainer.subsets["val"]
    if len(rows) == 0:
        return float("nan"), {}
    probs = predict_split(trainer, trainer.network, "val")
    return mean_auc(trainer.data.labels[rows], probs, trainer.data.findings)


def final_metrics(run_dir: Path, trainer: Trainer) -> dict[str, Any]:
    """Per-finding AUC of the best checkpoint on val and test, written to metrics.json; the operating points
    chosen on val with it, written to operating_points.json."""
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    model = model_from_state(state, trainer.device, path)
    data = trainer.data
    metrics: dict[str, Any] = {"findings": data.findings, "checkpoint_epoch": state["epoch"]}
    val = (data.labels[:0], np.empty((0, len(data.findings)), np.float32))  # no val split: the points' fallback
    for split in ("val", "test"):
        rows = trainer.subsets[split]
        if len(rows) == 0:
            continue
        probs = predict_split(trainer, model, split)
        mean, per = mean_auc(data.labels[rows], probs, data.findings)
        metrics[split] = {"images": int(len(rows)), "mean_auc": mean, "auc": per,
                          "auc_ci": auc_intervals(data.labels[rows], probs, data.findings)}
        if split == "val":
            val = (data.labels[rows], probs)
    if trainer.ctx.main:
        atomic_text(run_dir / METRICS, json_text(metrics))
        operating_points.record(run_dir, *val, data.findings, state["epoch"])
    return metrics
