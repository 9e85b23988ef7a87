"""mentions.parquet (`--evidence`): one row per mention, with the sentence and the rule that decided it."""

from __future__ import annotations

import pyarrow as pa

MENTION_SCHEMA = pa.schema([
    ("report_id", pa.string()), ("finding", pa.string()), ("section", pa.string()),
    ("sentence_index", pa.int32()), ("start", pa.int32()), ("end", pa.int32()),
    ("text", pa.string()), ("sentence", pa.string()), ("assertion", pa.string()), ("rule", pa.string()),
])
