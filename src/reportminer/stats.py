"""What a labels.parquet holds: counts, multi-label counts, co-occurrence (table and the paper's circular
picture), agreement with another label file, and a short Markdown dataset card.

Counts treat 1 as positive; -1 (uncertain), 0 (negative) and null (not mentioned) are counted apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import cohen_kappa_score

from cxrcore.labels import read_labels
from cxrcore.output import OutputFolder
from cxrcore.splits import SPLITS


def split_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(split, rows) in the order train, val, test, then any other value; empty without a split column."""
    if "split" not in frame:
        return []
    present = list(dict.fromkeys(frame["split"].dropna()))
    order = [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]
    return [(s, frame[frame["split"] == s]) for s in order]


def counts(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per label (and per split, when there is one): positive, uncertain, negative, not mentioned."""
    groups = [("all", frame)] + split_groups(frame)
    rows = []
    for split, part in groups:
        for c in columns:
            values = part[c]
            rows.append({"split": split, "label": c, "positive": int((values == 1).sum()),
                         "uncertain": int((values == -1).sum()), "negative": int((values == 0).sum()),
                         "not_mentioned": int(values.isna().sum()), "images": len(part)})
    return pd.DataFrame(rows)


def positive(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """True where a label is 1; uncertain, negative and missing are all False."""
    return frame[columns].eq(1).fillna(False).astype(bool)


def multilabel(frame: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """How many images have 0, 1, 2, ... positive findings."""
    per_image = positive(frame, findings).sum(axis=1)
    table = per_image.value_counts().sort_index()
    return pd.DataFrame({"positive_findings": table.index, "images": table.to_numpy()})


def cooccurrence(frame: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """Images positive for both findings (the diagonal: positive for the finding at all)."""
    matrix = positive(frame, findings).astype(np.int64).to_numpy()
    return pd.DataFrame(matrix.T @ matrix, index=findings, columns=findings)


def agreement(a: pd.DataFrame, b: pd.DataFrame, findings: list[str]) -> pd.DataFrame:
    """Per finding, on images in both tables (joined by image_id): positive in both / only one, kappa."""
    key = "image_id" if a["image_id"].notna().all() and b["image_id"].notna().all() else "report_id"
    joined = a[[key, *findings]].merge(b[[key, *findings]], on=key, suffixes=("_a", "_b"))
    rows = []
    for f in findings:
        x, y = positive(joined, [f + "_a"]).to_numpy()[:, 0], positive(joined, [f + "_b"]).to_numpy()[:, 0]
        rows.append({"finding": f, "images": len(joined), "both": int((x & y).sum()),
                     "only_a": int((x & ~y).sum()), "only_b": int((~x & y).sum()),
                     "agreement": float((x == y).mean()) if len(joined) else float("nan"), "kappa": _kappa(x, y)})
    return pd.DataFrame(rows)


def _kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Cohen's kappa; 1.0 for identical labels (sklearn gives nan when both are constant), nan when empty."""
    if not len(x):
        return float("nan")
    if (x == y).all():
        return 1.0
    return float(cohen_kappa_score(x, y))


def plot_cooccurrence(table: pd.DataFrame, path: str | Path) -> None:
    """The paper's Figure 2 idea: findings on a circle, sized by prevalence, joined by co-occurrence."""
    graph = nx.Graph()
    names = list(table.index)
    for n in names:
        graph.add_node(n, count=int(table.loc[n, n]))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if table.loc[a, b] > 0:
                graph.add_edge(a, b, weight=int(table.loc[a, b]))
    pos = nx.circular_layout(graph)
    fig = Figure(figsize=(9, 9))
    ax = fig.subplots()
    top = max([d["weight"] for *_, d in graph.edges(data=True)] or [1])
    biggest = max([graph.nodes[n]["count"] for n in names] or [1]) or 1
    for u, v, d in sorted(graph.edges(data=True), key=lambda e: e[2]["weight"]):
        share = d["weight"] / top
        nx.draw_networkx_edges(graph, pos, edgelist=[(u, v)], width=0.5 + 9 * share, alpha=0.15 + 0.75 * share,
                               edge_color=[matplotlib.colormaps["viridis"](share)], ax=ax)
    sizes = [300 + 2700 * graph.nodes[n]["count"] / biggest for n in names]
    nx.draw_networkx_nodes(graph, pos, node_size=sizes, node_color="#d95f02", alpha=0.9, ax=ax)
    for n, (x, y) in pos.items():
        ax.text(x * 1.17, y * 1.17, f"{n}\n{graph.nodes[n]['count']:,}", ha="center", va="center", fontsize=10)
    ax.set_title("Co-occurrence of positive findings\n(node size: images positive; line width: images positive for both)")
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.axis("off")
    _save(fig, path)


def plot_counts(table: pd.DataFrame, path: str | Path) -> None:
    """Positive images per finding, one bar per split."""
    data = table[table["split"] != "all"] if (table["split"] != "all").any() else table
    pivot = data.pivot_table(index="label", columns="split", values="positive", sort=False)
    fig = Figure(figsize=(10, 0.45 * len(pivot) + 1.5))
    ax = fig.subplots()
    pivot.iloc[::-1].plot.barh(ax=ax, width=0.8)
    ax.set_xlabel("positive images")
    ax.set_ylabel("")
    ax.set_title("Positive images per finding" + (" and split" if "all" not in pivot.columns else ""))
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")


def dataset_card(path: Path, frame: pd.DataFrame, columns: list[str], meta: dict[str, str],
                 count_table: pd.DataFrame, co: pd.DataFrame, agree: pd.DataFrame | None) -> str:
    """A short Markdown description of the dataset: size, splits, label counts, pairs, provenance."""
    lines = [f"# Dataset card: {path.name}", ""]
    patients = frame["patient_id"].nunique() if frame["patient_id"].notna().any() else None
    lines.append(f"- {len(frame):,} images" + (f", {patients:,} patients" if patients else "")
                 + (f", {frame['report_id'].nunique():,} reports" if frame["report_id"].notna().any() else ""))
    if "split" in frame:
        parts = []
        for split, part in split_groups(frame):
            parts.append(f"{split} {len(part):,} images / {part['patient_id'].nunique():,} patients")
        shared = int((frame.groupby("patient_id")["split"].nunique() > 1).sum())
        lines.append(f"- splits: {'; '.join(parts)}; patients in more than one split: {shared}")
    for key in ("source", "lexicon_digest", "parser", "split_method", "version"):
        if key in meta:
            lines.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    lines += ["", "## Labels (all images)", "", "| label | positive | uncertain | negative | not mentioned |",
              "|---|---:|---:|---:|---:|"]
    for r in count_table[count_table["split"] == "all"].itertuples():
        lines.append(f"| {r.label} | {r.positive:,} | {r.uncertain:,} | {r.negative:,} | {r.not_mentioned:,} |")
    pairs = [(co.iloc[i, j], co.index[i], co.columns[j]) for i in range(len(co)) for j in range(i + 1, len(co))]
    pairs = sorted((p for p in pairs if p[0] > 0), reverse=True)[:5]
    if pairs:
        lines += ["", "## Most frequent pairs", ""] + [f"- {a} + {b}: {n:,}" for n, a, b in pairs]
    if agree is not None:
        lines += ["", "## Agreement with the other label file (positive vs not)", "",
                  "| finding | images | both | only this | only other | kappa |", "|---|---:|---:|---:|---:|---:|"]
        for r in agree.itertuples():
            lines.append(f"| {r.finding} | {r.images:,} | {r.both:,} | {r.only_a:,} | {r.only_b:,} | {r.kappa:.3f} |")
    lines += ["", "Files beside this card: counts.csv, counts.png, multilabel.csv, cooccurrence.csv, "
              "cooccurrence.png" + (", agreement.csv" if agree is not None else "") + "."]
    return "\n".join(lines) + "\n"


def write_stats(labels: str | Path, out_dir: str | Path, compare: str | Path | None = None) -> dict[str, Any]:
    """Every statistic and picture for `labels` into `out_dir`; returns the paths written."""
    labels, out = Path(labels), Path(out_dir)
    table = read_labels(labels)
    frame, columns, meta, findings = table.frame, table.label_columns, table.meta, table.findings
    if table.split is not None:
        frame = frame.assign(split=table.split.to_numpy())
    count_table = counts(frame, columns)
    co = cooccurrence(frame, findings)
    agree = None
    if compare is not None:
        other = read_labels(compare)
        shared = [f for f in findings if f in other.label_columns]
        agree = agreement(frame, other.frame, shared)
    tables = {"counts.csv": (count_table, False), "multilabel.csv": (multilabel(frame, findings), False),
              "cooccurrence.csv": (co, True), "agreement.csv": (agree, False)}
    names = [n for n, (t, _) in tables.items() if t is not None] + ["cooccurrence.png", "counts.png", "dataset_card.md"]
    with OutputFolder(out, "reportminer stats", [labels, compare]) as folder:
        for name, (data, index) in tables.items():
            if data is not None:
                data.to_csv(folder.path(name), index=index)
        plot_cooccurrence(co, folder.path("cooccurrence.png"))
        plot_counts(count_table, folder.path("counts.png"))
        card = dataset_card(labels, frame, columns, meta, count_table, co, agree)
        Path(folder.path("dataset_card.md")).write_text(card, encoding="utf-8")
        folder.commit()
    return {n: out / n for n in names}
