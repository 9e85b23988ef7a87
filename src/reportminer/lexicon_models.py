"""The shape of lexicon files as pydantic models: what a load checks, and the JSON Schema an editor reads.

A YAML language server given `lexicons/schema/*.schema.json` (written from these models by
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


MODELS: dict[str, type[BaseModel]] = {"conventions": ConventionsFile}


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
