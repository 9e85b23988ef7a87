"""Decide whether each mention is asserted, negated or uncertain, and name the rule that decided.

Rules come from the lexicon, highest priority first; the first whose pattern matches around the
mention decides. A mention no rule matches is positive, with rule id `DEFAULT_RULE`.

The small parser often reads a list of findings as one noun phrase ("no [pneumothorax or pleural]
effusions", with pneumothorax a modifier of effusions). So each rule is tried on the mention's head
and then on the heads of the noun phrases it modifies, climbing `NOUN_PHRASE_LINKS` edges: the
mention shares the fate of the phrase it sits in.
"""

from __future__ import annotations

import networkx as nx

from .lexicon import Rule

DEFAULT_RULE = "pos.default"
NOUN_PHRASE_LINKS = ("amod", "nmod", "compound", "nn")


def phrase_heads(graph: nx.MultiDiGraph, head: int) -> list[int]:
    """The mention's head, then each noun-phrase head above it along NOUN_PHRASE_LINKS."""
    chain = [head]
    while True:
        ups = [u for u, _, d in graph.in_edges(chain[-1], data="dep") if d in NOUN_PHRASE_LINKS and u not in chain]
        if not ups:
            return chain
        chain.append(min(ups))


def assert_mention(graph: nx.MultiDiGraph, head: int, rules: tuple[Rule, ...]) -> tuple[str, str]:
    """(assertion, rule id) for the mention whose head token is `head`; rules must be priority-sorted."""
    anchors = phrase_heads(graph, head)
    for rule in rules:
        if any(rule.match(graph, anchor) is not None for anchor in anchors):
            return rule.kind, rule.id
    return "positive", DEFAULT_RULE
