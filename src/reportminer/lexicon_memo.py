"""Loaded lexicons kept in the cache folder: a run whose lexicon files are byte for byte those of an earlier
run starts from the lexicon that run loaded, without reading, validating and compiling the YAML again
(a fifth of a second, which is most of an update's start-up).

The key covers every file of the lexicon folder (names and bytes), the schema, the profile and the
conventions given, this toolkit's source code and Python's version: any edit gives another key. The
entries are pickles, so only files owned by this user and writable by nobody else are read (as for
any cache of code); a folder that is too big or holds anything but regular files is loaded afresh
each time, where the loader's own limits and messages apply.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import stat
import sys
from itertools import islice
from pathlib import Path

from .cache import source_digest
from .lexicon import Lexicon, default_folder, load_lexicon

FOLDER = "lexicons"  # inside the cache folder
KEEP = 16  # entries kept (the newest); each is about 100 KB
MAX_FILES = 256
MAX_BYTES = 4 * 1024 * 1024


def load(folder: Path | None, schema: str, profile: str | None, conventions: dict[str, str],
         cache: Path | None) -> Lexicon:
    """`load_lexicon(folder, schema, profile, conventions)`, from the cache folder's entry when it has one."""
    root = Path(folder) if folder is not None else default_folder()
    key = _key(root, schema, profile, conventions) if cache is not None else None
    if key is None:
        return load_lexicon(folder, schema, profile, conventions)
    memo = Path(cache) / FOLDER
    entry = memo / f"{key}.pickle"
    data = _read_trusted(memo, entry)
    if data is not None:
        try:
            lexicon = pickle.loads(data)
            if isinstance(lexicon, Lexicon):
                os.utime(entry)  # used now: the entries used least recently go first
                return lexicon
        except Exception:  # a damaged entry: loaded afresh and written again below
            pass
    lexicon = load_lexicon(folder, schema, profile, conventions)
    _store(memo, entry, lexicon)
    return lexicon


def _key(root: Path, schema: str, profile: str | None, conventions: dict[str, str]) -> str | None:
    """The digest of everything the loaded lexicon comes from; None when the folder cannot be memoised."""
    digest = hashlib.sha256(json.dumps([str(root), schema, profile, sorted(conventions.items()), source_digest(),
                                        sys.version, pickle.HIGHEST_PROTOCOL, *_versions()]).encode())
    total = 0
    try:
        if not (root / "labeler.yaml").is_file():
            return None  # not a lexicon folder: the loader says so, without a walk of whatever it is
        paths = sorted(islice((p for p in root.rglob("*") if "__pycache__" not in p.parts), MAX_FILES + 1))
        if len(paths) > MAX_FILES:
            return None
        for path in paths:
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                if path.is_symlink():
                    return None  # a linked folder is not walked: its files could change unseen
                continue
            total += info.st_size
            if not stat.S_ISREG(info.st_mode) or total > MAX_BYTES:
                return None
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()[:32]


def _versions() -> list[str]:
    """The libraries whose objects a loaded lexicon holds (an upgrade gives another key)."""
    out = []
    for name in ("google-re2", "pyyaml", "pydantic"):
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} none")
    return out


def _trusted(path: Path) -> bool:
    """A folder (not a link) of this user that nobody else may write."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and _ours(info)


def _ours(info: os.stat_result) -> bool:
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_trusted(memo: Path, entry: Path) -> bytes | None:
    """The entry's bytes when it, its folder and the cache folder are this user's alone; the file is checked
    on the open descriptor it is read from (not a link, not swapped between the check and the read)."""
    if not (_trusted(memo) and _trusted(memo.parent)):
        return None
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        return fh.read() if stat.S_ISREG(info.st_mode) and _ours(info) else None


def _store(memo: Path, entry: Path, lexicon: Lexicon) -> None:
    """Write the entry (a temporary file, then a rename) and keep the newest `KEEP`; best effort: a cache
    that cannot be written only costs the next run its start-up."""
    try:
        memo.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(memo):
            return
        tmp = memo / f".{entry.name}.{os.getpid()}.tmp"
        tmp.write_bytes(pickle.dumps(lexicon, protocol=pickle.HIGHEST_PROTOCOL))
        os.chmod(tmp, 0o600)
        os.replace(tmp, entry)
        entries = sorted(memo.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
