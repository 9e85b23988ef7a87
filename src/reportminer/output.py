"""The Parquet contracts of SPEC.md: schemas, provenance metadata, and writes that are all or nothing.

Every output is written into a hidden temporary file beside the target, which replaces the target
only when complete: a crash leaves the old file (or none), never half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

ID_COLUMNS = ("report_id", "image_id", "patient_id", "image_path")
MENTION_SCHEMA = pa.schema([
    ("report_id", pa.string()), ("finding", pa.string()), ("section", pa.string()),
    ("sentence_index", pa.int32()), ("start", pa.int32()), ("end", pa.int32()),
    ("text", pa.string()), ("sentence", pa.string()), ("assertion", pa.string()), ("rule", pa.string()),
])


def label_schema(label_columns: list[str], metadata: dict[str, Any]) -> pa.Schema:
    """report_id, image_id, patient_id, image_path (strings), then one int8 column per label."""
    fields = [pa.field(c, pa.string()) for c in ID_COLUMNS] + [pa.field(c, pa.int8()) for c in label_columns]
    return pa.schema(fields, metadata=encode_metadata(metadata))


def encode_metadata(metadata: dict[str, Any]) -> dict[bytes, bytes]:
    """Key-value metadata under the `reportminer.` prefix; non-text values as JSON."""
    return {f"reportminer.{k}".encode(): (v if isinstance(v, str) else json.dumps(v)).encode()
            for k, v in metadata.items()}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `reportminer.*` metadata of a Parquet file, without the prefix."""
    meta = pq.read_schema(path).metadata or {}
    return {k.decode()[len("reportminer."):]: v.decode() for k, v in meta.items()
            if k.decode().startswith("reportminer.")}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary path beside `path` that replaces it only if the block completes; else it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_text(path: str | Path, text: str) -> None:
    """Write a text file all at once (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
