"""The shape of lexicon files as pydantic models: what a load checks, and the JSON Schema an editor reads.

One model per kind of file (labeler.yaml, attributes.yaml, conventions.yaml, rules/*.yaml,
schemas/NAME/findings.yaml and schema.yaml). A YAML language server given `lexicons/schema/*.schema.json` (written from these models by
`python -m reportminer.lexicon_models`, and checked not to be stale by the tests) completes and checks a
rule author's file as she types; the loader checks the same models, so the editor and `check-lexicon`
never disagree. Files are read first by lexicon_yaml.py (bounded, hostile input), which records each
mapping's line as `__line__`; `validate` strips those and puts the line back into each message, so a
complaint reads `file:line: place -> problem`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .errors import LexiconError
from .lexicon_yaml import LIMITS

Text = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.text_chars, pattern=r"\S")]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z]+(\.[a-z0-9_]+)+$", max_length=80)]
Phrases = Annotated[list[Text], Field(max_length=LIMITS.list_entries)]
Label = Literal[1, 0, -1, None]
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
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.text_chars, pattern=r"\bX\b")]
Bracketed = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS.text_chars, pattern=r"^[^\[\]]*\[[^\[\]]+\][^\[\]]*$")]


class RuleExamples(_Strict):
    match: Annotated[list[Bracketed], Field(min_length=1, max_length=LIMITS.list_entries)] = Field(
        description="Sentences whose [bracketed] mention the rule must decide.")
    no_match: Annotated[list[Bracketed], Field(max_length=LIMITS.list_entries)] = Field(
        default_factory=list, description="Sentences whose [bracketed] mention the rule must not match.")


class Rule(_Strict):
    """An assertion rule: walks through the dependency graph around the mention X (docs/rules.md)."""

    id: RuleId
    kind: Kind
    schema_kinds: dict[str, Kind] = Field(default_factory=dict, description="schema -> its own kind.")
    priority: int = Field(description="Higher wins when several rules match.")
    pattern: Pattern | Annotated[list[Pattern], Field(min_length=1, max_length=LIMITS.list_entries)]
    examples: RuleExamples
    note: str | None = None


class RulesFile(_Strict):
    """rules/*.yaml: a list of rules."""

    rules: list[Rule]


class FindingExamples(_Strict):
    match: Annotated[list[Bracketed], Field(min_length=1, max_length=LIMITS.list_entries)] = Field(
        description="Sentences whose [bracketed] words must be found as this finding.")
    no_match: Phrases = Field(default_factory=list, description="Sentences in which the finding must not be found.")


class Finding(_Strict):
    """A finding (an output column) and the words that name it."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z_]*(?: [A-Z][A-Za-z_]*)*$")]
    synonyms: Annotated[list[Text], Field(min_length=1, max_length=LIMITS.list_entries)]
    patterns: Phrases = Field(default_factory=list, description="Regular expressions (RE2) for other phrasings.")
    exclusions: Phrases = Field(default_factory=list, description="Phrases that contain a synonym but name no finding.")
    signs: Phrases = Field(default_factory=list, description="Indirect signs: a positive one makes the finding uncertain.")
    absent: Phrases = Field(default_factory=list, description="Regular expressions for stated-normal sentences.")
    examples: FindingExamples
    note: str | None = None


class FindingsFile(_Strict):
    """schemas/NAME/findings.yaml: the findings, in the order of the output columns."""

    findings: Annotated[list[Finding], Field(min_length=1)]


class NoFinding(_Strict):
    column: Text
    ignore: Phrases = Field(default_factory=list)
    uncertain: Literal[0, -1, None]
    abnormal: Literal[0, -1, None]


class SchemaFile(_Strict):
    """schemas/NAME/schema.yaml: the no-finding column and which findings imply others."""

    no_finding: NoFinding
    implies: dict[str, Annotated[list[Text], Field(min_length=1)]] = Field(default_factory=dict)
    note: str | None = None


class Attribute(_Strict):
    values: dict[str, Annotated[list[Annotated[str, StringConstraints(pattern=r"^\S+$")]], Field(min_length=1)]]
    order: Annotated[list[Text], Field(min_length=1)]
    both: str | None = None


class AttributesFile(_Strict):
    """attributes.yaml: side, severity and change words and where they stand."""

    attributes: dict[str, Attribute]
    patterns: Annotated[list[Annotated[str, StringConstraints(pattern=r"\{word\}\s*$")]], Field(min_length=1)]
    examples: Annotated[list[dict[str, Text]], Field(min_length=1)]


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
    labeled: dict[str, Annotated[list[Text], Field(min_length=1)]]
    never: Phrases = Field(default_factory=list)
    untitled: Text
    body: Text
    examples: Annotated[list[ReportExample], Field(min_length=1)]


class Placeholder(_Strict):
    token: Text
    replacement: Text


class Normal(_Strict):
    rule: RuleId
    phrases: Phrases


class Assertions(_Strict):
    default: Decision
    sign: Decision
    absent: Decision
    query: Decision
    phrase_links: Phrases = Field(default_factory=list)
    examples: Annotated[list[SettingExample], Field(min_length=1)]


class Mask(_Strict):
    singular: Text
    plural: Text
    plural_endings: Annotated[list[Text], Field(min_length=1)]
    singular_endings: Phrases = Field(default_factory=list)


class Lists(_Strict):
    links: Annotated[list[Text], Field(min_length=1)]
    shared_dependents: Phrases = Field(default_factory=list)
    clause_heads: Phrases = Field(default_factory=list)
    sibling_relations: Phrases = Field(default_factory=list)
    breakers: Phrases = Field(default_factory=list)


class Parse(_Strict):
    mask: Mask
    lists: Lists
    lowercase_all_caps: bool = False
    replace: dict[str, Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+$")]] = Field(default_factory=dict)
    examples: Annotated[list[SettingExample], Field(min_length=1)]


class Limits(_Strict):
    report_chars: Annotated[int, Field(ge=50)]
    sentence_chars: Annotated[int, Field(ge=50)]


class LabelerFile(_Strict):
    """labeler.yaml: which text is labeled, precedence, placeholders, normal phrases, assertions, parsing, limits."""

    sections: Sections
    precedence: Annotated[list[Kind], Field(min_length=3, max_length=3)]
    placeholders: list[Placeholder] = Field(default_factory=list)
    normal: Normal
    assertions: Assertions
    parse: Parse
    limits: Limits


MODELS: dict[str, type[BaseModel]] = {"conventions": ConventionsFile, "rules": RulesFile, "findings": FindingsFile,
                                      "schema": SchemaFile, "attributes": AttributesFile, "labeler": LabelerFile}


def model_for(path: Path, root: Path) -> type[BaseModel]:
    """The model of a lexicon file by its place in the folder."""
    relative = path.relative_to(root)
    if relative.parts[0] == "rules":
        return RulesFile
    return MODELS[relative.stem]


def _plain(data: Any) -> Any:
    """The data without the loader's `__line__` keys."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items() if k != "__line__"}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def _line(data: Any, loc: tuple[Any, ...]) -> Any:
    """The line of the deepest mapping on the path `loc`."""
    line = data.get("__line__", "?") if isinstance(data, dict) else "?"
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            break
        if isinstance(data, dict) and "__line__" in data:
            line = data["__line__"]
    return line


def validate(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    """`data` as `model`, or a LexiconError naming file:line, the place and the problem (the first one)."""
    try:
        return model.model_validate(_plain(data))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(error["loc"])
        place = ".".join(str(p) for p in loc) or path.stem
        problem = re.sub(r"^Value error, ", "", error["msg"])
        if error["type"] == "extra_forbidden":
            problem = "unknown field"
        raise LexiconError(f"{path}:{_line(data, loc)}: {place} -> {problem}") from None


def check_files(root: Path) -> list[str]:
    """Every YAML file of a lexicon folder against its model: one `file:line: place -> problem` per file that
    does not fit (the same check an editor with the JSON Schemas makes)."""
    from .lexicon_yaml import read_yaml

    paths = [root / "labeler.yaml", root / "attributes.yaml", root / "conventions.yaml",
             *sorted((root / "rules").glob("*.yaml")), *sorted((root / "schemas").glob("*/findings.yaml")),
             *sorted((root / "schemas").glob("*/schema.yaml"))]
    problems = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            validate(model_for(path, root), read_yaml(path), path)
        except LexiconError as exc:
            problems.append(str(exc))
    return problems


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
