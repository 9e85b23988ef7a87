"""The texts of labeled reports, read again from the inputs they were labeled from.

labels.parquet holds no report text (an archive's texts are large, and they are patient data), but
a reviewer must see whole reports, and a mention's `start` and `end` index into the exact text the
labeler read. So `sample` and `audit` read the inputs again with the labeler's own readers, keeping
only the reports they need.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from cxrcore.errors import InputError
from cxrcore.output import read_metadata

from .readers import ReadSettings, Report, read_inputs


def recorded_inputs(labels: str | Path) -> list[Path]:
    """The inputs `reportminer label` recorded in the labels' metadata. A relative one is looked for
    beside the labels first (a sample folder's reports.jsonl), then where the command was run."""
    labels = Path(labels)
    raw = read_metadata(labels).get("inputs")
    try:
        names = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        names = []
    if not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"{labels}: records no inputs (it was not written by `reportminer label`); give the "
                         f"reports with --reports")
    found = []
    for name in names:
        path = Path(name)
        candidates = [path] if path.is_absolute() else [labels.parent / path, path]
        hit = next((c for c in candidates if c.exists()), None)
        if hit is None:
            raise InputError(f"{labels}: its input {name} is not found (as recorded, nor beside the labels); give "
                             f"the reports with --reports")
        found.append(hit)
    return found


def read_texts(inputs: Iterable[str | Path], settings: ReadSettings, wanted: Iterable[str]) -> dict[str, str]:
    """The text of each wanted report found in the inputs (the first one read, should an id come twice).
    Reports the readers skip are skipped here too; the caller names the wanted ones left without text."""
    wanted = set(wanted)
    texts: dict[str, str] = {}
    for record in read_inputs(list(inputs), settings):
        if isinstance(record, Report) and record.report_id in wanted and record.report_id not in texts:
            texts[record.report_id] = record.text
            if len(texts) == len(wanted):
                break
    return texts
