"""Errors a user can act on: each names the file (and row or rule) and says what to do."""

from __future__ import annotations

import click


class ReportminerError(Exception):
    """Base class: the message is printed as one line by the CLI."""


class LexiconError(ReportminerError):
    """A lexicon or rule file breaks its schema; the message is `file:line: id -> field: problem`."""


class PatternError(ReportminerError):
    """A graph pattern cannot be parsed; the message shows the pattern and the bad position."""


class InputError(ReportminerError):
    """An input file or table cannot be used at all (not one bad report: those are skipped)."""


class OneLineErrors(click.Group):
    """A click group (both CLIs use it) that prints the library's errors as one line, exit status 1, no
    traceback. It lives here, not in the CLI modules, so `classifier` starts without loading spaCy."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ReportminerError as exc:
            raise click.ClickException(str(exc)) from None
