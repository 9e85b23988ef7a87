"""`classifier predict`'s INPUTS → one image entry at a time: files, folders, lists and labels tables.

- an image file (any suffix: the decoder decides) is one entry, its id its file name;
- a folder is searched recursively for pictures and DICOM files (by their suffixes, or for a name
  without a picture's suffix by the DICOM marker: archives name films by their UIDs), sorted by name,
  each id its path below the folder; a link to a folder is followed once (a link back up the tree, a
  loop, is named and not searched again, so it cannot hang the search); an unreadable folder or a special file (a FIFO would
  block its reader) is a named skip;
- a `.txt` list holds one path a line (`#` comments and blank lines ignored), a `.csv` list a `path`
  or `image_path` column and optionally `id` or `image_id`; relative paths are taken from `images`,
  else the list's folder;
- a `.parquet` labels or dataset table gives `image_path` or `image_id` by the SPEC's rules
  (data.resolve_paths), its id the row's `image_id`.

Entries stream: a folder or table of a million images is never held whole, only the identities of
the folders already searched.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd
import pyarrow.parquet as pq

from cxrcore.errors import InputError

from .data import resolve_paths
from .images import DICOM_SUFFIXES, PICTURE_SUFFIXES, is_dicom

IMAGE_SUFFIXES = PICTURE_SUFFIXES + DICOM_SUFFIXES
LIST_SUFFIXES = (".txt", ".csv")
TABLE_SUFFIXES = (".parquet",)
TABLE_BATCH = 4096  # rows of a labels table read at a time


@dataclass(frozen=True)
class Entry:
    """One image to predict: its id (what the output names it by) and its file."""

    id: str
    path: Path


@dataclass(frozen=True)
class Skip:
    """An input that could not be used, and why (named on stderr, counted in the exit status)."""

    source: str
    reason: str


def entries(inputs: Iterable[Path], images: Path | None, note: Callable[[str], None]) -> Iterator[Entry | Skip]:
    """Every image of `inputs`, in order; `note` hears what is worth a line but is not a skip."""
    seen: set[tuple[int, int]] = set()  # folders searched, by device and inode
    for given in inputs:
        try:
            mode = os.stat(given).st_mode
        except OSError as exc:
            raise InputError(f"{given}: cannot be read ({exc.strerror}); check the path") from None
        suffix = given.suffix.lower()
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):  # a FIFO would block its reader
            raise InputError(f"{given}: is not a file or folder (a FIFO or a device); give files and folders")
        if stat.S_ISDIR(mode):
            yield from _folder(given, seen, note)
        elif suffix in LIST_SUFFIXES:
            yield from _list(given, images)
        elif suffix in TABLE_SUFFIXES:
            yield from _table(given, images)
        else:
            yield _file(given, given.name, mode)


def _file(path: Path, image_id: str, mode: int | None = None) -> Entry | Skip:
    """An entry for a regular file; anything else (a FIFO, a device, a missing file) a named skip."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return Skip(str(path), exc.strerror or "cannot be read")
        except ValueError:  # a NUL in a listed path
            return Skip(repr(str(path)), "not a usable path")
    if not stat.S_ISREG(mode):
        return Skip(str(path), "not a regular file")
    return Entry(image_id, path)


def _folder(root: Path, seen: set[tuple[int, int]], note: Callable[[str], None]) -> Iterator[Entry | Skip]:
    """The images below `root`, depth first, each folder's files then its subfolders, by name."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            with os.scandir(folder) as listing:
                found = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield Skip(str(folder), f"folder cannot be read ({exc.strerror})")
            continue
        if (info.st_dev, info.st_ino) in seen:
            note(f"note: {folder} is a folder already searched (a link back into the tree); not searched again")
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders = []
        for item in found:
            try:
                mode = item.stat().st_mode  # through links
            except OSError as exc:  # a broken link, or a link loop
                if item.name.lower().endswith(IMAGE_SUFFIXES):
                    yield Skip(item.path, exc.strerror or "cannot be read")
                continue
            if stat.S_ISDIR(mode):
                subfolders.append(Path(item.path))
            elif item.name.lower().endswith(IMAGE_SUFFIXES) or (stat.S_ISREG(mode) and is_dicom(item.path)):
                yield _file(Path(item.path), Path(item.path).relative_to(root).as_posix(), mode)
        stack.extend(reversed(subfolders))


def _list(path: Path, images: Path | None) -> Iterator[Entry | Skip]:
    """The paths of a .txt or .csv list, relative ones from `images` or the list's folder."""
    root = images if images is not None else path.parent
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if path.suffix.lower() == ".txt":
                for line in fh:
                    name = line.strip()
                    if name and not name.startswith("#"):
                        yield _file(_under(root, name), name)
                return
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            column = next((c for c in ("path", "image_path") if c in fields), None)
            if column is None:
                raise InputError(f"{path}: no 'path' or 'image_path' column (it has {', '.join(fields) or 'none'}); "
                                 f"name the column of image paths 'path'")
            ids = next((c for c in ("id", "image_id") if c in fields), None)
            for n, row in enumerate(reader, start=2):
                name = (row.get(column) or "").strip()
                if not name:
                    yield Skip(f"{path}:{n}", f"empty {column}")
                    continue
                own = (row.get(ids) or "").strip() if ids else ""
                yield _file(_under(root, name), own or name)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the list as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None


def _under(root: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def _table(path: Path, images: Path | None) -> Iterator[Entry | Skip]:
    """The images of a labels or dataset Parquet, a batch of rows at a time."""
    try:
        table = pq.ParquetFile(path)
        columns = [c for c in ("image_id", "image_path") if c in table.schema_arrow.names]
        if not columns:
            raise InputError(f"{path}: neither an image_path nor an image_id column; is it a labels or dataset "
                             f"Parquet?")
        start = 0
        for batch in table.iter_batches(batch_size=TABLE_BATCH, columns=columns):
            frame = batch.to_pandas()
            set_ = pd.Series(False, index=frame.index)
            for column in columns:
                set_ |= frame[column].map(lambda v: isinstance(v, str) and v != "")
            for n in frame.index[~set_]:
                yield Skip(f"{path}[row {start + n}]", "neither image_path nor image_id is set")
            good = frame[set_].reset_index(drop=True)
            names = good["image_id"] if "image_id" in good else good["image_path"]
            fallbacks = good.get("image_path", names)
            for name, resolved, fallback in zip(names, resolve_paths(good, path, images), fallbacks):
                yield _file(resolved, name if isinstance(name, str) and name else fallback)
            start += len(frame)
    except (OSError, ValueError) as exc:  # pyarrow's errors for a file that is not Parquet
        raise InputError(f"{path}: cannot be read as Parquet ({exc.__class__.__name__}: {exc})") from None
