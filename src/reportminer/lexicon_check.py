"""Run every example of a lexicon through the real labeler: the examples are the rules' specification.

- A rule's `match` sentence: the rule must decide the [bracketed] mention (not merely match it: a rule
  of higher priority may take it first). A `no_match` sentence: the mention exists and the rule
  does not match it.
- A finding's `match` sentence: the [bracketed] words are found as that finding; `no_match`: it is
  not found at all.
- A settings example (labeler.yaml): the mention gets its `kind` (and `rule`).
- Two rules of equal priority that both match one example are refused: only file order would decide
  between them.

Rules and labeler.yaml are shared by every schema of a lexicon folder, and their examples name findings
of one schema or another: with `strict=False`, an example whose [bracketed] words name nothing in
this schema (or a report example's label this schema lacks) is left out and returned as `skipped`;
`check-lexicon` then requires every example to apply to at least one schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from spacy.language import Language

from .labeler import Explanation, Labeler
from .lexicon import Lexicon
from .sections import normalise


@dataclass(frozen=True)
class Failure:
    """One example that does not behave as written."""

    where: str  # file:line: id
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Case:
    """One sentence example, and what the labeler must do with its [bracketed] mention."""

    where: str
    sentence: str  # without brackets
    span: tuple[int, int]
    rule: str | None  # the rule that must decide (or, with expect_rule false, must not match)
    kind: str | None
    expect_rule: bool = True

    @property
    def shown(self) -> str:
        a, b = self.span
        return f"{self.sentence[:a]}[{self.sentence[a:b]}]{self.sentence[b:]}"

    @property
    def key(self) -> str:
        return f"{self.where}: {self.shown}"


def unbracket(example: str) -> tuple[str, tuple[int, int]]:
    """The sentence without its [brackets], and the bracketed span in it."""
    a, b = example.index("["), example.index("]")
    return example[:a] + example[a + 1:b] + example[b + 1:], (a, b - 1)


def check_lexicon(lexicon: Lexicon, nlp: Language, strict: bool = True) -> tuple[int, list[Failure], set[str]]:
    """(number of examples checked, the failures, the shared examples left out as not applying to this
    schema) for every example in the lexicon."""
    skipped: set[str] = set()
    failures = (finding_failures(lexicon) + report_failures(lexicon, nlp, None if strict else skipped)
                + attribute_failures(lexicon, nlp, None if strict else skipped))
    examples = cases(lexicon)
    for case, found in zip(examples, check_cases(lexicon, nlp, examples)):
        if found is None:
            if strict:
                failures.append(Failure(case.where, f"{case.shown!r}: no finding is named at the [brackets] "
                                                    f"(see findings.yaml)"))
            else:
                skipped.add(case.key)
        else:
            failures += found
    count = (len(examples) + sum(len(f.should_find) + len(f.should_not_find) for f in lexicon.findings)
             + len(lexicon.sections.examples) + len(lexicon.attribute_examples) - len(skipped))
    return count, failures, skipped


def attribute_failures(lexicon: Lexicon, nlp: Language, skipped: set[str] | None = None) -> list[Failure]:
    """The attribute examples (attributes.yaml) whose [bracketed] mention does not get exactly the values
    written. With `skipped`, an example naming no finding of this schema is recorded there instead."""
    examples = lexicon.attribute_examples
    explained = Labeler(lexicon, nlp).explain([unbracket(ex.sentence)[0] for ex in examples])
    out = []
    for example, mentions in zip(examples, explained):
        mention = _mention_at(mentions, unbracket(example.sentence)[1])
        if mention is None:
            if skipped is None:
                out.append(Failure(example.source, f"{example.sentence!r}: no finding is named at the [brackets]"))
            else:
                skipped.add(f"{example.source}: {example.sentence}")
            continue
        wanted = dict(example.values)
        got = {k: v for k, v in mention.attributes.items() if v is not None}
        if got != wanted:
            out.append(Failure(example.source, f"{example.sentence!r}: attributes {got or 'none'}, not {wanted or 'none'}"))
    return out


def report_failures(lexicon: Lexicon, nlp: Language, skipped: set[str] | None = None) -> list[Failure]:
    """The whole-report examples (labeler.yaml `sections.examples`) whose labels differ from those written.
    With `skipped`, a label this schema lacks is recorded there instead of failing."""
    from .readers import Report

    examples = lexicon.sections.examples
    reports = [Report(f"example{n}", ex.report, ex.source) for n, ex in enumerate(examples)]
    out = []
    for example, done in zip(examples, Labeler(lexicon, nlp).label(reports)):
        for finding, wanted in example.labels:
            if finding not in done.labels:
                if skipped is None:
                    out.append(Failure(example.source, f"{finding!r} is not a label of this lexicon"))
                else:
                    skipped.add(f"{example.source}: {finding}")
            elif done.labels[finding] != wanted:
                out.append(Failure(example.source, f"{example.report!r}: {finding} is {done.labels[finding]}, "
                                                   f"not {wanted} as written"))
    return out


def check_cases(lexicon: Lexicon, nlp: Language, examples: list[Case]) -> list[list[Failure] | None]:
    """The failures of each sentence example (an empty list where it behaves as written; None where its
    [bracketed] words name no finding of this schema)."""
    explained = Labeler(lexicon, nlp).explain([c.sentence for c in examples])
    return [_case_failures(case, mentions) for case, mentions in zip(examples, explained)]


def cases(lexicon: Lexicon) -> list[Case]:
    """Every sentence example of the rules and of labeler.yaml's settings blocks."""
    out = []
    for rule in lexicon.rules:
        for example, wanted in [(e, True) for e in rule.should_match] + [(e, False) for e in rule.should_not_match]:
            sentence, span = unbracket(example)
            out.append(Case(f"{rule.source}: {rule.id}", sentence, span, rule.id, rule.kind if wanted else None,
                            expect_rule=wanted))
    for block in (lexicon.assertions, lexicon.parse):
        for ex in block.examples:
            sentence, span = unbracket(ex.sentence)
            out.append(Case(ex.source, sentence, span, ex.rule, ex.kind))
    return out


def _case_failures(case: Case, mentions: list[Explanation]) -> list[Failure] | None:
    shown = case.shown
    mention = _mention_at(mentions, case.span)
    if mention is None:
        return None
    out = []
    matched = ", ".join(f"{r.id} ({r.priority})" for r, _, _ in mention.matched) or "none"
    if case.expect_rule:
        if (case.rule and mention.rule != case.rule) or (case.kind and mention.assertion != case.kind):
            wanted = f"{case.kind} by {case.rule}" if case.rule else case.kind
            out.append(Failure(case.where, f"{shown!r}: decided {mention.assertion} by {mention.rule}, not {wanted} "
                                           f"(rules that match: {matched})"))
    elif any(r.id == case.rule for r, _, _ in mention.matched):
        out.append(Failure(case.where, f"{shown!r}: {case.rule} matches, but this is a no_match example"))
    top = [r for r, _, _ in mention.matched if r.priority == mention.matched[0][0].priority] if mention.matched else []
    if len(top) > 1:
        out.append(Failure(case.where, f"{shown!r}: {' and '.join(r.id for r in top)} both match with priority "
                                       f"{top[0].priority}; only file order would decide: give one a higher priority"))
    return out


def _mention_at(mentions: list[Explanation], span: tuple[int, int]) -> Explanation | None:
    """The mention at exactly `span`, else one that overlaps it (a pattern mention covers more words)."""
    exact = [m for m in mentions if (m.match.start, m.match.end) == span]
    overlapping = [m for m in mentions if m.match.start < span[1] and span[0] < m.match.end]
    return (exact or overlapping or [None])[0]


def finding_failures(lexicon: Lexicon) -> list[Failure]:
    """The finding examples (synonyms, patterns, exclusions, signs) that are not found as written."""
    from .mentions import MentionFinder

    finder = MentionFinder(lexicon)
    out = []
    for finding in lexicon.findings:
        where = f"{finding.source}: {finding.name}"
        for example in finding.should_find:
            sentence, span = unbracket(example)
            found = [(m.start, m.end) for m in finder.find(normalise(sentence, lexicon.placeholders))
                     if m.finding == finding.name]
            if span not in found:
                words = ", ".join(repr(sentence[a:b]) for a, b in found) or "nothing"
                out.append(Failure(where, f"{example!r}: the [bracketed] words are not found as {finding.name} "
                                          f"(found: {words})"))
        for sentence in finding.should_not_find:
            found = [sentence[m.start:m.end] for m in finder.find(normalise(sentence, lexicon.placeholders))
                     if m.finding == finding.name]
            if found:
                out.append(Failure(where, f"{sentence!r}: {found[0]!r} is found as {finding.name}, "
                                          f"but this is a no_match example"))
    return out
