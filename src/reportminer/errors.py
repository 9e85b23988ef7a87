"""Errors a user can act on: each names the file (and row or rule) and says what to do."""

from __future__ import annotations


class ReportminerError(Exception):
    """Base class: the message is printed as one line by the CLI."""


class LexiconError(ReportminerError):
    """A lexicon or rule file breaks its schema; the message is `file:line: id -> field: problem`."""


class PatternError(ReportminerError):
    """A graph pattern cannot be parsed; the message shows the pattern and the bad position."""


class InputError(ReportminerError):
    """An input file or table cannot be used at all (not one bad report: those are skipped)."""
