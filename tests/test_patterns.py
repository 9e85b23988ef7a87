"""The graph-pattern language: parsing, errors, and matching on hand-built graphs (no model)."""

import networkx as nx
import pytest

from reportminer.errors import PatternError
from reportminer.patterns import parse_pattern


def graph(tokens, edges):
    """tokens: list of words (lemma = lower = word); edges: (head, child, label)."""
    g = nx.MultiDiGraph()
    for i, w in enumerate(tokens):
        g.add_node(i, text=w, lower=w.lower(), lemma=w.lower(), tag="NN", pos="NOUN", dep="")
    for h, c, d in edges:
        g.add_edge(h, c, dep=d)
    return g


# "no sign of effusion": sign -det-> no, sign -prep_of-> effusion
G = graph(["no", "sign", "of", "effusion"], [(1, 0, "det"), (1, 2, "prep"), (2, 3, "pobj"), (1, 3, "prep_of")])


def test_walk_through_mention_in_the_middle():
    p = parse_pattern("{lower:no} <-det- * -prep_of-> X")
    assert p.match(G, 3) == [0, 1, 3]


def test_wrong_label_or_direction_does_not_match():
    assert parse_pattern("{lower:no} <-amod- * -prep_of-> X").match(G, 3) is None
    assert parse_pattern("X -prep_of-> *").match(G, 3) is None


def test_prefix_and_alternatives():
    assert parse_pattern("* -prep_*-> X").match(G, 3) == [1, 3]
    assert parse_pattern("{lemma:evidence|sign} -prep_of|prep_for-> X").match(G, 3) == [1, 3]


def test_repeated_edge_reaches_ancestors():
    g = graph(["may", "represent", "opacity", "effusion"], [(1, 0, "aux"), (1, 2, "dobj"), (2, 3, "nmod")])
    assert parse_pattern("X <-*+- * -aux-> {lower:may}").match(g, 3) == [3, 1, 0]
    assert parse_pattern("X <-*- * -aux-> {lower:may}").match(g, 3) is None


def test_a_token_is_used_once():
    g = graph(["no", "effusion"], [(1, 0, "det")])
    assert parse_pattern("{lower:no} <-det- X -det-> *").match(g, 1) is None


@pytest.mark.parametrize("source, message", [
    ("no <- X", "cannot read"),
    ("{lower:no} {lower:no} -*-> X", "two nodes in a row"),
    ("{lower:no} -det->", "must start and end with a node"),
    ("{lower:no} -det-> *", "exactly one X"),
    ("{colour:red} -det-> X", "attr one of"),
    ("{} -det-> X", "empty braces"),
])
def test_bad_patterns_say_what_is_wrong(source, message):
    with pytest.raises(PatternError, match=message):
        parse_pattern(source)
