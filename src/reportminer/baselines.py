"""Baselines for the ablation: NegEx (negspacy's implementation) deciding the same mentions.

The keyword baseline needs no code of its own (every mention is positive; see `labeler`). NegEx
reads only the words around a mention, with no parse, so it shows what the graph rules add.
"""

from __future__ import annotations

from typing import Callable

from spacy.language import Language

from cxrcore.errors import ToolkitError
from .mentions import Match

SPAN_KEY = "mentions"


def negex_decider(nlp: Language) -> Callable[[str, list[Match]], list[tuple[str, int, int, str, str]]]:
    """A function deciding a sentence's mentions with negspacy's NegEx (negative or positive only)."""
    try:
        import negspacy.negation  # noqa: F401  (registers the "negex" factory)
    except ImportError:
        raise ToolkitError("the negex baseline needs negspacy: pip install 'chestxray-toolkit[baselines]'") from None
    import spacy

    tokenizer_only = spacy.blank(nlp.lang)
    negex = tokenizer_only.add_pipe("negex", config={"span_keys": [SPAN_KEY]})

    def decide(sentence: str, matches: list[Match]) -> list[tuple[str, int, int, str, str]]:
        doc = tokenizer_only.make_doc(sentence)
        for token in doc:  # the text is one sentence already
            token.is_sent_start = token.i == 0
        spans = [doc.char_span(m.start, m.end, label=m.finding, alignment_mode="expand") for m in matches]
        doc.spans[SPAN_KEY] = spans
        doc = negex(doc)
        return [(m.finding, m.start, m.end, "negative" if span._.negex else "positive", "negex")
                for m, span in zip(matches, doc.spans[SPAN_KEY])]

    return decide
