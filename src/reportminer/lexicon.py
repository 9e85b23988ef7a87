"""The lexicon: findings, their synonyms and exclusions, assertion rules and labeler settings, as data.

Everything a clinician may want to change lives in YAML files in a folder (the package ships the
repo's `lexicons/`; `--lexicon DIR` points at a copy). This module loads them, checks each file's shape
with its pydantic model (lexicon_models.py, the models the JSON Schemas for editors are written from) and
then what needs more than one file (duplicate ids, findings a schema names, sizes), with messages of the
form `file:line: place -> field: problem`, and digests them so that every output can say which lexicon
made it. A lexicon folder is hostile input: its files are read
within the limits of lexicon_yaml.py, and its regular expressions must run on RE2 (lexicon_regex.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import lexicon_regex
from .errors import LexiconError, PatternError
from .lexicon_yaml import LIMITS, LexiconFiles, file_kind, shown
from .patterns import Pattern, parse_pattern

if TYPE_CHECKING:
    import networkx as nx


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


def _read(files: LexiconFiles, path: Path, kind: str) -> dict[str, Any]:
    """A lexicon file, read within the folder's limits and checked against its model: the builders below
    then read it knowing its shape (types, required and unknown keys, allowed values, ids, sizes)."""
    from .lexicon_models import MODELS, validate  # pydantic: imported when a lexicon is loaded, not with this module

    data = files.load(path)
    validate(MODELS[kind], data, path)
    return data


def _fail(path: Path, block: dict[str, Any], place: str, key: str, problem: str) -> LexiconError:
    """A check that needs more than one file's shape, in the models' words: `file:line: place -> key: problem`."""
    return LexiconError(f"{path}:{block.get('__line__', '?')}: {place} -> {key}: {problem}")


def _items(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """A mapping's entries without the loader's `__line__`."""
    return [(key, value) for key, value in mapping.items() if key != "__line__"]


def _lower(phrases: list[str]) -> tuple[str, ...]:
    return tuple(p.lower() for p in phrases)


def _load_findings(files: LexiconFiles, path: Path) -> list[Finding]:
    out: list[Finding] = []
    for entry in _read(files, path, "findings")["findings"]:
        name = entry["name"]
        if name in {f.name for f in out}:
            raise _fail(path, entry, name, "name", "finding defined twice")
        for key in ("patterns", "absent"):
            for pattern in entry.get(key, []):
                problem = lexicon_regex.problem(pattern)
                if problem:
                    raise _fail(path, entry, name, key, f"{shown(pattern)}: {problem}")
        examples = entry["examples"]
        out.append(Finding(name=name, synonyms=_lower(entry["synonyms"]), patterns=tuple(entry.get("patterns", [])),
                           exclusions=_lower(entry.get("exclusions", [])), signs=_lower(entry.get("signs", [])),
                           absent=tuple(entry.get("absent", [])), should_find=tuple(examples["match"]),
                           should_not_find=tuple(examples.get("no_match", [])), source=f"{path}:{entry['__line__']}"))
    return out


def _load_settings(files: LexiconFiles, path: Path) -> dict[str, Any]:
    data = _read(files, path, "labeler")
    limits = data["limits"]
    return {
        "sections": _section_settings(path, data["sections"]),
        "precedence": tuple(data["precedence"]),
        "placeholders": tuple(Placeholder(p["token"], p["replacement"]) for p in data.get("placeholders", [])),
        "normal_phrases": _lower(data["normal"]["phrases"]),
        "normal_rule": data["normal"]["rule"],
        "assertions": _assertion_settings(path, data["assertions"]),
        "parse": _parse_settings(path, data["parse"]),
        "limits": Limits(report_chars=limits["report_chars"], sentence_chars=limits["sentence_chars"]),
    }


def _section_settings(path: Path, block: dict[str, Any]) -> SectionSettings:
    labeled = [(alias.upper(), section.upper()) for section, aliases in _items(block["labeled"]) for alias in aliases]
    never = tuple(n.upper() for n in block.get("never", []))
    seen: dict[str, str] = {}
    for alias, section in labeled + [(n, "never") for n in never]:
        if alias in seen:
            raise _fail(path, block, "sections", "labeled",
                        f"header {alias!r} is listed twice ({seen[alias]} and {section})")
        seen[alias] = section
    body = block["body"].upper()
    if body not in {s for _, s in labeled}:
        raise _fail(path, block, "sections", "body",
                    f"{body!r} must be one of the labeled sections ({', '.join(sorted({s for _, s in labeled}))})")
    examples = tuple(ReportExample(item["report"], tuple(_items(item["labels"])), f"{path}:{item['__line__']}")
                     for item in block["examples"])
    return SectionSettings(labeled=tuple(labeled), never=never, untitled=block["untitled"].upper(), body=body,
                           examples=examples)


def _load_schema(files: LexiconFiles, path: Path, name: str, findings: list[str]) -> Schema:
    data = _read(files, path, "schema")
    block = data["no_finding"]
    column, ignore = block["column"], tuple(block.get("ignore", []))
    if column in findings:
        raise _fail(path, block, "no_finding", "column", f"{column!r} is also a finding in findings.yaml")
    implies = [(parent, tuple(children)) for parent, children in _items(data.get("implies", {}))]
    elsewhere = f"is not a finding of {path.parent / 'findings.yaml'}"
    for finding in [f for parent, children in implies for f in (parent, *children)]:
        if finding not in findings:
            raise _fail(path, data, "schema", "implies", f"{finding!r} {elsewhere}")
    for finding in ignore:
        if finding not in findings:
            raise _fail(path, block, "no_finding", "ignore", f"{finding!r} {elsewhere}")
    return Schema(name=name, no_finding=column, ignore=ignore, uncertain_value=block["uncertain"],
                  abnormal_value=block["abnormal"], implies=tuple(implies))


def _load_attributes(files: LexiconFiles, path: Path) -> tuple[tuple[Attribute, ...], tuple[AttributeExample, ...]]:
    data = _read(files, path, "attributes")
    sources = data["patterns"]
    for source in sources:
        if source.count("{word}") != 1:
            raise _fail(path, data, "attributes.yaml", "patterns", f"{source!r} must name {{word}}, the attribute's "
                                                                    f"word, once (at its end)")
    out = []
    for name, spec in _items(data["attributes"]):
        words = [(word.lower(), value) for value, listed in _items(spec["values"]) for word in listed]
        values = sorted({v for _, v in words})
        if sorted(spec["order"]) != values:
            raise _fail(path, spec, f"attributes.{name}", "order", f"must list each value once: {', '.join(values)}")
        both = spec.get("both")
        if both is not None and both not in spec["order"]:
            raise _fail(path, spec, f"attributes.{name}", "both", f"{shown(both)} is not one of the values")
        alternatives = "|".join(w for w, _ in words)
        try:
            patterns = tuple(parse_pattern(p.replace("{word}", "{word:" + alternatives + "}")) for p in sources)
        except PatternError as exc:
            raise _fail(path, data, "attributes.yaml", "patterns", str(exc)) from None
        out.append(Attribute(name, tuple(words), tuple(spec["order"]), both, patterns))
    names = [a.name for a in out]
    examples = []
    for n, item in enumerate(data["examples"], 1):
        unknown = [key for key, _ in _items(item) if key != "sentence" and key not in names]
        if unknown:
            raise _fail(path, item, f"examples[{n}]", shown(unknown[0]), f"unknown field; allowed: "
                                                                  f"{', '.join(['sentence', *names])}")
        examples.append(AttributeExample(item["sentence"], tuple((k, item[k]) for k in names if k in item),
                                         f"{path}:{item['__line__']}"))
    return tuple(out), tuple(examples)


def _settings_examples(path: Path, block: dict[str, Any]) -> tuple[Example, ...]:
    return tuple(Example(item["sentence"], item["kind"], item.get("rule"), f"{path}:{item['__line__']}")
                 for item in block["examples"])


def _assertion_settings(path: Path, block: dict[str, Any]) -> AssertionSettings:
    decisions = {f"{name}_{key}": block[name][key] for name in ("default", "sign", "absent", "query")
                 for key in ("kind", "rule")}
    return AssertionSettings(**decisions, phrase_links=tuple(block.get("phrase_links", [])),
                             examples=_settings_examples(path, block))


def _parse_settings(path: Path, block: dict[str, Any]) -> ParseSettings:
    mask, lists = block["mask"], block["lists"]
    return ParseSettings(
        mask_singular=mask["singular"], mask_plural=mask["plural"], plural_endings=tuple(mask["plural_endings"]),
        singular_endings=tuple(mask.get("singular_endings", [])), list_links=tuple(lists["links"]),
        shared_dependents=tuple(lists.get("shared_dependents", [])), clause_heads=tuple(lists.get("clause_heads", [])),
        sibling_relations=tuple(lists.get("sibling_relations", [])), list_breakers=_lower(lists.get("breakers", [])),
        lowercase_all_caps=block.get("lowercase_all_caps", False),
        replace=tuple((word.lower(), replacement.lower()) for word, replacement in _items(block.get("replace", {}))),
        examples=_settings_examples(path, block))


def _load_rules(files: LexiconFiles, path: Path, schema: str) -> list[Rule]:
    """The rules of one file, each with its kind for `schema` (`schema_kinds` overrides `kind`)."""
    out = []
    for entry in _read(files, path, "rules")["rules"]:
        sources = entry["pattern"] if isinstance(entry["pattern"], list) else [entry["pattern"]]
        examples = entry["examples"]
        out.append(Rule(id=entry["id"], kind=entry.get("schema_kinds", {}).get(schema, entry["kind"]),
                        priority=entry["priority"], patterns=tuple(parse_pattern(s) for s in sources),
                        should_match=tuple(examples["match"]), should_not_match=tuple(examples.get("no_match", [])),
                        source=f"{path}:{entry['__line__']}"))
    return out
