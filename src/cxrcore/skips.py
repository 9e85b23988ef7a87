"""Inputs a run skipped: each named once on stderr as it is met, and counted, so that every command
that skips (label, prepare, fit, score) ends the same way: exit 3 (`cli.EXIT_SKIPPED`), the outputs
written from everything else."""

from __future__ import annotations

from typing import Callable


class Skips:
    """A `say` for skips: `skips("unreadable image x.png: ...")` prints `skipped unreadable image ...`
    the first time; `len(skips)` is what was skipped here plus what other processes reported (`elsewhere`)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.seen: set[str] = set()
        self.elsewhere = 0  # skips of other training processes, summed at the end of a distributed run

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.say(f"skipped {message}")

    def __len__(self) -> int:
        return len(self.seen) + self.elsewhere
