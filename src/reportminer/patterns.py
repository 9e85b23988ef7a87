"""A small path language over dependency graphs, written the way the ChestX-ray8 paper writes its rules.

A pattern is a walk through the graph that passes through the mention `X`:

    {lower:no} <-det- X                      "no" is a `det` dependent of the mention
    * -prep_without-> X                      the mention is the object of "without"
    {lemma:exclude} -nsubjpass-> X           "X cannot be excluded" (with other rules for the "not")
    X <-*+- {lemma:suggest|suspect}          some ancestor of X is "suggest" or "suspect"

Nodes: `X` (the mention's head token), `*` (any token), or `{attr:v1|v2, attr:...}` with attr one
of lemma, lower, tag, pos, dep (a token's own relation to its head), word (the report's own word,
lower case, where `lower` is what the parser read after labeler.yaml `parse.replace`). A value may end with `*` to
match a prefix.  Edges: `-LABELS->` (left governs right) or `<-LABELS-` (right governs left), LABELS
being `*` or `a|b|prep_*`; a trailing `+` (`-*+->`) allows one or more hops.  Every token appears at
most once in a match. A pattern has at most 6 tokens and one `+` edge (lexicon_yaml.Limits): the walks
tried on every mention grow with each, and a lexicon is hostile input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from .errors import PatternError
from .lexicon_yaml import LIMITS

if TYPE_CHECKING:
    import networkx as nx

NODE_ATTRS = ("lemma", "lower", "tag", "pos", "dep", "word")


@dataclass(frozen=True)
class NodeSpec:
    """What a token must look like: `is_mention` for X, else attribute alternatives (empty = any)."""

    is_mention: bool
    constraints: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def accepts(self, graph: nx.MultiDiGraph, node: int, mention: int) -> bool:
        if self.is_mention:
            return node == mention
        data = graph.nodes[node]
        return all(any(_value_matches(str(data.get(attr, "")), v) for v in values)
                   for attr, values in self.constraints)


@dataclass(frozen=True)
class EdgeSpec:
    """A step: `forward` when the left node governs the right one."""

    forward: bool
    labels: tuple[str, ...]  # empty = any label
    repeat: bool = False

    def label_ok(self, label: str) -> bool:
        return not self.labels or any(_value_matches(label, v) for v in self.labels)


@dataclass(frozen=True)
class Pattern:
    """A parsed pattern: nodes[i] and nodes[i+1] are joined by edges[i]; nodes[anchor] is X."""

    source: str
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...]
    anchor: int

    def match(self, graph: nx.MultiDiGraph, mention: int) -> list[int] | None:
        """The first walk through `mention` that fits, as token indices in pattern order, or None."""
        if mention not in graph:
            return None
        for path in self._walks(graph, mention):
            return path
        return None

    def matches(self, graph: nx.MultiDiGraph, mention: int) -> Iterator[list[int]]:
        """Every walk through `mention` that fits (attributes want all the words a pattern reaches)."""
        if mention in graph:
            yield from self._walks(graph, mention)

    def _walks(self, graph: nx.MultiDiGraph, mention: int) -> Iterator[list[int]]:
        for right in self._extend(graph, mention, [mention], self.anchor, +1, mention):
            used = right
            for left in self._extend(graph, mention, [mention], self.anchor, -1, mention, frozenset(used)):
                yield list(reversed(left[1:])) + right

    def _extend(self, graph: nx.MultiDiGraph, mention: int, path: list[int], pos: int, step: int,
                current: int, taken: frozenset[int] = frozenset()) -> Iterator[list[int]]:
        """Walk from nodes[pos] towards the pattern's end (step +1) or start (step -1)."""
        nxt = pos + step
        if nxt < 0 or nxt >= len(self.nodes):
            yield path
            return
        edge = self.edges[pos] if step > 0 else self.edges[nxt]
        # Going leftwards we traverse the written edge backwards.
        governs = edge.forward if step > 0 else not edge.forward
        blocked = set(path) | set(taken)
        for target in _neighbours(graph, current, governs, edge, blocked):
            if self.nodes[nxt].accepts(graph, target, mention):
                yield from self._extend(graph, mention, path + [target], nxt, step, target, taken)


def _neighbours(graph: nx.MultiDiGraph, node: int, governs: bool, edge: EdgeSpec,
                blocked: set[int]) -> Iterator[int]:
    """Tokens one step (or, for `+` edges, one or more steps) away along edges with a fitting label."""
    frontier = [node]
    seen = {node}
    while frontier:
        following = []
        for current in frontier:
            pairs = (graph.out_edges(current, data="dep") if governs
                     else ((v, u, d) for u, v, d in graph.in_edges(current, data="dep")))
            for _, other, label in pairs:
                if other in seen or other in blocked or not edge.label_ok(label):
                    continue
                seen.add(other)
                yield other
                following.append(other)
        if not edge.repeat:
            return
        frontier = following


def _value_matches(actual: str, wanted: str) -> bool:
    if wanted.endswith("*"):
        return actual.startswith(wanted[:-1])
    return actual == wanted


_TOKEN = re.compile(r"\s*(?:(X)(?![\w:])|(\*)(?=\s|$)|(\{[^}]*\})|(-[^\s<>-]+->)|(<-[^\s<>-]+-)(?=\s|$))")


def parse_pattern(source: str) -> Pattern:
    """Parse the text of a pattern, with an error that points at the first thing that is wrong."""
    nodes: list[NodeSpec] = []
    edges: list[EdgeSpec] = []
    pos = 0
    text = source.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise PatternError(f"pattern {source!r}: cannot read from position {pos}: {text[pos:]!r}")
        expect_node = len(nodes) == len(edges)
        mention, star, braces, fwd, back = m.groups()
        if (mention or star or braces) and not expect_node:
            raise PatternError(f"pattern {source!r}: two nodes in a row at position {pos}; join them with an edge such as -*->")
        if (fwd or back) and expect_node:
            raise PatternError(f"pattern {source!r}: an edge at position {pos} needs a node before it")
        if mention:
            nodes.append(NodeSpec(is_mention=True))
        elif star:
            nodes.append(NodeSpec(is_mention=False))
        elif braces:
            nodes.append(NodeSpec(is_mention=False, constraints=_parse_constraints(source, braces)))
        else:
            body = fwd[1:-2] if fwd else back[2:-1]
            edges.append(_parse_edge(source, body, forward=bool(fwd)))
        pos = m.end()
    if not nodes or len(nodes) != len(edges) + 1:
        raise PatternError(f"pattern {source!r}: must start and end with a node")
    anchors = [i for i, n in enumerate(nodes) if n.is_mention]
    if len(anchors) != 1:
        raise PatternError(f"pattern {source!r}: needs exactly one X (the mention), found {len(anchors)}")
    if len(nodes) > LIMITS.pattern_nodes or sum(e.repeat for e in edges) > LIMITS.pattern_repeats:
        raise PatternError(f"pattern {source!r}: {len(nodes)} tokens and {sum(e.repeat for e in edges)} `+` edges; a "
                           f"pattern may have at most {LIMITS.pattern_nodes} tokens and {LIMITS.pattern_repeats} `+` "
                           f"edge (the walks tried on every mention grow with each): split it into two rules")
    return Pattern(source=source, nodes=tuple(nodes), edges=tuple(edges), anchor=anchors[0])


def _parse_edge(source: str, body: str, forward: bool) -> EdgeSpec:
    repeat = body.endswith("+")
    body = body[:-1] if repeat else body
    if not body:
        raise PatternError(f"pattern {source!r}: an edge needs a label or *")
    labels = () if body == "*" else tuple(body.split("|"))
    if any(not label for label in labels):
        raise PatternError(f"pattern {source!r}: empty label in edge {body!r}")
    return EdgeSpec(forward=forward, labels=labels, repeat=repeat)


def _parse_constraints(source: str, braces: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    inner = braces[1:-1].strip()
    if not inner:
        raise PatternError(f"pattern {source!r}: empty braces {{}}; write * for any token")
    out = []
    for part in inner.split(","):
        attr, sep, values = part.partition(":")
        attr = attr.strip()
        if not sep or attr not in NODE_ATTRS:
            raise PatternError(
                f"pattern {source!r}: {part.strip()!r} should be attr:value with attr one of {', '.join(NODE_ATTRS)}")
        alternatives = tuple(v.strip() for v in values.split("|"))
        if any(not v for v in alternatives):
            raise PatternError(f"pattern {source!r}: empty value in {part.strip()!r}")
        out.append((attr, alternatives))
    return tuple(out)
