"""A prepared image store: every image decoded, windowed and resized once, kept as one uint8 array.

`classifier prepare LABELS --images DIR --size S -o STORE` writes STORE/ with:
- `images.u8`: a raw (N, S, S) uint8 array, read through `np.memmap`, so any number of DataLoader
  workers and training processes share the same pages of the file without a copy;
- `index.parquet`: image_id, image_path, row, width, height (the original size, to scale boxes), ok,
  reason (why an image could not be decoded; its row stays blank and reading it is an error);
- `store.json`: the size, the number of images and where they came from;
- `.manifest.json`: the output policy's record that these files are `prepare`'s (cxrcore.output).
Decoding runs in chunks on worker processes, each within the pixel budget (`images.MAX_PIXELS`,
`--max-pixels`), into `.progress/images.u8`; each finished chunk is recorded, so a killed `prepare`
continues with `--resume` where it stopped. The finished array, index and store.json replace an
earlier store only at the end. The decode is `images.decode`, the same as reading the files directly,
so `fit --store` and `fit --images` see the same tensors. A store is checked when it is opened (each
file's schema, the rows' range), so a damaged one is one line, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.output import OutputFolder, atomic_text
from cxrcore.workers import watch_parent

from .images import MAX_PIXELS, ImageError, decode

ARRAY, INDEX, META, PROGRESS = "images.u8", "index.parquet", "store.json", ".progress"
FORMAT = "chestxray-toolkit/store-1"
CHUNK = 64  # images per unit of work (and per resumable step)
def _text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


INDEX_COLUMNS = {"image_id": _text, "image_path": _text, "row": pa.types.is_integer, "width": pa.types.is_integer,
                 "height": pa.types.is_integer, "ok": pa.types.is_boolean, "reason": _text}


@dataclass(frozen=True)
class Job:
    """Rows [start, start + len(paths)) of the store and their files."""

    start: int
    paths: list[str]


def prepare_store(images: list[tuple[str, Path]], size: int, out: Path, workers: int, resume: bool,
                  source: str, say: Callable[[str], None] = print, progress: Callable[[int], None] = lambda n: None,
                  max_pixels: int = MAX_PIXELS, inputs: Iterable[Path] = ()) -> pd.DataFrame:
    """Decode `images` ((image_id, path) pairs, one row each) into the store at `out`; return its index.
    `inputs`: the files the command read (its labels), which no file of the store may replace."""
    with OutputFolder(out, "classifier prepare", inputs) as folder:
        steps = _start(folder, images, size, source, resume, max_pixels)
        results: dict[int, dict] = {}
        jobs = [Job(start, [str(p) for _, p in images[start:start + CHUNK]]) for start in range(0, len(images), CHUNK)]
        for job in jobs:
            done = _step(steps / f"{job.start:09d}.json")
            if done is not None:
                results[job.start] = done
                progress(len(job.paths))
        todo = [job for job in jobs if job.start not in results]
        for job, result in _run(todo, steps / ARRAY, size, len(images), workers, max_pixels):
            atomic_text(steps / f"{job.start:09d}.json", json.dumps(result))
            results[job.start] = result
            progress(len(job.paths))
        index = _index(images, results)
        for row in index[~index["ok"]].itertuples():
            say(f"skipped unreadable image {row.reason}")
        if not index["ok"].any():
            raise InputError(f"not one of the {len(index)} images could be decoded (each is named above); "
                             f"check --images and the image paths")
        pq.write_table(pa.Table.from_pandas(index, preserve_index=False), folder.path(INDEX))
        Path(folder.path(META)).write_text(json.dumps({"format": FORMAT, "size": size, "count": len(index),
                                                       "decoded": int(index["ok"].sum()), "source": source},
                                                      indent=2), encoding="utf-8")
        folder.declare(ARRAY)
        os.replace(steps / ARRAY, out / ARRAY)
        shutil.rmtree(steps)
        folder.commit()
        return index


def _start(folder: OutputFolder, images: list[tuple[str, Path]], size: int, source: str, resume: bool,
           max_pixels: int) -> Path:
    """The progress folder of this preparation: a new one with its (sparse) array, or, with `resume`, the
    one a stopped run left, checked to be of the same labels, images, size and budget, and whole."""
    steps = folder.root / PROGRESS
    fingerprint = hashlib.sha256(json.dumps([size, max_pixels, source, [str(p) for _, p in images]]).encode()).hexdigest()
    if steps.exists():
        if not resume:
            raise InputError(f"{folder.root} holds an unfinished preparation; pass --resume to continue it, or delete it")
        try:
            recorded = (steps / "state.json").read_text()
        except (OSError, UnicodeDecodeError):
            raise InputError(f"{steps / 'state.json'}: missing or unreadable; delete {steps} to start afresh") from None
        if recorded != fingerprint:
            raise InputError(f"{folder.root} was being prepared from other labels, images, size or --max-pixels; "
                             f"delete {steps} to start afresh")
        array = steps / ARRAY
        if not array.is_file() or array.stat().st_size != len(images) * size * size:
            raise InputError(f"{array}: missing or not {len(images)} images of {size} px, so the preparation cannot "
                             f"go on; delete {steps} to start afresh")
        return steps
    folder.declare(f"{PROGRESS}/")
    steps.mkdir()
    try:
        with (steps / ARRAY).open("wb") as fh:
            fh.truncate(len(images) * size * size)  # sparse until written
    except OSError as exc:  # over the file size limit: nothing to resume
        shutil.rmtree(steps)
        raise OSError(exc.errno, exc.strerror, str(steps / ARRAY)) from None
    atomic_text(steps / "state.json", fingerprint)  # last: a progress folder with its state is whole
    return steps


def _step(path: Path) -> dict | None:
    """A finished chunk's record, or None when it is absent or damaged (the chunk is decoded again)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(result, dict) and isinstance(result.get("sizes"), dict) and isinstance(result.get("errors"), dict):
        return result
    return None


def _run(jobs: list[Job], array: Path, size: int, count: int, workers: int,
         max_pixels: int) -> Iterator[tuple[Job, dict]]:
    """Each job's result as it finishes, on `workers` processes (1: in this process)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, decode_rows(job, array, size, max_pixels)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=watch_parent,
                               initargs=(os.getpid(),))
    try:
        pending = {pool.submit(decode_rows, job, array, size, max_pixels): job for job in jobs[: 2 * workers]}
        queue = iter(jobs[2 * workers:])
        while pending:
            for future in wait(pending, return_when=FIRST_COMPLETED).done:
                job = pending.pop(future)
                yield job, future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(decode_rows, nxt, array, size, max_pixels)] = nxt
    finally:
        pool.shutdown(cancel_futures=True)


def decode_rows(job: Job, array: Path, size: int, max_pixels: int = MAX_PIXELS) -> dict:
    """Decode one job's files into their rows of the array; sizes and errors by row. The rows are written
    with `pwrite`, so a full disk is an OSError naming the array (a write through a memory map would
    kill the worker)."""
    sizes, errors = {}, {}
    fd = os.open(array, os.O_WRONLY)
    try:
        for offset, path in enumerate(job.paths):
            row = job.start + offset
            try:
                pixels, sizes[row] = decode(path, size, max_pixels)
            except ImageError as exc:
                errors[row] = str(exc)
                continue
            _write_all(fd, pixels.tobytes(), row * size * size, array)
    finally:
        os.close(fd)
    return {"sizes": {str(k): list(v) for k, v in sizes.items()}, "errors": {str(k): v for k, v in errors.items()}}


def _write_all(fd: int, data: bytes, offset: int, array: Path) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.pwrite(fd, view, offset)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(array)) from None
        view, offset = view[written:], offset + written


def _index(images: list[tuple[str, Path]], results: dict[int, dict]) -> pd.DataFrame:
    sizes = {int(k): v for r in results.values() for k, v in r["sizes"].items()}
    errors = {int(k): v for r in results.values() for k, v in r["errors"].items()}
    return pd.DataFrame({"image_id": [i for i, _ in images], "image_path": [str(p) for _, p in images],
                         "row": np.arange(len(images)), "width": [sizes.get(n, (0, 0))[0] for n in range(len(images))],
                         "height": [sizes.get(n, (0, 0))[1] for n in range(len(images))],
                         "ok": [n in sizes for n in range(len(images))],
                         "reason": [errors.get(n, "") for n in range(len(images))]})


class ImageStore:
    """A prepared store, read-only, checked when opened: store.json's fields, index.parquet's columns, each
    row within the array, the array's length; any fault is one line naming the file. The array is opened
    on first use in each process (a DataLoader worker or a training rank maps the same file; nothing is
    copied or pickled)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = self._meta()
        if meta.get("format") != FORMAT:
            raise InputError(f"{self.folder}: not a store of this version ({meta.get('format')!r}); prepare it again")
        self.size, self.count = _whole(meta, "size", 1, self.folder / META), _whole(meta, "count", 1, self.folder / META)
        self.index = self._index()
        array = self.folder / ARRAY
        if not array.is_file() or array.stat().st_size != self.count * self.size * self.size:
            raise InputError(f"{array}: missing or not {self.count} images of {self.size} px; prepare the store again")
        self._rows = dict(zip(self.index["image_id"].astype(str), self.index["row"]))
        self._array: np.memmap | None = None

    def _meta(self) -> dict[str, Any]:
        path = self.folder / META
        try:
            with path.open("rb") as fh:
                text = fh.read(1_000_001)
            meta = json.loads(text) if len(text) <= 1_000_000 else None
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.folder}: not a prepared store ({META}: {exc.__class__.__name__}); make one with "
                             f"`classifier prepare`") from None
        if not isinstance(meta, dict):
            raise InputError(f"{path}: not a store's description (a JSON object of a few fields); prepare the store "
                             f"again")
        return meta

    def _index(self) -> pd.DataFrame:
        path = self.folder / INDEX
        try:
            table = pq.read_table(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise InputError(f"{self.folder}: not a prepared store ({INDEX}: {exc.__class__.__name__}); make one with "
                             f"`classifier prepare`") from None
        for name, right in INDEX_COLUMNS.items():
            if name not in table.column_names or not right(table.schema.field(name).type):
                found = table.schema.field(name).type if name in table.column_names else "missing"
                raise InputError(f"{path}: column {name!r} is {found}; prepare the store again")
        index = table.to_pandas()
        if len(index) != self.count:
            raise InputError(f"{path}: {len(index)} rows where store.json says {self.count}; prepare the store again")
        bad = np.flatnonzero(index["row"].to_numpy() != np.arange(len(index)))  # row n of the array is line n
        if len(bad):
            raise InputError(f"{path}: image {index['image_id'].iat[bad[0]]!r} on line {bad[0]} names row "
                             f"{index['row'].iat[bad[0]]} of the {self.count} images; prepare the store again")
        if index[["image_id", "image_path", "ok"]].isna().any().any() or (index[["width", "height"]] < 0).any().any():
            raise InputError(f"{path}: blank ids, paths or flags, or negative sizes; prepare the store again")
        return index

    def row_of(self, image_id: str) -> int | None:
        return self._rows.get(str(image_id))

    def image(self, row: int) -> np.ndarray:
        """Row `row` as a (size, size) uint8 array; an image that could not be decoded is an ImageError."""
        if not self.index["ok"].iat[row]:
            raise ImageError(self.index["reason"].iat[row] or f"{self.index['image_path'].iat[row]}: not decoded")
        if self._array is None:
            self._array = np.memmap(self.folder / ARRAY, dtype=np.uint8, mode="r", shape=(self.count, self.size, self.size))
        return np.array(self._array[row])  # a writable copy: torch refuses to share a read-only map

    def original_size(self, row: int) -> tuple[int, int]:
        return int(self.index["width"].iat[row]), int(self.index["height"].iat[row])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # each process maps the file itself
        return state


def _whole(meta: dict[str, Any], key: str, least: int, path: Path) -> int:
    """An integer field of store.json, at least `least`."""
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise InputError(f"{path}: {key!r} is {value!r}, not a whole number of at least {least}; prepare the store "
                         f"again")
    return value
