"""A lexicon's YAML files read as hostile input: every limit on reading them is here.

Lexicon folders are passed between hospitals, so a file may be a FIFO, a device, a link to
/dev/zero, a folder named like a rule file, a "billion laughs" alias chain or a value that YAML turns
into something other than text. Each is refused with one line naming the file (and line) before it
costs more than a few seconds or a few hundred MB, and no refusal echoes an expanded value:

- only regular files are read, at most `Limits.file_bytes` each and `Limits.folder_bytes` together;
- a first pass over the YAML events (libyaml, fast) bounds aliases, nesting, entries (each alias
  counted as all it stands for, so an alias chain is refused before it is expanded) and text length,
  and refuses control characters and lone surrogates in text;
- only then is the file built, with every mapping's line recorded as `__line__`, keys that are not
  text refused and dates left as text.

`read_yaml` is the one safe loader (`read_bytes` then `parse_yaml`); `LexiconFiles` applies the
folder's budget and keeps the bytes read, so the lexicon's digest is made of exactly what was parsed.
"""

from __future__ import annotations

import hashlib
import os
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import LexiconError


@dataclass(frozen=True)
class Limits:
    """How much of a lexicon is read at most (the shipped files are under 10 KB, lists under 60 entries, graph
    patterns at most 5 tokens and 1 `+` edge, 83 of them)."""

    file_bytes: int = 256 * 1024  # one YAML file
    folder_bytes: int = 512 * 1024  # every file of one lexicon (at most about 2 s of parsing)
    rule_files: int = 64  # files in rules/
    aliases: int = 64  # alias uses (*name) in one file
    entries: int = 50_000  # values in one file, an alias counted as everything it stands for
    depth: int = 32  # nesting of lists and mappings
    text_chars: int = 2_000  # one text: a synonym, a pattern, an example sentence
    list_entries: int = 1_000  # one list (synonyms of a finding, examples of a rule)
    phrases: int = 5_000  # synonyms, signs, exclusions and normal phrases of a whole lexicon
    regexes: int = 500  # regular expressions (findings' patterns and absent) of a whole lexicon
    pattern_nodes: int = 6  # tokens in one graph pattern (rules, attributes): the walks tried grow with each
    pattern_repeats: int = 1  # `+` edges (one or more hops) in one graph pattern
    graph_patterns: int = 300  # graph patterns of a whole lexicon, each tried on every mention


LIMITS = Limits()

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: 5x faster
_CONTROL = {*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), *range(0x7f, 0xa0)}
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 60
_shown.maxlist = _shown.maxdict = 4
_shown.maxlevel = 2


def shown(value: Any) -> str:
    """A value as a message may show it: short, whatever it holds."""
    return _shown.repr(value)


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_bytes(path: Path, limit: int, limit_name: str = "a lexicon file may have") -> bytes:
    """A regular file's bytes, refused beyond `limit` before reading (and while reading, should it grow)."""
    try:
        kind = file_kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks on a FIFO swapped in
            try:
                info = os.fstat(fd)
                kind = file_kind(info.st_mode)
                data = b"" if kind is not None or info.st_size > limit else _read_fd(fd, limit + 1)
                size = max(info.st_size, len(data))
            finally:
                os.close(fd)
    except FileNotFoundError:
        raise LexiconError(f"{path}: missing (or a link to nothing)") from None
    except OSError as exc:
        raise LexiconError(f"{path}: cannot read ({exc.strerror}); a lexicon's files must be readable") from None
    if kind is not None:
        raise LexiconError(f"{path}: {kind}, not a YAML file; a lexicon folder holds only regular files")
    if size > limit:
        raise LexiconError(f"{path}: {size:,} bytes or more, beyond the {limit:,} {limit_name}")
    return data


def _read_fd(fd: int, most: int) -> bytes:
    chunks, size = [], 0
    while size < most:
        chunk = os.read(fd, min(1 << 16, most - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Refused(yaml.YAMLError):
    """A YAML file that parses but is refused: the problem and where."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _LineLoader(_Loader):  # type: ignore[misc, valid-type]
    """A safe loader that records each mapping's line as `__line__`, refuses keys that are not text and
    reads dates as text."""

    yaml_implicit_resolvers = {first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
                               for first, resolvers in _Loader.yaml_implicit_resolvers.items()}

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. `!!int abc`: one line, not a traceback
            raise _Refused(f"cannot read this value ({shown(str(exc))})", node.start_mark) from None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str) and key_node.tag != "tag:yaml.org,2002:merge":
            raise _Refused(f"the key {shown(key)} is {type(key).__name__}, not text; put it in quotes",
                           key_node.start_mark)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, limits: Limits = LIMITS) -> dict[str, Any]:
    """The safe loader: a lexicon YAML file as a mapping, within `limits`; every refusal is one
    `LexiconError` line naming the file (and line)."""
    return parse_yaml(path, read_bytes(path, limits.file_bytes), limits)


def parse_yaml(path: Path, data: bytes, limits: Limits = LIMITS) -> dict[str, Any]:
    """The mapping in a lexicon file's bytes (`path` names it in messages)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LexiconError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        _check_events(text, limits)
        loaded = yaml.load(text, Loader=_LineLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, such as NUL
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else shown(exc.character)
        raise LexiconError(f"{path}:{text.count(chr(10), 0, exc.position) + 1}: not valid YAML (the character "
                           f"{character} is not allowed)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or shown(str(exc))
        if isinstance(exc, _Refused):
            raise LexiconError(f"{path}{where}: {problem}") from None
        raise LexiconError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict):
        raise LexiconError(f"{path}:1: the file must be a mapping (key: value), not {type(loaded).__name__}")
    return loaded


def _check_events(text: str, limits: Limits) -> None:
    """Bound the document before anything is built from it (raises `_Refused` at the offending line)."""
    aliases = total = 0
    sizes: dict[str, int] = {}  # anchor → entries it stands for
    stack: list[list[Any]] = [[None, 0]]  # open lists and mappings: [anchor, entries so far]
    for event in yaml.parse(text, Loader=_Loader):
        added = 0
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) > limits.depth:
                raise _Refused(f"nested more than {limits.depth} levels deep", event.start_mark)
            stack.append([event.anchor, 1])
            added = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, count = stack.pop()
            stack[-1][1] += count
            if anchor is not None:
                sizes[anchor] = count
        elif isinstance(event, yaml.ScalarEvent):
            _check_text(event.value, event.start_mark, limits)
            added = 1
            stack[-1][1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.aliases:
                raise _Refused(f"more than {limits.aliases} aliases (*name); write the values out", event.start_mark)
            if any(frame[0] == event.anchor for frame in stack):
                raise _Refused(f"the alias *{shown(event.anchor)} refers to itself", event.start_mark)
            added = sizes.get(event.anchor, 1)  # an undefined one is the loader's error
            stack[-1][1] += added
        total += added
        if total > limits.entries:
            raise _Refused(f"more than {limits.entries:,} entries (an alias counts as all it stands for)",
                           event.start_mark)


def _check_text(value: str, mark: Any, limits: Limits) -> None:
    if len(value) > limits.text_chars:
        raise _Refused(f"a text of {len(value):,} characters, beyond the {limits.text_chars:,} one entry may have",
                       mark)
    for char in value:
        code = ord(char)
        if code in _CONTROL or 0xD800 <= code <= 0xDFFF:
            raise _Refused(f"a text holds the character U+{code:04X} (a control character or half a surrogate "
                           f"pair); remove it", mark)


class LexiconFiles:
    """The YAML files of one lexicon folder, read within the folder's budget; the digest of what was read."""

    def __init__(self, root: Path, limits: Limits = LIMITS) -> None:
        self.root, self.limits = root, limits
        self.read: dict[Path, bytes] = {}

    def load(self, path: Path) -> dict[str, Any]:
        left = self.limits.folder_bytes - sum(len(b) for b in self.read.values())
        if left < self.limits.file_bytes:
            raw = read_bytes(path, left, f"left of the {self.limits.folder_bytes:,} bytes a whole lexicon may have")
        else:
            raw = read_bytes(path, self.limits.file_bytes)
        data = parse_yaml(path, raw, self.limits)
        self.read[path] = raw
        return data

    def rule_files(self, folder: Path) -> list[Path]:
        """The `*.yaml` entries of the rules folder, sorted and within the limit (each is checked on reading)."""
        try:
            found = sorted(p for p in folder.iterdir() if p.name.endswith(".yaml"))
        except OSError as exc:
            raise LexiconError(f"{folder}: cannot list ({exc.strerror})") from None
        if len(found) > self.limits.rule_files:
            raise LexiconError(f"{folder}: {len(found)} rule files, more than the {self.limits.rule_files} a lexicon "
                               f"may have")
        return found

    def digest(self, paths: list[Path]) -> str:
        """sha256 over each file's path (relative to the folder) and bytes, in the order given."""
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0" + self.read[path] + b"\0")
        return "sha256:" + digest.hexdigest()[:16]
