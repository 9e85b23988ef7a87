"""The output policy every command follows, in one place.

- A command writes only regular files (or folders) of its own: it refuses, with one line, to write
  over a FIFO, a device, a socket, a symlink or a folder where a file belongs, and over any of its
  own inputs (compared by the file itself, so a hard link or another spelling of the path counts).
- Every file is written into a hidden temporary file beside the target, then renamed over it, with
  the user's umask: a crash or a kill leaves the old file (or none), never half a file. Several
  files of one command are renamed together at the end (`Outputs`), so a failure while writing the
  second never leaves the first replaced. Temporary files of runs that were killed are removed by
  the next write to the same target.
- One run per output at a time: `exclusive` holds an advisory lock (`fcntl.flock`) beside the
  output; a second run is refused with the first one's pid.
- Parquet outputs carry key-value metadata under `METADATA_PREFIX` (tool version, lexicon digest,
  parser, run...), so a label or a score can be traced to what made it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow.parquet as pq

from .errors import ToolkitError

METADATA_PREFIX = "chestxray_toolkit."
LEGACY_PREFIXES = ("reportminer.",)  # files written before the shared core still read
TEMP_SUFFIX = ".tmp"


class OutputError(ToolkitError):
    """An output path that must not or cannot be written; nothing was written."""


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_target(path: str | Path, inputs: Iterable[str | Path] = (), folder: bool = False) -> Path:
    """`path` as a place this command may write: not a special file, not a symlink, not an input.
    `folder`: the output is a folder of the command's own files (created if missing)."""
    target = Path(path)
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the second: a parent is a file, named below
        mode = None
    except OSError as exc:
        raise OutputError(f"{target}: cannot be checked ({exc.strerror}); choose another output") from None
    if mode is not None:
        kind = _kind(mode)
        if folder and kind != "folder":
            raise OutputError(f"{target}: is {kind}, not a folder; choose another output folder")
        if not folder and kind != "regular file":
            raise OutputError(f"{target}: is {kind}; refusing to replace it with an output file (choose another path)")
    for source in inputs:
        if mode is not None and _same_file(target, Path(source)):
            raise OutputError(f"{target}: is also an input of this command; write the output elsewhere")
    parent = target.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"{target}: {ancestor} is a file, not a folder; choose another output")
            break
    return target


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def make_folder(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """An output folder of this command's own files, created (with the umask) if missing."""
    folder = check_target(path, inputs, folder=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    return folder


def _remove_stale_temps(target: Path) -> None:
    """Temporary files of earlier writes to `target` whose process is gone (killed mid-write)."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[^.]+{re.escape(TEMP_SUFFIX)}$")
    try:
        siblings = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in siblings:
        found = pattern.match(entry.name)
        if found and not _alive(int(found.group(1))) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temporary(target: Path) -> str:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({exc.strerror}); choose another output") from None
    os.close(fd)
    return tmp


def _commit(tmp: str, target: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)


@contextmanager
def atomic_path(path: str | Path, inputs: Iterable[str | Path] = ()) -> Iterator[str]:
    """A temporary path beside `path` that replaces it only if the block completes; else it is removed."""
    target = check_target(path, inputs)
    _remove_stale_temps(target)
    tmp = _temporary(target)
    try:
        yield tmp
        check_target(target, inputs)  # nothing special appeared there meanwhile
        _commit(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_text(path: str | Path, text: str) -> None:
    """Write a text file all at once (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


class Outputs:
    """Several output files of one command, written to temporary files and renamed together at the end.

    Every target is checked before any work (distinct, not special, not an input), so a bad second
    output fails the command before the first is touched."""

    def __init__(self, targets: Iterable[str | Path | None], inputs: Iterable[str | Path] = ()) -> None:
        self.inputs = [Path(p) for p in inputs]
        self.targets = [check_target(t, self.inputs) for t in targets if t is not None]
        for i, a in enumerate(self.targets):
            for b in self.targets[i + 1:]:
                if os.path.abspath(a) == os.path.abspath(b) or (a.exists() and _same_file(a, b)):
                    raise OutputError(f"{b}: given for two outputs of this command; give each its own path")
        self._temps: dict[Path, str] = {}

    def path(self, target: str | Path) -> str:
        """The temporary file standing for `target` until `commit`."""
        target = Path(target)
        if target not in self._temps:
            _remove_stale_temps(target)
            self._temps[target] = _temporary(target)
        return self._temps[target]

    def commit(self) -> None:
        for target in self._temps:
            check_target(target, self.inputs)
        for target, tmp in self._temps.items():
            _commit(tmp, target)
        self._temps.clear()

    def discard(self) -> None:
        for tmp in self._temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._temps.clear()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def lock_path(target: Path) -> Path:
    """The lock file of an output: `.NAME.lock` beside a file, `.lock` inside a folder."""
    return target / ".lock" if target.is_dir() else target.with_name(f".{target.name}.lock")


@contextmanager
def exclusive(*targets: str | Path) -> Iterator[None]:
    """Hold the advisory lock of every target (one run per output at a time); refuse if another holds one."""
    held: list[tuple[int, Path]] = []
    try:
        for target in sorted({Path(t) for t in targets}, key=str):
            held.append(_lock(Path(target)))
        yield
    finally:
        for fd, path in reversed(held):
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(fd)


def _lock(target: Path) -> tuple[int, Path]:
    path = lock_path(target)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise OutputError(f"{target}: cannot lock it for this run ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputError(f"{target}: another run (pid {holder}) is writing it; wait for it to finish "
                                  f"or stop it") from None
            raise OutputError(f"{target}: cannot lock it for this run ({exc.strerror})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its holder removed while we waited for it
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd, path
        os.close(fd)


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
