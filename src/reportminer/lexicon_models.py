"""The shape of lexicon files as pydantic models: what a load checks, and the JSON Schema an editor reads.

One model per kind of file (labeler.yaml, attributes.yaml, conventions.yaml, rules/*.yaml,
schemas/NAME/findings.yaml and schema.yaml). A YAML language server given `lexicons/schema/*.schema.json`
(written from these models by `python -m reportminer.lexicon_models`, and checked not to be stale by the
tests) completes and checks a rule author's file as she types. `load_lexicon` (and so `check-lexicon` and
`label --lexicon`) checks every file's shape with `validate` and these models only, so the editor, the
loader and the checker never disagree; what needs several files or the built lexicon (duplicate ids, RE2,
examples run through the labeler) is checked by lexicon.py and lexicon_check.py after. Files are read
first by lexicon_yaml.py (bounded, hostile input), which records each mapping's line as `__line__`;
`validate` strips those and puts the line back into the message, so a complaint reads
`file:line: place -> field: problem` (the place a rule id, a finding's name or a dotted path).
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      ValidationError, ValidationInfo, field_validator, model_validator)

from .errors import LexiconError, PatternError
from .lexicon_yaml import LIMITS, shown
from .patterns import parse_pattern

TEXT, KEY = r"\S", r"^[a-z][a-z0-9_]*$"
RULE_ID = r"^[a-z]+(\.[a-z0-9_]+)+$"
FINDING_NAME = r"^[A-Z][A-Za-z_]*(?: [A-Z][A-Za-z_]*)*$"
BRACKETED = r"^[^\[\]]*\[[^\[\]]+\][^\[\]]*$"
WORD, LETTERS, ENDS_WITH_WORD = r"^\S+$", r"^[A-Za-z]+$", r"\{word\}\s*$"
WORDING = {  # a pattern a text fails -> what the message says instead of the regular expression
    TEXT: "must not be blank", KEY: "must be lower case letters, digits and _ (such as hedged_positive)",
    RULE_ID: "must look like neg.no_evidence_of (lower case, dot-separated)",
    FINDING_NAME: "must be capitalised words such as Pleural_Thickening or Lung Opacity",
    BRACKETED: "must mark exactly one mention in [brackets]", WORD: "one word per entry (a token of the report)",
    LETTERS: "must be one word of letters", ENDS_WITH_WORD: "must end with {word}, the attribute's word"}


def _once(values: list[Any]) -> list[Any]:
    """Each entry once: a repeated one is a slip (two lines of a list edited into one)."""
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"listed twice: {shown(value)}")
        seen.add(value)
    return values


def _no_bool(value: Any) -> Any:
    """YAML's true and false are not the labels 1 and 0 (pydantic's Literal would take them)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number or null, not {str(value).lower()}")
    return value


def _graph_pattern(source: str) -> str:
    """A rule's pattern must parse (patterns.py), with the parser's own message."""
    try:
        parse_pattern(source)
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    return source


Text = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.text_chars, pattern=TEXT)]
Key = Annotated[str, StringConstraints(pattern=KEY, max_length=40)]
RuleId = Annotated[str, StringConstraints(pattern=RULE_ID, max_length=80)]
UNIQUE = {"uniqueItems": True}
Phrases = Annotated[list[Text], Field(max_length=LIMITS.list_entries, json_schema_extra=UNIQUE), AfterValidator(_once)]
SomePhrases = Annotated[list[Text], Field(min_length=1, max_length=LIMITS.list_entries, json_schema_extra=UNIQUE),
                        AfterValidator(_once)]
Label = Annotated[Literal[1, 0, -1, None], BeforeValidator(_no_bool)]
KINDS = ("positive", "negative", "uncertain", "blank")  # what a convention may make of a mention


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ConventionExample(_Strict):
    """A report and, for each value of the convention, the labels the labeler must give it."""

    report: Text = Field(description="A short report (one sentence is enough).")
    labels: dict[str, dict[str, Label]] = Field(
        description="value -> {finding: 1, 0, -1 or null}: the labels under each value of the convention.")


class Convention(_Strict):
    """A choice on which golds differ: its values, which rules and words each value sets, and examples."""

    about: Text = Field(description="What the convention decides, in a sentence a clinician reads.")
    values: dict[Key, Text] = Field(min_length=2, description="Each value and what it means.")
    default: Key = Field(description="The value when no profile or --convention says otherwise.")
    schema_default: dict[Key, Key] = Field(default_factory=dict, description="schema -> its own default value.")
    kinds: list[RuleId] = Field(default_factory=list, description=(
        "Rules (and assertions.query / assertions.absent / assertions.sign of labeler.yaml) whose kind is the "
        "value: positive, negative, uncertain, or blank (the mention counts as not mentioned)."))
    only: dict[Key, list[RuleId]] = Field(default_factory=dict,
                                          description="value -> rules that are used only under that value.")
    synonyms: dict[Key, dict[str, Phrases]] = Field(default_factory=dict, description=(
        "value -> {finding: phrases}: synonyms added under that value (a finding the schema lacks is skipped)."))
    examples: list[ConventionExample] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Convention:
        named = [self.default, *self.schema_default.values(), *self.only, *self.synonyms]
        named += [value for example in self.examples for value in example.labels]
        unknown = [v for v in named if v not in self.values]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of the values ({', '.join(self.values)})")
        if self.kinds and not set(self.values) <= set(KINDS):
            raise ValueError(f"a convention that sets kinds has values among {', '.join(KINDS)}")
        return self


class Layout(_Strict):
    """Report layouts the sentence splitter and the parser must know."""

    when: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*=[a-z][a-z0-9_]*$")] = Field(
        description="KEY=VALUE: the convention value under which the headings act.")
    headings: Phrases = Field(description=(
        "Organ headings ('Pleura:', '- Heart and mediastinum:'): a new sentence starts at each one at the start "
        "of a line, and the parser never sees the heading, so it cannot break a negation's scope."))
    revisions_when: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*=[a-z][a-z0-9_]*$")] = Field(
        description="KEY=VALUE: the convention value under which the revisions act.")
    revisions: Phrases = Field(default_factory=list, description=(
        "Words that open a revision of the report at the start of a line ('ADDENDUM', 'FINAL REPORT'): for each "
        "finding, the mentions of the latest revision that mentions it decide its label."))


class ConventionsFile(_Strict):
    """conventions.yaml: the named conventions, the profiles that set several at once, and layouts."""

    conventions: dict[Key, Convention]
    profiles: dict[Key, dict[Key, Key]] = Field(default_factory=dict,
                                                description="profile -> {convention: value}.")
    layout: Layout

    @model_validator(mode="after")
    def _known(self) -> ConventionsFile:
        for name, values in self.profiles.items():
            for key, value in values.items():
                if key not in self.conventions:
                    raise ValueError(f"profile {name}: no convention {key!r}")
                if value not in self.conventions[key].values:
                    raise ValueError(f"profile {name}: {key}={value} is not one of {', '.join(self.conventions[key].values)}")
        for field in ("when", "revisions_when"):
            key, value = getattr(self.layout, field).split("=")
            if key not in self.conventions or value not in self.conventions[key].values:
                raise ValueError(f"layout.{field}: {getattr(self.layout, field)} names no convention value")
        return self


Kind = Literal["positive", "negative", "uncertain"]
# "an X" is the editor's hint; the loader runs the pattern parser itself, with its message
GraphPattern = Annotated[str, Field(min_length=1, max_length=LIMITS.text_chars, json_schema_extra={"pattern": r"\bX\b"}),
                         AfterValidator(_graph_pattern)]
Bracketed = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.text_chars, pattern=BRACKETED)]
Sentences = Annotated[list[Bracketed], Field(min_length=1, max_length=LIMITS.list_entries, json_schema_extra=UNIQUE),
                      AfterValidator(_once)]


class RuleExamples(_Strict):
    match: Sentences = Field(description="Sentences whose [bracketed] mention the rule must decide.")
    no_match: Annotated[list[Bracketed], Field(max_length=LIMITS.list_entries, json_schema_extra=UNIQUE),
                        AfterValidator(_once)] = Field(
        default_factory=list, description="Sentences whose [bracketed] mention the rule must not match.")


class Rule(_Strict):
    """An assertion rule: walks through the dependency graph around the mention X (docs/rules.md)."""

    id: RuleId
    kind: Kind
    schema_kinds: dict[str, Kind] = Field(default_factory=dict, description="schema -> its own kind.")
    priority: int = Field(description="Higher wins when several rules match.")
    pattern: GraphPattern | Annotated[list[GraphPattern], Field(min_length=1, max_length=LIMITS.list_entries,
                                                                json_schema_extra=UNIQUE), AfterValidator(_once)]
    examples: RuleExamples
    note: str | None = None


class RulesFile(_Strict):
    """rules/*.yaml: a list of rules."""

    rules: Annotated[list[Rule], Field(max_length=LIMITS.list_entries)]


class FindingExamples(_Strict):
    match: Sentences = Field(description="Sentences whose [bracketed] words must be found as this finding.")
    no_match: Phrases = Field(default_factory=list, description="Sentences in which the finding must not be found.")


class Finding(_Strict):
    """A finding (an output column) and the words that name it."""

    name: Annotated[str, StringConstraints(pattern=FINDING_NAME, max_length=80)]
    synonyms: SomePhrases
    patterns: Phrases = Field(default_factory=list, description="Regular expressions (RE2) for other phrasings.")
    exclusions: Phrases = Field(default_factory=list, description="Phrases that contain a synonym but name no finding.")
    signs: Phrases = Field(default_factory=list, description="Indirect signs: a positive one makes the finding uncertain.")
    absent: Phrases = Field(default_factory=list, description="Regular expressions for stated-normal sentences.")
    examples: FindingExamples
    note: str | None = None


class FindingsFile(_Strict):
    """schemas/NAME/findings.yaml: the findings, in the order of the output columns."""

    findings: Annotated[list[Finding], Field(min_length=1, max_length=LIMITS.list_entries)]


class NoFinding(_Strict):
    column: Text
    ignore: Phrases = Field(default_factory=list)
    uncertain: Annotated[Literal[0, -1, None], BeforeValidator(_no_bool)]
    abnormal: Annotated[Literal[0, -1, None], BeforeValidator(_no_bool)]


class SchemaFile(_Strict):
    """schemas/NAME/schema.yaml: the no-finding column and which findings imply others."""

    no_finding: NoFinding
    implies: dict[str, SomePhrases] = Field(default_factory=dict)
    note: str | None = None


Word = Annotated[str, StringConstraints(pattern=WORD, max_length=LIMITS.text_chars)]


class Attribute(_Strict):
    values: dict[Key, Annotated[list[Word], Field(min_length=1, max_length=LIMITS.list_entries,
                                                  json_schema_extra=UNIQUE), AfterValidator(_once)]]
    order: SomePhrases
    both: str | None = None


class AttributeExample(_Strict):
    """A sentence, and the value of each attribute its [bracketed] mention must get (the others: none)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Text]
    sentence: Bracketed


class AttributesFile(_Strict):
    """attributes.yaml: side, severity and change words and where they stand."""

    attributes: dict[Key, Attribute]
    patterns: Annotated[list[Annotated[str, StringConstraints(pattern=ENDS_WITH_WORD, max_length=LIMITS.text_chars)]],
                        Field(min_length=1, max_length=LIMITS.list_entries, json_schema_extra=UNIQUE),
                        AfterValidator(_once)]
    examples: Annotated[list[AttributeExample], Field(min_length=1, max_length=LIMITS.list_entries)]


class Decision(_Strict):
    kind: Kind
    rule: RuleId


class SettingExample(_Strict):
    sentence: Bracketed
    kind: Kind
    rule: RuleId | None = None


class ReportExample(_Strict):
    report: Text
    labels: dict[str, Label]


class Sections(_Strict):
    labeled: dict[str, SomePhrases]
    never: Phrases = Field(default_factory=list)
    untitled: Text
    body: Text
    examples: Annotated[list[ReportExample], Field(min_length=1, max_length=LIMITS.list_entries)]


class Placeholder(_Strict):
    token: Text
    replacement: Text

    @field_validator("replacement")
    @classmethod
    def _no_longer(cls, replacement: str, info: ValidationInfo) -> str:
        token = info.data.get("token", "")
        if len(replacement) > len(token):
            raise ValueError(f"{replacement!r} is longer than {token!r}; offsets must not move")
        return replacement


class Normal(_Strict):
    rule: RuleId
    phrases: Phrases


class Assertions(_Strict):
    default: Decision
    sign: Decision
    absent: Decision
    query: Decision
    phrase_links: Phrases = Field(default_factory=list)
    examples: Annotated[list[SettingExample], Field(min_length=1, max_length=LIMITS.list_entries)]


class Mask(_Strict):
    singular: Text
    plural: Text
    plural_endings: SomePhrases
    singular_endings: Phrases = Field(default_factory=list)


class Lists(_Strict):
    links: SomePhrases
    shared_dependents: Phrases = Field(default_factory=list)
    clause_heads: Phrases = Field(default_factory=list)
    sibling_relations: Phrases = Field(default_factory=list)
    breakers: Phrases = Field(default_factory=list)


class Parse(_Strict):
    mask: Mask
    lists: Lists
    lowercase_all_caps: bool = False
    replace: dict[str, Annotated[str, StringConstraints(pattern=LETTERS)]] = Field(default_factory=dict)
    examples: Annotated[list[SettingExample], Field(min_length=1, max_length=LIMITS.list_entries)]

    @field_validator("replace")
    @classmethod
    def _same_length(cls, replace: dict[str, str]) -> dict[str, str]:
        for word, replacement in replace.items():
            if len(word) != len(replacement) or not word.isalpha():
                raise ValueError(f"{word!r} → {replacement!r}: a word and a replacement of the same length "
                                 f"(offsets must not move)")
        return replace


class Limits(_Strict):
    report_chars: Annotated[int, Field(ge=50)]
    sentence_chars: Annotated[int, Field(ge=50)]


class LabelerFile(_Strict):
    """labeler.yaml: which text is labeled, precedence, placeholders, normal phrases, assertions, parsing, limits."""

    sections: Sections
    precedence: Annotated[list[Kind], Field(min_length=3, max_length=3, json_schema_extra=UNIQUE),
                          AfterValidator(_once)]
    placeholders: Annotated[list[Placeholder], Field(max_length=LIMITS.list_entries)] = Field(default_factory=list)
    normal: Normal
    assertions: Assertions
    parse: Parse
    limits: Limits


MODELS: dict[str, type[BaseModel]] = {"conventions": ConventionsFile, "rules": RulesFile, "findings": FindingsFile,
                                      "schema": SchemaFile, "attributes": AttributesFile, "labeler": LabelerFile}


def validate(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    """`data` (a file read by lexicon_yaml.py) as `model`, or a LexiconError naming file:line, the place, the
    field and the problem (the first one): the one check of a lexicon file's shape."""
    try:
        return model.model_validate(_plain(data))
    except ValidationError as exc:
        raise LexiconError(_message(model, data, path, exc.errors(include_url=False))) from None


def _plain(data: Any) -> Any:
    """The data without the loader's `__line__` keys."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items() if k != "__line__"}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


_PLAIN = re.compile(r"[\w .+/()-]{1,80}")


def _message(model: type[BaseModel], data: dict[str, Any], path: Path, errors: list[Any]) -> str:
    """`file:line: place -> field: problem` for the first error (of a union's alternatives, the one that went
    deepest into the data and is not about the type: a list of patterns with one bad pattern is about that one;
    for a missing field, an unknown one beside it)."""
    error = errors[0]
    if error["type"] == "missing":  # a misspelt field is both missing and unknown: the unknown one shows the fix
        beside = [e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == error["loc"][:-1]]
        error = (beside or [error])[0]
    tag = _walk(data, error["loc"])[2]  # the first part not in the data: a union's tag, unless a missing field
    if tag is not None and not (error["type"] == "missing" and tag == len(error["loc"]) - 1):
        error = max((e for e in errors if e["loc"][:tag] == error["loc"][:tag]),
                    key=lambda e: (len(_walk(data, e["loc"])[0]), not e["type"].endswith("_type")))
    steps, line, _ = _walk(data, error["loc"])
    place, field = _names(data, steps + ([error["loc"][-1]] if error["type"] == "missing" else []), len(steps))
    where = " -> ".join(part for part in (place, field) if part)
    return f"{path}:{line}: {where + ': ' if where else ''}{_problem(model, error)}"


def _walk(data: Any, loc: tuple[Any, ...]) -> tuple[list[Any], Any, int | None]:
    """The parts of `loc` found in the data, the line of the deepest mapping, and where the first part that is
    not in the data stands in `loc` (None when every part is)."""
    steps, line, node, tag = [], data.get("__line__", "?"), data, None
    for n, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            tag = n if tag is None else tag
            continue
        steps.append(part)
        if isinstance(node, dict) and "__line__" in node:
            line = node["__line__"]
    return steps, line, tag


def _names(data: Any, parts: list[Any], found: int) -> tuple[str, str]:
    """(the deepest mapping on the path `parts`, as a rule id, finding name or dotted path; the rest, the field):
    an entry of a list is named by its `id` or `name` where it has one, else as `key[n]` counting from 1. The
    first `found` parts are in the data (a missing field is not)."""
    names: list[str] = []
    cut, node = 0, data
    for n, part in enumerate(parts):
        node = node[part] if n < found else None
        ident = node.get("id", node.get("name")) if isinstance(node, dict) else None
        if isinstance(part, str):
            names.append(_name(part))
        elif isinstance(ident, str) and parts[n + 1:n + 2] not in (["id"], ["name"]):
            names = [_name(ident)]
        elif names:
            names[-1] += f"[{part + 1}]"
        else:
            names.append(f"[{part + 1}]")
        if isinstance(node, dict):
            cut = len(names)
    return ".".join(names[:cut]), ".".join(names[cut:])


def _name(key: str) -> str:
    """A key or id as a message shows it: as written when it is a plain name, else quoted and cut short (a
    stranger's key may hold a line break or two thousand characters)."""
    return key if _PLAIN.fullmatch(key) else shown(key)


def _problem(model: type[BaseModel], error: Any) -> str:
    """pydantic's words, with the fix where we know one, and the bad value where it is short."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields(model, error["loc"][:-1])
        return "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] in WORDING:
        return f"{shown(value)} {WORDING[error['ctx']['pattern']]}"
    if kind in ("dict_type", "model_type"):
        problem = "must be a mapping (key: value)"
    else:
        problem = re.sub(r"^Value error, ", "", error["msg"])
    if kind in ("missing", "value_error") or not (value is None or isinstance(value, (str, int, float, bool))):
        return problem
    return f"{problem}, got {shown(value)}"


def _fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model at `loc` inside `model` (what an unknown field could have been)."""
    kind: Any = model
    for part in loc:
        for arm in _arms(kind):
            if isinstance(arm, type) and issubclass(arm, BaseModel) and part in arm.model_fields:
                kind = arm.model_fields[part].annotation
            elif get_origin(arm) is list and isinstance(part, int):
                kind = get_args(arm)[0]
            elif get_origin(arm) is dict and isinstance(part, str):
                kind = get_args(arm)[1]
            else:
                continue
            break
    found = [arm for arm in _arms(kind) if isinstance(arm, type) and issubclass(arm, BaseModel)]
    return sorted(found[0].model_fields) if found else []


def _arms(kind: Any) -> list[Any]:
    """A type's alternatives, without their Annotated constraints."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) in (Union, types.UnionType):
        return [arm for alternative in get_args(kind) for arm in _arms(alternative)]
    return [kind]


def json_schema(name: str) -> str:
    """The JSON Schema of one kind of lexicon file, as written to lexicons/schema/NAME.schema.json."""
    schema = MODELS[name].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write every model's JSON Schema into the shipped lexicon's schema/ folder."""
    folder = Path(__file__).resolve().parents[2] / "lexicons" / "schema"
    folder.mkdir(exist_ok=True)
    for name in MODELS:
        (folder / f"{name}.schema.json").write_text(json_schema(name), encoding="utf-8")


if __name__ == "__main__":
    main()
