"""The labeling stage end to end: Report → sections → sentences → mentions → parse → assertions → labels.

Only sentences that name a finding are parsed, and each distinct sentence is decided once (reports
repeat sentences heavily), so the parser's cost grows with the vocabulary of findings, not with
the archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from spacy.language import Language

from .aggregate import aggregate
from .assertions import assert_mention
from .lexicon import Lexicon
from .mentions import Match, MentionFinder
from .parse import parse_sentences, sentence_graph
from .readers import Report
from .sections import normalise, select_sections, split_sentences

METHODS = ("rules", "keyword", "negex")
NORMAL_RULE = "normal.phrase"


@dataclass(frozen=True)
class Mention:
    """One decided mention, as written to the evidence file."""

    finding: str
    section: str
    sentence_index: int
    start: int
    end: int
    text: str
    sentence: str
    assertion: str
    rule: str


@dataclass
class Labeled:
    """A report with its labels (finding → 1/0/-1/None) and the mentions behind them."""

    report: Report
    labels: dict[str, int | None]
    mentions: list[Mention]


# A sentence's decisions: (finding, start, end, assertion, rule) with offsets inside the sentence.
Decision = tuple[str, int, int, str, str]


class Labeler:
    """Holds the lexicon, the compiled synonyms and the parser; labels reports in batches."""

    def __init__(self, lexicon: Lexicon, nlp: Language, method: str = "rules", batch_size: int = 256) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.lexicon = lexicon
        self.nlp = nlp
        self.method = method
        self.batch_size = batch_size
        self.finder = MentionFinder(lexicon)
        self._cache: dict[str, list[Decision]] = {}
        self._negex: Callable[[str, list[Match]], list[Decision]] | None = None
        if method == "negex":
            from .baselines import negex_decider

            self._negex = negex_decider(nlp)

    def label(self, reports: Iterable[Report]) -> Iterator[Labeled]:
        """Label reports, `batch_size` at a time, in input order."""
        batch: list[Report] = []
        for report in reports:
            batch.append(report)
            if len(batch) >= self.batch_size:
                yield from self._label_batch(batch)
                batch = []
        if batch:
            yield from self._label_batch(batch)

    def _label_batch(self, reports: list[Report]) -> Iterator[Labeled]:
        layouts = [self._layout(r) for r in reports]
        todo = sorted({s for layout in layouts for _, _, _, s, _ in layout if s not in self._cache})
        self._decide(todo)
        for report, layout in zip(reports, layouts):
            mentions: list[Mention] = []
            for section, index, offset, sentence, original in layout:
                for finding, a, b, assertion, rule in self._cache[sentence]:
                    mentions.append(Mention(finding, section, index, offset + a, offset + b,
                                            report.text[offset + a:offset + b], original, assertion, rule))
            labels = aggregate(((m.finding, m.assertion) for m in mentions), self.lexicon.finding_names,
                               self.lexicon.precedence, self.lexicon.no_finding)
            yield Labeled(report, labels, mentions)

    def _layout(self, report: Report) -> list[tuple[str, int, int, str, str]]:
        """(section, sentence index, offset, normalised sentence, original sentence) for each sentence."""
        text = normalise(report.text, self.lexicon.placeholders)
        out = []
        for section, start, end in select_sections(report, self.lexicon.sections):
            for a, b in split_sentences(text, start, end):
                out.append((section, len(out), a, text[a:b], report.text[a:b]))
        return out

    def _decide(self, sentences: list[str]) -> None:
        """Fill the cache for sentences not yet seen; only those naming a finding are parsed."""
        needing_parse = []
        for sentence in sentences:
            matches = self.finder.find(sentence)
            normal = [(m.finding, m.start, m.end, "positive", NORMAL_RULE) for m in self.finder.find_normal(sentence)]
            if not matches:
                self._cache[sentence] = normal
            elif self.method == "keyword":
                self._cache[sentence] = [(m.finding, m.start, m.end, "positive", "keyword") for m in matches] + normal
            elif self._negex is not None:
                self._cache[sentence] = self._negex(sentence, matches) + normal
            else:
                needing_parse.append((sentence, matches, normal))
        docs = parse_sentences(self.nlp, (s for s, _, _ in needing_parse), self.batch_size)
        for (sentence, matches, normal), doc in zip(needing_parse, docs):
            graph = sentence_graph(doc)
            decisions = []
            for m in matches:
                span = doc.char_span(m.start, m.end, alignment_mode="expand")
                assertion, rule = assert_mention(graph, span.root.i, self.lexicon.rules)
                decisions.append((m.finding, m.start, m.end, assertion, rule))
            self._cache[sentence] = decisions + normal
