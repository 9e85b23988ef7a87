"""The labeling stage end to end: Report → sections → sentences → mentions → parse → assertions → labels.

Only sentences that name a finding are parsed, and each distinct sentence is decided once (reports
repeat sentences heavily), so the parser's cost grows with the vocabulary of findings, not with
the archive. A `DecisionStore` (cache.py) keeps the decisions, and the parses behind them, between
runs and shares them between the processes of a run: a sentence decided yesterday, or by the other
worker a moment ago, is looked up. With `Carry`, decisions made under an earlier version of the
lexicon are reused for sentences that no changed rule touches (`--relabel-changed-rules`).

Before parsing, each mention found by a synonym is replaced by a plain noun (labeler.yaml
`parse.mask`): the small parser reads "no parenchymal infiltrates" as a verb phrase and lists of
rare medical words as compounds, but parses "no parenchymal opacities" and "no nodules, masses or
opacities" correctly. Mentions found by a lexicon *pattern* ("the heart is not enlarged") keep their
words, since the pattern may contain the cue itself.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .aggregate import aggregate
from .assertions import decide, decide_matched, matching_rules, phrase_heads
from .attributes import ATTRIBUTE_NAMES, describe
from .cache import DecisionStore
from .choices import METHODS
from .lexicon import Lexicon, ParseSettings, Rule
from .mentions import Match, MentionFinder
from .parse import decode_parse, encode_parse, load_model, parse_sentences, sentence_graph
from .readers import Report
from .sections import heading_regex, normalise, revision_regex, select_sections, split_sentences

if TYPE_CHECKING:
    import networkx as nx
    from spacy.language import Language
    from spacy.tokens import Doc

BLANK = "blank"  # the kind of a convention's value that counts a mention as not mentioned (conventions.py)
CACHE_LIMIT = 200_000  # distinct sentences remembered; the cache starts afresh past this, to bound memory


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
    side: str | None = None
    severity: str | None = None
    change: str | None = None


@dataclass
class Labeled:
    """A report with its labels (finding → 1/0/-1/None) and the mentions behind them."""

    report: Report
    labels: dict[str, int | None]
    mentions: list[Mention]
    touched: bool = False  # with `Carry`: a sentence of the report is touched by the changed rules
    kept: list[Any] | None = None  # as the cache's `reports` table keeps it (`_expand` gives it back)


# A sentence's decisions: (finding, start, end, assertion, rule, (side, severity, change), matched rule) with
# offsets inside the sentence; the baselines and normal phrases state no attribute. The matched rule is
# the lexicon rule whose pattern decided (None for none): the one an edit of the rules is checked against.
# Read back from the cache, the tuples are lists.
Attributes = tuple[str | None, str | None, str | None]
Decision = tuple[str, int, int, str, str, Attributes, str | None]
NO_ATTRIBUTES: Attributes = (None, None, None)


@dataclass(frozen=True)
class Carry:
    """Decisions made under an earlier lexicon (their cache namespace) and the rules that changed since:
    a sentence whose decisions rest on no changed rule, and where no changed rule matches now, keeps them."""

    namespace: str
    changed: frozenset[str]


@dataclass
class Explanation:
    """How one mention of a sentence was decided: what was parsed, every rule that matched, the decision."""

    match: Match
    parsed: str  # the sentence as the parser saw it (placeholders replaced, mentions masked)
    graph: nx.MultiDiGraph
    head: int
    matched: list[tuple[Rule, int, list[int]]]  # (rule, anchor token, matched tokens), highest priority first
    assertion: str
    rule: str
    attributes: dict[str, str | None]


class Labeler:
    """Holds the lexicon, the compiled synonyms and the parser; labels reports in batches."""

    def __init__(self, lexicon: Lexicon, nlp: Language | str, method: str = "rules", batch_size: int = 256,
                 cache: bool = True, store: DecisionStore | None = None, carry: Carry | None = None) -> None:
        """`nlp` is a loaded pipeline or the name of one, loaded when a sentence must first be parsed (a run
        the cache serves never loads it). `cache` False decides every sentence where it occurs, as a
        labeler without the cache would (for like-for-like speed measurements; `store` is then unused);
        labels are the same either way. `store`: the persistent cache; `carry`: see `Carry`."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.lexicon = lexicon
        self._nlp = None if isinstance(nlp, str) else nlp
        self._model = nlp if isinstance(nlp, str) else None
        self.method = method
        self.batch_size = batch_size
        self.cache = cache
        self.store = store if cache else None
        self.carry = carry
        self.touched: set[str] = set()  # with `carry`: sentences the changed rules touch (or never decided before)
        self.finder = MentionFinder(lexicon)
        self._cache: dict[str, list[Decision]] = {}
        self._negex: Callable[[str, list[Match]], list[Decision]] | None = None
        self._vocab: Any = None

    @property
    def nlp(self) -> Language:
        if self._nlp is None:
            self._nlp = load_model(self._model)
        return self._nlp

    def label(self, reports: Iterable[Report]) -> Iterator[Labeled]:
        """Label reports, `batch_size` at a time, in input order."""
        batch: list[Report] = []
        for report in reports:
            batch.append(report)
            if len(batch) >= self.batch_size:
                yield from self._label_stored(batch)
                batch = []
        if batch:
            yield from self._label_stored(batch)

    def _label_stored(self, reports: list[Report]) -> Iterator[Labeled]:
        """Reports whose text the store has labeled under these settings are served whole (an archive
        labeled again skips even the sentence splitting); the others are labeled, then stored. Not with
        `carry`: an update with changed rules must see every sentence to know which ones they touch."""
        if self.store is None or self.carry is not None:
            yield from self._label_batch(reports)
            return
        keys = [content_key(r) for r in reports]
        found = self.store.get("reports", dict.fromkeys(keys))
        fresh = iter(self._label_batch([r for r, key in zip(reports, keys) if key not in found], keep=True))
        stored: dict[str, list[Any]] = {}
        columns = self.lexicon.label_columns
        for report, key in zip(reports, keys):
            if key in found:
                yield _expand(report, found[key], columns)
            else:
                done = next(fresh)
                stored[key] = done.kept
                yield done
        self.store.put("reports", stored)

    def _label_batch(self, reports: list[Report], keep: bool = False) -> Iterator[Labeled]:
        """Label the reports; with `keep`, each also in the form the `reports` table keeps (`Labeled.kept`)."""
        if len(self._cache) > CACHE_LIMIT or not self.cache:
            self._cache.clear()
        layouts = [self._layout(r) for r in reports]
        if self.cache:
            self._fill(sorted({s for layout in layouts for _, _, _, s, _ in layout if s not in self._cache}))
        else:
            self._cache.update(self._decide([s for layout in layouts for _, _, _, s, _ in layout]))
        for report, layout in zip(reports, layouts):
            mentions: list[Mention] = []
            kept: list[list[Any]] = []
            for section, index, offset, sentence, original in layout:
                for finding, a, b, assertion, rule, attributes, _ in self._cache[sentence]:
                    if assertion == BLANK:
                        continue
                    mentions.append(Mention(finding, section, index, offset + a, offset + b,
                                            report.text[offset + a:offset + b], original, assertion, rule, *attributes))
                    if keep:
                        kept.append([finding, section, index, offset + a, offset + b, offset, len(original),
                                     assertion, rule, *attributes])
            labels = aggregate(((m.finding, m.assertion) for m in latest(mentions, revision_starts(report.text,
                                                                                           self.lexicon.revisions))),
                               self.lexicon.finding_names, self.lexicon.precedence, self.lexicon.schema)
            yield Labeled(report, labels, mentions,
                          bool(self.touched) and any(s in self.touched for _, _, _, s, _ in layout),
                          [list(labels.values()), kept] if keep else None)

    def _fill(self, sentences: list[str]) -> None:
        """Decisions for sentences not in memory: carried over (with `carry`), from the store, or decided
        (then stored). With `carry` every sentence is checked, so that `touched` is the same in every process."""
        carried = self._carried(sentences) if self.carry and self.store and sentences else {}
        rest = [s for s in sentences if s not in carried]
        if self.carry:
            self.touched.update(rest)
        found = self.store.get("decisions", rest) if self.store else {}
        decided = self._decide([s for s in rest if s not in found])
        self._cache.update(carried)
        self._cache.update(found)
        self._cache.update(decided)
        if self.store:
            self.store.put("decisions", {**carried, **decided})

    def _carried(self, sentences: list[str]) -> dict[str, list[Decision]]:
        """The earlier lexicon's decisions of sentences no changed rule touches: none of their decisions
        rests on a changed rule, and no changed rule, as it reads now, matches one of their mentions."""
        assert self.carry is not None and self.store is not None
        changed = self.carry.changed
        old = self.store.get("decisions", sentences, namespace=self.carry.namespace)
        kept = {s: d for s, d in old.items() if not any(decision[6] in changed for decision in d)}
        rules = [r for r in self.lexicon.rules if r.id in changed]
        if self.method != "rules" or not rules:
            return kept
        items = [(s, [m for m in self.finder.find(s) if not m.absent]) for s in kept]
        items = [(s, matches) for s, matches in items if matches]
        links = self.lexicon.assertions.phrase_links
        for (sentence, _), (graph, heads) in zip(items, self._graphs(items)):
            anchors = {a for head in heads for a in phrase_heads(graph, head, links)}
            if any(rule.match(graph, anchor) is not None for rule in rules for anchor in anchors):
                del kept[sentence]
        return kept

    def _layout(self, report: Report) -> list[tuple[str, int, int, str, str]]:
        """(section, sentence index, offset, normalised sentence, original sentence) for each sentence."""
        text = normalise(report.text, self.lexicon.placeholders)
        out = []
        for section, start, end in select_sections(report, self.lexicon.sections):
            for a, b in split_sentences(text, start, end, self.lexicon.limits.sentence_chars,
                                        self.lexicon.parse.headings):
                out.append((section, len(out), a, self._cased(text[a:b]), report.text[a:b]))
        return out

    def _cased(self, sentence: str) -> str:
        """The sentence as parsed: in lower case when it is all capitals (and lowering keeps its length)."""
        if self.lexicon.parse.lowercase_all_caps and sentence.isupper():
            lowered = sentence.lower()
            if len(lowered) == len(sentence):
                return lowered
        return sentence

    def _decide(self, sentences: list[str]) -> dict[str, list[Decision]]:
        """The decisions of each sentence; only those naming a finding are parsed."""
        out: dict[str, list[Decision]] = {}
        needing_parse = []
        for sentence in sentences:
            matches = self.finder.find(sentence)
            normal = [(m.finding, m.start, m.end, "positive", self.lexicon.normal_rule, NO_ATTRIBUTES, None)
                      for m in self.finder.find_normal(sentence)]
            # A statement of absence ("heart size is normal") is decided by the lexicon, whatever the method.
            stated = [(m.finding, m.start, m.end, self.lexicon.assertions.absent_kind,
                       self.lexicon.assertions.absent_rule, NO_ATTRIBUTES, None) for m in matches if m.absent]
            if not matches:
                out[sentence] = normal
            elif all(m.absent for m in matches):  # "Lungs clear.": decided by the lexicon, nothing to parse
                out[sentence] = stated + normal
            elif self.method == "keyword":
                out[sentence] = _in_order([(m.finding, m.start, m.end, "positive", "keyword", NO_ATTRIBUTES, None)
                                           for m in matches if not m.absent] + stated) + normal
            elif self.method == "negex":
                named = [m for m in matches if not m.absent]
                out[sentence] = _in_order([(*d, NO_ATTRIBUTES, None) for d in self._negex_decider()(sentence, named)]
                                          + stated) + normal
            else:
                needing_parse.append((sentence, matches, normal))
        parsed = self._graphs([(s, matches) for s, matches, _ in needing_parse])
        for (sentence, matches, normal), (graph, heads) in zip(needing_parse, parsed):
            decisions: list[Decision] = []
            for m, head in zip(matches, heads):
                assertion, rule, matched = decide_matched(graph, head, self.lexicon, m.sign, m.absent)
                attributes = NO_ATTRIBUTES if m.absent else _attributes(graph, head, self.lexicon)  # as unparsed ones
                decisions.append((m.finding, m.start, m.end, assertion, rule, attributes, matched))
            out[sentence] = decisions + normal  # blank ones too: the rule behind them counts for `Carry`
        return out

    def _negex_decider(self) -> Callable[[str, list[Match]], list[tuple[str, int, int, str, str]]]:
        if self._negex is None:
            from .baselines import negex_decider

            self._negex = negex_decider(self.nlp)
        return self._negex

    def _graphs(self, items: list[tuple[str, list[Match]]]) -> list[tuple[nx.MultiDiGraph, list[int]]]:
        """For each (sentence, mentions): the masked sentence's graph and each mention's head token. A masked
        sentence is parsed once, and not at all when the store holds its parse."""
        masked = [mask_mentions(sentence, matches, self.lexicon.parse) for sentence, matches in items]
        texts = sorted({text for text, _ in masked})
        stored = self.store.get("parses", texts) if self.store else {}
        fresh = [t for t in texts if t not in stored]
        docs: dict[str, Doc] = dict(zip(fresh, parse_sentences(self.nlp, fresh, self.batch_size))) if fresh else {}
        if self.store and docs:
            self.store.put("parses", {text: encode_parse(doc) for text, doc in docs.items()})
        if stored and self._vocab is None:
            self._vocab = self.nlp.vocab if self._nlp is not None else _blank_vocab(self._model)
        out = []
        for text, spans in masked:
            doc = docs[text] if text in docs else decode_parse(stored[text], self._vocab)
            out.append((sentence_graph(doc, self.lexicon.parse), _heads(doc, spans)))
        return out


    def explain(self, sentences: list[str]) -> list[list[Explanation]]:
        """For each sentence, each mention with the rules that matched it and the decision the labeler makes
        (the same `decide` as labeling: an explanation never disagrees with a label)."""
        texts = [self._cased(normalise(s, self.lexicon.placeholders)) for s in sentences]
        items = [(text, self.finder.find(text)) for text in texts]
        out = []
        for (text, matches), (graph, heads) in zip(items, parse_mentions(self.nlp, items, self.lexicon.parse)):
            parsed = mask_mentions(text, matches, self.lexicon.parse)[0]
            out.append([Explanation(m, parsed, graph, head, list(matching_rules(graph, head, self.lexicon)),
                                    *decide(graph, head, self.lexicon, m.sign, m.absent),
                                    describe(graph, head, self.lexicon)) for m, head in zip(matches, heads)])
        return out


def _in_order(decisions: list[Decision]) -> list[Decision]:
    """Decisions in the order of their mentions in the sentence, as the rules method gives them."""
    return sorted(decisions, key=lambda d: (d[1], d[2]))


def _expand(report: Report, value: list[Any], columns: list[str]) -> Labeled:
    """The labeled report kept in the `reports` table: the labels in column order, each mention with offsets
    instead of its words and sentence (the report's text gives them back)."""
    labels, mentions = value
    text = report.text
    return Labeled(report, dict(zip(columns, labels)),
                   [Mention(finding, section, index, a, b, text[a:b], text[start:start + length], assertion, rule,
                            side, severity, change)
                    for finding, section, index, a, b, start, length, assertion, rule, side, severity, change
                    in mentions])


def content_key(report: Report) -> str:
    """What a report's labels and mentions are made from: its text and sections (not its id or images)."""
    digest = hashlib.blake2b(report.text.encode("utf-8", "surrogatepass"), digest_size=16)
    digest.update(b"\0" + repr(report.sections).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def revision_starts(text: str, words: tuple[str, ...]) -> list[int]:
    """Where each revision of the report begins (a line opening with a revision word, "ADDENDUM")."""
    if not words:
        return []
    return [m.start() for m in revision_regex(words).finditer(text)]


def latest(mentions: list[Mention], starts: list[int]) -> list[Mention]:
    """For each finding, the mentions of the latest revision that mentions it: a final report or an
    addendum re-reads the film, and what it says of a finding replaces the preliminary read."""
    if not starts:
        return mentions
    revision = [bisect.bisect_right(starts, m.start) for m in mentions]
    last: dict[str, int] = {}
    for m, r in zip(mentions, revision):
        last[m.finding] = max(last.get(m.finding, 0), r)
    return [m for m, r in zip(mentions, revision) if r == last[m.finding]]


def _attributes(graph: nx.MultiDiGraph, head: int, lexicon: Lexicon) -> Attributes:
    values = describe(graph, head, lexicon)
    return tuple(values[name] for name in ATTRIBUTE_NAMES)  # type: ignore[return-value]


def _blank_vocab(model: str | None) -> Any:
    """A vocabulary to rebuild stored parses with, without loading the pipeline."""
    from .parse import import_spacy, model_meta

    import_spacy(model or "")
    import spacy

    return spacy.blank((model_meta(model or "") or {}).get("lang", "en")).vocab


def _heads(doc: Doc, spans: list[tuple[int, int]]) -> list[int]:
    return [doc.char_span(a, b, alignment_mode="expand").root.i for a, b in spans]


def parse_mentions(nlp: Language, items: list[tuple[str, list[Match]]], settings: ParseSettings,
                   batch_size: int = 256) -> Iterator[tuple[nx.MultiDiGraph, list[int]]]:
    """For each (sentence, mentions): the masked sentence's graph and each mention's head token."""
    masked = [mask_mentions(sentence, matches, settings) for sentence, matches in items]
    docs = parse_sentences(nlp, (text for text, _ in masked), batch_size)
    for (_, spans), doc in zip(masked, docs):
        yield sentence_graph(doc, settings), _heads(doc, spans)


def mask_mentions(sentence: str, matches: list[Match], settings: ParseSettings) -> tuple[str, list[tuple[int, int]]]:
    """The sentence with each synonym mention replaced by a plain noun, and each mention's new span.

    Overlapping mentions share one replacement; pattern mentions (`Match.masked` false) are kept.
    """
    pieces: list[str] = []
    spans: list[tuple[int, int]] = [(0, 0)] * len(matches)
    pos = 0  # position in the original sentence
    out_len = 0
    order = sorted(range(len(matches)), key=lambda i: (matches[i].start, -matches[i].end))
    group: list[int] = []
    group_end = -1

    def flush() -> None:
        nonlocal pos, out_len
        if not group:
            return
        start = min(matches[i].start for i in group)
        end = max(matches[i].end for i in group)
        pieces.append(reword(sentence[pos:start], settings))
        out_len += start - pos
        if all(matches[i].maskable for i in group):
            word = settings.mask_plural if _plural(sentence[start:end], settings) else settings.mask_singular
        else:
            word = sentence[start:end]
        for i in group:
            spans[i] = (out_len, out_len + len(word))
        pieces.append(word)
        out_len += len(word)
        pos = end

    for i in order:
        if group and matches[i].start >= group_end:
            flush()
            group = []
        group.append(i)
        group_end = max(group_end, matches[i].end)
    flush()
    pieces.append(reword(sentence[pos:], settings))
    return _hide_heading("".join(pieces), spans, settings), spans


def _hide_heading(text: str, spans: list[tuple[int, int]], settings: ParseSettings) -> str:
    """The text with a leading organ heading ("Pleura:") blanked, when no mention lies in it: the parser
    hangs what follows a heading on the heading, and a "no" after it loses its scope."""
    if not settings.headings:
        return text
    found = heading_regex(settings.headings).match(text)
    if found is None or any(a < found.end() for a, _ in spans):
        return text
    return " " * found.end() + text[found.end():]


def reword(text: str, settings: ParseSettings) -> str:
    """Words the small parser misreads replaced by words of the same length it reads as meant (labeler.yaml
    `parse.replace`: "trace left effusion" parses with "left" as a verb, "trace west effusion" as meant)."""
    for word, replacement in settings.replace:
        text = re.sub(rf"\b{re.escape(word)}\b", lambda m: _same_case(m.group(), replacement), text, flags=re.IGNORECASE)
    return text


def _same_case(original: str, replacement: str) -> str:
    if original.isupper():
        return replacement.upper()
    return replacement.capitalize() if original[:1].isupper() else replacement


def _plural(text: str, settings: ParseSettings) -> bool:
    word = text.lower().split()[-1] if text.split() else text.lower()
    return word.endswith(settings.plural_endings) and not word.endswith(settings.singular_endings)
