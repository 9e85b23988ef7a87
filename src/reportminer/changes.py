"""What changed between two versions of a lexicon, rule by rule, as far as labels are concerned.

Every output records a digest per assertion rule and one digest of everything else that decides a
label (findings and their words, sections, settings, attributes, the schema), computed from the
loaded lexicon, so examples and notes do not count. Comparing them with today's lexicon tells
`label --update --relabel-changed-rules` which rules changed (edited, added or removed); when only
rules changed, a sentence can only be decided otherwise if its decision rests on a changed rule or
a changed rule matches it now (labeler.Carry).

A rule's digest covers its kind, priority and patterns, and the rules of equal priority before it
(the first of them to match decides): moving a rule among its equals changes it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .lexicon import Lexicon

# Fields that document the lexicon without deciding a label.
NOT_DECIDING = frozenset({"examples", "attribute_examples", "should_match", "should_not_match", "should_find",
                          "should_not_find", "source", "folder", "digest"})


def _plain(value: Any) -> Any:
    """`value` as JSON-able data: dataclasses field by field (less `NOT_DECIDING`), sequences as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in NOT_DECIDING}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    pattern = getattr(value, "pattern", None)  # a compiled regular expression
    if isinstance(pattern, str):
        return {"regex": pattern, "flags": getattr(value, "flags", 0)}
    raise TypeError(f"cannot digest a {type(value).__name__} of the lexicon")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_plain(value), sort_keys=True).encode()).hexdigest()[:16]


def rule_digests(lexicon: Lexicon) -> dict[str, str]:
    """{rule id: digest of what the rule decides}, the rules of equal priority before it included."""
    out = {}
    for n, rule in enumerate(lexicon.rules):
        before = [r.id for r in lexicon.rules[:n] if r.priority == rule.priority]
        out[rule.id] = _digest([rule, before])
    return out


def other_digest(lexicon: Lexicon) -> str:
    """A digest of everything but the rules that decides a label."""
    return _digest({f.name: getattr(lexicon, f.name) for f in dataclasses.fields(lexicon)
                    if f.name not in NOT_DECIDING and f.name != "rules"})


def provenance(lexicon: Lexicon) -> dict[str, Any]:
    """What an output records of its lexicon for a later `--update` to compare (metadata keys)."""
    return {"rule_digests": rule_digests(lexicon), "lexicon_other_digest": other_digest(lexicon)}


def changed_rules(recorded: dict[str, str], lexicon: Lexicon) -> set[str]:
    """Ids of rules edited, added or removed since `recorded` (an output's `rule_digests`)."""
    now = rule_digests(lexicon)
    return {rule for rule in recorded.keys() | now.keys() if recorded.get(rule) != now.get(rule)}
