"""The lexicon: findings, their synonyms and exclusions, assertion rules and labeler settings, as data.

Everything a clinician may want to change lives in YAML files in a folder (the package ships the
repo's `lexicons/`; `--lexicon DIR` points at a copy). This module loads them, checks them against
their schema with messages of the form `file:line: id -> field: problem`, and digests them so that
every output can say which lexicon made it. A lexicon folder is hostile input: its files are read
within the limits of lexicon_yaml.py, and its regular expressions must run on RE2 (lexicon_regex.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from . import lexicon_regex
from .errors import LexiconError, PatternError
from .lexicon_yaml import LIMITS, LexiconFiles, file_kind, shown
from .patterns import Pattern, parse_pattern

ASSERTIONS = ("positive", "negative", "uncertain")
RULE_ID = re.compile(r"^[a-z]+(\.[a-z0-9_]+)+$")
FINDING_NAME = re.compile(r"^[A-Z][A-Za-z_]*(?: [A-Z][A-Za-z_]*)*$")


@dataclass(frozen=True)
class Finding:
    """A finding and the words that name it in reports."""

    name: str
    synonyms: tuple[str, ...]
    patterns: tuple[str, ...]
    exclusions: tuple[str, ...]
    signs: tuple[str, ...]  # indirect signs: a positive one makes the finding only uncertain
    absent: tuple[str, ...]  # regular expressions for statements that the finding is absent
    should_find: tuple[str, ...]  # example sentences in which the [bracketed] words name this finding
    should_not_find: tuple[str, ...]  # example sentences in which nothing names it
    source: str  # file:line, for messages


@dataclass(frozen=True)
class Rule:
    """An assertion rule: when one of its patterns matches around a mention, the mention gets `kind`."""

    id: str
    kind: str
    priority: int
    patterns: tuple[Pattern, ...]
    should_match: tuple[str, ...]  # example sentences, the mention in [brackets]
    should_not_match: tuple[str, ...]
    source: str  # file:line, for messages

    def match(self, graph: nx.MultiDiGraph, mention: int) -> list[int] | None:
        """The tokens of the first walk that fits (see patterns.py), or None."""
        for pattern in self.patterns:
            found = pattern.match(graph, mention)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Placeholder:
    """A de-identification token (e.g. XXXX) and the same-length-or-shorter word parsed in its place."""

    token: str
    replacement: str


@dataclass(frozen=True)
class Example:
    """A sentence whose [bracketed] mention the whole labeler must decide as `kind` (by `rule`, if given)."""

    sentence: str
    kind: str
    rule: str | None
    source: str  # file:line, for messages


@dataclass(frozen=True)
class ParseSettings:
    """How a sentence is masked and its lists are joined before the rules see it (labeler.yaml `parse`)."""

    mask_singular: str
    mask_plural: str
    plural_endings: tuple[str, ...]
    singular_endings: tuple[str, ...]
    list_links: tuple[str, ...]
    shared_dependents: tuple[str, ...]
    clause_heads: tuple[str, ...]
    sibling_relations: tuple[str, ...]
    list_breakers: tuple[str, ...]
    lowercase_all_caps: bool
    replace: tuple[tuple[str, str], ...]  # (word, same-length word the parser reads as meant)
    examples: tuple[Example, ...]
    headings: tuple[str, ...] = ()  # organ headings ("Pleura:"; conventions.yaml `layout`): the parser never sees them


@dataclass(frozen=True)
class AssertionSettings:
    """What no rule decides (labeler.yaml `assertions`): the default, a sign's assertion, phrase links."""

    default_kind: str
    default_rule: str
    sign_kind: str
    sign_rule: str
    absent_kind: str
    absent_rule: str
    query_kind: str
    query_rule: str
    phrase_links: tuple[str, ...]
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class ReportExample:
    """A whole report and the labels the labeler must give it (finding → 1, 0, -1 or None)."""

    report: str
    labels: tuple[tuple[str, int | None], ...]
    source: str


@dataclass(frozen=True)
class SectionSettings:
    """Which parts of a report are labeled (labeler.yaml `sections`).

    `labeled` maps each header a report may use (upper case) to the section it names (FINDINGS or
    IMPRESSION); `never` lists headers whose text is never labeled (history, indication...). Text
    under no header is labeled as `untitled` when the report has no findings-like section."""

    labeled: tuple[tuple[str, str], ...]  # (alias, section)
    never: tuple[str, ...]
    untitled: str
    body: str  # the section whose absence makes untitled text the report's body
    examples: tuple[ReportExample, ...]

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self.labeled)

    @property
    def table_columns(self) -> tuple[str, ...]:
        """Table columns read as section text: each labeled header in lower case, spaces as underscores."""
        return tuple(alias.lower().replace(" ", "_") for alias, _ in self.labeled)


@dataclass(frozen=True)
class Attribute:
    """One attribute of a mention (attributes.yaml): its values with their words, its patterns with
    `{word}` filled in, and which value wins when several are stated."""

    name: str
    words: tuple[tuple[str, str], ...]  # (word, value)
    order: tuple[str, ...]
    both: str | None  # the value for "left" and "right" on one mention (side: bilateral)
    patterns: tuple[Pattern, ...]

    def value_of(self, word: str) -> str | None:
        return dict(self.words).get(word)


@dataclass(frozen=True)
class AttributeExample:
    """A sentence whose [bracketed] mention must get exactly these attribute values."""

    sentence: str
    values: tuple[tuple[str, str], ...]
    source: str


@dataclass(frozen=True)
class Limits:
    """Bounded work per report (labeler.yaml `limits`): longer reports are skipped, longer sentences cut."""

    report_chars: int
    sentence_chars: int


@dataclass(frozen=True)
class Schema:
    """How mentions become one row of labels (schemas/NAME/schema.yaml): the no-finding column, and
    which findings imply others (CheXpert's Lung Opacity from Edema, Consolidation...)."""

    name: str
    no_finding: str
    ignore: tuple[str, ...]  # findings that do not make a study abnormal (CheXpert: Support Devices)
    uncertain_value: int | None  # no-finding value when nothing is positive but something is uncertain
    abnormal_value: int | None  # no-finding value when something is positive
    implies: tuple[tuple[str, tuple[str, ...]], ...]  # (parent, children): a child's 1 or -1 reaches its parent


@dataclass(frozen=True)
class Lexicon:
    """Everything the labeler reads from the lexicon folder; frozen, so workers get exactly these rules."""

    findings: tuple[Finding, ...]
    rules: tuple[Rule, ...]
    sections: SectionSettings
    precedence: tuple[str, ...]
    placeholders: tuple[Placeholder, ...]
    normal_phrases: tuple[str, ...]
    normal_rule: str
    schema: Schema
    parse: ParseSettings
    assertions: AssertionSettings
    limits: Limits
    attributes: tuple[Attribute, ...]
    attribute_examples: tuple[AttributeExample, ...]
    digest: str
    folder: str
    # The conventions in force (conventions.yaml, conventions.py): (key, value), and (key, the ids of the rules
    # and decisions whose kind the value sets), for the outputs' metadata and `evaluate`'s agreement per value.
    conventions: tuple[tuple[str, str], ...] = ()
    convention_rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    revisions: tuple[str, ...] = ()  # words that open a revision ("addendum"): its mentions replace earlier ones

    @property
    def no_finding(self) -> str:
        return self.schema.no_finding

    @property
    def finding_names(self) -> list[str]:
        return [f.name for f in self.findings]

    @property
    def label_columns(self) -> list[str]:
        return self.finding_names + [self.no_finding]


DEFAULT_SCHEMA = "chestxray14"


def default_folder() -> Path:
    """The lexicon that ships with the package."""
    return Path(str(resources.files("reportminer.lexicons")))


def schemas(folder: str | Path | None = None) -> list[str]:
    """The schemas a lexicon folder offers (its `schemas/NAME/` folders)."""
    root = Path(folder) if folder is not None else default_folder()
    return sorted(p.name for p in (root / "schemas").glob("*") if (p / "findings.yaml").is_file())


def load_lexicon(folder: str | Path | None = None, schema: str = DEFAULT_SCHEMA, profile: str | None = None,
                 conventions: dict[str, str] | None = None) -> Lexicon:
    """Load and validate a lexicon folder for one schema: `labeler.yaml` and `rules/*.yaml` (shared by
    every schema), `schemas/SCHEMA/findings.yaml` and `schemas/SCHEMA/schema.yaml`; then the conventions of
    `conventions.yaml` (when the folder has one) with a `profile`'s values and the `conventions` given."""
    root = Path(folder) if folder is not None else default_folder()
    if not root.is_dir():
        raise LexiconError(f"{root}: lexicon folder not found; pass --lexicon with a folder holding labeler.yaml")
    schema_dir = root / "schemas" / schema
    findings_file, schema_file = schema_dir / "findings.yaml", schema_dir / "schema.yaml"
    settings_file = root / "labeler.yaml"
    attributes_file = root / "attributes.yaml"
    if not schema_dir.is_dir():
        raise LexiconError(f"{root}: no schema {schema!r} (schemas/{schema}/ is missing); this folder offers: "
                           f"{', '.join(schemas(root)) or 'none'}")
    for required in (findings_file, schema_file, settings_file, attributes_file, root / "rules"):
        if not required.exists():
            raise LexiconError(f"{required}: missing; a lexicon folder needs labeler.yaml, attributes.yaml, "
                               f"rules/*.yaml and schemas/NAME/findings.yaml and schema.yaml")
    if file_kind((root / "rules").stat().st_mode) != "a folder":
        raise LexiconError(f"{root / 'rules'}: not a folder; it must hold the rule files (*.yaml)")
    files = LexiconFiles(root)
    rule_files = files.rule_files(root / "rules")
    if not rule_files:
        raise LexiconError(f"{root / 'rules'}: no rule files (*.yaml) found")

    findings = _load_findings(files, findings_file)
    settings = _load_settings(files, settings_file)
    settings["schema"] = _load_schema(files, schema_file, schema, [f.name for f in findings])
    settings["attributes"], settings["attribute_examples"] = _load_attributes(files, attributes_file)
    rules: list[Rule] = []
    for path in rule_files:
        rules.extend(_load_rules(files, path, schema))
    _check_sizes(findings_file, findings, settings["normal_phrases"])
    graph_patterns = sum(len(r.patterns) for r in rules) + sum(len(a.patterns) for a in settings["attributes"])
    if graph_patterns > LIMITS.graph_patterns:
        raise LexiconError(f"{root / 'rules'}: {graph_patterns:,} graph patterns in the rules and attributes.yaml, "
                           f"more than the {LIMITS.graph_patterns:,} a lexicon may have")
    seen = {settings["normal_rule"]: f"{settings_file} (normal)",
            settings["assertions"].default_rule: f"{settings_file} (assertions.default)",
            settings["assertions"].sign_rule: f"{settings_file} (assertions.sign)",
            settings["assertions"].absent_rule: f"{settings_file} (assertions.absent)",
            settings["assertions"].query_rule: f"{settings_file} (assertions.query)"}
    for rule in rules:
        if rule.id in seen:
            raise LexiconError(f"{rule.source}: {rule.id} -> id: already defined at {seen[rule.id]}")
        seen[rule.id] = rule.source

    lexicon = Lexicon(
        findings=tuple(findings),
        rules=tuple(sorted(rules, key=lambda r: -r.priority)),
        digest=files.digest([findings_file, schema_file, settings_file, attributes_file, *rule_files]),
        folder=str(root),
        **settings,
    )
    from .conventions import apply_conventions  # it builds on this module's classes

    return apply_conventions(lexicon, files, root / "conventions.yaml", schema, profile, conventions or {})


def _check_sizes(path: Path, findings: list[Finding], normal_phrases: tuple[str, ...]) -> None:
    """The whole lexicon's phrases and regular expressions within the limits (each is matched against every
    sentence), the regular expressions together within RE2's memory."""
    phrases = sum(len(f.synonyms) + len(f.signs) + len(f.exclusions) for f in findings) + len(normal_phrases)
    regexes = [p for f in findings for p in f.patterns + f.absent]
    if phrases > LIMITS.phrases:
        raise LexiconError(f"{path}: {phrases:,} synonyms, signs, exclusions and normal phrases, more than the "
                           f"{LIMITS.phrases:,} a lexicon may have")
    if len(regexes) > LIMITS.regexes:
        raise LexiconError(f"{path}: {len(regexes):,} patterns and absent expressions, more than the "
                           f"{LIMITS.regexes:,} a lexicon may have")
    problem = lexicon_regex.problem_together(tuple(regexes))
    if problem:
        raise LexiconError(f"{path}: the findings' patterns together: {problem}")


class _Checker:
    """Collects the location of one entry so that every complaint names file, line and id."""

    def __init__(self, path: Path, entry: dict[str, Any], ident: str) -> None:
        self.where = f"{path}:{entry.get('__line__', '?')}: {ident}"
        self.entry = entry

    def fail(self, key: str, problem: str) -> LexiconError:
        return LexiconError(f"{self.where} -> {key}: {problem}")

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.entry) - allowed - {"__line__"})
        if extra:
            raise self.fail(extra[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")

    def string(self, key: str, required: bool = True) -> str:
        value = self.entry.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "required text is missing or empty" if value is None else f"must be text, got {shown(value)}")
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...]:
        value = self.entry.get(key, [])
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        if required and not value:
            raise self.fail(key, "must list at least one entry")
        if len(value) > LIMITS.list_entries:
            raise self.fail(key, f"{len(value):,} entries, more than the {LIMITS.list_entries:,} a list may have")
        dupes = sorted(v for v, n in Counter(value).items() if n > 1)
        if dupes:
            raise self.fail(key, f"listed twice: {shown(dupes[0])}")
        return tuple(value)


def _load_findings(files: LexiconFiles, path: Path) -> list[Finding]:
    data = files.load(path)
    entries = data.get("findings")
    if not isinstance(entries, list) or not entries:
        raise LexiconError(f"{path}: needs a non-empty list under 'findings'")
    out: list[Finding] = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise LexiconError(f"{path}: findings[{n}] must be a mapping with name and synonyms")
        check = _Checker(path, entry, f"findings[{n}]")
        check.unknown({"name", "synonyms", "patterns", "exclusions", "signs", "absent", "examples", "note"})
        name = check.string("name")
        check = _Checker(path, entry, name)
        if not FINDING_NAME.match(name):
            raise check.fail("name", f"{name!r} must be capitalised words such as Pleural_Thickening or Lung Opacity")
        if name in {f.name for f in out}:
            raise check.fail("name", "finding defined twice")
        synonyms = check.strings("synonyms", required=True)
        patterns, absent = check.strings("patterns"), check.strings("absent")
        for key, regexes in (("patterns", patterns), ("absent", absent)):
            for pattern in regexes:
                problem = lexicon_regex.problem(pattern)
                if problem:
                    raise check.fail(key, f"{shown(pattern)}: {problem}")
        match, no_match = _examples(path, entry, name, bracketed_no_match=False)
        out.append(Finding(name=name, synonyms=tuple(s.lower() for s in synonyms), patterns=patterns,
                           exclusions=tuple(s.lower() for s in check.strings("exclusions")),
                           signs=tuple(s.lower() for s in check.strings("signs")), absent=absent, should_find=match,
                           should_not_find=no_match, source=f"{path}:{entry['__line__']}"))
    return out


def _examples(path: Path, entry: dict[str, Any], ident: str, bracketed_no_match: bool = True,
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`examples: {match: [...], no_match: [...]}`: match sentences mark one mention in [brackets]."""
    check = _Checker(path, entry, ident)
    examples = entry.get("examples")
    if not isinstance(examples, dict):
        raise check.fail("examples", "needs 'match' (and ideally 'no_match') sentences with the mention in [brackets]")
    ex = _Checker(path, examples, ident)
    ex.unknown({"match", "no_match"})
    match, no_match = ex.strings("match", required=True), ex.strings("no_match")
    for sentence in match + (no_match if bracketed_no_match else ()):
        if not _one_bracket(sentence):
            raise check.fail("examples", f"{sentence!r} must mark exactly one mention in [brackets]")
    return match, no_match


def _one_bracket(sentence: str) -> bool:
    return sentence.count("[") == 1 and sentence.count("]") == 1 and sentence.index("[") < sentence.index("]")


def _load_settings(files: LexiconFiles, path: Path) -> dict[str, Any]:
    data = files.load(path)
    check = _Checker(path, data, "settings")
    check.unknown({"sections", "precedence", "placeholders", "normal", "assertions", "parse", "limits"})
    sections = _section_settings(path, _mapping(check, data, "sections"))
    precedence = check.strings("precedence", required=True)
    if sorted(precedence) != sorted(ASSERTIONS):
        raise check.fail("precedence", f"must order exactly {', '.join(ASSERTIONS)}, got {shown(list(precedence))}")
    placeholders = []
    for n, item in enumerate(_optional(check, data, "placeholders", list), 1):
        if not isinstance(item, dict):
            raise check.fail("placeholders", f"entry {n} must be a mapping with token and replacement")
        sub = _Checker(path, item, f"placeholders[{n}]")
        sub.unknown({"token", "replacement"})
        token, replacement = sub.string("token"), sub.string("replacement")
        if len(replacement) > len(token):
            raise sub.fail("replacement", f"{replacement!r} is longer than {token!r}; offsets must not move")
        placeholders.append(Placeholder(token=token, replacement=replacement))
    normal = _mapping(check, data, "normal")
    normal_check = _Checker(path, normal, "normal")
    normal_check.unknown({"rule", "phrases"})
    return {
        "sections": sections,
        "precedence": precedence,
        "placeholders": tuple(placeholders),
        "normal_phrases": tuple(p.lower() for p in normal_check.strings("phrases")),
        "normal_rule": _rule_id(normal_check, "rule"),
        "assertions": _assertion_settings(path, _mapping(check, data, "assertions")),
        "parse": _parse_settings(path, _mapping(check, data, "parse")),
        "limits": _limits(path, _mapping(check, data, "limits")),
    }


def _section_settings(path: Path, block: dict[str, Any]) -> SectionSettings:
    check = _Checker(path, block, "sections")
    check.unknown({"labeled", "never", "untitled", "body", "examples"})
    labeled_block = _mapping(check, block, "labeled")
    labeled: list[tuple[str, str]] = []
    for section, aliases in labeled_block.items():
        if section == "__line__":
            continue
        names = _Checker(path, labeled_block, f"sections.labeled.{section}").strings(section, required=True)
        labeled += [(alias.upper(), str(section).upper()) for alias in names]
    never = tuple(n.upper() for n in check.strings("never"))
    seen: dict[str, str] = {}
    for alias, section in labeled + [(n, "never") for n in never]:
        if alias in seen:
            raise check.fail("labeled", f"header {alias!r} is listed twice ({seen[alias]} and {section})")
        seen[alias] = section
    body = check.string("body").upper()
    if body not in {s for _, s in labeled}:
        raise check.fail("body", f"{body!r} must be one of the labeled sections ({', '.join(sorted(set(seen.values()) - {'never'}))})")
    return SectionSettings(labeled=tuple(labeled), never=never, untitled=check.string("untitled").upper(), body=body,
                           examples=_report_examples(path, block))


def _report_examples(path: Path, block: dict[str, Any]) -> tuple[ReportExample, ...]:
    check = _Checker(path, block, "sections")
    entries = block.get("examples")
    if not isinstance(entries, list) or not entries:
        raise check.fail("examples", "needs a list of {report, labels} entries showing which text is labeled")
    out = []
    for n, item in enumerate(entries, 1):
        if not isinstance(item, dict):
            raise check.fail("examples", f"entry {n} must be a mapping with report and labels")
        sub = _Checker(path, item, f"sections.examples[{n}]")
        sub.unknown({"report", "labels"})
        report = sub.string("report")
        labels = item.get("labels")
        if not isinstance(labels, dict) or not all(v in (1, 0, -1, None) for k, v in labels.items() if k != "__line__"):
            raise sub.fail("labels", "must map findings to 1, 0, -1 or null")
        out.append(ReportExample(report, tuple((k, v) for k, v in labels.items() if k != "__line__"),
                                 f"{path}:{item['__line__']}"))
    return tuple(out)


def _load_schema(files: LexiconFiles, path: Path, name: str, findings: list[str]) -> Schema:
    data = files.load(path)
    check = _Checker(path, data, "schema")
    check.unknown({"no_finding", "implies", "note"})
    block = _mapping(check, data, "no_finding")
    sub = _Checker(path, block, "no_finding")
    sub.unknown({"column", "ignore", "uncertain", "abnormal"})
    column = sub.string("column")
    if column in findings:
        raise sub.fail("column", f"{column!r} is also a finding in findings.yaml")
    ignore = sub.strings("ignore")
    values = {}
    for key in ("uncertain", "abnormal"):
        value = block.get(key)
        if value not in (0, -1, None) or isinstance(value, bool):
            raise sub.fail(key, f"must be 0, -1 or null, got {shown(value)}")
        values[key] = value
    implies = []
    for parent, children in _optional(check, data, "implies", dict).items():
        if parent == "__line__":
            continue
        kids = _Checker(path, data["implies"], f"implies.{parent}").strings(parent, required=True)
        for finding in (parent, *kids):
            if finding not in findings:
                raise check.fail("implies", f"{finding!r} is not a finding of {path.parent / 'findings.yaml'}")
        implies.append((parent, kids))
    for finding in ignore:
        if finding not in findings:
            raise sub.fail("ignore", f"{finding!r} is not a finding of {path.parent / 'findings.yaml'}")
    return Schema(name=name, no_finding=column, ignore=ignore, uncertain_value=values["uncertain"],
                  abnormal_value=values["abnormal"], implies=tuple(implies))


def _load_attributes(files: LexiconFiles, path: Path) -> tuple[tuple[Attribute, ...], tuple[AttributeExample, ...]]:
    data = files.load(path)
    check = _Checker(path, data, "attributes.yaml")
    check.unknown({"attributes", "patterns", "examples"})
    sources = check.strings("patterns", required=True)
    for source in sources:
        if not source.rstrip().endswith("{word}") or source.count("{word}") != 1:
            raise check.fail("patterns", f"{source!r} must end with {{word}}, the attribute's word, and name it once")
    block = _mapping(check, data, "attributes")
    out = []
    for name, spec in block.items():
        if name == "__line__":
            continue
        sub = _Checker(path, spec if isinstance(spec, dict) else {}, f"attributes.{name}")
        sub.unknown({"values", "order", "both"})
        values = _mapping(sub, spec if isinstance(spec, dict) else {}, "values")
        words: list[tuple[str, str]] = []
        for value, listed in values.items():
            if value == "__line__":
                continue
            for word in _Checker(path, values, f"attributes.{name}.values").strings(value, required=True):
                if " " in word:
                    raise sub.fail("values", f"{word!r}: one word per entry (a token of the report)")
                words.append((word.lower(), str(value)))
        order = sub.strings("order", required=True)
        if sorted(order) != sorted({v for _, v in words}):
            raise sub.fail("order", f"must list each value once: {', '.join(sorted({v for _, v in words}))}")
        both = spec.get("both")
        if both is not None and both not in order:
            raise sub.fail("both", f"{shown(both)} is not one of the values")
        alternatives = "|".join(w for w, _ in words)
        try:
            patterns = tuple(parse_pattern(p.replace("{word}", "{word:" + alternatives + "}")) for p in sources)
        except PatternError as exc:
            raise check.fail("patterns", str(exc)) from None
        out.append(Attribute(str(name), tuple(words), order, both, patterns))
    names = {a.name for a in out}
    examples = []
    for n, item in enumerate(_optional(check, data, "examples", list), 1):
        sub = _Checker(path, item if isinstance(item, dict) else {}, f"examples[{n}]")
        if not isinstance(item, dict):
            raise sub.fail("examples", "each example is a mapping with a sentence and attribute values")
        sub.unknown({"sentence"} | names)
        sentence = sub.string("sentence")
        if not _one_bracket(sentence):
            raise sub.fail("sentence", f"{sentence!r} must mark exactly one mention in [brackets]")
        examples.append(AttributeExample(sentence, tuple((k, str(item[k])) for k in names if k in item),
                                         f"{path}:{item['__line__']}"))
    if not examples:
        raise check.fail("examples", "needs sentences showing the attributes at work")
    return tuple(out), tuple(examples)


def _limits(path: Path, block: dict[str, Any]) -> Limits:
    check = _Checker(path, block, "limits")
    check.unknown({"report_chars", "sentence_chars"})
    values = {}
    for key in ("report_chars", "sentence_chars"):
        value = block.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 50:
            raise check.fail(key, f"must be a whole number of characters, at least 50; got {shown(value)}")
        values[key] = value
    return Limits(**values)


def _optional(check: _Checker, data: dict[str, Any], key: str, kind: type) -> Any:
    """An optional list or mapping (empty when absent)."""
    value = data.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise check.fail(key, "must be a list" if kind is list else "must be a mapping (key: value)")
    return value


def _mapping(check: _Checker, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise check.fail(key, "required mapping is missing" if value is None else "must be a mapping (key: value)")
    return value


def _rule_id(check: _Checker, key: str) -> str:
    value = check.string(key)
    if not RULE_ID.match(value):
        raise check.fail(key, f"{value!r} must look like pos.default (lower case, dot-separated)")
    return value


def _kind(check: _Checker, key: str = "kind") -> str:
    kind = check.string(key)
    if kind not in ASSERTIONS:
        raise check.fail(key, f"{kind!r} must be one of {', '.join(ASSERTIONS)}")
    return kind


def _decision(path: Path, parent: _Checker, block: dict[str, Any], key: str) -> tuple[str, str]:
    """A {kind, rule} mapping: what a mention gets, and the rule id recorded for it."""
    sub = _Checker(path, _mapping(parent, block, key), key)
    sub.unknown({"kind", "rule"})
    return _kind(sub), _rule_id(sub, "rule")


def _settings_examples(path: Path, block: dict[str, Any], ident: str) -> tuple[Example, ...]:
    check = _Checker(path, block, ident)
    entries = block.get("examples")
    if not isinstance(entries, list) or not entries:
        raise check.fail("examples", "needs a list of {sentence, kind, rule} entries showing these settings at work")
    out = []
    for n, item in enumerate(entries, 1):
        if not isinstance(item, dict):
            raise check.fail("examples", f"entry {n} must be a mapping with sentence, kind and optional rule")
        sub = _Checker(path, item, f"{ident}.examples[{n}]")
        sub.unknown({"sentence", "kind", "rule"})
        sentence = sub.string("sentence")
        if not _one_bracket(sentence):
            raise sub.fail("sentence", f"{sentence!r} must mark exactly one mention in [brackets]")
        rule = _rule_id(sub, "rule") if item.get("rule") is not None else None
        out.append(Example(sentence, _kind(sub), rule, f"{path}:{item['__line__']}"))
    return tuple(out)


def _assertion_settings(path: Path, block: dict[str, Any]) -> AssertionSettings:
    check = _Checker(path, block, "assertions")
    check.unknown({"default", "sign", "absent", "query", "phrase_links", "examples"})
    default_kind, default_rule = _decision(path, check, block, "default")
    sign_kind, sign_rule = _decision(path, check, block, "sign")
    absent_kind, absent_rule = _decision(path, check, block, "absent")
    query_kind, query_rule = _decision(path, check, block, "query")
    return AssertionSettings(default_kind=default_kind, default_rule=default_rule, sign_kind=sign_kind,
                             sign_rule=sign_rule, absent_kind=absent_kind, absent_rule=absent_rule,
                             query_kind=query_kind, query_rule=query_rule,
                             phrase_links=check.strings("phrase_links"),
                             examples=_settings_examples(path, block, "assertions"))


def _parse_settings(path: Path, block: dict[str, Any]) -> ParseSettings:
    check = _Checker(path, block, "parse")
    check.unknown({"mask", "lists", "lowercase_all_caps", "replace", "examples"})
    replace = []
    for word, replacement in _optional(check, block, "replace", dict).items():
        if word == "__line__":
            continue
        if not isinstance(replacement, str) or len(replacement) != len(str(word)) or not str(word).isalpha():
            raise check.fail("replace", f"{shown(word)} → {shown(replacement)}: a word and a replacement of the same length "
                                        f"(offsets must not move)")
        replace.append((str(word).lower(), replacement.lower()))
    lowercase = block.get("lowercase_all_caps", False)
    if not isinstance(lowercase, bool):
        raise check.fail("lowercase_all_caps", f"must be true or false, got {shown(lowercase)}")
    mask = _Checker(path, _mapping(check, block, "mask"), "parse.mask")
    mask.unknown({"singular", "plural", "plural_endings", "singular_endings"})
    lists = _Checker(path, _mapping(check, block, "lists"), "parse.lists")
    lists.unknown({"links", "shared_dependents", "clause_heads", "sibling_relations", "breakers"})
    return ParseSettings(
        mask_singular=mask.string("singular"), mask_plural=mask.string("plural"),
        plural_endings=mask.strings("plural_endings", required=True), singular_endings=mask.strings("singular_endings"),
        list_links=lists.strings("links", required=True), shared_dependents=lists.strings("shared_dependents"),
        clause_heads=lists.strings("clause_heads"), sibling_relations=lists.strings("sibling_relations"),
        list_breakers=tuple(w.lower() for w in lists.strings("breakers")), lowercase_all_caps=lowercase,
        replace=tuple(replace),
        examples=_settings_examples(path, block, "parse"))


def _load_rules(files: LexiconFiles, path: Path, schema: str) -> list[Rule]:
    """The rules of one file, each with its kind for `schema` (`schema_kinds` overrides `kind`)."""
    data = files.load(path)
    entries = data.get("rules")
    if not isinstance(entries, list):
        raise LexiconError(f"{path}: needs a list under 'rules'")
    out = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise LexiconError(f"{path}: rules[{n}] must be a mapping with id, kind, priority, pattern")
        check = _Checker(path, entry, f"rules[{n}]")
        rule_id = check.string("id")
        check = _Checker(path, entry, rule_id)
        check.unknown({"id", "kind", "schema_kinds", "priority", "pattern", "examples", "note"})
        if not RULE_ID.match(rule_id):
            raise check.fail("id", "must look like neg.no_evidence_of (lower case, dot-separated)")
        kind = _kind(check)
        schema_kinds = entry.get("schema_kinds") or {}
        if not isinstance(schema_kinds, dict) or any(k != "__line__" and v not in ASSERTIONS for k, v in schema_kinds.items()):
            raise check.fail("schema_kinds", f"must map schema names to one of {', '.join(ASSERTIONS)}")
        if schema in schema_kinds:
            kind = schema_kinds[schema]
        priority = entry.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise check.fail("priority", f"must be an integer (higher wins), got {shown(priority)}")
        sources = entry.get("pattern")
        sources = check.strings("pattern", required=True) if isinstance(sources, list) else (check.string("pattern"),)
        try:
            patterns = tuple(parse_pattern(s) for s in sources)
        except PatternError as exc:
            raise check.fail("pattern", str(exc)) from None
        match, no_match = _examples(path, entry, rule_id)
        out.append(Rule(id=rule_id, kind=kind, priority=priority, patterns=patterns, should_match=match,
                        should_not_match=no_match, source=f"{path}:{entry['__line__']}"))
    return out
