"""Mention-level assertions → one int8 label per finding, by the lexicon's precedence and schema.

Per finding: 1 positive, 0 negative, -1 uncertain, None when never mentioned. When mentions disagree
the lexicon's `precedence` decides (by default positive over uncertain over negative: one asserted
mention anywhere in the report makes the finding present). The schema then adds what it implies
(CheXpert: an asserted Edema makes Lung Opacity positive, an uncertain one uncertain, a negated one
nothing) and sets its no-finding column: 1 when no finding outside `ignore` is positive or uncertain,
else the schema's `abnormal` value (something positive) or `uncertain` value (something uncertain).
"""

from __future__ import annotations

from typing import Iterable

from .lexicon import Schema

VALUE = {"positive": 1, "negative": 0, "uncertain": -1}
KIND = {v: k for k, v in VALUE.items()}


def aggregate(assertions: Iterable[tuple[str, str]], findings: list[str], precedence: tuple[str, ...],
              schema: Schema) -> dict[str, int | None]:
    """Labels for one report from its (finding, assertion) pairs."""
    rank = {a: n for n, a in enumerate(precedence)}
    best: dict[str, str] = {}

    def offer(finding: str, assertion: str) -> None:
        if finding not in best or rank[assertion] < rank[best[finding]]:
            best[finding] = assertion

    for finding, assertion in assertions:
        if finding != schema.no_finding:
            offer(finding, assertion)
    for parent, children in schema.implies:
        for child in children:
            if best.get(child) in ("positive", "uncertain"):
                offer(parent, best[child])
    labels: dict[str, int | None] = {f: VALUE[best[f]] if f in best else None for f in findings}
    values = {v for f, v in labels.items() if f not in schema.ignore}
    labels[schema.no_finding] = schema.abnormal_value if 1 in values else schema.uncertain_value if -1 in values else 1
    return labels
