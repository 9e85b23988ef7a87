"""`classifier`: the command group; `fit`, `score` and `localize` join it as they are built."""

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="classifier")
def main() -> None:
    """Train and apply the weakly supervised localizer (not yet available in this release)."""
