"""What both command-line tools share: one line per error, named exit codes, safe terminal text.

Exit codes: 0 done; 1 a user error, one line naming the file, row or option and the fix (nothing
was written, or the previous output is untouched); 2 a bad command line (click's usage errors);
3 outputs written but some inputs were skipped, each named; 70 a bug in this toolkit (the traceback,
then a line asking for a report); 130 interrupted (Ctrl-C or SIGTERM: a resumable run can go on
with --resume).
"""

from __future__ import annotations

import re
import signal
import sys
import traceback
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, ProgressColumn

from . import __version__
from .errors import ToolkitError

EXIT_SKIPPED = 3
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """Text safe to print: control characters (from file names, ids, report text) and halves of surrogate
    pairs (from JSON, or file names that are not UTF-8) shown as escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if m.group() < "\ud800" else f"\\u{ord(m.group()):04x}",
                        str(text))


def counted(n: int, word: str) -> str:
    """`1 report`, `2 reports`: a count with its noun (plural by `s`)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def progress_bar(*columns: str | ProgressColumn, console: Console, quiet: bool = False) -> Progress:
    """A rich progress bar on `console` (stderr), shown only where that is a terminal: in a log or a pipe a
    bar cannot redraw, and its last state would be left as a line before the summary or the error."""
    return Progress(*columns, console=console, disable=quiet or not console.is_terminal)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class OneLineErrors(click.Group):
    """A click group that prints a `ToolkitError` as one line (exit 1), an interruption as one line
    (exit 130) and anything else, a bug, with its traceback and a request to report it (exit 70)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        previous = signal.signal(signal.SIGTERM, _terminated)  # SIGTERM unwinds like Ctrl-C: locks released
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise click.ClickException(printable(str(exc)).replace("\n", " ")) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; finished work is kept (rerun with --resume where the command has it).",
                       err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception:  # a bug: the one place where a traceback is the right answer
            traceback.print_exc()
            click.echo(f"This is a bug in chestxray-toolkit {__version__}; please report it with the command "
                       f"you ran and the traceback above.", err=True)
            sys.exit(EXIT_BUG)
        finally:
            signal.signal(signal.SIGTERM, previous)
