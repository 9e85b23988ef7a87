"""A seeded, stratified sample of labeled reports to annotate by hand, with weights back to the archive.

A simple random sample of 200 reports holds almost no Hernia or Pneumothorax, so it cannot say how
well those are labeled. DESIGN says how the sample is drawn instead (it is also written into the
sample's README and docs/audit.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrcore.labels import LabelTable

NO_MENTION = "no finding mentioned"
VALUE_NAMES = {1: "positive", 0: "negative", -1: "uncertain"}
DESIGN = """\
1. Strata. Each report falls in exactly one stratum: the rarest (finding, labeler value) it carries,
   rarity being the number of reports in the archive with that value for that finding (value 1, 0
   or -1; the no-finding column is not used), or "no finding mentioned" when it carries none.
2. Allocation. Every stratum gets min(its size, m) reports, m = min(--min-per-stratum, n // strata);
   the rest of the n go to the strata in proportion to the reports they have left (largest
   remainders, never more than a stratum holds). A stratum smaller than m is taken whole. When n
   is smaller than the number of strata, the n smallest strata get one report each (and the
   weighted figures then speak only for those strata).
3. Draw. Within each stratum, reports (sorted by id) are drawn without replacement with a NumPy
   generator seeded with --seed; the sample is then shuffled with the same generator, so a reviewer
   does not meet one stratum's reports in a row.
4. Weights. Each sampled report's weight is its stratum's size over the reports drawn from it, so
   weighted counts estimate the archive's counts (`reportminer evaluate --weights sample.csv`). A
   drawn report whose text cannot be found is named and left out, and its stratum's weight is
   computed over the reports kept.
"""


@dataclass(frozen=True)
class Design:
    """What the sample was drawn with, recorded beside it."""

    size: int
    seed: int
    minimum: int


def report_values(labels: LabelTable) -> pd.DataFrame:
    """One row of finding values per report (a report's images share its labels), in file order."""
    labels.require("report_id")
    table = labels.frame.drop_duplicates("report_id").set_index("report_id")
    return table[labels.findings].astype("float")


def assign_strata(values: pd.DataFrame) -> pd.Series:
    """Each report's stratum: its rarest (finding, value) by archive prevalence, or NO_MENTION.
    Ties go to the earlier finding, then to positive before negative before uncertain."""
    cells = [(f, v) for f in values.columns for v in VALUE_NAMES]
    counts = {cell: int((values[cell[0]] == cell[1]).sum()) for cell in cells}
    ranked = sorted((c for c in cells if counts[c]), key=lambda c: (counts[c], cells.index(c)))
    strata = pd.Series(NO_MENTION, index=values.index, dtype=object)
    for finding, value in reversed(ranked):  # the rarest written last wins
        strata[values[finding] == value] = f"{finding} {VALUE_NAMES[value]}"
    return strata


def allocate(sizes: dict[str, int], n: int, minimum: int) -> dict[str, int]:
    """How many reports to draw from each stratum (see the module's design)."""
    if n >= sum(sizes.values()):
        return dict(sizes)
    if n < len(sizes):  # fewer reports than strata: one each from the n smallest
        return {h: 1 for h in sorted(sizes, key=lambda h: (sizes[h], h))[:n]}
    floor = min(minimum, n // len(sizes))
    taken = {h: min(size, floor) for h, size in sizes.items()}
    left = n - sum(taken.values())
    while left > 0:
        room = {h: sizes[h] - taken[h] for h in sizes if sizes[h] > taken[h]}
        shares = {h: left * r / sum(room.values()) for h, r in room.items()}
        give = {h: min(room[h], int(s)) for h, s in shares.items()}
        if not any(give.values()):  # less than one each: the largest remainders get one
            for h in sorted(shares, key=lambda h: (-shares[h], h))[:left]:
                give[h] = 1
        for h, k in give.items():
            taken[h] += k
        left -= sum(give.values())
    return taken


def draw(strata: pd.Series, design: Design) -> pd.DataFrame:
    """The sample: report_id, stratum, stratum_size, sampled_in_stratum, weight, one row per drawn
    report, in a seeded random order."""
    sizes = strata.value_counts().to_dict()
    counts = allocate(sizes, design.size, design.minimum)
    rng = np.random.default_rng(design.seed)
    rows = []
    for name in sorted(counts):
        members = sorted(strata.index[strata == name])
        for i in sorted(rng.choice(len(members), counts[name], replace=False)):
            rows.append((members[i], name))
    order = rng.permutation(len(rows))
    frame = pd.DataFrame([rows[i] for i in order], columns=["report_id", "stratum"])
    return with_weights(frame, sizes)


def with_weights(frame: pd.DataFrame, sizes: dict[str, int]) -> pd.DataFrame:
    """Stratum size, reports drawn from the stratum and weight (their ratio) of each sampled report;
    called again when reports whose text is missing leave the sample."""
    drawn = frame.groupby("stratum")["report_id"].transform("size")
    size = frame["stratum"].map(sizes)
    return pd.DataFrame({"report_id": frame["report_id"], "stratum": frame["stratum"], "stratum_size": size,
                         "sampled_in_stratum": drawn, "weight": size / drawn}).reset_index(drop=True)


def cell_counts(values: pd.DataFrame, ids: pd.Index | None = None) -> pd.DataFrame:
    """Reports per finding with each value (positive, negative, uncertain), in all or in `ids`."""
    part = values if ids is None else values.loc[ids]
    return pd.DataFrame({name: [int((part[f] == v).sum()) for f in values.columns]
                         for v, name in VALUE_NAMES.items()}, index=values.columns)
