"""A lexicon's regular expressions run on RE2, an engine whose time is linear in the text.

Python's `re` backtracks: a pattern such as `(a+)+$` takes ages on one report of sixty "a"s, and it
cannot be interrupted, not even by SIGTERM. RE2 runs any pattern in time linear in the text and
memory bounded per pattern; what it cannot run that way (look-arounds, back-references, possessive
or atomic groups) it refuses, and `problem` turns that into a one-line refusal when the lexicon is
loaded. Inside a pattern `\\w`, `\\d`, `\\s` and `\\b` are ASCII, as RE2 reads them; the boundaries
around a whole mention are Unicode words, as for synonyms.
"""

from __future__ import annotations

import re2

WORD = r"\pL\pN_"  # what Python's \w matches in text: letters, digits, underscore
PATTERN_MEMORY = 8 << 20  # RE2's own default for one pattern
ALTERNATION_MEMORY = 64 << 20  # every pattern of a lexicon at once


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False
    return options


def problem(pattern: str) -> str | None:
    """Why a lexicon pattern cannot be used (None when it can)."""
    try:
        re2.compile(pattern, _options(PATTERN_MEMORY))  # its own text in RE2's message
        compiled = re2.compile(f"(?i)(?:{pattern})", _options(PATTERN_MEMORY))
    except re2.error as exc:
        return (f"RE2, the linear-time engine lexicon patterns run on, cannot run it ({_reason(exc)}); write it "
                f"without look-arounds, back-references, possessive or atomic groups")
    if compiled.fullmatch("") is not None:
        return "it matches the empty string; a mention needs at least one character"
    return None


def problem_together(patterns: tuple[str, ...]) -> str | None:
    """Why patterns that each can be used cannot all be used at once (None when they can)."""
    try:
        Alternation(patterns)
    except re2.error as exc:
        return f"too large for RE2 together ({_reason(exc)}); use fewer or simpler patterns"
    return None


def _reason(exc: re2.error) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


class Alternation:
    """Some lexicon patterns as one RE2 regex, matched case-insensitively as whole words, non-overlapping
    and leftmost first, as Python's `re.finditer` over `(?<!\\w)(?:p1|p2)(?!\\w)` would."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        body = "|".join(f"(?:{p})" for p in patterns)
        options = _options(ALTERNATION_MEMORY)
        # RE2 has no look-around: the word boundary before a match is a character consumed (or the start),
        # the one after is a character consumed (or the end); group 1 is the mention.
        self._first = re2.compile(rf"(?i)(?:^|[^{WORD}])({body})(?:[^{WORD}]|$)", options)
        self._next = re2.compile(rf"(?i)[^{WORD}]({body})(?:[^{WORD}]|$)", options)

    def search(self, text: str) -> bool:
        return self._first.search(text) is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each match in `text`, in order."""
        out: list[tuple[int, int]] = []
        found = self._first.search(text)
        while found is not None:
            start, end = found.span(1)
            if end > start:
                out.append((start, end))
            end = max(end, start + 1)
            if end >= len(text):
                break
            # The next match may start right after this one when the character before it is no word character.
            found = self._next.search(text, end - 1)
        return out
