"""labels.parquet → image paths, label matrix and patient-safe splits → batches of tensors.

Paths follow SPEC.md: `DIR / image_path` (or `DIR / image_id`, with an extension found on disk);
absolute paths as they are; without `--images`, relative to the labels file's folder. An image that
cannot be read is reported (file and reason) and left out of its batch; the epoch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxrcore.errors import InputError
from cxrcore.labels import LabelTable, read_labels
from cxrcore.splits import patient_splits

from .images import ImageCache, ImageError, load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, so torchvision weights fit
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test shares of patients when the labels bring no split


@dataclass(frozen=True)
class Prepared:
    """The table, its findings, image paths, label matrix and split of every row."""

    findings: list[str]
    paths: list[Path]
    labels: np.ndarray  # float32 (N, C): 1, 0, -1, NaN
    split: np.ndarray
    frame: pd.DataFrame

    def rows(self, split: str | None) -> np.ndarray:
        """Row positions of one split, or of every row."""
        return np.flatnonzero(self.split == split) if split else np.arange(len(self.paths))


def prepare(labels_path: Path, images: Path | None, seed: int) -> Prepared:
    """Read labels.parquet (checked by cxrcore), resolve every image and assign every row its split."""
    table = read_labels(labels_path)
    split = assign_splits(table, seed).to_numpy()
    return Prepared(table.findings, resolve_paths(table.frame, labels_path, images), table.matrix(), split, table.frame)


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


def normalise(grey: torch.Tensor) -> torch.Tensor:
    """(..., H, W) grey in [0, 1] → (..., 3, H, W) with ImageNet's mean and std."""
    rgb = grey.unsqueeze(-3).expand(*grey.shape[:-2], 3, *grey.shape[-2:])
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (rgb - mean) / std


class ImageDataset(Dataset):
    """(image tensor, label vector, index) per row; an unreadable image gives (None, message, index)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int, cache: ImageCache | None = None,
                 augment: bool = False) -> None:
        self.paths, self.labels, self.size, self.cache, self.augment = paths, labels, size, cache, augment

    @classmethod
    def of(cls, data: Prepared, rows: np.ndarray, size: int, cache: ImageCache | None = None,
           augment: bool = False) -> "ImageDataset":
        """The images and labels of `rows` of a prepared table."""
        return cls([data.paths[i] for i in rows], data.labels[rows], size, cache, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            grey = self.cache.load(self.paths[index]) if self.cache else load_image(self.paths[index], self.size)
        except ImageError as exc:
            return None, str(exc), index
        image = torch.from_numpy(np.ascontiguousarray(grey))
        if self.augment:
            image = augment(image)
        return normalise(image), torch.from_numpy(self.labels[index]), index


def augment(image: torch.Tensor) -> torch.Tensor:
    """Small shifts, scaling, rotation and exposure changes, as between two films of one patient."""
    angle = float(torch.empty(1).uniform_(-6, 6))
    scale = float(torch.empty(1).uniform_(0.92, 1.08))
    shift = torch.empty(2).uniform_(-0.05, 0.05)
    theta = torch.tensor([[scale * np.cos(np.radians(angle)), -scale * np.sin(np.radians(angle)), float(shift[0])],
                          [scale * np.sin(np.radians(angle)), scale * np.cos(np.radians(angle)), float(shift[1])]],
                         dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(theta[None], [1, 1, *image.shape], align_corners=False)
    moved = torch.nn.functional.grid_sample(image[None, None], grid, padding_mode="border", align_corners=False)[0, 0]
    gamma = float(torch.empty(1).uniform_(0.8, 1.25))
    gain = float(torch.empty(1).uniform_(0.9, 1.1))
    return (moved.clamp(0, 1) ** gamma * gain).clamp(0, 1)


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
