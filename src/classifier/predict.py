"""`classifier predict RUN INPUTS... -o predictions.parquet`: a trained run applied to films without labels.

One row per readable image: `id`, `path`, a DICOM film's `StudyInstanceUID` and `SOPInstanceUID` (and
`PatientID`, only when asked for: `patient_id`; the columns appear when a DICOM film was read, null for
the other rows), `width` and `height` (its own pixels), the probability of
every finding of the run (float32, named as the finding, as `score` writes them) and a 1/0 decision
per finding at the run's operating point (`<Finding>_decision`; operating_points.py). `--boxes` adds
`boxes` (a list of finding, x, y, w, h, score in the image's own pixels) and `--heatmaps` one PNG per
finding (`<Finding>_heatmap`, the map on the 0-255 scale the box rules read, at the network's input
size), both drawn as `localize` draws them: the run's recorded localization defaults, else the
built-in ones (defaults.py), boxes for findings at least `min_score` probable. `html` also writes the
study viewer (viewer.py) for the first `html_films` films.

The images stream (sources.py) in chunks of CHUNK: each chunk is decoded on worker processes
(decoding.py) while the network reads the one before, then written as its own part file in a folder
beside the output, with a `.done.json` last; `resume` skips done chunks. When every chunk is done the
parts are copied in order into the output (and the page), atomically, and the folder removed. At most
`2 x workers` decoded chunks are held, so memory stays flat however many films there are.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import deque
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from cxrcore.errors import InputError, ToolkitError
from cxrcore.output import FolderOf, Outputs, atomic_path, atomic_text, encode_metadata, exclusive
from cxrcore.runs import run_files

from . import __version__, operating_points
from .boxes import boxes_from_map, normalise
from .config import TrainConfig
from .data import ImageDataset, keep_findings, model_input, prepare
from .decoding import Decoded, Decoder
from .defaults import Settings, read_defaults
from .heatmaps import class_maps, grad_cam_kinds
from .inference import pick_device, predict
from .models import WeaklySupervisedNet
from .runs import load_run
from .sources import IMAGE_SUFFIXES, Entry, Skip, entries
from .viewer import HEAT_PX, entries_text, film_entry, heat_uri, read_entries, write_page

CHUNK = 128  # images per part file (and per resumable step)
ROUNDING = 1e-4  # the forward and the map passes' probabilities differ by about 1e-7
PARTS_SUFFIX = ".parts"
BOX_TYPE = pa.list_(pa.struct([("finding", pa.string()), ("x", pa.float64()), ("y", pa.float64()),
                               ("w", pa.float64()), ("h", pa.float64()), ("score", pa.float64())]))


@dataclass(frozen=True)
class Request:
    """What `predict` was asked for besides the run, the inputs and the output."""

    thresholds: tuple[str, ...] = ()  # --threshold values: 0.3 or Finding=0.3
    heatmaps: bool = False
    boxes: bool = False
    min_score: float = 0.5
    html: Path | None = None
    html_films: int = 200
    images: Path | None = None  # relative paths of lists, tables and --labels are taken from here
    labels: Path | None = None  # the run's training labels, for a run without recorded operating points
    device: str = "auto"
    workers: int = 1
    resume: bool = False
    patient_id: bool = False  # carry a DICOM film's PatientID to the output


@dataclass
class Outcome:
    """What a run did: rows written, inputs skipped (each named), films in the page, the thresholds used."""

    rows: int = 0
    skipped: list[Skip] = field(default_factory=list)
    films: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass
class Scene:
    """The run as `predict` applies it."""

    model: WeaklySupervisedNet
    config: TrainConfig
    findings: list[str]
    device: torch.device
    thresholds: np.ndarray
    localization: Settings | None  # None: neither heatmaps, boxes nor a page were asked for


def predict_images(run_dir: Path, inputs: list[Path], output: Path, request: Request = Request(),
                   say: Callable[[str], None] = print, progress: Callable[[int], None] = lambda n: None) -> Outcome:
    """Write the predictions for every image of `inputs` to `output` (and the page to `request.html`)."""
    # every file read is an input, never an output: the run's files, and each image as it is found
    sources = [*(FolderOf(p, IMAGE_SUFFIXES) for p in inputs), request.labels, *run_files(run_dir)]
    with Outputs([output, request.html], sources) as outputs, \
            exclusive(output, *([request.html] if request.html else [])):
        outcome = Outcome()
        scene = _scene(run_dir, request, say, outcome)
        state = _fingerprint(run_dir, inputs, request, scene)
        parts = _prepare_parts(output, state, request.resume)
        try:
            _run(inputs, parts, output, request, scene, outputs, outcome, say, progress)
        except ToolkitError:
            # Bad input or settings: the parts cannot be resumed. A killed or interrupted run keeps them.
            shutil.rmtree(parts, ignore_errors=True)
            raise
        _merge(parts, output, request, scene, outputs, outcome, run_dir)
        outputs.commit()
        shutil.rmtree(parts)
        return outcome


# --- the run and its settings --------------------------------------------------------------------

def _scene(run_dir: Path, request: Request, say: Callable[[str], None], outcome: Outcome) -> Scene:
    device = pick_device(request.device)
    model, config, findings, _ = load_run(run_dir, device)
    config = replace(config, loader_workers=0)  # the chunk is in memory already
    outcome.thresholds, outcome.source = _operating_points(run_dir, model, config, findings, request, device, say)
    settings = None
    if request.heatmaps or request.boxes or request.html:
        settings = read_defaults(run_dir, config.model.arch, model.map_layers())
        for method, layer in settings.groups(findings):
            if method != "cam" and layer not in model.map_layers():
                raise InputError(f"{run_dir}: its localization defaults read {layer}, which this {config.model.arch} "
                                 f"lacks; calibrate them again with `classifier localize --calibrate`")
    thresholds = np.array([outcome.thresholds[f] for f in findings], np.float32)
    return Scene(model, config, findings, device, thresholds, settings)


def _operating_points(run_dir: Path, model: WeaklySupervisedNet, config: TrainConfig, findings: list[str],
                      request: Request, device: torch.device,
                      say: Callable[[str], None]) -> tuple[dict[str, float], str]:
    """Finding → threshold: --threshold where given, else the run's recorded points, else (an older run)
    chosen now on the validation split of --labels; and where they came from."""
    given = operating_points.parse_overrides(request.thresholds, findings)
    if len(given) == len(findings):
        return given, "--threshold"
    recorded = operating_points.read(run_dir, findings)
    source = f"{run_dir / operating_points.POINTS_FILE} (Youden's J on the validation split)"
    if recorded is None:
        if request.labels is None:
            raise InputError(f"{run_dir}: no {operating_points.POINTS_FILE} (trained before operating points were "
                             f"recorded); give --labels with the labels it was trained on to choose them on its "
                             f"validation split, or --threshold 0.5")
        data = keep_findings(prepare(request.labels, request.images, config.seed), findings)
        rows = data.rows("val")
        probs = predict(model, ImageDataset.of(data, rows, config.size), config.batch_size, device, config,
                        lambda m: say(f"skipped unreadable validation image {m}"))
        chosen = operating_points.choose(data.labels[rows], probs, findings)
        recorded = {f: chosen[f]["threshold"] for f in findings}
        source = f"Youden's J on the {len(rows)} validation images of {request.labels}, chosen now"
        say(f"operating points: {source} (the run records none)")
    if given:
        source += f"; --threshold for {', '.join(given)}"
    return {**recorded, **given}, source


def _fingerprint(run_dir: Path, inputs: list[Path], request: Request, scene: Scene) -> str:
    """What must match for a resumed run to continue an earlier one: the checkpoint, inputs and settings."""
    checkpoint = [str(p.resolve()) + f":{p.stat().st_size}:{p.stat().st_mtime_ns}"
                  for p in sorted(run_dir.glob("*.pt"))]
    state = {"version": __version__, "checkpoint": checkpoint, "inputs": [str(p.resolve()) for p in inputs],
             "images": str(request.images), "thresholds": scene.thresholds.tolist(), "heatmaps": request.heatmaps,
             "boxes": request.boxes, "min_score": request.min_score, "html": request.html is not None,
             "html_films": request.html_films, "chunk": CHUNK, "patient_id": request.patient_id,
             "localization": scene.localization.heatmap() if scene.localization else None}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def parts_folder(output: Path) -> Path:
    return output.with_name(f".{output.name}{PARTS_SUFFIX}")


def _prepare_parts(output: Path, state: str, resume: bool) -> Path:
    parts = parts_folder(output)
    if parts.exists():
        if not resume:
            raise InputError(f"{parts} holds an unfinished run; pass --resume to continue it, or delete the folder")
        try:
            recorded = json.loads((parts / "state.json").read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{parts} is damaged (no readable state.json); delete it to start afresh") from None
        if recorded != state:
            raise InputError(f"{parts} was made from another run, other inputs or other options; delete it to start "
                             f"afresh")
        return parts
    parts.mkdir(parents=True)
    atomic_text(parts / "state.json", json.dumps({"fingerprint": state}))
    return parts


# --- chunks ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    """Entries [start, start + len) of the stream."""

    index: int
    start: int
    entries: list[Entry]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(f"{e.id}\t{e.path}" for e in self.entries).encode()).hexdigest()


def _chunks(stream: Iterable[Entry | Skip], on_skip: Callable[[Skip], None]) -> Iterator[Chunk]:
    """The entries in chunks of CHUNK; skips are handed to `on_skip` as they come."""
    def images() -> Iterator[Entry]:
        for item in stream:
            if isinstance(item, Skip):
                on_skip(item)
            else:
                yield item

    found, index, start = iter(images()), 0, 0
    while chunk := list(islice(found, CHUNK)):
        yield Chunk(index, start, chunk)
        index, start = index + 1, start + len(chunk)


def _run(inputs: list[Path], parts: Path, output: Path, request: Request, scene: Scene, outputs: Outputs,
         outcome: Outcome, say: Callable[[str], None], progress: Callable[[int], None]) -> None:
    def skip(item: Skip) -> None:
        outcome.skipped.append(item)
        say(f"skipped {item.source}: {item.reason}")

    pending: deque[tuple[Chunk, Any]] = deque()
    found = 0
    with Decoder(request.workers) as decoder:
        for chunk in _chunks(entries(inputs, request.images, say), skip):
            outputs.add_inputs(*(e.path for e in chunk.entries))  # an image listed or linked may be an output
            found += len(chunk.entries)
            done = parts / f"{chunk.index:06d}.done.json"
            if done.exists():
                _recount(done, chunk, outcome, skip, progress)
                continue
            films = [request.html is not None and chunk.start + k < request.html_films
                     for k in range(len(chunk.entries))]
            pending.append((chunk, decoder.submit([str(e.path) for e in chunk.entries], scene.config.size, films,
                                                  request.patient_id)))
            while len(pending) >= decoder.ahead:
                _finish(*pending.popleft(), parts, request, scene, outcome, skip, progress)
        while pending:
            _finish(*pending.popleft(), parts, request, scene, outcome, skip, progress)
    if found == 0:
        raise InputError(f"no image in {', '.join(map(str, inputs))} (folders are searched for "
                         f"{' '.join(IMAGE_SUFFIXES)}); nothing was written, {output} is untouched")
    if outcome.rows == 0:
        raise InputError(f"not one of the {found} images could be read (each is named above); nothing was written, "
                         f"{output} is untouched")


def _recount(done: Path, chunk: Chunk, outcome: Outcome, skip: Callable[[Skip], None],
             progress: Callable[[int], None]) -> None:
    """A chunk a stopped run finished: counted and its skips named again, not redone."""
    record = json.loads(done.read_text())
    if record["digest"] != chunk.digest:
        raise InputError(f"{done.parent}: the inputs changed since the stopped run (images {chunk.start + 1}-"
                         f"{chunk.start + len(chunk.entries)} differ); delete the folder to start afresh")
    outcome.rows += record["rows"]
    outcome.films += record["films"]
    for source, reason in record["skipped"]:
        skip(Skip(source, reason))
    progress(len(chunk.entries))


def _finish(chunk: Chunk, future: Any, parts: Path, request: Request, scene: Scene, outcome: Outcome,
            skip: Callable[[Skip], None], progress: Callable[[int], None]) -> None:
    """Apply the network to a decoded chunk and write its part files, the `.done.json` last."""
    decoded: list[Decoded] = future.result()
    skipped = []
    for entry, d in zip(chunk.entries, decoded):
        if d.error is not None:
            reason = d.error.removeprefix(f"{entry.path}: ")
            skipped.append(Skip(str(entry.path), reason))
            skip(skipped[-1])
    ok = [k for k, d in enumerate(decoded) if d.error is None]
    table, films = _predict_chunk(chunk, decoded, ok, request, scene)
    if table is not None:
        with atomic_path(parts / f"{chunk.index:06d}.parquet") as tmp:
            pq.write_table(table, tmp)
    if films:
        atomic_text(parts / f"{chunk.index:06d}.films.jsonl", entries_text(films))
    atomic_text(parts / f"{chunk.index:06d}.done.json",
                json.dumps({"digest": chunk.digest, "rows": len(ok), "films": len(films),
                            "skipped": [[s.source, s.reason] for s in skipped]}))
    outcome.rows += len(ok)
    outcome.films += len(films)
    progress(len(chunk.entries))


# --- the network on one chunk ----------------------------------------------------------------------

def _predict_chunk(chunk: Chunk, decoded: list[Decoded], ok: list[int], request: Request,
                   scene: Scene) -> tuple[pa.Table | None, list[str]]:
    """The chunk's rows, and the page's entries of its films."""
    if not ok:
        return None, []
    images = np.stack([decoded[k].image for k in ok])
    config = scene.config
    probs = predict(scene.model, ImageDataset(images.__getitem__, np.zeros((len(ok), 0), np.float32)),
                    config.batch_size, scene.device, config, lambda m: None)
    decisions = (probs >= scene.thresholds).astype(np.int8)
    sizes = [decoded[k].original for k in ok]
    with_film = [n for n, k in enumerate(ok) if decoded[k].film is not None]
    local = _localize(images, sizes, probs, request, scene, with_film) if scene.localization else None
    columns: dict[str, pa.Array] = {
        "id": pa.array([chunk.entries[k].id for k in ok], pa.string()),
        "path": pa.array([str(chunk.entries[k].path) for k in ok], pa.string())}
    dicom = [decoded[k].identifiers or {} for k in ok]
    for name in dict.fromkeys(name for found in dicom for name in found):
        columns[name] = pa.array([found.get(name) for found in dicom], pa.string())
    columns["width"] = pa.array([s[0] for s in sizes], pa.int32())
    columns["height"] = pa.array([s[1] for s in sizes], pa.int32())
    for j, name in enumerate(scene.findings):
        columns[name] = pa.array(probs[:, j], pa.float32())
    for j, name in enumerate(scene.findings):
        columns[f"{name}_decision"] = pa.array(decisions[:, j], pa.int8())
    if request.boxes:
        columns["boxes"] = pa.array([[{"finding": scene.findings[j], "x": x, "y": y, "w": w, "h": h, "score": s}
                                      for j, x, y, w, h, s in found] for found in local.boxes], BOX_TYPE)
    if request.heatmaps:
        for j, name in enumerate(scene.findings):
            columns[f"{name}_heatmap"] = pa.array([pngs[j] for pngs in local.pngs], pa.binary())
    films = [film_entry(chunk.entries[ok[n]].id, str(chunk.entries[ok[n]].path), sizes[n], decoded[ok[n]].film,
                        probs[n], decisions[n], local.strips[n], local.boxes[n]) for n in with_film]
    return pa.table(columns), films


@dataclass
class Localized:
    """Per image of a chunk: its boxes (finding index, x, y, w, h, score), heatmap PNGs per finding (with
    --heatmaps) and the page's heatmap strip (for films in the page)."""

    boxes: list[list[tuple[int, float, float, float, float, float]]]
    pngs: list[list[bytes | None]]
    strips: dict[int, str]


def _localize(images: np.ndarray, sizes: list[tuple[int, int]], probs: np.ndarray, request: Request, scene: Scene,
              with_film: list[int]) -> Localized:
    """Heatmaps and boxes as `localize` draws them: one pass over the chunk per heatmap in use, in the same
    batches, each map read where the finding uses that heatmap. Only the maps in use are computed (Grad-CAM
    needs a backward pass per map): with --heatmaps and for the page's films every finding's, for --boxes
    those of findings the forward pass found probable (`probs`, with a margin for rounding; the map pass's
    own probability then decides, as in `localize`)."""
    settings, config, findings = scene.localization, scene.config, scene.findings
    n = len(images)
    out = Localized([[] for _ in range(n)], [[None] * len(findings) for _ in range(n)], {})
    small = {k: np.zeros((len(findings), HEAT_PX, HEAT_PX), np.float32) for k in with_film}
    scene.model.eval()
    for (method, layer), group in settings.groups(findings).items():
        columns = [findings.index(f) for f in group]
        wanted = [[j for j in columns if request.heatmaps or k in small
                   or (request.boxes and probs[k, j] >= request.min_score - ROUNDING)] for k in range(n)]
        for start in range(0, n, config.batch_size):
            batch = range(start, min(n, start + config.batch_size))
            if not any(wanted[k] for k in batch):
                continue
            x = model_input(torch.from_numpy(images[batch.start:batch.stop]), scene.device)
            with torch.no_grad():  # Grad-CAM turns gradients on for itself
                if method == "cam":
                    found, maps = class_maps(scene.model, x)
                else:
                    found, kinds = grad_cam_kinds(scene.model, x, layer, (method,), [wanted[k] for k in batch])
                    maps = kinds[method]
            for k in batch:
                chosen, p = maps[k - start].float().cpu().numpy(), found[k - start].float().cpu().numpy()
                _draw(k, chosen, p, wanted[k], sizes[k], request, scene, out, small.get(k))
    for k in with_film:
        out.strips[k] = heat_uri(small[k])
    for boxes in out.boxes:
        boxes.sort(key=lambda b: (b[0], -b[5]))
    return out


def _draw(k: int, maps: np.ndarray, probs: np.ndarray, columns: list[int], size: tuple[int, int], request: Request,
          scene: Scene, out: Localized, small: np.ndarray | None) -> None:
    """Image k's boxes, heatmap PNGs and page heatmaps for the findings of `columns`, from its maps."""
    scale = (size[0] / scene.config.size, size[1] / scene.config.size)
    for j in columns:
        finding = scene.findings[j]
        if (request.boxes or small is not None) and probs[j] >= request.min_score:
            rules = scene.localization.choice_for(finding)[2]
            out.boxes[k] += [(j, *b, round(float(probs[j]) * s, 4))
                             for b, s in boxes_from_map(maps[j], rules, scale, finding)]
        norm = normalise(maps[j])
        if norm is None:
            continue
        if request.heatmaps:
            out.pngs[k][j] = _png(norm)
        if small is not None:
            small[j] = np.asarray(Image.fromarray(norm.astype(np.float32), mode="F").resize((HEAT_PX, HEAT_PX),
                                                                                               Image.BILINEAR))


def _heatmap_name(method: str, layer: str) -> str:
    return method if method == "cam" else f"{method} at {layer}"


def _png(norm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(norm), 0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# --- the outputs -----------------------------------------------------------------------------------

def _merge(parts: Path, output: Path, request: Request, scene: Scene, outputs: Outputs, outcome: Outcome,
           run_dir: Path) -> None:
    """Copy the parts, in chunk order, into the (temporary) output and page."""
    meta = {"run": str(run_dir), "operating_points": {f: float(t) for f, t in zip(scene.findings, scene.thresholds)},
            "operating_points_source": outcome.source, "images": outcome.rows, "skipped": len(outcome.skipped)}
    if scene.localization is not None:
        meta["localization"] = scene.localization.heatmap()
        meta["min_score"] = request.min_score
    files = sorted(parts.glob("*.parquet"))
    schema = max((pq.read_schema(f) for f in files), key=len)  # with the DICOM columns, if a part has them
    schema = schema.with_metadata(encode_metadata({"tool": f"classifier {__version__}", **meta}))
    with pq.ParquetWriter(outputs.path(output), schema) as writer:
        for part in files:
            table = pq.read_table(part)
            writer.write_table(pa.table([table.column(f.name) if f.name in table.column_names
                                         else pa.nulls(len(table), f.type) for f in schema], schema=schema))
    if request.html is None:
        return
    header = {"findings": scene.findings, "thresholds": [float(t) for t in scene.thresholds],
              "source": outcome.source, "run": str(run_dir), "images": outcome.rows, "films": outcome.films,
              "heat_px": HEAT_PX, "min_score": request.min_score, "heatmap": meta.get("localization"),
              "methods": [_heatmap_name(*scene.localization.choice_for(f)[:2]) for f in scene.findings]}
    films = (entry for part in sorted(parts.glob("*.films.jsonl")) for entry in read_entries(part))
    with open(outputs.path(request.html), "w", encoding="utf-8") as fh:
        write_page(fh, header, films, str(output))
