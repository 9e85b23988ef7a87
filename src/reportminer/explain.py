"""`reportminer explain`: a text's mentions, the parse graph around each, and how each was decided.

The text is read as `label` reads a report: cleaned the same way (control characters and lone
surrogates replaced), refused beyond `limits.report_chars` and cut into the sentences `label` would
see (at most `limits.sentence_chars` each), so an explanation never disagrees with a label and its
work is bounded. What is printed is the user's own words, control characters escaped: the parser
reads each mention masked as a plain noun and some words replaced (labeler.yaml `parse`), but the
graph and the rules' words are shown as written; only the `parsed as:` line shows what was parsed.
"""

from __future__ import annotations

from typing import Callable

import networkx as nx

from cxrcore.cli import printable
from cxrcore.errors import InputError

from .labeler import Explanation, Labeler, mask_mentions
from .lexicon import Lexicon
from .readers import clean_text
from .sections import normalise, split_sentences


def explain_text(text: str, labeler: Labeler, finding: str | None = None) -> str:
    """Plain text explaining every sentence of `text` (only the mentions of `finding`, if given)."""
    lexicon = labeler.lexicon
    if len(text) > lexicon.limits.report_chars:
        raise InputError(f"the text has {len(text):,} characters, more than the {lexicon.limits.report_chars:,} "
                         f"`label` reads in one report (labeler.yaml limits.report_chars); explain a part of it")
    cleaned = clean_text(text)
    if not cleaned.strip():
        raise InputError("nothing to explain: the text is blank (or holds only control characters)")
    spans = list(split_sentences(cleaned, 0, len(cleaned), lexicon.limits.sentence_chars))
    explained = labeler.explain([cleaned[a:b] for a, b in spans])
    return "\n\n".join(describe(cleaned[a:b], mentions, lexicon, finding, shown=text[a:b])
                       for (a, b), mentions in zip(spans, explained))


def describe(sentence: str, mentions: list[Explanation], lexicon: Lexicon, finding: str | None = None,
             shown: str | None = None) -> str:
    """One block per mention: the decision, the edges near the mention, the rules that matched. `sentence`
    is what the labeler read, `shown` the user's text of the same length (default: `sentence`)."""
    shown = sentence if shown is None else shown
    chosen = [m for m in mentions if finding in (None, m.match.finding)]
    if not chosen:
        return (f"{printable(repr(shown))}: {'no finding' if finding is None else f'no {finding}'} is named "
                f"(findings.yaml lists what counts)")
    word = _user_words(sentence, shown, mentions, lexicon)
    lines = [f"sentence:  {printable(shown)}", f"parsed as: {printable(mentions[0].parsed)}"]
    for m in chosen:
        lines += ["", f"{m.match.finding}: {printable(repr(shown[m.match.start:m.match.end]))} at "
                      f"{m.match.start}-{m.match.end}"
                      + (" (an indirect sign)" if m.match.sign else "")
                      + f" -> {m.assertion} by {m.rule}"
                      + "".join(f"; {k} {v}" for k, v in m.attributes.items() if v), "  graph around the mention:"]
        lines += [f"    {edge}" for edge in _edges_near(m.graph, m.head, word)]
        lines.append("  rules that match, highest priority first:")
        for rule, _, tokens in m.matched:
            words = " ".join(word(m.graph, t) for t in tokens)
            decided = "  <- decides" if rule.id == m.rule else ""
            lines.append(f"    {rule.id} ({rule.kind}, priority {rule.priority}) on: {words}{decided}")
        if not m.matched:
            lines.append(f"    none: the default applies ({lexicon.assertions.default_kind} by "
                         f"{lexicon.assertions.default_rule})")
    return "\n".join(lines)


def _user_words(sentence: str, shown: str, mentions: list[Explanation],
                lexicon: Lexicon) -> Callable[[nx.MultiDiGraph, int], str]:
    """token → the user's words it stands for: a masked mention's whole text, else the token's own span
    moved back by what the masks before it changed (words outside mentions keep their length)."""
    _, spans = mask_mentions(normalise(sentence, lexicon.placeholders), [m.match for m in mentions], lexicon.parse)
    groups: dict[tuple[int, int], tuple[int, int]] = {}  # span in the parsed text → span in the user's text
    for (a, b), m in zip(spans, mentions):
        start, end = groups.get((a, b), (m.match.start, m.match.end))
        groups[(a, b)] = (min(start, m.match.start), max(end, m.match.end))

    def word(graph: nx.MultiDiGraph, node: int) -> str:
        idx, length = graph.nodes[node]["idx"], len(graph.nodes[node]["text"])
        shift = 0
        for (a, b), (start, end) in sorted(groups.items()):
            if a <= idx < b:
                return printable(shown[start:end])
            if b <= idx:
                shift = end - b
        return printable(shown[idx + shift:idx + shift + length])

    return word


def _edges_near(graph: nx.MultiDiGraph, head: int, word: Callable[[nx.MultiDiGraph, int], str],
                hops: int = 2) -> list[str]:
    """Edges with an end within `hops` of the mention's head (either direction), as `head -dep-> child`."""
    near = set(nx.single_source_shortest_path_length(graph.to_undirected(as_view=True), head, cutoff=hops))
    text = {n: f"{word(graph, n)}({n})" + ("*" if n == head else "") for n in graph.nodes}
    return [f"{text[u]} -{d}-> {text[v]}" for u, v, d in sorted(graph.edges(data="dep")) if u in near or v in near]
