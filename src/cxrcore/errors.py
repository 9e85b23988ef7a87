"""Errors a user can act on: each names the file (and row, rule or option) and says what to do.

The command-line layer prints a `ToolkitError` as one line with exit status 1; anything else is a bug.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class: the message is printed as one line by the CLI."""


class InputError(ToolkitError):
    """An input file, table or option cannot be used at all (not one bad report or image: those are skipped)."""
