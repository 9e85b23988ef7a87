"""`classifier localize`: heatmaps → boxes, overlays, and localization metrics; `--calibrate` chooses how.

A finding's map is a class activation map (the paper's) or Grad-CAM read at a layer (heatmaps.py);
boxes are drawn from it by the rules of boxes.py, in the image's own pixels. The heatmap and the
thresholds are the command line's where given, else the run's recorded defaults, else the built-in
ones of its architecture (defaults.py). `--calibrate BOXES` chooses them on the images of those boxes
(calibration.py), records them in the run, and never scores those images: a calibration image among
the scored ones is an error that names it, now and in every later call that uses the recorded values.
With true boxes, the paper's tables and the recent papers' figures are measured (metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from cxrcore.boxes import read_boxes
from cxrcore.errors import InputError
from cxrcore.output import FolderOf, OutputFolder, exclusive, json_text
from cxrcore.runs import run_files
from cxrcore.skips import Skips

from .boxes import Box, BoxRules, boxes_from_map
from .calibration import Entry, calibrate, entry, rules_text
from .choices import HEATMAPS
from .data import Prepared, prepare
from .defaults import DEFAULTS_FILE, Options, Settings, read_defaults, resolve, write_defaults
from .family import describe, mismatch
from .heatmaps import kinds_batches, map_batches
from .inference import pick_device
from .metrics import localization_metrics
from .models import WeaklySupervisedNet
from .overlays import overlay
from .runs import load_run

BOX_FIELDS = ["Image Index", "Finding Label", "x", "y", "w", "h", "score"]
Truth = dict[str, dict[str, list[Box]]]  # image id → finding → true boxes in the image's own pixels


@dataclass(frozen=True)
class Request:
    """What `localize` was asked for besides the inputs."""

    options: Options = field(default_factory=Options)
    min_score: float = 0.5
    split: str | None = None
    device: str = "auto"
    overlays: int = 50
    boxes_size: int | None = None  # true boxes are in pixels of images this wide (NIH: 1024); None: the images' own


@dataclass
class Scene:
    """The run and the table `localize` works on."""

    model: WeaklySupervisedNet
    arch: str
    size: int
    batch_size: int
    findings: list[str]
    data: Prepared
    ids: np.ndarray
    device: torch.device
    labels_path: Path


@dataclass
class Outcome:
    """What `localize` gives back: the metrics (with true boxes) and how many true boxes and images it skipped."""

    metrics: dict[str, Any] | None
    skipped_boxes: int = 0
    skipped_images: int = 0


@dataclass
class Drawing:
    """What has been drawn so far."""

    records: list[dict[str, Any]] = field(default_factory=list)  # predicted boxes
    peaks: list[dict[str, Any]] = field(default_factory=list)  # each map's maximum, for the pointing game
    drawn: int = 0


def localize(run_dir: Path, labels_path: Path, images: Path | None, out_dir: Path, boxes_path: Path | None = None,
             calibrate_path: Path | None = None, request: Request = Request(),
             say: Callable[[str], None] = print, store: Path | None = None,
             progress: Callable[[int, int], None] = lambda done, total: None) -> Outcome:
    """Write boxes.csv, overlays/ and (with true boxes) localization.json into `out_dir` (a folder of
    localize's own, cxrcore.output.OutputFolder; renamed into place together at the end); with
    `calibrate_path`, first choose and record the run's localization defaults on those boxes' images; with
    `store`, the images are read from that prepared store (overlays from their files where at hand).
    `progress(done, total)` follows the images drawn."""
    inputs = [labels_path, boxes_path, calibrate_path, FolderOf(store) if store else None, *run_files(run_dir)]
    with OutputFolder(out_dir, "classifier localize", inputs) as folder, \
            exclusive(*([run_dir / DEFAULTS_FILE] if calibrate_path else [])):
        scene = _scene(run_dir, labels_path, images, request.device, store)
        rows = scene.data.rows(request.split)
        if store is None:
            folder.add_inputs(*(scene.data.paths[i] for i in rows))
        skipped: list[int] = []
        unreadable = Skips(say)  # images that cannot be read: each named once, counted
        truth = _truth(boxes_path, scene, rows, request, say, skipped, unreadable) if boxes_path else None
        if calibrate_path:
            done = _calibrate(run_dir, scene, rows, calibrate_path, boxes_path, truth, request, say, skipped,
                              unreadable)
            rows = rows[~np.isin(rows, done)]
        # just chosen, within the options, when calibrating
        recorded = read_defaults(run_dir, scene.arch, scene.model.map_layers())
        settings = recorded if calibrate_path else resolve(recorded, request.options)
        _check(settings, scene)
        if truth is not None:
            rows = rows[np.isin(scene.ids[rows], list(truth))]
            _refuse_calibration_images(settings, scene, rows, boxes_path)
            say(f"{len(rows)} images with true boxes")
        own = f"; {len(settings.per_finding)} findings their own" if settings.per_finding else ""
        say(f"heatmap: {_name(settings.method, settings.layer)}, boxes {rules_text(settings.rules)}{own} "
            f"({settings.source})")
        family = describe(scene.data, rows)
        warning = mismatch(settings.family, family)
        if warning:
            say(warning)
        drawing = _draw(scene, rows, truth, settings, request, folder, unreadable, progress)
        outcome = Outcome(_write(drawing, truth, scene, rows, settings, family, folder, say), sum(skipped),
                          len(unreadable))
        folder.commit()
        return outcome


def _scene(run_dir: Path, labels_path: Path, images: Path | None, device: str, store: Path | None) -> Scene:
    dev = pick_device(device)
    model, config, findings, _ = load_run(run_dir, dev)
    data = prepare(labels_path, images, config.seed, store)
    return Scene(model, config.model.arch, config.size, config.batch_size, findings, data,
                 data.frame["image_id"].astype(str).to_numpy(), dev, labels_path)


def _check(settings: Settings, scene: Scene) -> None:
    for method, layer in settings.groups(scene.findings):
        if method != "cam" and layer not in scene.model.map_layers():
            raise InputError(f"--layer {layer}: this {scene.arch} has {', '.join(scene.model.map_layers())}")
    try:
        settings.rules.check()
    except ValueError as exc:
        raise InputError(f"--thresholds/--min-area/--max-boxes: {exc}") from None



def _truth(path: Path, scene: Scene, rows: np.ndarray, request: Request, say: Callable[[str], None],
           skipped: list[int], unreadable: Skips) -> Truth:
    """The true boxes of `path` on images among `rows`, of findings the run knows, in each image's own pixels.
    A box of non-positive size, or not on its film, is named and skipped (its count appended to `skipped`); an
    image whose size cannot be read is named through `unreadable`, and its boxes left out."""
    table = read_boxes(path, scene.findings + [f for f in scene.data.findings if f not in scene.findings])
    table = table[table["Finding Label"].isin(scene.findings)]
    where = {image_id: row for row, image_id in zip(rows, scene.ids[rows])}
    truth: Truth = {}
    bad = 0
    for (image_id, finding), group in table.groupby(["Image Index", "Finding Label"], sort=False):
        if image_id not in where:
            continue
        try:
            width, height = scene.data.original_size(where[image_id])
        except InputError as exc:
            unreadable(f"unreadable image {str(exc).removesuffix('; fix or remove its row')}")
            continue
        boxes = group[["x", "y", "w", "h"]].to_numpy(float)
        if request.boxes_size:
            boxes = boxes * np.array([width, height, width, height]) / request.boxes_size
        for line, box in zip(group.index, boxes):
            reason = _bad_box(box, width, height)
            if reason:
                bad += 1
                if bad <= 5:
                    say(f"{path}:{line + 2}: {image_id} {finding} box {', '.join(f'{v:g}' for v in box)} {reason} "
                        f"of {width}x{height} pixels; skipped")
                continue
            truth.setdefault(image_id, {}).setdefault(finding, []).append(tuple(box))
    if bad > 5:
        say(f"{path}: {bad - 5} more boxes skipped for the same reasons")
    skipped.append(bad)
    left = len({i for i in table["Image Index"] if i not in where})
    if left:
        say(f"{path}: {left} boxed images are not among the rows of {scene.labels_path}"
            f"{' in split ' + request.split if request.split else ''}; left out")
    return truth


def _bad_box(box: np.ndarray, width: int, height: int) -> str:
    """Why a true box (x, y, w, h in its film's pixels) cannot be scored, or "" when it can."""
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        return "has a non-positive or non-finite size"
    slack = 0.02 * max(width, height) + 1  # readers' boxes may graze the edge
    if box[0] < -slack or box[1] < -slack or box[0] + box[2] > width + slack or box[1] + box[3] > height + slack:
        return "is not on its film"
    return ""


def _calibrate(run_dir: Path, scene: Scene, rows: np.ndarray, path: Path, boxes_path: Path | None, truth: Truth | None,
               request: Request, say: Callable[[str], None], skipped: list[int], unreadable: Skips) -> np.ndarray:
    """Choose and record the run's defaults on `path`'s images; return their rows (never scored)."""
    held = _truth(path, scene, rows, request, say, skipped, unreadable)
    if not held and skipped[-1]:
        raise InputError(f"--calibrate {path}: none of its boxes on these images can be scored (each named above); "
                         f"fix their coordinates, or give --boxes-size when they are in another image size's pixels")
    if not held:
        split = f" (--split {request.split})" if request.split else ""
        raise InputError(f"--calibrate {path}: none of its images is among the rows of {scene.labels_path}{split}; "
                         f"give the labels of its images")
    both = sorted(set(held) & set(truth or {}))
    if both:
        raise InputError(f"--boxes {boxes_path}: {both[0]}{f' (and {len(both) - 1} more)' if len(both) > 1 else ''} is "
                         f"also in --calibrate {path}; calibrate and score on separate images")
    cal_rows = rows[np.isin(scene.ids[rows], list(held))]
    options = request.options
    layers = [options.layer] if options.layer else list(scene.model.map_layers())
    candidates = [(m, layer) for m in ([options.method] if options.method else list(HEATMAPS))
                  for layer in (["transition"] if m == "cam" else layers)]
    base = BoxRules(min_area=options.min_area if options.min_area is not None else BoxRules.min_area,
                    max_boxes=options.max_boxes or BoxRules.max_boxes)
    count = sum(len(boxes) for found in held.values() for boxes in found.values())
    say(f"calibrating on {len(cal_rows)} images ({count} boxes) of {path}")
    try:
        best, own, report = calibrate(lambda m, layer: _entries(scene, cal_rows, held, m, layer, unreadable), candidates,
                                      base, options.thresholds, say)
    except ValueError as exc:
        raise InputError(f"--calibrate {path}: {exc}; calibrate on other images or a trained run") from None
    chosen_on = {"boxes": str(Path(path).resolve()), "labels": str(scene.labels_path.resolve()), "split": request.split,
                 "images": len(cal_rows), "image_digests": sorted(scene.data.digest(r) for r in cal_rows),
                 "family": describe(scene.data, cal_rows, f"the films of {Path(path).name}")}
    method, layer, rules = best
    written = write_defaults(run_dir, Settings(method, layer, rules, own), chosen_on, report)
    mine = ", ".join(f"{f} {_name(m, lay)} {rules_text(r)}" for f, (m, lay, r) in own.items())
    say(f"chose {_name(method, layer)} {rules_text(rules)}" + (f"; per finding: {mine}" if mine else "")
        + f" → {written}")
    return cal_rows


def _name(method: str, layer: str) -> str:
    return method if method == "cam" else f"{method} at {layer}"


def _entries(scene: Scene, rows: np.ndarray, held: Truth, methods: list[str], layer: str,
             unreadable: Skips) -> dict[str, list[Entry]]:
    """The calibration entries of each of `methods` at `layer` on `rows`, in one pass ("cam" in a pass of its own)."""
    out: dict[str, list[Entry]] = {m: [] for m in methods}
    passes = [("cam",)] if "cam" in methods else []
    passes += [tuple(m for m in methods if m != "cam")] if any(m != "cam" for m in methods) else []
    for kinds in passes:
        for row, _, maps in kinds_batches(scene.model, scene.data, rows, scene.size, scene.batch_size, scene.device,
                                          kinds, layer, lambda m: unreadable(f"unreadable image {m}"),
                                          lambda r: [scene.findings.index(f) for f in
                                                                        held[scene.ids[r]]]):
            width, height = scene.data.original_size(row)
            scale = (width / scene.size, height / scene.size)
            for finding, boxes in held[scene.ids[row]].items():
                for method in kinds:
                    out[method].append(entry(finding, maps[method][scene.findings.index(finding)], boxes, scale))
    return out


def _refuse_calibration_images(settings: Settings, scene: Scene, rows: np.ndarray, boxes_path: Path | None) -> None:
    """An error naming the first scored image the recorded defaults were chosen on, if any."""
    if not settings.calibration_digests:
        return
    for row in rows:
        if scene.data.digest(row) in settings.calibration_digests:
            raise InputError(f"--boxes {boxes_path}: {scene.ids[row]} was used to choose this run's localization "
                             f"defaults ({settings.source}); score other images, or give --method, --layer and "
                             f"--thresholds")


def _draw(scene: Scene, rows: np.ndarray, truth: Truth | None, settings: Settings, request: Request,
          folder: OutputFolder, unreadable: Skips, progress: Callable[[int, int], None]) -> Drawing:
    """Every finding's boxes on every image, one pass over the images per heatmap in use (an unreadable image
    is named once, through `unreadable`)."""
    drawing = Drawing()
    groups = settings.groups(scene.findings)
    done, total = 0, len(rows) * len(groups)
    progress(done, total)
    for (method, layer), findings in groups.items():
        for row, probs, maps in map_batches(scene.model, scene.data, rows, scene.size, scene.batch_size, scene.device,
                                            method, layer, lambda m: unreadable(f"unreadable image {m}")):
            _draw_image(scene, row, probs, maps, findings, None if truth is None else truth.get(scene.ids[row], {}),
                        settings, request, folder, drawing)
            done += 1
            progress(done, total)
    return drawing


def _draw_image(scene: Scene, row: int, probs: np.ndarray, maps: np.ndarray, findings: list[str],
                truth: dict[str, list[Box]] | None, settings: Settings, request: Request, folder: OutputFolder,
                drawing: Drawing) -> None:
    """Boxes, map peaks and overlays of one image, for those of `findings` that are probable or true."""
    image_id = scene.ids[row]
    width, height = scene.data.original_size(row)
    scale = (width / scene.size, height / scene.size)
    for finding in findings:
        j = scene.findings.index(finding)
        p, wanted = float(probs[j]), truth is not None and finding in truth
        if p < request.min_score and not wanted:
            continue
        found = boxes_from_map(maps[j], settings.choice_for(finding)[2], scale, finding)
        if wanted:
            py, px = np.unravel_index(int(maps[j].argmax()), maps[j].shape)
            drawing.peaks.append({"Image Index": image_id, "Finding Label": finding, "x": (px + 0.5) * scale[0],
                                  "y": (py + 0.5) * scale[1]})
        drawing.records += [{"Image Index": image_id, "Finding Label": finding, "x": b[0], "y": b[1], "w": b[2],
                             "h": b[3], "score": round(p * s, 4)} for b, s in found]
        if drawing.drawn < request.overlays and (wanted or truth is None):
            overlay(scene.data.picture(row), maps[j], [(b, round(p * s, 2)) for b, s in found], truth.get(finding, []) if truth else [],
                    f"{image_id}  {finding}  p = {p:.2f}",
                    Path(folder.path(f"overlays/{Path(image_id).stem}_{finding}.png")))
            drawing.drawn += 1


def _write(drawing: Drawing, truth: Truth | None, scene: Scene, rows: np.ndarray, settings: Settings,
           family: dict[str, Any], folder: OutputFolder, say: Callable[[str], None]) -> dict[str, Any] | None:
    """boxes.csv, and with true boxes the metrics in localization.json (returned), staged in `folder`."""
    predicted = pd.DataFrame(drawing.records, columns=BOX_FIELDS)
    predicted.round({"x": 1, "y": 1, "w": 1, "h": 1}).to_csv(folder.path("boxes.csv"), index=False)
    say(f"{len(predicted)} boxes on {predicted['Image Index'].nunique()} images → {folder.root / 'boxes.csv'}")
    if truth is None:
        return None
    scored = set(scene.ids[rows])
    table = pd.DataFrame([(i, f, *b) for i, found in truth.items() if i in scored for f, boxes in found.items()
                          for b in boxes], columns=["Image Index", "Finding Label", "x", "y", "w", "h"])
    peaks = pd.DataFrame(drawing.peaks, columns=["Image Index", "Finding Label", "x", "y"])
    metrics = localization_metrics(predicted, table, scene.findings, peaks)
    metrics["heatmap"] = settings.heatmap()
    metrics["scored_family"] = family
    Path(folder.path("localization.json")).write_text(json_text(metrics), encoding="utf-8")
    return metrics
