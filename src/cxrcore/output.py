"""The output policy every command follows, in one place.

- A command writes only regular files (or folders) of its own: it refuses, with one line, to write
  over a FIFO, a device, a socket, a symlink or a folder where a file belongs, and over any file it
  reads (`Reads`: each input by its resolved path and its inode, so a hard link or another spelling
  of the path counts; a file inside an input folder counts too).
- An output folder (`OutputFolder`) holds one command's own files and nothing else: it must be new,
  empty, or hold only what an earlier run of the same command made, as listed in the manifest the
  command writes there (`.manifest.json`). A folder holding a file of the user's is refused.
- Every file is written into a hidden temporary file beside the target, then renamed over it, with
  the user's umask: a crash or a kill leaves the old file (or none), never half a file. Several
  files of one command are renamed together at the end (`Outputs`, `OutputFolder`), so a failure
  while writing the second never leaves the first replaced. Temporary files of runs that were killed
  are removed by the next write to the same target.
- A write the disk refuses (full, over a quota or the file size limit, read-only) is one line naming
  the path; the temporary files are removed and nothing is replaced.
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
import shutil
import stat
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "over the disk quota",
                errno.EFBIG: "over the file size limit (ulimit -f)", errno.EROFS: "the file system is read-only"}


def write_failure(path: str | Path, exc: BaseException) -> OutputError | None:
    """One line for an error that means the disk refused the data, naming `path`; None for any other error."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
        return OutputError(f"{path}: cannot be written: {WRITE_ERRORS[exc.errno]} ({os.strerror(exc.errno)}); "
                           f"nothing was replaced; free space or choose another output")
    return None


@dataclass(frozen=True)
class FolderOf:
    """An input folder whose files the command reads: every one (a lexicon, a store) or those ending in
    `suffixes` (a report folder: .xml and .txt; an earlier output kept beside the reports is no input).
    A folder given plainly stands for itself only. Given a file, it is that file."""

    path: str | Path
    suffixes: tuple[str, ...] | None = None


Input = str | Path | FolderOf | None


class Reads:
    """The files a command reads, so that no output can be one of them however it is spelt: a file by
    its inode (another spelling of its path, a symlink to it or a hard link is the same file) or, while
    it does not exist, by its resolved path; a `FolderOf` for the files in it the command reads. `add`
    takes more as the command finds them (a run's checkpoint, the images of a labels file: one `stat`
    each)."""

    def __init__(self, paths: Iterable[Input] = ()) -> None:
        self._missing: set[str] = set()
        self._inodes: set[tuple[int, int]] = set()
        self._folders: list[tuple[str, tuple[str, ...] | None]] = []  # (resolved path/, suffixes read or all)
        self.add(*paths)

    def add(self, *paths: Input) -> None:
        for path in paths:
            if path is None:
                continue
            folder = path if isinstance(path, FolderOf) else None
            path = folder.path if folder else path
            try:
                info = os.stat(path)
            except OSError:
                self._missing.add(os.path.realpath(path))
                continue
            if stat.S_ISDIR(info.st_mode):
                if folder:
                    suffixes = None if folder.suffixes is None else tuple(s.lower() for s in folder.suffixes)
                    self._folders.append((os.path.join(os.path.realpath(path), ""), suffixes))
            else:
                self._inodes.add((info.st_dev, info.st_ino))

    def holds(self, target: str | Path) -> str | None:
        """Why writing `target` would replace a file this command reads (None: it would not)."""
        try:
            info = os.stat(target)
        except OSError:
            return "is also an input of this command" if os.path.realpath(target) in self._missing else None
        if (info.st_dev, info.st_ino) in self._inodes:
            return "is also an input of this command"
        real = os.path.realpath(target)
        inside = [folder for folder, suffixes in self._folders if real.startswith(folder)
                  and (suffixes is None or real.lower().endswith(suffixes))] if not stat.S_ISDIR(info.st_mode) else []
        return f"lies in {inside[0].rstrip(os.sep)}, a folder this command reads" if inside else None


def check_target(path: str | Path, inputs: Iterable[Input] | Reads = (), folder: bool = False) -> Path:
    """`path` as a place this command may write: not a special file, not a symlink, not an input.
    `folder`: the output is a folder (see `OutputFolder` for what it may hold)."""
    target = Path(path)
    reads = inputs if isinstance(inputs, Reads) else Reads(inputs)
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the second: a parent is a file, named below
        mode = None
    except OSError as exc:
        raise OutputError(f"{target}: cannot be checked ({exc.strerror}); choose another output") from None
    if mode is not None:
        kind = file_kind(mode)
        if folder and kind != "folder":
            raise OutputError(f"{target}: is {kind}, not a folder; choose another output folder")
        if not folder and kind != "regular file":
            raise OutputError(f"{target}: is {kind}; refusing to replace it with an output file (choose another path)")
    why = None if folder else reads.holds(target)
    if why:
        raise OutputError(f"{target}: {why}; write the output elsewhere")
    parent = target.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"{target}: {ancestor} is a file, not a folder; choose another output")
            break
    return target


def file_kind(mode: int) -> str:
    """What a file is, in words for a message ("a FIFO (named pipe)"; "regular file" and "folder" bare)."""
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


def _temp_pattern(name: str) -> re.Pattern[str]:
    """Temporary files of writes to `name` (any name when `name` is empty): `.NAME.PID.RANDOM.tmp`."""
    stem = re.escape(name) if name else r".+"
    return re.compile(rf"^\.{stem}\.(\d+)\.[^.]+{re.escape(TEMP_SUFFIX)}$")


def _remove_stale_temps(target: Path) -> None:
    """Temporary files of earlier writes to `target` whose process is gone (killed mid-write)."""
    pattern = _temp_pattern(target.name)
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
        raise write_failure(target, exc) or OutputError(f"{target}: cannot write here ({exc.strerror}); choose "
                                                        f"another output") from None
    os.close(fd)
    return tmp


def _commit(tmp: str, target: Path) -> None:
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)


@contextmanager
def atomic_path(path: str | Path, inputs: Iterable[Input] | Reads = ()) -> Iterator[str]:
    """A temporary path beside `path` that replaces it only if the block completes; else it is removed."""
    target = check_target(path, inputs)
    _remove_stale_temps(target)
    tmp = _temporary(target)
    try:
        yield tmp
        check_target(target, inputs)  # nothing special appeared there meanwhile
        _commit(tmp, target)
    except OSError as exc:
        failure = write_failure(target, exc)
        if failure is None:
            raise
        raise failure from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_text(path: str | Path, text: str) -> None:
    """Write a text file all at once (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


class Outputs:
    """Several output files of one command, written to temporary files and renamed together at the end.

    Every target is checked before any work (distinct, not special, not a file the command reads), so
    a bad second output fails the command before the first is touched. A write the disk refuses inside
    the `with` block is one line naming the file being written; nothing is renamed."""

    def __init__(self, targets: Iterable[str | Path | None], inputs: Iterable[Input] = ()) -> None:
        self.inputs = Reads(inputs)
        self.targets = [check_target(t, self.inputs) for t in targets if t is not None]
        for i, a in enumerate(self.targets):
            for b in self.targets[i + 1:]:
                if os.path.abspath(a) == os.path.abspath(b) or (a.exists() and _same_file(a, b)):
                    raise OutputError(f"{b}: given for two outputs of this command; give each its own path")
        self._temps: dict[Path, str] = {}
        self._swept: set[Path] = set()  # folders already cleared of dead runs' temporary files
        self._writing: Path | None = None  # the target handed out last: the one a write error names

    def add_inputs(self, *paths: Input) -> None:
        """More files the command reads, found as it goes (the images of a labels file): no output may be one."""
        self.inputs.add(*paths)
        for target in [*self.targets, *self._temps]:
            check_target(target, self.inputs)

    def path(self, target: str | Path) -> str:
        """The temporary file standing for `target` until `commit`."""
        target = Path(target)
        if target not in self._temps:
            if target.parent not in self._swept:
                _remove_stale_temps(target)
                self._swept.add(target.parent)
            self._temps[target] = _temporary(target)
        self._writing = target
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

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        failed = self._failed_path(exc) if isinstance(exc, OSError) else None
        self.discard()
        failure = write_failure(failed, exc) if failed is not None else None
        if failure is not None:
            raise failure from None

    def _failed_path(self, exc: OSError) -> Path:
        """The file a write error concerns: the one it names (a temporary file by its target), else the
        target handed out last."""
        named = {tmp: target for target, tmp in self._temps.items()}.get(exc.filename, exc.filename)
        return Path(named) if named else self._writing or (self.targets[0] if self.targets else Path("."))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


MANIFEST = ".manifest.json"
MANIFEST_FORMAT = "chestxray-toolkit/outputs-1"


class OutputFolder(Outputs):
    """An output folder that holds one command's own files and nothing else.

    The folder must be new, empty, or hold only what an earlier run of the same command made: the
    entries of the manifest this class writes there (`.manifest.json`, before any file is placed),
    plus `shared` names that other commands put in such a folder (a run's localization defaults).
    Anything else is a file of the user's: the folder is refused with one line and nothing is touched.

    Use it as `with OutputFolder(out, "classifier localize", inputs) as folder:`; the folder is created
    and locked (one run at a time) for the block. Files are staged with `path(name)` and renamed together
    by `commit()`, which then removes what the earlier run made and this one did not make again, so the
    folder is what a fresh run gives. Files written as the command goes (checkpoints, a log, a work
    folder `name/`) are named first with `declare`; a command that only declares (`fit`, whose run goes
    on with `--resume`) never commits, and keeps what its earlier runs made."""

    def __init__(self, folder: str | Path, command: str, inputs: Iterable[Input] = (),
                 shared: Iterable[str] = ()) -> None:
        super().__init__([], inputs)
        self.root = check_target(folder, folder=True)
        self.command, self.shared = command, frozenset(shared)
        self._recorded: set[str] = set()  # the manifest's entries when the folder was opened (then as committed)
        self._made: set[str] = set()  # this run's entries
        self._stack = ExitStack()

    def __enter__(self) -> "OutputFolder":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.root, exc) or OutputError(f"{self.root}: cannot create the folder "
                                                               f"({exc.strerror})") from None
        self._stack.enter_context(exclusive(self.root))
        try:
            self._recorded = self._check_contents()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            super().__exit__(kind, exc, tb)
        finally:
            self._stack.close()

    def _failed_path(self, exc: OSError) -> Path:
        return super()._failed_path(exc) if exc.filename or self._writing else self.root

    def file(self, name: str | Path) -> Path:
        """The path of a file of this folder (`name` relative to it), checked: not one of the inputs."""
        target = Path(name) if Path(name).is_absolute() else self.root / name
        if self._relative(target).startswith("../"):
            raise ValueError(f"{target} is not inside the output folder {self.root}")  # a caller's bug
        return check_target(target, self.inputs)

    def declare(self, *names: str) -> None:
        """Files (or work folders, `name/`) this run writes as it goes, recorded before they appear."""
        new = []
        for name in names:
            if not name.endswith("/"):
                self.file(name)
            if name not in self._made:
                self._made.add(name)
                new.append(name)
        if new and not set(new) <= self._recorded:
            self._write_manifest(self._recorded | self._made)

    def path(self, target: str | Path) -> str:
        target = self.file(target)
        self._made.add(self._relative(target))
        return super().path(target)

    def commit(self) -> None:
        """Record this run's files, rename the staged ones into place, remove the earlier run's others."""
        self._write_manifest(self._recorded | self._made)
        super().commit()
        kept: set[str] = set()
        for name in sorted(self._recorded - self._made):
            if self.inputs.holds(self.root / name.rstrip("/")):
                kept.add(name)
            else:
                _remove(self.root / name.rstrip("/"))
        self._recorded = {name for name in kept | self._made if os.path.lexists(self.root / name.rstrip("/"))}
        self._write_manifest(self._recorded)

    def _relative(self, target: Path) -> str:
        return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(self.root))).as_posix()

    def _write_manifest(self, names: set[str]) -> None:
        atomic_text(self.root / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "command": self.command,
                                                      "files": sorted(names)}, indent=1) + "\n")

    def _read_manifest(self) -> tuple[str, set[str]] | None:
        try:
            content = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
            if content.get("format") == MANIFEST_FORMAT and isinstance(content.get("command"), str):
                return content["command"], {str(name) for name in content.get("files", [])}
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return None

    def _check_contents(self) -> set[str]:
        """The manifest's entries, if the folder holds nothing else; else one line naming what is not ours."""
        manifest = self._read_manifest()
        recorded = manifest[1] if manifest and manifest[0] == self.command else set()
        for name in _entries(self.root, {n for n in recorded if n.endswith("/")}):
            if self.inputs.holds(self.root / name):
                raise OutputError(f"{self.root}: holds {name}, which this command reads; write the output elsewhere, "
                                  f"nothing was written")
            if name in recorded or name in self.shared:
                continue
            if manifest is None:
                raise OutputError(f"{self.root}: is not empty ({name} was not made by `{self.command}`); choose a "
                                  f"new or empty folder, nothing was written")
            if manifest[0] != self.command:
                raise OutputError(f"{self.root}: is not empty (it holds the output of `{manifest[0]}`); choose a new "
                                  f"or empty folder for `{self.command}`, nothing was written")
            raise OutputError(f"{self.root}: is not empty ({name} was not made by `{self.command}`: it is not in "
                              f"{MANIFEST}); move it or choose another folder, nothing was written")
        return recorded


def _entries(root: Path, work: set[str]) -> Iterator[str]:
    """Every file, link or special file under `root` as a relative path, but the bookkeeping of this
    module (manifest, lock, temporary files) and the work folders in `work`."""
    temp = _temp_pattern("")
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            found = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot be read ({exc.strerror}); choose another output folder") from None
        for entry in found:
            name = Path(os.path.relpath(entry.path, root)).as_posix()
            if entry.is_dir(follow_symlinks=False):
                if name + "/" not in work:
                    stack.append(Path(entry.path))
            elif folder == root and entry.name in (MANIFEST, ".lock") or temp.match(entry.name):
                continue
            else:
                yield name


def _remove(path: Path) -> None:
    """A file or work folder an earlier run made and this run did not make again."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{path}: an earlier run's file cannot be removed ({exc.strerror})") from None


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
