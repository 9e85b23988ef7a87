"""The output policy every command follows: all-or-nothing writes and provenance in the file itself.

Every output is written into a hidden temporary file beside the target, which replaces the target
only when complete: a crash leaves the old file (or none), never half a file. Parquet outputs carry
key-value metadata under `METADATA_PREFIX` (tool version, lexicon digest, parser, run...), so a
label or a score can be traced to what made it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

METADATA_PREFIX = "chestxray_toolkit."
LEGACY_PREFIXES = ("reportminer.",)  # files written before the shared core still read


def encode_metadata(metadata: dict[str, Any]) -> dict[bytes, bytes]:
    """Key-value metadata under `METADATA_PREFIX`; non-text values as JSON."""
    return {f"{METADATA_PREFIX}{k}".encode(): (v if isinstance(v, str) else json.dumps(v)).encode()
            for k, v in metadata.items()}


def decode_metadata(raw: dict[bytes, bytes] | None) -> dict[str, str]:
    """Our keys of a Parquet schema's metadata, without their prefix."""
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        name = key.decode(errors="replace")
        for prefix in (*LEGACY_PREFIXES, METADATA_PREFIX):  # the current prefix wins
            if name.startswith(prefix):
                out[name[len(prefix):]] = value.decode(errors="replace")
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """The toolkit's metadata of a Parquet file, without the prefix."""
    return decode_metadata(pq.read_schema(path).metadata)


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


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON with NaN and infinities written as null (an AUC is NaN when a split has one class only)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), indent=indent, allow_nan=False)
