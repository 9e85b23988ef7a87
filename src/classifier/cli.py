"""`classifier synth | fit | score | localize`: thin click commands over the library.

This module imports neither torch nor spaCy: `classifier --help` works on any install, and a
command that needs torch says what to install when it is missing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cxrcore.cli import EXIT_SKIPPED, OneLineErrors, counted, printable, progress_bar
from cxrcore.skips import Skips
from cxrcore.splits import SPLITS

from . import __version__
from .choices import (ARCHS, AUGMENTATIONS, DEVICES, HEATMAPS, LOSSES, MAX_PIXELS, OPTIMIZERS, POOLS, SCHEDULES,
                      UNCERTAIN_POLICIES)
from .presets import PRESETS  # plain data, no torch: `--help` stays light

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
@click.option("--family", type=click.Choice(["films", "ward"]), default="films", show_default=True,
              help="films: upright PA films; ward: bedside AP films (other anatomy, contrast, noise and lesions).")
def synth(output: Path, count: int, size: int, seed: int, hedge: float, family: str) -> None:
    """Generate radiographs with known findings, boxes (NIH BBox_List format) and reports."""
    from . import ward
    from .synthetic import generate

    cases = generate(output, count, size=size, seed=seed, hedge=hedge,
                     make_case=ward.generate_case if family == "ward" else None)
    say(f"{len(cases)} images, reports.csv, BBox_List.csv and truth.csv → {output}")


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the image paths are relative to (default: the labels file's folder).")
@click.option("--size", type=click.IntRange(min=32), default=224, show_default=True, help="Pixels of the square image.")
@click.option("-o", "--output", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The store folder (images.u8, index.parquet, store.json).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Processes decoding at once.")
@click.option("--resume", is_flag=True, help="Continue a preparation that was stopped.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
              help="Largest image a worker decodes (width x height; each takes about 14 bytes a pixel while it is "
                   "decoded); larger ones are skipped and named.")
def prepare(labels: Path, images: Path | None, size: int, store: Path, workers: int, resume: bool,
            max_pixels: int) -> None:
    """Decode every image of LABELS once into a store that fit, score and localize read with --store."""
    from collections import Counter

    from cxrcore.errors import InputError
    from cxrcore.labels import read_labels

    from .data import image_key, resolve_paths
    from .store import prepare_store

    table = read_labels(labels)
    paths = resolve_paths(table.frame, labels, images)
    ids = table.frame["image_id"].tolist() if "image_id" in table.frame else [None] * len(paths)
    unique = list(dict.fromkeys((image_key(i, p), p) for i, p in zip(ids, paths)))
    twice = [k for k, n in Counter(k for k, _ in unique).items() if n > 1]
    if twice:
        raise InputError(f"{labels}: image {twice[0]} names two different files; give each image one id")
    with _progress("preparing") as bar:
        task = bar.add_task("prepare", total=len(unique))
        index = prepare_store(unique, size, store, workers, resume, f"{labels} (images: {images or labels.parent})",
                              say=lambda m: bar.console.print(printable(m), markup=False, soft_wrap=True),
                              progress=lambda n: bar.advance(task, n), max_pixels=max_pixels, inputs=[labels])
    say(f"{int(index['ok'].sum()):,} of {len(index):,} images at {size} px ({size * size:,} bytes each) → {store}")
    if not index["ok"].all():
        sys.exit(EXIT_SKIPPED)


def _exit_if_skipped(skips: Skips, what: str) -> None:
    """Exit 3 when inputs were skipped (each named above): the outputs are written, from the others."""
    if skips:
        say(f"skipped {counted(len(skips), what)} (named above)")
        sys.exit(EXIT_SKIPPED)


def _progress(what: str) -> Progress:
    """A bar over the images on stderr, shown only on a terminal (a log or a pipe gets the result lines alone)."""
    return progress_bar(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err)


def _preset_defaults(ctx: click.Context, preset: str | None, values: dict) -> dict:
    """The options a preset sets, where the command line did not set them itself."""
    from click.core import ParameterSource

    if preset is None:
        return values
    chosen = dict(values)
    for name, value in PRESETS[preset].items():
        if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            chosen[name] = value
    return chosen


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the image paths are relative to (default: the labels file's folder).")
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read the images from this prepared store (`classifier prepare`) instead of their files.")
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: best.pt, last.pt, metrics.json, train_log.jsonl, config.json.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="A recipe that sets options (chestxray8: the paper's; chexnet: DenseNet-121, BCE, Adam, plateau); "
                   "options given here win.")
@click.option("--arch", type=click.Choice(ARCHS), default="resnet50", show_default=True)
@click.option("--pool", type=click.Choice(POOLS), default="lse", show_default=True)
@click.option("--lse-r", type=Positive(), default=10.0, show_default=True, help="r of LSE pooling.")
@click.option("--transition", "transition_channels", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Channels D of the transition layer (0: none, the trunk's own features).")
@click.option("--output-stride", type=click.Choice(["8", "16", "32"]), show_default="16 (DenseNet: 32)",
              help="Trunk stride: 16 or 8 dilate a ResNet's last stages for finer class activation maps (32: the "
                   "paper's, a 7x7 map at 224 px; 16 costs ResNet-50 about 1.6x the compute).")
@click.option("--trunk-stages", type=click.Choice(["3", "4"]), default="4", show_default=True,
              help="ResNet stages to keep: 3 ends after layer3 (finer maps for less compute, more local features).")
@click.option("--loss", type=click.Choice(LOSSES), default="weighted", show_default=True)
@click.option("--uncertain", type=click.Choice(UNCERTAIN_POLICIES), default="ignore", show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=224, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="The global batch: under torchrun it is shared among the processes.")
@click.option("--accumulate", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches per optimiser step (an effective batch of batch size x accumulate).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True)
@click.option("--lr", type=Positive(), default=1e-3, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="onecycle", show_default=True,
              help="Learning-rate schedule (plateau: cut tenfold when the validation AUC stalls).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Linear warm-up for the cosine, plateau and constant schedules.")
@click.option("--augment", type=click.Choice(AUGMENTATIONS), default="affine", show_default=True,
              help="affine: small shifts, rotation, scale and exposure; flip: left-right flips (CheXNet's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A torchvision state dict for the trunk (nothing is downloaded).")
@click.option("--init", type=click.Choice(["random", "imagenet"]), default="random", show_default=True,
              help="imagenet: start the trunk from torchvision's ImageNet weights, from the torch hub cache "
                   "($TORCH_HOME/hub/checkpoints), downloaded there when missing and a network is at hand.")
@click.option("--loader-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes.")
@click.option("--channels-last/--no-channels-last", default=None, show_default="on GPUs",
              help="channels_last memory format (measured faster on GPUs, not on the CPU).")
@click.option("--cpu-bf16/--no-cpu-bf16", default=False, show_default=True, help="bfloat16 autocast on the CPU.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last checkpoint, with its own settings.")
@click.option("--pause-after", type=click.IntRange(min=1),
              help="Stop after this many epochs of this invocation (for time-limited jobs); --resume goes on.")
@click.pass_context
def fit(ctx: click.Context, labels: Path, images: Path | None, store: Path | None, run_dir: Path, preset: str | None,
        **options) -> None:
    """Train on LABELS (a labels.parquet) with image-level labels only. Several processes or GPUs:
    torchrun --nproc_per_node N -m classifier fit ..."""
    from .config import ModelConfig, TrainConfig
    from .training import fit as run_fit

    o = _preset_defaults(ctx, preset, options)
    stride = o["output_stride"]
    config = TrainConfig(model=ModelConfig(arch=o["arch"], pool=o["pool"], lse_r=o["lse_r"],
                                           transition_channels=o["transition_channels"],
                                           output_stride=int(stride) if stride else None,
                                           trunk_stages=int(o["trunk_stages"])),
                         size=o["size"], epochs=o["epochs"], batch_size=o["batch_size"], lr=o["lr"], seed=o["seed"],
                         loss=o["loss"], uncertain=o["uncertain"], device=o["device"],
                         loader_workers=o["loader_workers"], channels_last=o["channels_last"], cpu_bf16=o["cpu_bf16"],
                         optimizer=o["optimizer"], schedule=o["schedule"], warmup_epochs=o["warmup_epochs"],
                         accumulate=o["accumulate"], augment=o["augment"], preset=preset)
    main_process = os.environ.get("RANK", "0") == "0"
    if o["init"] == "imagenet":
        if o["weights"] is not None:
            raise click.UsageError("give --init imagenet or --weights FILE, not both")
        from .pretrained import imagenet_weights

        o["weights"] = imagenet_weights(o["arch"], say if main_process else lambda m: None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                  TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), console=err,
                  disable=not (main_process and err.is_terminal)) as bar:  # a log gets no leftover bar line
        skips = Skips(lambda m: bar.console.print(printable(m), markup=False, soft_wrap=True))
        metrics = run_fit(labels, images, run_dir, config, weights=o["weights"], resume=o["resume"], store=store,
                          say=skips.say, progress=bar, pause_after=o["pause_after"], skips=skips)
    if not main_process:
        return
    if metrics is not None:
        for split in ("val", "test"):
            if split in metrics:
                say(f"{split}: mean AUC {metrics[split]['mean_auc']:.3f} over {metrics[split]['images']} images")
        say(f"run → {run_dir} (best.pt, last.pt, metrics.json)")
    _exit_if_skipped(skips, "image")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="scores.parquet; SCORES.auc.json and SCORES.roc.png are written beside it.")
@click.option("--split", type=click.Choice(SPLITS), help="Score only this split (default: all rows).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read the images from this prepared store (`classifier prepare`) instead of their files.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals.")
def score(run_dir: Path, labels: Path, images: Path | None, output: Path, split: str | None, device: str,
          store: Path | None, bootstrap: int) -> None:
    """Probabilities for every image of LABELS, and AUC with 95% bootstrap intervals."""
    from .score import score as run_score

    with _progress("scoring") as bar:
        task = bar.add_task("score", total=None)
        skips = Skips(lambda m: bar.console.print(printable(m), markup=False, soft_wrap=True))
        summary = run_score(run_dir, labels, images, output, split=split, device=device, store=store,
                            n_boot=bootstrap, say=skips.say, skips=skips,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    for name, r in summary["per_finding"].items():
        say(f"{name:<20} AUC {r['auc']:.3f} (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}; {r['positives']} positive of {r['n']})")
    say(f"mean AUC {summary['mean_auc']:.3f} over {summary['images']} images → {output}")
    _exit_if_skipped(skips, "image")


def _thresholds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """LOW,HIGH (or one value for both) on the 0-255 scale."""
    if value is None:
        return None
    try:
        levels = [int(t) for t in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LOW,HIGH integers such as 60,180") from None
    if len(levels) not in (1, 2) or not 0 <= levels[0] <= levels[-1] <= 255:
        raise click.BadParameter(f"{value!r}: give LOW,HIGH with 0 <= LOW <= HIGH <= 255, such as 60,180")
    return levels[0], levels[-1]


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for boxes.csv, overlays/ and (with --boxes) localization.json.")
@click.option("--boxes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="True boxes in the NIH BBox_List format: score the predicted boxes against them.")
@click.option("--calibrate", "calibrate_boxes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="True boxes held apart from --boxes (20 or more fit the boxes to your own films): choose the "
                   "heatmap and box rules on their images (rows of LABELS) by IoU and record them in "
                   "RUN_DIR/localization_defaults.json; those images are never scored.")
@click.option("--method", type=click.Choice(HEATMAPS), show_default="the run's recorded default",
              help="Heatmaps: class activation maps (the paper's), or Grad-CAM read at --layer: alone, per activation "
                   "(LayerCAM), or times the input's saliency.")
@click.option("--layer", show_default="the run's recorded default",
              help="Grad-CAM's layer: transition, or a ResNet's layer1-layer4.")
@click.option("--thresholds", callback=_thresholds, show_default="the run's recorded default",
              help="LOW,HIGH on the map's 0-255 scale: a box is a region above LOW that reaches HIGH (the paper's "
                   "fixed level, no growth to the size prior, no enlargement).")
@click.option("--min-area", type=click.FloatRange(0, 1, max_open=True), show_default="0.001",
              help="Regions smaller than this share of the image draw no box.")
@click.option("--max-boxes", type=click.IntRange(min=1), show_default="3", help="Boxes per finding and image, at most.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Draw boxes for findings at least this probable (and, with --boxes, for every true finding).")
@click.option("--split", type=click.Choice(SPLITS), help="Only this split (default: all rows).")
@click.option("--overlays", type=click.IntRange(min=0), default=50, show_default=True, help="Overlay PNGs to draw.")
@click.option("--boxes-size", type=click.IntRange(min=1),
              help="The --boxes and --calibrate coordinates are in pixels of images this wide (NIH's BBox_List: "
                   "1024); they are scaled to each image. Default: the images' own pixels.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read the images from this prepared store (`classifier prepare`) instead of their files.")
def localize(run_dir: Path, labels: Path, images: Path | None, out_dir: Path, boxes: Path | None,
             calibrate_boxes: Path | None, method: str | None, layer: str | None, thresholds: tuple[int, int] | None,
             min_area: float | None, max_boxes: int | None, min_score: float, split: str | None, overlays: int,
             boxes_size: int | None, device: str, store: Path | None) -> None:
    """Heatmaps and boxes for the images of LABELS; with --boxes, the paper's IoBB and IoU tables and the
    recent papers' figures; with --calibrate, first choose how to draw them."""
    from .defaults import Options
    from .localize import Request, localize as run_localize
    from .metrics import format_tables

    request = Request(Options(method, layer, thresholds, min_area, max_boxes), min_score, split, device, overlays,
                      boxes_size)
    with _progress("drawing") as bar:
        task = bar.add_task("localize", total=None)
        outcome = run_localize(run_dir, labels, images, out_dir, boxes, calibrate_boxes, request,
                               lambda m: bar.console.print(printable(m), markup=False, soft_wrap=True), store,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    metrics = outcome.metrics
    if metrics is not None:
        click.echo(format_tables(metrics))
        iobb, recent = metrics["iobb"]["0.5"]["mean"], metrics["recent"]["mean"]
        say(f"mean over {len(metrics['recent']) - 1} findings: T(IoBB)=0.5 {iobb['acc']:.3f} (AFP {iobb['afp']:.2f}), "
            f"IoU>0.1 {recent['acc_iou>0.1']:.3f}, IoU>0.5 {recent['acc_iou>0.5']:.3f}, pointing "
            f"{recent['pointing']:.3f} → {out_dir / 'localization.json'}")
    if outcome.skipped_images:
        say(f"skipped {counted(outcome.skipped_images, 'image')} (named above)")
    if outcome.skipped_boxes or outcome.skipped_images:
        sys.exit(EXIT_SKIPPED)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True,
              help="onnx (needs the [export] extra: onnx, onnxscript; onnxruntime to check it) or torchscript.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file, with its preprocessing contract and model card inside.")
def export(run_dir: Path, fmt: str, output: Path) -> None:
    """The run's network as ONNX or TorchScript: input grey films in [0, 1], output probabilities; the
    contract (size, normalisation, findings, operating points) is stored in the file."""
    from .export import EXTRA, export as run_export

    contract, gap = run_export(run_dir, fmt, output)
    points = "its operating points" if contract["operating_points"] else "no operating points (none recorded)"
    checked = f"max |difference| to the checkpoint {gap:.1e} on 4 inputs" if gap is not None else \
        f"not checked (onnxruntime is not installed: {EXTRA})"
    say(f"{run_dir} → {output} ({fmt}, {contract['size']} px, {len(contract['findings'])} findings, {points}); "
        f"{checked}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="predictions.parquet: one row per readable image.")
@click.option("--threshold", "thresholds", multiple=True, metavar="P|FINDING=P",
              help="Decide at this probability instead of the run's operating point: for every finding, or one "
                   "(repeat the option); later values win.")
@click.option("--heatmaps", is_flag=True, help="Add each finding's heatmap (a PNG per row and finding).")
@click.option("--boxes", is_flag=True, help="Add the boxes `localize` draws, in each image's own pixels.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Draw boxes for findings at least this probable (as localize).")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the study viewer: one self-contained page of the films, probabilities, heatmaps "
                   "and boxes.")
@click.option("--html-films", type=click.IntRange(min=1), default=200, show_default=True,
              help="Films in the page, at most (the first ones; at most 64 KB each).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the relative paths of .txt/.csv lists, Parquet tables and --labels are taken from "
                   "(default: each file's own folder).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The run's training labels: for a run without recorded operating points, choose them on its "
                   "validation split.")
@click.option("--patient-id", is_flag=True,
              help="Carry each DICOM film's PatientID to the output (its Study and SOP Instance UIDs always are).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes decoding images beside the network (more pays for large films and DICOM).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue a run that was stopped, skipping the chunks it finished.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(run_dir: Path, inputs: tuple[Path, ...], output: Path, thresholds: tuple[str, ...], heatmaps: bool,
            boxes: bool, min_score: float, html: Path | None, html_films: int, images: Path | None,
            labels: Path | None, patient_id: bool, workers: int, device: str, resume: bool, quiet: bool) -> None:
    """Probabilities and decisions for images without labels. INPUTS: image files (PNG, JPEG, TIFF, DICOM),
    folders (searched recursively), .txt or .csv lists of paths, or a labels or dataset Parquet."""
    from .predict import Request, predict_images

    request = Request(thresholds, heatmaps, boxes, min_score, html, html_films, images, labels, device, workers,
                      resume, patient_id)
    with progress_bar(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                      quiet=quiet) as bar:
        task = bar.add_task("predict", total=None)
        outcome = predict_images(run_dir, list(inputs), output, request,
                                 say=lambda m: bar.console.print(printable(m), markup=False, soft_wrap=True),
                                 progress=lambda n: bar.advance(task, n))
    say(f"{outcome.rows:,} images → {output}" + (f"; {outcome.films:,} films → {html}" if html else "")
        + f" (operating points: {outcome.source})")
    if outcome.skipped:
        say(f"skipped {counted(len(outcome.skipped), 'input')} (named above)")
        sys.exit(EXIT_SKIPPED)


if __name__ == "__main__":
    main()
