"""Conventions: the choices on which golds differ, as named values a user picks (conventions.yaml).

Two careful annotators label "atelectasis versus pneumonia" differently: the ChestX-ray8 authors'
OpenI gold calls both present, a clinical gold calls both uncertain. Neither is a bug, so neither is
hard-wired: each such choice is a convention with named values and examples, and a value sets the kind
of the rules it lists, drops or adds rules and synonyms. A profile sets several at once
(`--profile clinical`); `--convention KEY=VALUE` sets one. The values in force are part of the
lexicon's digest (so the decision cache and `label --update` never mix conventions) and are recorded
in every output's metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LexiconError
from .lexicon import Lexicon
from .lexicon_yaml import LexiconFiles

if TYPE_CHECKING:
    from .lexicon_models import ConventionsFile

BLANK = "blank"  # a kind: the mention counts as not mentioned
DECISIONS = {"assertions.query": "query", "assertions.absent": "absent", "assertions.sign": "sign"}


def load_conventions(path: Path, files: LexiconFiles | None = None) -> ConventionsFile:
    """conventions.yaml read within the lexicon's limits and checked against its model."""
    from .lexicon_models import ConventionsFile, validate  # pydantic: not on `label`'s start-up path

    files = files or LexiconFiles(path.parent)
    return validate(ConventionsFile, files.load(path), path)


def resolve(spec: ConventionsFile, schema: str, profile: str | None, overrides: dict[str, str],
            where: Path) -> dict[str, str]:
    """The value of every convention: its default (for `schema`), then the profile's, then `overrides`."""
    values = {key: c.schema_default.get(schema, c.default) for key, c in spec.conventions.items()}
    if profile is not None:
        if profile not in spec.profiles:
            raise LexiconError(f"{where}: no profile {profile!r}; profiles: {', '.join(spec.profiles) or 'none'}")
        values.update(spec.profiles[profile])
    for key, value in overrides.items():
        if key not in spec.conventions:
            raise LexiconError(f"--convention {key}={value}: no convention {key!r} in {where}; conventions: "
                               f"{', '.join(spec.conventions)}")
        if value not in spec.conventions[key].values:
            raise LexiconError(f"--convention {key}={value}: {key} is one of {', '.join(spec.conventions[key].values)}")
        values[key] = value
    return values


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """KEY=VALUE options as a mapping (a malformed one named)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LexiconError(f"--convention {item!r}: write KEY=VALUE, e.g. --convention differential=uncertain")
        out[key.strip()] = value.strip()
    return out


def apply_conventions(lexicon: Lexicon, files: LexiconFiles, path: Path, schema: str, profile: str | None,
                      overrides: dict[str, str]) -> Lexicon:
    """The lexicon under the conventions' values (unchanged when the folder has no conventions.yaml)."""
    if not path.exists():
        if profile is not None or overrides:
            raise LexiconError(f"{path}: missing; this lexicon has no conventions, so --profile and --convention "
                               f"cannot be used with it")
        return lexicon
    spec = load_conventions(path, files)
    values = resolve(spec, schema, profile, overrides, path)
    known = {r.id for r in lexicon.rules} | set(DECISIONS)
    kinds: dict[str, str] = {}
    dropped: set[str] = set()
    added: dict[str, list[str]] = {}
    for key, convention in spec.conventions.items():
        value = values[key]
        for rule_id in convention.kinds + [r for listed in convention.only.values() for r in listed]:
            if rule_id not in known:
                raise LexiconError(f"{path}: conventions.{key}: no rule {rule_id!r} in the rules of this lexicon")
        kinds.update({rule_id: value for rule_id in convention.kinds})
        dropped |= {r for other, listed in convention.only.items() if other != value for r in listed}
        for finding, phrases in convention.synonyms.get(value, {}).items():
            added.setdefault(finding, []).extend(p.lower() for p in phrases)
    rules = tuple(dataclasses.replace(r, kind=kinds.get(r.id, r.kind)) for r in lexicon.rules if r.id not in dropped)
    assertions = lexicon.assertions
    for name, field in DECISIONS.items():
        if name in kinds:
            assertions = dataclasses.replace(assertions, **{f"{field}_kind": kinds[name]})
    findings = tuple(dataclasses.replace(f, synonyms=f.synonyms + tuple(p for p in added[f.name] if p not in f.synonyms))
                     if f.name in added else f for f in lexicon.findings)
    key, value = spec.layout.when.split("=")
    headings = tuple(h.lower() for h in spec.layout.headings) if values[key] == value else ()
    key, value = spec.layout.revisions_when.split("=")
    revisions = tuple(r.lower() for r in spec.layout.revisions) if values[key] == value else ()
    decision_rules = {name: getattr(assertions, f"{field}_rule") for name, field in DECISIONS.items()}
    digest = hashlib.sha256("\0".join([lexicon.digest, files.digest([path]),
                                       json.dumps(values, sort_keys=True)]).encode()).hexdigest()[:16]
    return dataclasses.replace(
        lexicon, rules=rules, assertions=assertions, findings=findings,
        parse=dataclasses.replace(lexicon.parse, headings=headings), revisions=revisions, digest=f"sha256:{digest}",
        conventions=tuple(sorted(values.items())),
        convention_rules=tuple((k, tuple(decision_rules.get(r, r) for r in c.kinds))
                               for k, c in spec.conventions.items() if c.kinds))


def example_failures(folder: Path, schema: str, nlp: object) -> tuple[int, list[str]]:
    """Run every convention example whose labels name findings of `schema` under each value it gives:
    (examples run, one line per example that does not behave as written, naming file:line-free place)."""
    from .labeler import Labeler
    from .lexicon import load_lexicon
    from .readers import Report

    path = Path(folder) / "conventions.yaml"
    if not path.is_file():
        return 0, []
    spec = load_conventions(path)
    count, failures = 0, []
    for key, convention in spec.conventions.items():
        for n, example in enumerate(convention.examples, 1):
            for value, expected in example.labels.items():
                lexicon = load_lexicon(folder, schema, conventions={key: value})
                if not set(expected) <= set(lexicon.label_columns):
                    continue
                count += 1
                labels = next(Labeler(lexicon, nlp, cache=False).label([Report("example", example.report, str(path))])).labels
                got = {finding: labels.get(finding) for finding in expected}
                if got != expected:
                    failures.append(f"{path}: conventions.{key}.examples[{n}] under {key}={value}: "
                                    f"{example.report!r} gives {got}, not {dict(expected)}")
    return count, failures
