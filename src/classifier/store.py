"""A prepared image store: every image decoded, windowed and resized once, kept as one uint8 array.

`classifier prepare LABELS --images DIR --size S -o STORE` writes STORE/ with:
- `images.u8`: a raw (N, S, S) uint8 array, read through `np.memmap`, so any number of DataLoader
  workers and training processes share the same pages of the file without a copy;
- `index.parquet`: image_id, image_path, row, width, height (the original size, to scale boxes), ok,
  reason (why an image could not be decoded; its row stays blank and reading it is an error);
- `store.json`: the size, the number of images and where they came from.
Decoding runs in chunks on worker processes; each finished chunk is recorded, so a killed `prepare`
continues with `--resume` where it stopped. The decode is `images.decode`, the same as reading the
files directly, so `fit --store` and `fit --images` see the same tensors.
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
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError
from cxrcore.output import atomic_path, atomic_text, exclusive, make_folder
from cxrcore.workers import watch_parent

from .images import ImageError, decode

ARRAY, INDEX, META, PROGRESS = "images.u8", "index.parquet", "store.json", ".progress"
FORMAT = "chestxray-toolkit/store-1"
CHUNK = 64  # images per unit of work (and per resumable step)


@dataclass(frozen=True)
class Job:
    """Rows [start, stop) of the store and their files."""

    start: int
    paths: list[str]


def prepare_store(images: list[tuple[str, Path]], size: int, out: Path, workers: int, resume: bool,
                  source: str, say: Callable[[str], None] = print, progress: Callable[[int], None] = lambda n: None,
                  ) -> pd.DataFrame:
    """Decode `images` ((image_id, path) pairs, one row each) into the store at `out`; return its index."""
    out = make_folder(out)
    with exclusive(out):
        steps = _start(out, images, size, source, resume)
        results: dict[int, dict] = {}
        jobs = [Job(start, [str(p) for _, p in images[start:start + CHUNK]]) for start in range(0, len(images), CHUNK)]
        for job in jobs:
            done = steps / f"{job.start:09d}.json"
            if done.exists():
                results[job.start] = json.loads(done.read_text())
                progress(len(job.paths))
        todo = [job for job in jobs if job.start not in results]
        for job, result in _run(todo, out / ARRAY, size, len(images), workers):
            atomic_text(steps / f"{job.start:09d}.json", json.dumps(result))
            results[job.start] = result
            progress(len(job.paths))
        index = _index(images, results)
        for row in index[~index["ok"]].itertuples():
            say(f"skipped unreadable image {row.reason}")
        if not index["ok"].any():
            raise InputError(f"not one of the {len(index)} images could be decoded (each is named above); "
                             f"check --images and the image paths")
        with atomic_path(out / INDEX) as tmp:
            pq.write_table(pa.Table.from_pandas(index, preserve_index=False), tmp)
        atomic_text(out / META, json.dumps({"format": FORMAT, "size": size, "count": len(index),
                                            "decoded": int(index["ok"].sum()), "source": source}, indent=2))
        shutil.rmtree(steps)
        return index


def _start(out: Path, images: list[tuple[str, Path]], size: int, source: str, resume: bool) -> Path:
    """The progress folder of this preparation; a new run allocates the array, a resumed one checks it."""
    steps = out / PROGRESS
    fingerprint = hashlib.sha256(json.dumps([size, source, [str(p) for _, p in images]]).encode()).hexdigest()
    if steps.exists():
        if not resume:
            raise InputError(f"{out} holds an unfinished preparation; pass --resume to continue it, or delete it")
        recorded = (steps / "state.json").read_text() if (steps / "state.json").exists() else ""
        if recorded != fingerprint:
            raise InputError(f"{out} was being prepared from other labels, images or size; delete it to start afresh")
        return steps
    if (out / META).exists() or any(p.name not in (".lock",) for p in out.iterdir()):
        raise InputError(f"{out}: is not empty; prepare a store into a new or empty folder")
    steps.mkdir()
    atomic_text(steps / "state.json", fingerprint)
    with (out / ARRAY).open("wb") as fh:
        fh.truncate(len(images) * size * size)  # sparse until written
    return steps


def _run(jobs: list[Job], array: Path, size: int, count: int, workers: int) -> Iterator[tuple[Job, dict]]:
    """Each job's result as it finishes, on `workers` processes (1: in this process)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, decode_rows(job, array, size, count)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=watch_parent,
                               initargs=(os.getpid(),))
    try:
        pending = {pool.submit(decode_rows, job, array, size, count): job for job in jobs[: 2 * workers]}
        queue = iter(jobs[2 * workers:])
        while pending:
            for future in wait(pending, return_when=FIRST_COMPLETED).done:
                job = pending.pop(future)
                yield job, future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(decode_rows, nxt, array, size, count)] = nxt
    finally:
        pool.shutdown(cancel_futures=True)


def decode_rows(job: Job, array: Path, size: int, count: int) -> dict:
    """Decode one job's files into their rows of the array; sizes and errors by row."""
    images = np.memmap(array, dtype=np.uint8, mode="r+", shape=(count, size, size))
    sizes, errors = {}, {}
    for offset, path in enumerate(job.paths):
        row = job.start + offset
        try:
            images[row], sizes[row] = decode(path, size)
        except ImageError as exc:
            errors[row] = str(exc)
    images.flush()
    return {"sizes": {str(k): list(v) for k, v in sizes.items()}, "errors": {str(k): v for k, v in errors.items()}}


def _index(images: list[tuple[str, Path]], results: dict[int, dict]) -> pd.DataFrame:
    sizes = {int(k): v for r in results.values() for k, v in r["sizes"].items()}
    errors = {int(k): v for r in results.values() for k, v in r["errors"].items()}
    return pd.DataFrame({"image_id": [i for i, _ in images], "image_path": [str(p) for _, p in images],
                         "row": np.arange(len(images)), "width": [sizes.get(n, (0, 0))[0] for n in range(len(images))],
                         "height": [sizes.get(n, (0, 0))[1] for n in range(len(images))],
                         "ok": [n in sizes for n in range(len(images))],
                         "reason": [errors.get(n, "") for n in range(len(images))]})


class ImageStore:
    """A prepared store, read-only. The array is opened on first use in each process (a DataLoader
    worker or a training rank maps the same file; nothing is copied or pickled)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / META).read_text())
            index = pq.read_table(self.folder / INDEX).to_pandas()
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise InputError(f"{self.folder}: not a prepared store ({exc.__class__.__name__}); make one with "
                             f"`classifier prepare`") from None
        if meta.get("format") != FORMAT:
            raise InputError(f"{self.folder}: not a store of this version ({meta.get('format')!r}); prepare it again")
        self.size, self.count = int(meta["size"]), int(meta["count"])
        array = self.folder / ARRAY
        if not array.is_file() or array.stat().st_size != self.count * self.size * self.size:
            raise InputError(f"{array}: missing or not {self.count} images of {self.size} px; prepare the store again")
        self.index = index
        self._rows = dict(zip(index["image_id"].astype(str), index["row"]))
        self._array: np.memmap | None = None

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
