"""What a mention says about its finding: side, severity and change (lexicons/attributes.yaml).

Each attribute's patterns are tried on the mention's head and the heads of the noun phrases it sits in
(as assertions are); every word a pattern reaches gives a value, and the attribute's `order` picks
one when there are several ("mild to moderate": moderate), except that two values other than its
`both` value on one mention ("left" and "right") give `both` (bilateral).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .assertions import could_match, phrase_heads
from .lexicon import Lexicon

if TYPE_CHECKING:
    import networkx as nx

ATTRIBUTE_NAMES = ("side", "severity", "change")  # the columns of mentions.parquet


def describe(graph: nx.MultiDiGraph, head: int, lexicon: Lexicon) -> dict[str, str | None]:
    """{attribute: value or None} for the mention whose head token is `head`."""
    anchors = phrase_heads(graph, head, lexicon.assertions.phrase_links)
    out: dict[str, str | None] = {name: None for name in ATTRIBUTE_NAMES}
    for attribute in lexicon.attributes:
        found = set()
        for pattern in attribute.patterns:
            if not could_match(pattern, graph):
                continue
            for anchor in anchors:
                for path in pattern.matches(graph, anchor):  # the word is each pattern's last node
                    value = attribute.value_of(graph.nodes[path[-1]]["word"])
                    if value is not None:
                        found.add(value)
        out[attribute.name] = _pick(found, attribute.order, attribute.both)
    return out


def _pick(found: set[str], order: tuple[str, ...], both: str | None) -> str | None:
    """The first value of `order` that was found; two values other than `both` ("left", "right") give `both`."""
    if both is not None and len(found - {both}) >= 2:
        return both
    return next((value for value in order if value in found), None)
