"""The rule author's loop: how often each rule, and each value of each convention, agrees with a gold.

Both read the evidence (mentions.parquet) beside the labels: each mention names the rule that decided
it, and the gold gives the report's value for that finding (1, 0, -1 or blank). A mention is right
when its own value (positive 1, negative 0, uncertain -1) is the gold's. Per rule this says which rules
earn their place and shows their errors; per convention it says, for each value, how often the
mentions the convention decides would agree with the gold under that value, so a user sees which
convention her gold follows before she picks one (`label --convention KEY=VALUE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .aggregate import VALUE
from .conventions import BLANK, load_conventions
from .evaluate import read_gold
from .evidence import read_mentions
from .lexicon import Lexicon

EXAMPLES = 3  # errors shown per rule


def _shown(value: float | None) -> str:
    return "blank" if value is None or pd.isna(value) else str(int(value))


def scored_mentions(evidence: str | Path, gold: str | Path, findings: list[str]) -> pd.DataFrame:
    """The evidence's mentions of reports and findings the gold has, with `mine` (the mention's value)
    and `gold` (the report's gold value for the finding, NaN for blank)."""
    truth, columns, _ = read_gold(gold, findings)
    mentions = read_mentions(evidence)
    mentions = mentions[mentions["report_id"].astype(str).isin(truth.index) & mentions["finding"].isin(columns)]
    mentions = mentions.assign(mine=mentions["assertion"].map(VALUE).astype(float))
    stacked = truth[columns].stack(future_stack=True)
    keys = list(zip(mentions["report_id"].astype(str), mentions["finding"]))
    return mentions.assign(gold=[stacked.get(key, float("nan")) for key in keys]).reset_index(drop=True)


def _same(mine: pd.Series, gold: pd.Series) -> pd.Series:
    return (mine == gold) | (mine.isna() & gold.isna())


def by_rule(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Per rule that decided a mention: mentions, right, share right, and a few errors."""
    out = []
    for rule, group in scored.groupby("rule", sort=True):
        right = _same(group["mine"], group["gold"])
        errors = group[~right].head(EXAMPLES)
        out.append({"rule": rule, "mentions": int(len(group)), "right": int(right.sum()),
                    "share": float(right.mean()),
                    "errors": [{"report_id": str(r.report_id), "finding": r.finding, "gave": _shown(r.mine),
                                "gold": _shown(r.gold), "sentence": r.sentence} for r in errors.itertuples()]})
    return sorted(out, key=lambda row: (row["share"], -row["mentions"]))


def by_convention(scored: pd.DataFrame, lexicon: Lexicon) -> list[dict[str, Any]]:
    """Per convention of the lexicon: the mentions it decides and, per value, the share that would agree
    with the gold under that value (None when the labels hold no such mention)."""
    path = Path(lexicon.folder) / "conventions.yaml"
    if not lexicon.conventions or not path.is_file():
        return []
    spec = load_conventions(path)
    in_force = dict(lexicon.conventions)
    rules = dict(lexicon.convention_rules)
    out = []
    for key, convention in spec.conventions.items():
        if key in rules:  # the value is the kind of the mentions its rules decide
            chosen = scored[scored["rule"].isin(rules[key])]
            under = {value: pd.Series(VALUE.get(value, float("nan")) if value != BLANK else float("nan"),
                                      index=chosen.index, dtype=float) for value in convention.values}
        elif convention.synonyms:  # a value adds words: under another value they name nothing
            words = {value: {(f, p.lower()) for f, phrases in table.items() for p in phrases}
                     for value, table in convention.synonyms.items()}
            keys = list(zip(scored["finding"], scored["text"].str.lower()))
            chosen = scored[[any(k in w or (k[0], k[1].rstrip("s")) in w for w in words.values()) for k in keys]]
            under = {}
            for value in convention.values:
                own = pd.Series([(f, t.lower()) in words.get(value, set()) or (f, t.lower().rstrip("s"))
                                 in words.get(value, set()) for f, t in zip(chosen["finding"], chosen["text"])],
                                index=chosen.index, dtype=bool)
                under[value] = chosen["mine"].where(own, float("nan"))
        else:
            continue
        agreement = {value: (float(_same(series, chosen["gold"]).mean()) if len(chosen) else None)
                     for value, series in under.items()}
        out.append({"convention": key, "in_force": in_force.get(key), "mentions": int(len(chosen)),
                    "agreement": agreement})
    return out


def format_rules(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'rule':32} {'mentions':>8} {'right':>6} {'share':>6}  (worst first)"]
    for row in rows:
        lines.append(f"{row['rule']:32} {row['mentions']:8d} {row['right']:6d} {row['share']:6.3f}")
        for error in row["errors"]:
            sentence = " ".join(error["sentence"].split())
            sentence = sentence if len(sentence) <= 100 else sentence[:97] + "..."
            lines.append(f"    {error['report_id']} {error['finding']}: gave {error['gave']}, gold {error['gold']}: "
                         f"{sentence}")
    return "\n".join(lines)


def format_conventions(rows: list[dict[str, Any]]) -> str:
    lines = ["conventions: share of the mentions each decides that agree with the gold under each value "
             "(* in force)"]
    for row in rows:
        cells = []
        for value, share in row["agreement"].items():
            mark = "*" if value == row["in_force"] else ""
            cells.append(f"{value}{mark} " + ("n/a" if share is None else f"{share:.3f}"))
        note = "" if row["mentions"] else "  (no mention in these labels: label with another value to compare)"
        lines.append(f"  {row['convention']:16} {row['mentions']:5d} mentions: " + ", ".join(cells) + note)
    return "\n".join(lines)
