"""Reports → the spans to label → sentences, all as offsets into the report's own text.

Which spans are labeled is lexicon data (labeler.yaml `sections`): headers that open a labeled
section (FINDINGS, IMPRESSION and their other names), headers whose text is never labeled
(HISTORY, INDICATION...), and what happens to text under no header. Offsets always point into the
report's own text, so evidence can be shown in place. De-identification placeholders (`XXXX`, `___`)
are rewritten to a plain word of no greater length before parsing, so nothing shifts.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .lexicon import Placeholder, SectionSettings
from .readers import Report

# A question mark ends a sentence only when it ends a word ("Effusion? Small."): a free-standing one asks
# about what follows ("? minimal effusion", "? vascular ? hilar mass").
SENTENCE_END = re.compile(r"(?<=[.!;])\s+|(?<=\S\?)\s+|\n\s*\n|\n(?=[ \t]*(?:\d+[.)]|[-*•])\s)")
LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*$")
Span = tuple[str, int, int]  # (section, start, end)


@lru_cache(maxsize=8)
def _header_regex(settings: SectionSettings) -> re.Pattern[str]:
    names = sorted({a for a, _ in settings.labeled} | set(settings.never), key=len, reverse=True)
    alternatives = "|".join(re.escape(n).replace(r"\ ", r"[ \t]+") for n in names)
    return re.compile(rf"(?im)^[ \t]*({alternatives})[ \t]*:")


def find_sections(report: Report, settings: SectionSettings) -> list[tuple[str, int, int]]:
    """(header as written, upper case; body start; body end) for each known section of the report: given
    by the reader (XML, table columns), else found from header lines. A never-labeled section written
    on its header's line ends with that line."""
    if report.sections is not None:
        return [(name.upper().replace("_", " "), a, b) for name, a, b in report.sections]
    text = report.text
    found = [(" ".join(m.group(1).upper().split()), m.start(), m.end()) for m in _header_regex(settings).finditer(text)]
    out = []
    for n, (name, _, body_start) in enumerate(found):
        end = found[n + 1][1] if n + 1 < len(found) else len(text)
        line_end = text.find("\n", body_start, end)
        if name in settings.never and line_end != -1 and text[body_start:line_end].strip():
            end = line_end
        out.append((name, body_start, end))
    return out


def select_sections(report: Report, settings: SectionSettings) -> list[Span]:
    """The spans to label, in report order: every labeled section under its own name (FINDINGS,
    IMPRESSION), and text under no header as `untitled` when the report has no `body` section."""
    sections = find_sections(report, settings)
    aliases = settings.aliases
    chosen = [(aliases[name], a, b) for name, a, b in sections if name in aliases and b > a]
    if any(section == settings.body for section, _, _ in chosen):
        return chosen
    if report.sections is not None:  # a reader's sections tile the report: unknown ones are untitled text
        untitled = [(settings.untitled, a, b) for name, a, b in sections
                    if name not in aliases and name not in settings.never and b > a]
    else:
        untitled = _gaps(report.text, [(a - _header_length(report.text, a), b) for _, a, b in sections],
                         settings.untitled)
    return sorted(chosen + untitled, key=lambda span: span[1])


def _gaps(text: str, covered: list[tuple[int, int]], name: str) -> list[Span]:
    """The non-blank stretches of `text` outside the covered (start, end) spans."""
    out, pos = [], 0
    for a, b in sorted(covered) + [(len(text), len(text))]:
        if a > pos and text[pos:a].strip():
            out.append((name, pos, a))
        pos = max(pos, b)
    return out


def _header_length(text: str, body_start: int) -> int:
    """How far back from a section's body its header line starts."""
    line_start = text.rfind("\n", 0, body_start) + 1
    return body_start - line_start


def normalise(text: str, placeholders: tuple[Placeholder, ...]) -> str:
    """The text with each placeholder token replaced by its word, padded to keep every offset."""
    for ph in placeholders:
        if ph.token not in text:  # most reports have none of them: skip the regular expression
            continue
        word = ph.replacement.ljust(len(ph.token))
        text = re.sub(rf"(?<![\w-]){re.escape(ph.token)}(?!\w)", word, text)
    return text


@lru_cache(maxsize=8)
def heading_regex(headings: tuple[str, ...]) -> re.Pattern[str]:
    """An organ heading at the start of a text ("Pleura:", "- Heart and mediastinum :", "2. Lungs:")."""
    names = "|".join(re.escape(h).replace(r"\ ", r"[ \t]+") for h in sorted(headings, key=len, reverse=True))
    return re.compile(rf"(?i)[ \t]*(?:(?:\d+[.)]|[-*•])[ \t]*)?(?:{names})[ \t]*:[ \t]*")


@lru_cache(maxsize=8)
def revision_regex(words: tuple[str, ...]) -> re.Pattern[str]:
    """A line that opens a revision of the report ("ADDENDUM:", "FINAL REPORT", "Addendum (attending):")."""
    names = "|".join(re.escape(w).replace(r"\ ", r"[ \t]+") for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?im)^[ \t]*(?:{names})\b")


@lru_cache(maxsize=8)
def _heading_break(headings: tuple[str, ...]) -> re.Pattern[str]:
    """A line break before an organ heading: each heading starts a sentence."""
    return re.compile(r"\n(?=" + heading_regex(headings).pattern.removeprefix("(?i)") + ")", re.IGNORECASE)


def split_sentences(text: str, start: int, end: int, max_chars: int,
                    headings: tuple[str, ...] = ()) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within text[start:end], trimmed; bare list markers ("2.") dropped;
    a sentence longer than `max_chars` cut at spaces into pieces no longer than that; with `headings`
    (organ headings, conventions.yaml `layout`), a line that starts with one starts a sentence."""
    pos = start
    ends = list(SENTENCE_END.finditer(text, start, end))
    if headings:
        ends = sorted(ends + list(_heading_break(headings).finditer(text, start, end)), key=lambda m: m.start())
    out: list[tuple[int, int]] = []
    for m in ends:
        if m.start() < pos:
            continue
        _add_sentence(out, text, pos, m.start(), max_chars)
        pos = m.end()
    _add_sentence(out, text, pos, end, max_chars)
    return out


def _add_sentence(out: list[tuple[int, int]], text: str, a: int, b: int, max_chars: int | None = None) -> None:
    """text[a:b] trimmed, unless blank or a bare list marker; with `max_chars`, in pieces of at most that,
    each cut after the last space of the piece when it has one (string methods: this runs for every
    sentence of every report)."""
    piece = text[a:b]
    kept = piece.strip()
    if not kept:
        return
    if LIST_MARKER.match(kept):
        return
    a += len(piece) - len(piece.lstrip())
    b = a + len(kept)
    if max_chars is not None and b - a > max_chars:
        while b - a > max_chars:
            cut = text.rfind(" ", a + 1, a + max_chars)
            cut = cut if cut > a else a + max_chars
            _add_sentence(out, text, a, cut)
            a = cut
        _add_sentence(out, text, a, b)
    else:
        out.append((a, b))
