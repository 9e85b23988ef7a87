"""Decide whether each mention is asserted, negated or uncertain, and name the rule that decided.

Rules come from the lexicon, highest priority first; the first whose pattern matches around the
mention decides. A mention no rule matches is positive, with rule id `DEFAULT_RULE`.
"""

from __future__ import annotations

import networkx as nx

from .lexicon import Rule

DEFAULT_RULE = "pos.default"


def assert_mention(graph: nx.MultiDiGraph, head: int, rules: tuple[Rule, ...]) -> tuple[str, str]:
    """(assertion, rule id) for the mention whose head token is `head`; rules must be priority-sorted."""
    for rule in rules:
        if rule.match(graph, head) is not None:
            return rule.kind, rule.id
    return "positive", DEFAULT_RULE
