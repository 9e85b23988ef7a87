"""The layout of a training run folder, readable without torch.

RUN_DIR holds `best.pt` (the checkpoint with the best mean validation AUC), `last.pt` (after every
epoch), `config.json`, `metrics.json`, `train_log.jsonl`, `operating_points.json` and `model_card.md`
(`FIT_FILES`; a new file `fit` writes belongs there), listed in its `.manifest.json` (the
output policy's record of what `fit` made), and `localization_defaults.json` once `localize
--calibrate` has chosen them. Commands that apply a run use the best checkpoint, or the last one when
no epoch could be validated; every file of the run is one of their inputs, never an output.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

BEST, LAST = "best.pt", "last.pt"
CONFIG, METRICS, LOG = "config.json", "metrics.json", "train_log.jsonl"
FIT_FILES = (BEST, LAST, CONFIG, METRICS, LOG, "operating_points.json", "model_card.md")  # what `classifier fit` writes
SHARED_FILES = ("localization_defaults.json",)  # what other commands add to a run (`localize --calibrate`)


def run_files(run_dir: str | Path) -> list[Path]:
    """The files of a run that commands applying it read (and so must never write over)."""
    return [Path(run_dir) / name for name in (*FIT_FILES, *SHARED_FILES)]


def checkpoint_path(run_dir: str | Path) -> Path:
    """The checkpoint a run is applied with: best.pt, else last.pt."""
    run_dir = Path(run_dir)
    for name in (BEST, LAST):
        if (run_dir / name).is_file():
            return run_dir / name
    raise InputError(f"{run_dir}: no {BEST} or {LAST}; is this a run folder written by `classifier fit`?")
