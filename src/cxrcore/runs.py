"""The layout of a training run folder, readable without torch.

RUN_DIR holds `best.pt` (the checkpoint with the best mean validation AUC), `last.pt` (after every
epoch), `config.json`, `metrics.json` and `train_log.jsonl`. Commands that apply a run use the best
checkpoint, or the last one when no epoch could be validated.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

BEST, LAST = "best.pt", "last.pt"
CONFIG, METRICS, LOG = "config.json", "metrics.json", "train_log.jsonl"


def checkpoint_path(run_dir: str | Path) -> Path:
    """The checkpoint a run is applied with: best.pt, else last.pt."""
    run_dir = Path(run_dir)
    for name in (BEST, LAST):
        if (run_dir / name).is_file():
            return run_dir / name
    raise InputError(f"{run_dir}: no {BEST} or {LAST}; is this a run folder written by `classifier fit`?")
