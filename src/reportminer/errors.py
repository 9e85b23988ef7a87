"""The labeler's own errors; like every `ToolkitError`, each is printed as one line naming file and fix."""

from __future__ import annotations

from cxrcore.errors import ToolkitError


class LexiconError(ToolkitError):
    """A lexicon or rule file breaks its schema; the message is `file:line: id -> field: problem`."""


class PatternError(ToolkitError):
    """A graph pattern cannot be parsed; the message shows the pattern and the bad position."""
