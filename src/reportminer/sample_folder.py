"""The files of a sample folder: what a reviewer (and `reportminer audit`) needs, and nothing else.

- `sample.csv`: report_id, stratum, stratum_size, sampled_in_stratum, weight (the review order);
- `reports.jsonl`: report_id and the full text the labeler read, so the folder stands alone;
- `labels.parquet` and `mentions.parquet`: the labeler's rows for the sampled reports, in the same
  order, with the labels' metadata (its `inputs` now the folder's reports.jsonl, plus the design);
- `README.md`: how the sample was drawn, its strata and how to weigh figures back to the archive;
- `.manifest.json`: the output policy's record that these files are `sample`'s (cxrcore.output), so a
  second sample may replace them and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from cxrcore.output import OutputFolder, encode_metadata

from .sample import DESIGN, Design, cell_counts


def write_sample(folder: OutputFolder, labels: Path, evidence: Path | None, sample: pd.DataFrame,
                 texts: dict[str, str], values: pd.DataFrame, design: Design) -> None:
    """Stage every file of the folder (renamed together by the caller's commit; mentions.parquet only when
    there is evidence to copy)."""
    ids = list(sample["report_id"])
    sample.to_csv(folder.path("sample.csv"), index=False)
    with open(folder.path("reports.jsonl"), "w", encoding="utf-8") as fh:
        for report_id in ids:
            fh.write(json.dumps({"report_id": report_id, "text": texts[report_id]}, ensure_ascii=False) + "\n")
    record = {"inputs": ["reports.jsonl"], "sample": {"from": str(labels), "size": design.size, "seed": design.seed,
                                                     "min_per_stratum": design.minimum, "drawn": len(ids)}}
    _subset(labels, ids, folder.path("labels.parquet"), record)
    if evidence is not None:
        _subset(evidence, ids, folder.path("mentions.parquet"))
    readme = describe(labels, sample, values, design)
    Path(folder.path("README.md")).write_text(readme, encoding="utf-8")


def _subset(source: Path, ids: list[str], target: str, metadata: dict | None = None) -> None:
    """The rows of `ids` in a Parquet file, in the order of `ids` (a report's rows keep theirs)."""
    table = pq.read_table(source)
    position = {report_id: i for i, report_id in enumerate(ids)}
    keys = [position.get(r) for r in table.column("report_id").to_pylist()]
    rows = sorted((k, i) for i, k in enumerate(keys) if k is not None)
    part = table.take([i for _, i in rows])
    if metadata:
        part = part.replace_schema_metadata({**(part.schema.metadata or {}), **encode_metadata(metadata)})
    pq.write_table(part, target)


def describe(labels: Path, sample: pd.DataFrame, values: pd.DataFrame, design: Design) -> str:
    """The folder's README: the design, the strata and the value counts, in Markdown."""
    strata = sample.groupby("stratum").agg(archive=("stratum_size", "first"), drawn=("report_id", "size"),
                                           weight=("weight", "first")).reset_index().sort_values(["archive", "stratum"])
    drawn, archive = cell_counts(values, pd.Index(sample["report_id"])), cell_counts(values)
    lines = [f"# A sample of {labels.name} to annotate by hand", "",
             f"{len(sample)} of the {len(values):,} labeled reports of `{labels}`, drawn by `reportminer sample` with "
             f"-n {design.size}, --seed {design.seed} and --min-per-stratum {design.minimum}.", "",
             "## How it was drawn", "", DESIGN.strip(), "",
             "## Strata", "", "| stratum | reports in the archive | drawn | weight |", "|---|---:|---:|---:|"]
    lines += [f"| {r.stratum} | {int(r.archive):,} | {int(r.drawn)} | {r.weight:.3f} |" for r in strata.itertuples()]
    lines += ["", "## Labeler values in the sample (in the archive)", "",
              "| finding | positive | negative | uncertain |", "|---|---:|---:|---:|"]
    lines += ["| " + f + " | " + " | ".join(f"{drawn.at[f, c]} ({archive.at[f, c]:,})" for c in drawn.columns) + " |"
              for f in drawn.index]
    lines += ["", "## Next", "", "```bash",
              "reportminer audit labels.parquet -o audit.html       # annotate in the browser, export gold.csv",
              "reportminer evaluate labels.parquet gold.csv --weights sample.csv",
              "```", "",
              "The first table `evaluate` prints describes these reports; the weighted one estimates the archive "
              "(each report counts its weight; intervals resample within strata).", ""]
    return "\n".join(lines)
