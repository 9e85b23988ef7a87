"""Checkpoints: state dicts plus the config and finding names, written atomically, loaded with
`torch.load(weights_only=True)` so that a file can never run code on the machine that opens it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cxrcore.errors import ToolkitError
from cxrcore.output import atomic_path

FORMAT = "chestxray-toolkit/checkpoint-1"


class CheckpointError(ToolkitError):
    """A checkpoint that cannot or must not be loaded."""


def save_checkpoint(path: str | Path, **content: Any) -> None:
    """Write {format, **content} to `path` all at once."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **content}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of ours; refuse anything that would need arbitrary objects unpickled. A file that
    is not torch's zip format at all (a Parquet table, a text file) is "not a checkpoint", said before
    anything of it is unpickled."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a checkpoint (a checkpoint is the zip file `classifier fit` saves); is "
                              f"this a run folder of `classifier fit`?")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain values, "
                              f"which could run code when loaded ({first})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a chestxray-toolkit checkpoint (no '{FORMAT}' format tag)")
    return content


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision state dict (for --weights), loaded safely."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused: not a plain state dict of tensors ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f"{path}: tensor {bad!r} holds NaN or infinite values; these weights would give a "
                              f"NaN model")
    return state
