"""Reports → the spans to label (FINDINGS, IMPRESSION by default) → sentences, all as offsets.

Offsets always point into the report's own text, so evidence can be shown in place. De-identification
placeholders (`XXXX`) are rewritten to a plain word of no greater length before parsing, so a parser
sees "no sign of effusion" where the report says "no XXXX of effusion" and nothing shifts.
"""

from __future__ import annotations

import re
from typing import Iterator

from .lexicon import Placeholder
from .readers import Report

# A header is a capitalised word or two at the start of a line, followed by a colon.
HEADER = re.compile(r"(?m)^[ \t]*([A-Z][A-Z ]{2,30}?)[ \t]*:")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=[ \t]*(?:\d+[.)]|[-*•])\s)")
LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*$")


def find_sections(report: Report) -> list[tuple[str, int, int]]:
    """Named sections of a report: given by the reader, else found from `HEADER:` lines."""
    if report.sections is not None:
        return report.sections
    found = [(m.group(1).strip().upper(), m.start(), m.end()) for m in HEADER.finditer(report.text)]
    out = []
    for n, (name, _, body_start) in enumerate(found):
        end = found[n + 1][1] if n + 1 < len(found) else len(report.text)
        out.append((name, body_start, end))
    return out


def select_sections(report: Report, wanted: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """The wanted sections in report order; the whole text (as section TEXT) when it has none of them."""
    chosen = [s for s in find_sections(report) if s[0] in wanted and s[2] > s[1]]
    return chosen or [("TEXT", 0, len(report.text))]


def normalise(text: str, placeholders: tuple[Placeholder, ...]) -> str:
    """The text with each placeholder token replaced by its word, padded to keep every offset."""
    for ph in placeholders:
        word = ph.replacement.ljust(len(ph.token))
        text = re.sub(rf"(?<![\w-]){re.escape(ph.token)}(?!\w)", word, text)
    return text


def split_sentences(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Sentence (start, end) offsets within text[start:end], trimmed; bare list markers ("2.") dropped;
    a sentence longer than `max_chars` cut at spaces into pieces no longer than that."""
    pos = start
    for m in SENTENCE_END.finditer(text, start, end):
        for a, b in _trimmed(text, pos, m.start()):
            yield from _pieces(text, a, b, max_chars)
        pos = m.end()
    for a, b in _trimmed(text, pos, end):
        yield from _pieces(text, a, b, max_chars)


def _pieces(text: str, a: int, b: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """text[a:b] in pieces of at most `max_chars`, cut after the last space of each piece when it has one."""
    while b - a > max_chars:
        cut = text.rfind(" ", a + 1, a + max_chars)
        cut = cut if cut > a else a + max_chars
        yield from _trimmed(text, a, cut)
        a = cut
    yield from _trimmed(text, a, b)


def _trimmed(text: str, a: int, b: int) -> Iterator[tuple[int, int]]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if a < b and not LIST_MARKER.match(text[a:b]):
        yield (a, b)
