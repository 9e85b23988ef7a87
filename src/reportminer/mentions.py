"""Find the words that name a finding: synonyms and patterns from the lexicon, minus exclusions.

This runs on plain text before any parsing, so a sentence that names no finding is never parsed.
Synonyms match whole words, case-insensitively, with hyphens or spaces between words and a plural
ending on the last word ("effusion(s)", "opacity/opacities"); exclusions are phrases that look like
a finding but are not one ("pericardial effusion"): a mention inside one is dropped. Signs point to
a finding without naming it ("blunting of the costophrenic angle"); the labeler counts a positive
sign as uncertain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexicon import Lexicon
from .lexicon_regex import Alternation


@dataclass(frozen=True)
class Match:
    """A finding named at text[start:end] (offsets within the searched text)."""

    finding: str
    start: int
    end: int
    maskable: bool = True  # found by a synonym (a noun phrase), not by a free-form pattern
    sign: bool = False  # an indirect sign of the finding, not its name
    absent: bool = False  # a statement that the finding is absent ("heart size is normal")


def _phrase_regex(phrase: str) -> str:
    words = [w for w in re.split(r"[\s-]+", phrase.strip()) if w]
    parts = [re.escape(w) for w in words[:-1]]
    last = words[-1]
    if last.endswith("y") and len(last) > 3:
        parts.append(re.escape(last[:-1]) + "(?:y|ies)")
    elif last[-1].isalpha():
        parts.append(re.escape(last) + "(?:s|es)?")
    else:
        parts.append(re.escape(last))
    return r"[\s-]+".join(parts)


def _alternation(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    # Longest first, so "pleural effusion" wins over "effusion" at the same place.
    alternatives = [_phrase_regex(p) for p in sorted(phrases, key=len, reverse=True)]
    if not alternatives:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(alternatives) + r")(?![\w])", re.IGNORECASE)


def _regexes(patterns: tuple[str, ...]) -> Alternation | None:
    return Alternation(patterns) if patterns else None


class MentionFinder:
    """Compiled synonyms of every finding in a lexicon; `find` returns non-overlapping matches per finding."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._findings = [(f.name, _alternation(f.synonyms), _regexes(f.patterns), _alternation(f.signs),
                           _regexes(f.absent), _alternation(f.exclusions)) for f in lexicon.findings]
        self._normal = _alternation(lexicon.normal_phrases)
        self.no_finding = lexicon.no_finding
        # One cheap test per sentence before any per-finding work.
        self._any_phrase = _alternation(tuple(s for f in lexicon.findings for s in f.synonyms + f.signs))
        self._any_regex = _regexes(tuple(p for f in lexicon.findings for p in f.patterns + f.absent))

    def find(self, text: str) -> list[Match]:
        """Mentions of findings in `text`, in order of position."""
        regexes_here = self._any_regex is not None and self._any_regex.search(text)
        if not (regexes_here or (self._any_phrase is not None and self._any_phrase.search(text))):
            return []
        out: list[Match] = []
        for name, synonyms, patterns, signs, absent, exclusion in self._findings:
            excluded = [(m.start(), m.end()) for m in exclusion.finditer(text)] if exclusion else []
            found = [Match(name, m.start(), m.end()) for m in synonyms.finditer(text)] if synonyms else []
            for regex, extra_kind in ((patterns, {"maskable": False}), (signs, {"sign": True}),
                                      (absent, {"absent": True, "maskable": False})):
                if regex is None or (isinstance(regex, Alternation) and not regexes_here):
                    continue
                # A pattern, sign or absence statement replaces the mentions it covers ("heart is not enlarged").
                spans = regex.spans(text) if isinstance(regex, Alternation) else \
                    [(m.start(), m.end()) for m in regex.finditer(text)]
                extra = [Match(name, a, b, **extra_kind) for a, b in spans]
                found = [f for f in found if not any(e.start <= f.start and f.end <= e.end for e in extra)] + extra
            out.extend(m for m in found if not any(a < m.end and m.start < b for a, b in excluded))
        return sorted(out, key=lambda m: (m.start, m.end))

    def find_normal(self, text: str) -> list[Match]:
        """Phrases that call the study normal ("no acute cardiopulmonary abnormality")."""
        if self._normal is None:
            return []
        return [Match(self.no_finding, m.start(), m.end()) for m in self._normal.finditer(text)]

