"""The click group both command-line tools use: library errors become one line and exit status 1."""

from __future__ import annotations

import click

from .errors import ToolkitError


class OneLineErrors(click.Group):
    """A click group that prints a `ToolkitError` as one line, exit status 1, no traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise click.ClickException(str(exc)) from None
