"""`classifier synth | fit | score | localize`: thin click commands over the library.

This module imports neither torch nor spaCy: `classifier --help` works on any install, and a
command that needs torch says what to install when it is missing.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cxrcore.cli import OneLineErrors, printable
from cxrcore.splits import SPLITS

from . import __version__
from .choices import ARCHS, DEVICES, HEATMAPS, LOSSES, POOLS, UNCERTAIN_POLICIES

err = Console(stderr=True, highlight=False)
NEEDS = {"torch": "torch", "torchvision": "torchvision", "PIL": "pillow", "scipy": "scipy"}


def say(message: str) -> None:
    err.print(printable(message), markup=False, soft_wrap=True)


class Positive(click.ParamType):
    """A finite number above 0 (click's FloatRange lets NaN through)."""

    name = "number"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} must be a finite number above 0", param, ctx)
        return number


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="classifier")
def main() -> None:
    """Train and apply the weakly supervised ChestX-ray8 network (see README.md)."""
    missing = [package for module, package in NEEDS.items() if not _installed(module)]
    if missing:
        raise click.ClickException(f"classifier needs {', '.join(missing)}, which this install lacks: "
                                   f"pip install 'chestxray-toolkit[classifier]'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a package whose import machinery fails is as good as absent
        return False


@main.command()
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--count", type=click.IntRange(min=1), default=1000, show_default=True, help="Images to generate.")
@click.option("--size", type=click.IntRange(min=32), default=128, show_default=True, help="Pixels of the square image.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hedge", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of present findings the report only calls possible.")
def synth(output: Path, count: int, size: int, seed: int, hedge: float) -> None:
    """Generate radiographs with known findings, boxes (NIH BBox_List format) and reports."""
    from .synthetic import generate

    cases = generate(output, count, size=size, seed=seed, hedge=hedge)
    say(f"{len(cases)} images, reports.csv, BBox_List.csv and truth.csv → {output}")


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the image paths are relative to (default: the labels file's folder).")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: best.pt, last.pt, metrics.json, train_log.jsonl, config.json.")
@click.option("--arch", type=click.Choice(ARCHS), default="resnet50", show_default=True)
@click.option("--pool", type=click.Choice(POOLS), default="lse", show_default=True)
@click.option("--lse-r", type=Positive(), default=10.0, show_default=True, help="r of LSE pooling.")
@click.option("--transition", "transition_channels", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Channels D of the transition layer.")
@click.option("--output-stride", type=click.Choice(["8", "16", "32"]), show_default="16 (DenseNet: 32)",
              help="Trunk stride: 16 or 8 dilate a ResNet's last stages for finer class activation maps (32: the "
                   "paper's, a 7x7 map at 224 px; 16 costs ResNet-50 about 1.6x the compute).")
@click.option("--trunk-stages", type=click.Choice(["3", "4"]), default="4", show_default=True,
              help="ResNet stages to keep: 3 ends after layer3 (finer maps for less compute, more local features).")
@click.option("--loss", type=click.Choice(LOSSES), default="weighted", show_default=True)
@click.option("--uncertain", type=click.Choice(UNCERTAIN_POLICIES), default="ignore", show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=224, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=Positive(), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A torchvision state dict for the trunk (nothing is downloaded).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep decoded, resized images here between epochs and runs.")
@click.option("--loader-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes.")
@click.option("--channels-last/--no-channels-last", default=False, show_default=True)
@click.option("--cpu-bf16/--no-cpu-bf16", default=False, show_default=True, help="bfloat16 autocast on the CPU.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last checkpoint, with its own settings.")
@click.option("--pause-after", type=click.IntRange(min=1),
              help="Stop after this many epochs of this invocation (for time-limited jobs); --resume goes on.")
def fit(labels: Path, images: Path | None, run_dir: Path, arch: str, pool: str, lse_r: float, transition_channels: int,
        output_stride: str | None, trunk_stages: str, loss: str, uncertain: str, size: int, epochs: int, batch_size: int,
        lr: float, seed: int, device: str, weights: Path | None, cache_dir: Path | None, loader_workers: int,
        channels_last: bool, cpu_bf16: bool, resume: bool, pause_after: int | None) -> None:
    """Train on LABELS (a labels.parquet) with image-level labels only."""
    from .config import ModelConfig, TrainConfig
    from .training import fit as run_fit

    config = TrainConfig(model=ModelConfig(arch=arch, pool=pool, lse_r=lse_r, transition_channels=transition_channels,
                                           output_stride=int(output_stride) if output_stride else None,
                                           trunk_stages=int(trunk_stages)),
                         size=size, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, loss=loss,
                         uncertain=uncertain, device=device, loader_workers=loader_workers,
                         channels_last=channels_last, cpu_bf16=cpu_bf16)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                  TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), console=err) as progress:
        metrics = run_fit(labels, images, run_dir, config, weights=weights, resume=resume, cache_dir=cache_dir,
                          say=lambda m: progress.console.print(m, markup=False, soft_wrap=True), progress=progress,
                          pause_after=pause_after)
    if metrics is None:
        return
    for split in ("val", "test"):
        if split in metrics:
            say(f"{split}: mean AUC {metrics[split]['mean_auc']:.3f} over {metrics[split]['images']} images")
    say(f"run → {run_dir} (best.pt, last.pt, metrics.json)")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="scores.parquet; SCORES.auc.json and SCORES.roc.png are written beside it.")
@click.option("--split", type=click.Choice(SPLITS), help="Score only this split (default: all rows).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
def score(run_dir: Path, labels: Path, images: Path | None, output: Path, split: str | None, device: str,
          cache_dir: Path | None, bootstrap: int) -> None:
    """Probabilities for every image of LABELS, and AUC with 95% bootstrap intervals."""
    from .score import score as run_score

    summary = run_score(run_dir, labels, images, output, split=split, device=device, cache_dir=cache_dir,
                        n_boot=bootstrap, say=say)
    for name, r in summary["per_finding"].items():
        say(f"{name:<20} AUC {r['auc']:.3f} (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}; {r['positives']} positive of {r['n']})")
    say(f"mean AUC {summary['mean_auc']:.3f} over {summary['images']} images → {output}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for boxes.csv, overlays/ and (with --boxes) localization.json.")
@click.option("--boxes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="True boxes in the NIH BBox_List format: score the predicted boxes against them.")
@click.option("--thresholds", default="60,180", show_default=True, help="Map thresholds on the 0-255 scale.")
@click.option("--method", type=click.Choice(HEATMAPS), default="cam", show_default=True,
              help="Heatmaps: class activation maps (the paper's), or Grad-CAM read at --layer.")
@click.option("--layer", default="transition", show_default=True,
              help="Grad-CAM's layer: transition, or a ResNet's layer1-layer4 (layer2 is finer and more local).")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Draw boxes for findings at least this probable (and, with --boxes, for every true finding).")
@click.option("--split", type=click.Choice(SPLITS), help="Only this split (default: all rows).")
@click.option("--overlays", type=click.IntRange(min=0), default=50, show_default=True, help="Overlay PNGs to draw.")
@click.option("--boxes-size", type=click.IntRange(min=1),
              help="The --boxes coordinates are in pixels of images this wide (NIH's BBox_List: 1024); "
                   "they are scaled to each image. Default: the images' own pixels.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
def localize(run_dir: Path, labels: Path, images: Path | None, out_dir: Path, boxes: Path | None, thresholds: str,
             min_score: float, split: str | None, overlays: int, boxes_size: int | None, device: str, method: str,
             layer: str) -> None:
    """Heatmaps and boxes for the images of LABELS; with --boxes, the paper's IoBB and IoU tables."""
    from .localize import localize as run_localize
    from .metrics import format_tables

    try:
        levels = tuple(int(t) for t in thresholds.split(","))
    except ValueError:
        raise click.BadParameter(f"{thresholds!r} is not a list of integers such as 60,180") from None
    metrics = run_localize(run_dir, labels, images, out_dir, boxes, levels, min_score, split, device, overlays,
                           boxes_size, method, layer, say)
    if metrics is not None:
        click.echo(format_tables(metrics))
        say(f"mean accuracy: T(IoBB)=0.5 {metrics['iobb']['0.5']['mean']['acc']:.3f}, "
            f"T(IoU)=0.3 {metrics['iou']['0.3']['mean']['acc']:.3f}, pointing {metrics['pointing'].get('mean', 0):.3f}"
            f" → {out_dir / 'localization.json'}")


if __name__ == "__main__":
    main()
