"""mentions.parquet (`--evidence`): one row per mention, with the sentence and the rule that decided it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from cxrcore.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

MENTION_SCHEMA = pa.schema([
    ("report_id", pa.string()), ("finding", pa.string()), ("section", pa.string()),
    ("sentence_index", pa.int32()), ("start", pa.int32()), ("end", pa.int32()),
    ("text", pa.string()), ("sentence", pa.string()), ("assertion", pa.string()), ("rule", pa.string()),
    ("side", pa.string()), ("severity", pa.string()), ("change", pa.string()),
])
REQUIRED = MENTION_SCHEMA.names[:10]  # files written before the attributes still read


def read_mentions(path: str | Path) -> pd.DataFrame:
    """A mentions.parquet (`--evidence`), checked to have the columns it must have."""
    try:
        frame = pq.read_table(path).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read as Parquet ({exc}); --evidence wants the mentions.parquet of "
                         f"`reportminer label --evidence`") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}; --evidence wants the mentions.parquet of "
                         f"`reportminer label --evidence`")
    return frame
