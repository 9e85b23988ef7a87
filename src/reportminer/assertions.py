"""Decide whether each mention is asserted, negated or uncertain, and name the rule that decided.

Rules come from the lexicon, highest priority first; the first whose pattern matches around the
mention decides. A mention no rule matches gets the lexicon's default (labeler.yaml `assertions`:
positive, rule `pos.default`), and an asserted indirect sign of a finding gets the sign's decision
(uncertain, `unc.indirect_sign`).

The small parser often reads a list of findings as one noun phrase ("no [pneumothorax or pleural]
effusions", with pneumothorax a modifier of effusions). So each rule is tried on the mention's head
and then on the heads of the noun phrases it modifies, climbing the lexicon's `phrase_links` edges:
the mention shares the fate of the phrase it sits in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .lexicon import Lexicon, Rule
from .patterns import NODE_ATTRS, Pattern

if TYPE_CHECKING:
    import networkx as nx


def phrase_heads(graph: nx.MultiDiGraph, head: int, links: tuple[str, ...]) -> list[int]:
    """The mention's head, then each noun-phrase head above it along `links` edges."""
    chain = [head]
    while True:
        ups = [u for u, _, d in graph.in_edges(chain[-1], data="dep") if d in links and u not in chain]
        if not ups:
            return chain
        chain.append(min(ups))


def could_match(pattern: Pattern, graph: nx.MultiDiGraph) -> bool:
    """False when `pattern` cannot match anywhere in `graph`: one of its nodes asks for a value no token has,
    or one of its edges for a label no edge has. A quick test before the walk (most rules name words, "no",
    "may", "exclude", that most sentences lack); it never turns a match away. Remembered per graph."""
    memo = graph.graph.get("could_match")
    if memo is None:  # the values each attribute of the tokens has, and the edge labels under "edge"
        index = {attr: {str(data.get(attr, "")) for _, data in graph.nodes(data=True)} for attr in NODE_ATTRS}
        index["edge"] = {label for _, _, label in graph.edges(data="dep")}
        memo = graph.graph["could_match"] = {"index": index}
    found = memo.get(id(pattern))
    if found is None:
        index = memo["index"]
        found = memo[id(pattern)] = all(not exact.isdisjoint(index[attr])
                                        or (prefixes and any(v.startswith(prefixes) for v in index[attr]))
                                        for attr, exact, prefixes in _needs(pattern))
    return found


_NEEDS: dict[int, tuple[Pattern, list[tuple[str, frozenset[str], tuple[str, ...]]]]] = {}


def _needs(pattern: Pattern) -> list[tuple[str, frozenset[str], tuple[str, ...]]]:
    """What `pattern` asks of a sentence: per constrained node attribute or labelled edge ("edge"), the exact
    values and the prefixes (values ending in *) of which one must be present."""
    entry = _NEEDS.get(id(pattern))
    if entry is None or entry[0] is not pattern:
        wants = [(attr, values) for node in pattern.nodes for attr, values in node.constraints]
        wants += [("edge", edge.labels) for edge in pattern.edges if edge.labels]
        entry = _NEEDS[id(pattern)] = (pattern, [(attr, frozenset(v for v in values if not v.endswith("*")),
                                                  tuple(v[:-1] for v in values if v.endswith("*")))
                                                 for attr, values in wants])
    return entry[1]


def matching_rules(graph: nx.MultiDiGraph, head: int, lexicon: Lexicon) -> Iterator[tuple[Rule, int, list[int]]]:
    """Every rule that matches the mention, highest priority first, with the anchor and tokens it matched."""
    anchors = phrase_heads(graph, head, lexicon.assertions.phrase_links)
    for rule in lexicon.rules:
        if not any(could_match(pattern, graph) for pattern in rule.patterns):
            continue
        for anchor in anchors:
            tokens = rule.match(graph, anchor)
            if tokens is not None:
                yield rule, anchor, tokens
                break


def decide(graph: nx.MultiDiGraph, head: int, lexicon: Lexicon, sign: bool = False,
           absent: bool = False) -> tuple[str, str]:
    """(assertion, rule id) for the mention whose head token is `head`; `sign` for an indirect sign,
    `absent` for a statement that the finding is absent (decided by the statement, not by rules). An
    asserted mention in a sentence asked as a question ("?pneumonia", "Effusion?") becomes `query`."""
    kind, rule, _ = decide_matched(graph, head, lexicon, sign, absent)
    return kind, rule


def decide_matched(graph: nx.MultiDiGraph, head: int, lexicon: Lexicon, sign: bool = False,
                   absent: bool = False) -> tuple[str, str, str | None]:
    """`decide`, and the id of the rule whose pattern matched (None when none did): the rule the decision
    rests on even when a sign or a question renames it, which an edit of the rules is checked against."""
    if absent:
        return lexicon.assertions.absent_kind, lexicon.assertions.absent_rule, None
    found = next(matching_rules(graph, head, lexicon), None)
    if found is None:
        kind, rule, matched = lexicon.assertions.default_kind, lexicon.assertions.default_rule, None
    else:
        kind, rule, matched = found[0].kind, found[0].id, found[0].id
    if sign and kind == "positive":
        return lexicon.assertions.sign_kind, lexicon.assertions.sign_rule, matched
    if kind == "positive" and (_asked(graph) or _marked(graph, head)):
        return lexicon.assertions.query_kind, lexicon.assertions.query_rule, matched
    return kind, rule, matched


def _asked(graph: nx.MultiDiGraph) -> bool:
    """The sentence begins or ends with a question mark."""
    words = [graph.nodes[n]["text"] for n in sorted(graph.nodes)]
    while words and words[-1] in (".", ";", ","):
        words.pop()
    return bool(words) and (words[0].startswith("?") or words[-1].endswith("?"))


QUERY_REACH = 4  # words a "?" may stand before the mention it questions ("? small left effusion")
CLAUSE_MARKS = {",", ";", ":", ".", "-", "(", ")"}


def _marked(graph: nx.MultiDiGraph, head: int) -> bool:
    """A question mark stands before the mention in its clause, at most QUERY_REACH words before it
    ("? minimal effusion", "? vascular ? hilar mass"): the telegraphic reports' way of asking."""
    for n in range(head - 1, max(-1, head - QUERY_REACH - 2), -1):
        text = graph.nodes[n]["text"] if n in graph else ""
        if text.startswith("?"):
            return True
        if text in CLAUSE_MARKS:
            return False
    return False
