"""Mention-level assertions → one int8 label per finding, with a stated precedence.

Per finding: 1 positive, 0 negative, -1 uncertain, None when never mentioned. When mentions disagree
the lexicon's `precedence` decides (by default positive over uncertain over negative: one asserted
mention anywhere in the report makes the finding present). No_Finding is 0 when any finding is
positive, -1 when none is positive but some are uncertain, and 1 otherwise.
"""

from __future__ import annotations

from typing import Iterable

VALUE = {"positive": 1, "negative": 0, "uncertain": -1}


def aggregate(assertions: Iterable[tuple[str, str]], findings: list[str], precedence: tuple[str, ...],
              no_finding: str) -> dict[str, int | None]:
    """Labels for one report from its (finding, assertion) pairs."""
    rank = {a: n for n, a in enumerate(precedence)}
    best: dict[str, str] = {}
    for finding, assertion in assertions:
        if finding == no_finding:
            continue
        if finding not in best or rank[assertion] < rank[best[finding]]:
            best[finding] = assertion
    labels: dict[str, int | None] = {f: VALUE[best[f]] if f in best else None for f in findings}
    values = set(labels.values())
    labels[no_finding] = 0 if 1 in values else -1 if -1 in values else 1
    return labels
