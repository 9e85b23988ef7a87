"""labels.parquet → image paths, label matrix and patient-safe splits → batches of tensors.

Paths follow docs/SPEC.md: `DIR / image_path` (or `DIR / image_id`, with an extension found on disk);
absolute paths as they are; without `--images`, relative to the labels file's folder. An image that
cannot be read (not a regular file, undecodable, over the pixel budget) is reported (file and reason)
and left out of its batch; the epoch goes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxrcore.errors import InputError
from cxrcore.labels import LabelTable, read_labels
from cxrcore.splits import patient_splits

from .images import MAX_PIXELS, ImageError, decode, open_regular, picture, picture_size
from .store import ImageStore

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, so torchvision weights fit
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test shares of patients when the labels bring no split


@dataclass(frozen=True)
class Prepared:
    """The table, its findings, image paths, label matrix and split of every row, the prepared store its
    images are read from (None: from their files) and the pixel budget of decoding a file."""

    findings: list[str]
    paths: list[Path]
    labels: np.ndarray  # float32 (N, C): 1, 0, -1, NaN
    split: np.ndarray
    frame: pd.DataFrame
    store: ImageStore | None = None
    max_pixels: int = MAX_PIXELS

    def rows(self, split: str | None) -> np.ndarray:
        """Row positions of one split, or of every row."""
        return np.flatnonzero(self.split == split) if split else np.arange(len(self.paths))

    def key(self, row: int) -> str:
        """The name a row's image has in a prepared store (`image_key`)."""
        return image_key(self.frame["image_id"].iat[row] if "image_id" in self.frame else None, self.paths[row])

    def _store_row(self, row: int) -> int | None:
        return None if self.store is None else self.store.row_of(self.key(row))

    def original_size(self, row: int) -> tuple[int, int]:
        """(width, height) of a row's image in its own pixels, where boxes are drawn: the store's record,
        else the file's header."""
        found = self._store_row(row)
        if found is not None:
            return self.store.original_size(found)
        try:
            return picture_size(self.paths[row])
        except ImageError as exc:
            raise InputError(f"{exc}; fix or remove its row") from None

    def picture(self, row: int) -> np.ndarray:
        """A row's image as 8-bit grey at its own size, for overlays: its file where it is at hand, else
        the store's copy enlarged to that size."""
        found = self._store_row(row)
        try:
            return picture(self.paths[row], self.max_pixels)
        except ImageError as exc:  # absent, a format PIL cannot open (DICOM), over the budget
            if found is None:
                raise InputError(f"{exc}; cannot draw its overlay: give --store or --overlays 0") from None
        from PIL import Image

        return np.asarray(Image.fromarray(self.store.image(found)).resize(self.original_size(row), Image.BILINEAR))

    def digest(self, row: int) -> str:
        """A short digest of a row's image: its file's bytes (the same film under another name is the same
        image), else, with only a store at hand, the store's bytes of it."""
        found = self._store_row(row)
        if found is None or self.paths[row].is_file():
            try:
                with open_regular(self.paths[row]) as fh:
                    return hashlib.sha256(fh.read()).hexdigest()[:20]
            except (ImageError, OSError) as exc:
                raise InputError(f"{self.paths[row]}: cannot read the image ({exc}); fix the path or prepare a "
                                 f"store and give --store") from None
        return "store:" + hashlib.sha256(self.store.image(found).tobytes()).hexdigest()[:14]


def image_key(image_id: object, path: Path) -> str:
    """A row's image in a prepared store: its image_id where one is set, else its resolved path (labels
    written by `reportminer label` from report files carry paths and no ids)."""
    return str(path) if image_id is None or pd.isna(image_id) or str(image_id) == "" else str(image_id)


def prepare(labels_path: Path, images: Path | None, seed: int, store: Path | None = None,
            max_pixels: int = MAX_PIXELS) -> Prepared:
    """Read labels.parquet (checked by cxrcore), resolve every image and assign every row its split;
    with `store`, the images are read from that prepared store instead of their files."""
    table = read_labels(labels_path)
    split = assign_splits(table, seed).to_numpy()
    return Prepared(table.findings, resolve_paths(table.frame, labels_path, images), table.matrix(), split, table.frame,
                    ImageStore(store) if store is not None else None, max_pixels)


def keep_findings(data: Prepared, findings: list[str]) -> Prepared:
    """The same rows with only the given finding columns, in that order."""
    missing = [f for f in findings if f not in data.findings]
    if missing:
        raise InputError(f"the labels have no column for {', '.join(missing)}, which this run was trained on")
    columns = [data.findings.index(f) for f in findings]
    return replace(data, findings=list(findings), labels=data.labels[:, columns])


def resolve_paths(frame: pd.DataFrame, labels_path: Path, images: Path | None) -> list[Path]:
    """Each row's image file, by the SPEC's rules."""
    root = images if images is not None else labels_path.parent
    out = []
    for n, (image_path, image_id) in enumerate(zip(frame.get("image_path", [None] * len(frame)),
                                                   frame.get("image_id", [None] * len(frame)))):
        name = image_path if isinstance(image_path, str) and image_path else image_id
        if not isinstance(name, str) or not name:
            raise InputError(f"{labels_path}[row {n}]: neither image_path nor image_id is set")
        path = Path(name) if Path(name).is_absolute() else root / name
        if not path.suffix and not path.exists():
            path = next((path.with_suffix(s) for s in IMAGE_SUFFIXES if path.with_suffix(s).exists()), path)
        out.append(path)
    return out


def assign_splits(table: LabelTable, seed: int) -> pd.Series:
    """The file's split column (validated by patient when read), else a seeded split by patient."""
    if table.split is not None:
        return table.split
    patients = table.frame["patient_id"] if "patient_id" in table.frame else None
    if patients is None or patients.isna().all():
        raise InputError(f"{table.path}: no split column and no patient_id; add one of them so that no "
                         f"patient ends up in two splits")
    return patient_splits(patients.reset_index(drop=True), DEFAULT_FRACTIONS, seed)


def model_input(images: torch.Tensor, device: torch.device, channels_last: bool = False, augment: str = "none",
                seed: int = 0, epoch: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
    """A uint8 (B, H, W) batch as the network reads it, made on `device` (8 bits cross the bus, not 96):
    scaled to [0, 1], augmented (batched; each image by its own parameters, drawn from a generator seeded
    by (seed, epoch, its dataset position), so one process and several augment an image alike), grey
    copied to 3 channels and standardised with ImageNet's mean and std."""
    grey = images.to(device, non_blocking=True).float().div_(255)
    if augment != "none":
        seeds = [((seed * 1_000_003 + epoch) * 1_000_033 + int(n)) % 2 ** 63 for n in positions]
        grey = augment_batch(grey, [torch.Generator().manual_seed(k) for k in seeds], augment)
    mean = torch.tensor(MEAN, device=grey.device).view(3, 1, 1)
    std = torch.tensor(STD, device=grey.device).view(3, 1, 1)
    out = (grey.unsqueeze(1).expand(-1, 3, -1, -1) - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class ImageDataset(Dataset):
    """(uint8 image (H, W), label vector, position) per row; an unreadable image gives (None, message,
    position). Images come from their files or a prepared store (the same 8-bit decode either way);
    `model_input` turns a batch of them into the network's input on its device."""

    def __init__(self, read: Callable[[int], np.ndarray], labels: np.ndarray) -> None:
        self.read, self.labels = read, labels

    @classmethod
    def of(cls, data: Prepared, rows: np.ndarray, size: int) -> "ImageDataset":
        """The images and labels of `rows` of a prepared table, from its store or its files."""
        paths = [data.paths[i] for i in rows]
        if data.store is None:
            return cls(FileReader(paths, size, data.max_pixels), data.labels[rows])
        if data.store.size != size:
            raise InputError(f"{data.store.folder} holds {data.store.size}-pixel images and this run uses {size}; "
                             f"prepare a store with --size {size}")
        store_rows = [data.store.row_of(data.key(i)) for i in rows]
        return cls(StoreReader(data.store, store_rows, paths), data.labels[rows])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        try:
            image = torch.from_numpy(self.read(index))
        except ImageError as exc:
            return None, str(exc), index
        return image, torch.from_numpy(self.labels[index]), index


@dataclass(frozen=True)
class FileReader:
    """Position → the 8-bit decode of that image's file."""

    paths: list[Path]
    size: int
    max_pixels: int = MAX_PIXELS

    def __call__(self, n: int) -> np.ndarray:
        return decode(self.paths[n], self.size, self.max_pixels)[0]


@dataclass(frozen=True)
class StoreReader:
    """Position → that image's row of a prepared store."""

    store: ImageStore
    rows: list[int | None]
    paths: list[Path]

    def __call__(self, n: int) -> np.ndarray:
        if self.rows[n] is None:
            raise ImageError(f"{self.paths[n]}: not in the store {self.store.folder}; prepare it from these labels")
        return self.store.image(self.rows[n])


def augment_batch(grey: torch.Tensor, generators: list[torch.Generator], kind: str) -> torch.Tensor:
    """(B, H, W) in [0, 1], each image by its own generator. `kind` "affine": small shifts, scaling,
    rotation and exposure changes, as between two films of one patient; "flip": a left-right mirror
    half the time (CheXNet's only augmentation; it moves the heart to the other side, so it suits
    findings that do not depend on the side); "affine+flip": both."""
    def draw(generator: torch.Generator, low: float, high: float) -> float:
        return float(torch.empty(1).uniform_(low, high, generator=generator))

    if "affine" in kind:
        thetas, exposure = [], []
        for g in generators:
            angle, scale = np.radians(draw(g, -6, 6)), draw(g, 0.92, 1.08)
            shift = (draw(g, -0.05, 0.05), draw(g, -0.05, 0.05))
            thetas.append([[scale * np.cos(angle), -scale * np.sin(angle), shift[0]],
                           [scale * np.sin(angle), scale * np.cos(angle), shift[1]]])
            exposure.append((draw(g, 0.8, 1.25), draw(g, 0.9, 1.1)))
        theta = torch.tensor(thetas, dtype=torch.float32, device=grey.device)
        grid = torch.nn.functional.affine_grid(theta, [len(grey), 1, *grey.shape[-2:]], align_corners=False)
        moved = torch.nn.functional.grid_sample(grey[:, None], grid, padding_mode="border", align_corners=False)[:, 0]
        gamma, gain = torch.tensor(exposure, dtype=torch.float32, device=grey.device).T[..., None, None]
        grey = (moved.clamp(0, 1) ** gamma * gain).clamp(0, 1)
    if "flip" in kind:
        mirrored = torch.tensor([draw(g, 0, 1) < 0.5 for g in generators], device=grey.device)
        grey = torch.where(mirrored[:, None, None], grey.flip(-1), grey)
    return grey


def collate(batch):
    """Stack the readable samples; return (images, labels, indices, errors) or None for an empty batch."""
    good = [b for b in batch if b[0] is not None]
    errors = [b[1] for b in batch if b[0] is None]
    if not good:
        return None, errors
    images = torch.stack([b[0] for b in good])
    labels = torch.stack([b[1] for b in good])
    indices = torch.tensor([b[2] for b in good])
    return (images, labels, indices), errors
