"""`reportminer explain`: a sentence's mentions, the parse graph around each, and how each was decided."""

from __future__ import annotations

import networkx as nx

from .labeler import Explanation
from .lexicon import Lexicon


def describe(sentence: str, mentions: list[Explanation], lexicon: Lexicon) -> str:
    """Plain text, one block per mention: the decision, the edges near the mention, the rules that matched."""
    if not mentions:
        return f"{sentence!r}: no finding is named (findings.yaml lists what counts)"
    lines = [f"sentence:  {sentence}", f"parsed as: {mentions[0].parsed}"]
    for m in mentions:
        lines += ["", f"{m.match.finding}: {sentence[m.match.start:m.match.end]!r} at {m.match.start}-{m.match.end}"
                      + (" (an indirect sign)" if m.match.sign else "")
                      + f" -> {m.assertion} by {m.rule}"
                      + "".join(f"; {k} {v}" for k, v in m.attributes.items() if v), "  graph around the mention:"]
        lines += [f"    {edge}" for edge in _edges_near(m.graph, m.head)]
        lines.append("  rules that match, highest priority first:")
        for rule, _, tokens in m.matched:
            words = " ".join(m.graph.nodes[t]["text"] for t in tokens)
            decided = "  <- decides" if rule.id == m.rule else ""
            lines.append(f"    {rule.id} ({rule.kind}, priority {rule.priority}) on: {words}{decided}")
        if not m.matched:
            lines.append(f"    none: the default applies ({lexicon.assertions.default_kind} by "
                         f"{lexicon.assertions.default_rule})")
    return "\n".join(lines)


def _edges_near(graph: nx.MultiDiGraph, head: int, hops: int = 2) -> list[str]:
    """Edges with an end within `hops` of the mention's head (either direction), as `head -dep-> child`."""
    near = set(nx.single_source_shortest_path_length(graph.to_undirected(as_view=True), head, cutoff=hops))
    text = {n: f"{d['text']}({n})" + ("*" if n == head else "") for n, d in graph.nodes(data=True)}
    return [f"{text[u]} -{d}-> {text[v]}" for u, v, d in sorted(graph.edges(data="dep")) if u in near or v in near]
