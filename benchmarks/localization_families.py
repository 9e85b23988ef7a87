"""Localization defaults chosen across image families by the worst family, and each family's figures.

Families: the first generator's films (`classifier synth`, 128 px, the README demo's recipe), the
second's (`classifier synth --family ward`, bedside films at 256 and 512 px, one ResNet-18 for both),
and the real NIH films with radiologists' boxes in ../shared/data (9 films, all at 64 px: the only size
there with boxes; few, so their intervals are wide). Each family's boxed films (the first 120 generated
films; 80 at 512 px) are split in two halves by patient: the first half chooses, the second is scored.
The networks (this benchmark trains only the NIH one; on 2 shared CPU cores the others took 26 and 42
minutes), with labels from each set's truth.csv (`localization_sweep.labels_for`):

    classifier synth -o out/fam/A128/train -n 1000 --size 128 --seed 0
    classifier synth -o out/fam/A128/eval -n 400 --size 128 --seed 1
    classifier fit out/fam/A128/train/labels_1000.parquet -o out/fam/A128/run --arch resnet18 --size 128 \
        --epochs 16 --transition 256 --output-stride 16 --trunk-stages 3 --uncertain ones
    classifier synth --family ward -o out/fam/B/train -n 1000 --size 256 --seed 0
    classifier synth --family ward -o out/fam/B/eval256 -n 400 --size 256 --seed 1
    classifier synth --family ward -o out/fam/B/eval512 -n 300 --size 512 --seed 2
    classifier fit out/fam/B/train/labels_600.parquet -o out/fam/B/run --arch resnet18 --size 96 \
        --epochs 5 --transition 256 --output-stride 16 --trunk-stages 3 --uncertain ones

1. `cache`: every candidate heatmap's calibration entries (boxes.view of each map: regions, Otsu
   level, cores grown through every level) on each half of each family, computed once with the same
   code `localize --calibrate` runs, pickled under --work. The heatmaps are the costly part; every
   later step reads the cache.
2. `choose`: the built-in defaults, the heatmap and box rule whose WORST family falls least below that
   family's own best (mean over findings of the IoU objective, calibration.OBJECTIVE) on the choosing
   halves, overall and per finding. An ablation chooses the same way from the rules of each step: the
   fixed level by the previous objective; by IoU; then with Otsu's level; then grown to the NIH size
   prior; then enlarged; beside them the previous defaults, and everything judged by the worst
   family's raw objective instead of its shortfall.
3. `report`: on each family's scored half, the built-in defaults and the family's own calibration
   (chosen on its first half alone, as `localize --calibrate` does) side by side: accuracy at IoU > 0.5
   and at T(IoBB) = 0.5, false boxes per image, pointing, with 95% bootstrap intervals over films.

4. `tables`: the docs' tables in Markdown. 5. `overlays`: `classifier localize` with the built-in defaults on the boxed NIH films; five overlays
   side by side in docs/localization_nih.png.

    python benchmarks/localization_families.py cache choose report overlays --work out/fam
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from classifier.boxes import BoxRules, map_boxes
from classifier.calibration import MIN_BOXES, Entry, grid, scores, sweep
from classifier.localize import Request, _entries, _scene, _truth

sys.path.insert(0, str(Path(__file__).parent))
from localization_nih import SHARED, boxes_of, classifier, labels  # noqa: E402
from localization_sweep import labels_for  # noqa: E402

METHODS = ("gradcam", "layercam", "saliency-gradcam")  # the class activation map is never chosen (docs)
LAYERS = ("layer1", "layer2", "transition")  # the layers the previous defaults drew on


@dataclass(frozen=True)
class Family:
    name: str
    run: Path
    labels: Path
    boxes: Path
    boxes_size: int | None = None
    images: Path | None = None


def families(work: Path) -> list[Family]:
    a, b, nih = work / "A128", work / "B", work / "nih"
    return [Family("films-128", a / "run", a / "eval" / "labels_120.parquet", a / "eval" / "BBox_List.csv"),
            Family("ward-256", b / "run", b / "eval256" / "labels_120.parquet", b / "eval256" / "BBox_List.csv"),
            Family("ward-512", b / "run", b / "eval512" / "labels_80.parquet", b / "eval512" / "BBox_List.csv"),
            Family("nih-64", nih / "run", nih / "labels_64.parquet", nih / "boxes_all.csv", 1024,
                   SHARED / "nih-images-small")]


def nih_inputs(work: Path) -> None:
    """The NIH run (ResNet-18, 2 epochs on the 1,000 64-px films; localization_nih.py trains 4) and its 9 films' boxes."""
    small = labels("kcr2019d1_NIH1000_64px", work / "labels_64.parquet")
    if not (work / "run" / "best.pt").exists():
        classifier("fit", small, "--images", SHARED / "nih-images-small", "-o", work / "run", "--arch", "resnet18",
                   "--size", "64", "--epochs", 2, "--transition", 64)
    frame = pd.read_parquet(small)
    boxed = set(pd.read_csv(SHARED / "nih" / "BBox_List_2017.csv").iloc[:, 0]) & set(frame["image_id"])
    boxes_of(SHARED, boxed, work / "boxes_all.csv")


def halves(scene, truth: dict) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the boxed films of the first and second half of the patients (sorted)."""
    frame = scene.data.frame
    boxed = np.flatnonzero(frame["image_id"].astype(str).isin(list(truth)).to_numpy())
    patients = sorted(frame["patient_id"].iloc[boxed].astype(str).unique())
    first = set(patients[: len(patients) // 2])
    in_first = frame["patient_id"].iloc[boxed].astype(str).isin(first).to_numpy()
    return boxed[in_first], boxed[~in_first]


def cache(fam: Family, work: Path, half: str) -> None:
    """The entries of every candidate heatmap on one half ("choose" or "score") of a family's boxed films."""
    path = work / "entries" / f"{fam.name}-{half}.pkl"
    if path.exists():
        return
    started = time.perf_counter()
    if fam.labels.parent.name != "nih":  # the first N generated films: labels from their truth.csv
        labels_for(fam.labels.parent, int(fam.labels.stem.split("_")[1]))
    scene = _scene(fam.run, fam.labels, fam.images, "cpu", None)
    rows = scene.data.rows(None)
    truth = _truth(fam.boxes, scene, rows, Request(boxes_size=fam.boxes_size), print, [])
    chosen = dict(zip(("choose", "score"), halves(scene, truth)))[half]
    out = {}
    for layer in [l for l in LAYERS if l in scene.model.map_layers()]:
        for method, found in _entries(scene, chosen, truth, list(METHODS), layer, print).items():
            out[half, method, layer] = found
    print(f"{fam.name} {half}: {len(chosen)} films, {time.perf_counter() - started:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))


def load(work: Path, names: list[str]) -> dict[str, dict]:
    return {n: {**pickle.loads((work / "entries" / f"{n}-choose.pkl").read_bytes()),
                **pickle.loads((work / "entries" / f"{n}-score.pkl").read_bytes())} for n in names}


Choice = tuple[str, str, BoxRules]


def worst_choice(tried: dict[str, dict], candidates: list[tuple[str, str]], rules: list[BoxRules],
                 objective: str, regret: bool = True) -> tuple[Choice, dict[str, Choice]]:
    """The (heatmap, rule) whose worst family is best (mean over the family's findings), and per finding the
    one whose worst family holding that finding is best. `tried[family][(method, layer)]` is calibration.sweep.
    With `regret`, a family is judged by how far the choice falls below the best any choice reaches on it
    (its own calibration): a family where no heatmap localizes anything (a network that learned little,
    four NIH films) then cannot decide for the others by noise, yet no family may fall far behind."""
    def value(fig: dict[str, float]) -> float:
        if objective == "iobb":  # the previous objective, for the ablation
            return fig["acc_iobb_0.5"] + fig["acc_iou>0.5"] - 0.25 * fig["afp_iobb_0.5"]
        return fig["objective"]

    per = {fam: {c: {} for c in candidates} for fam in tried}  # family → heatmap → rule → finding → value
    for fam, by_candidate in tried.items():
        for c in candidates:
            for (f, r), fig in by_candidate[c].items():
                per[fam][c].setdefault(r, {})[f] = value(fig)
    pairs = [(c, r) for c in candidates for r in rules]
    means = {fam: {cr: float(np.mean(list(per[fam][cr[0]][cr[1]].values()))) for cr in pairs} for fam in per}
    best = {fam: max(v.values()) if regret else 0.0 for fam, v in means.items()}
    overall = max(pairs, key=lambda cr: min(means[fam][cr] - best[fam] for fam in per))
    findings = sorted({f for fam in per.values() for by_rule in fam.values() for v in by_rule.values() for f in v})
    own = {}
    for finding in findings:
        holders = [fam for fam in per if any(finding in per[fam][c][rules[0]] for c in candidates)]
        value = {fam: {cr: per[fam][cr[0]][cr[1]].get(finding, -np.inf) for cr in pairs} for fam in holders}
        top = {fam: max(v.values()) if regret else 0.0 for fam, v in value.items()}
        own[finding] = max(pairs, key=lambda cr: min(value[fam][cr] - top[fam] for fam in holders))
    return (*overall[0], overall[1]), {f: (*c, r) for f, (c, r) in own.items()}


def per_entry(entries: list[Entry], rules: BoxRules) -> np.ndarray:
    """Per map: (IoU>0.5 hits, sum of best IoU, IoBB hits, false boxes, true boxes, pointed)."""
    rows = []
    for e in entries:
        sx, sy = e.scale
        drawn = [(x * sx, y * sy, w * sx, h * sy) for (x, y, w, h), _ in map_boxes(e.found, rules, e.finding)]
        rows.append((*scores(e.truth, drawn), len(e.truth), e.pointed))
    return np.array(rows, float).reshape(-1, 6)


def figures(cached: dict, half: str, choice: Choice, own: dict[str, Choice], boot: int = 1000) -> dict:
    """Mean over findings (and per finding) of the figures on `half`, with 95% bootstrap intervals over maps
    (none when `boot` is 0)."""
    findings = sorted({e.finding for (h, _, _), v in cached.items() if h == half for e in v})
    stats = {}
    for f in findings:
        method, layer, rules = own.get(f, choice)
        layer = layer if (half, method, layer) in cached else "transition"
        stats[f] = per_entry([e for e in cached[half, method, layer] if e.finding == f], rules)
    stats = {f: s for f, s in stats.items() if len(s)}
    rng = np.random.default_rng(0)

    def table(draws: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        out = {}
        for f, s in draws.items():
            out[f] = {"iou>0.5": s[:, 0].sum() / s[:, 4].sum(), "iobb_0.5": s[:, 2].sum() / s[:, 4].sum(),
                      "afp": s[:, 3].mean(), "pointing": s[:, 5].mean(), "maps": len(s)}
        out["mean"] = {k: float(np.mean([v[k] for v in out.values()])) for k in ("iou>0.5", "iobb_0.5", "afp",
                                                                                   "pointing")}
        return out

    point = table(stats)
    if not boot:
        return point
    samples = [table({f: s[rng.integers(0, len(s), len(s))] for f, s in stats.items()}) for _ in range(boot)]
    for f in point:
        for k in ("iou>0.5", "iobb_0.5", "afp", "pointing"):
            values = [s[f][k] for s in samples]
            point[f][k] = [round(float(point[f][k]), 3), round(float(np.percentile(values, 2.5)), 3),
                           round(float(np.percentile(values, 97.5)), 3)]
    return point


def candidates_of(cached: dict) -> list[tuple[str, str]]:
    return sorted({(m, layer) for (h, m, layer) in cached if h == "choose"})


def old_built_in() -> tuple[Choice, dict[str, Choice]]:
    """The defaults before this benchmark (IoBB in the objective, chosen on one family), as a baseline."""
    overall = ("saliency-gradcam", "layer2", BoxRules(120, 250))
    own = {"Atelectasis": ("saliency-gradcam", "layer1", BoxRules(120, 140)),
           "Cardiomegaly": ("saliency-gradcam", "transition", BoxRules(100, 180)),
           "Consolidation": ("saliency-gradcam", "layer2", BoxRules(120, 250)),
           "Effusion": ("saliency-gradcam", "transition", BoxRules(140, 180)),
           "Infiltration": ("saliency-gradcam", "layer2", BoxRules(60, 140)),
           "Mass": ("saliency-gradcam", "layer2", BoxRules(120, 140)),
           "Nodule": ("saliency-gradcam", "layer1", BoxRules(120, 250)),
           "Pneumonia": ("saliency-gradcam", "layer1", BoxRules(40, 180)),
           "Pneumothorax": ("layercam", "layer1", BoxRules(60, 180))}
    return overall, own


STEPS = {  # ablation: which rules each step may choose from, by which objective, judged by regret or raw
    "everything, worst family by its raw objective": (("fixed", "otsu", "prior"), (1.0, 1.2, 1.4), "iou", False),
    "fixed level, IoBB+IoU objective (as before)": (("fixed",), (1.0,), "iobb", True),
    "fixed level, IoU objective": (("fixed",), (1.0,), "iou", True),
    "+ Otsu level per map": (("fixed", "otsu"), (1.0,), "iou", True),
    "+ grown to the NIH size prior": (("fixed", "otsu", "prior"), (1.0,), "iou", True),
    "+ enlarged (grow 1.2, 1.4): the built-in defaults": (("fixed", "otsu", "prior"), (1.0, 1.2, 1.4), "iou", True),
}


def sweep_family(job: tuple[dict, list[tuple[str, str]], list[BoxRules]]) -> dict:
    """calibration.sweep of every heatmap on one family's choosing half."""
    cached, candidates, rules = job
    return {c: sweep(cached["choose", *c], rules) for c in candidates}


def choose(work: Path, names: list[str], choose_on: list[str]) -> dict:
    cached = load(work, names)
    common = sorted(set.intersection(*(set(candidates_of(cached[n])) for n in choose_on)))
    everything = grid(None, BoxRules())
    started = time.perf_counter()
    with ProcessPoolExecutor(len(names)) as pool:  # one family a process; every family's own calibration too
        tried = dict(zip(names, pool.map(sweep_family, [(cached[n], common, everything) for n in names])))
    print(f"swept {len(names)} families x {len(common)} heatmaps x {len(everything)} rules in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    judges = {n: tried[n] for n in choose_on}
    result = {"choose_on": choose_on, "steps": {}}
    for step, (levels, grows, objective, regret) in STEPS.items():
        rules = [r for r in everything if r.level in levels and r.grow in grows]
        overall, own = worst_choice(judges, common, rules, objective, regret)
        result["steps"][step] = {"overall": overall, "own": own,
                                 "scored": {n: figures(cached[n], "score", overall, own, 0)["mean"] for n in names}}
        print(step, json.dumps(result["steps"][step]["scored"]), flush=True)
    old, old_own = old_built_in()
    result["steps"] = {"previous built-in defaults": {
        "overall": old, "own": old_own, "scored": {n: figures(cached[n], "score", old, old_own, 0)["mean"]
                                                   for n in names}}, **result["steps"]}
    result["tried"] = tried
    (work / "choice.pkl").write_bytes(pickle.dumps(result))
    return result


def report(work: Path, names: list[str]) -> dict:
    """Built-in (the last ablation step) and each family's own calibration, on its scored half."""
    cached = load(work, names)
    chosen = pickle.loads((work / "choice.pkl").read_bytes())
    overall, own = list(chosen["steps"].values())[-1]["overall"], list(chosen["steps"].values())[-1]["own"]
    out = {"built_in": {"overall": describe(overall), "own": {f: describe(c) for f, c in own.items()}}, "families": {}}
    for n in names:
        started = time.perf_counter()
        any_heatmap = next(v for (h, _, _), v in cached[n].items() if h == "choose")
        boxes = {f: sum(len(e.truth) for e in any_heatmap if e.finding == f) for f in {e.finding for e in any_heatmap}}
        best, mine = calibrated(chosen["tried"][n], boxes)
        out["families"][n] = {"built-in": figures(cached[n], "score", overall, own),
                              "calibrated": figures(cached[n], "score", best, mine),
                              "calibration_s": round(time.perf_counter() - started, 1),
                              "calibrated_choice": describe(best)}
        print(n, json.dumps({k: v["mean"] for k, v in out["families"][n].items() if isinstance(v, dict)
                             and "mean" in v}), flush=True)
    (work / "report.json").write_text(json.dumps(out, indent=1, default=str))
    return out


def calibrated(tried: dict, boxes: dict[str, int]) -> tuple[Choice, dict[str, Choice]]:
    """What `localize --calibrate` chooses on the family's first half (its sweep, `tried`, from `choose`):
    per heatmap the best rules, then the best heatmap overall and per finding (calibration.calibrate's
    choice, without the image pass)."""
    results = []
    for cand, swept in tried.items():
        findings = sorted({f for f, _ in swept})
        rules = list(dict.fromkeys(r for _, r in swept))
        overall = max(rules, key=lambda r: np.mean([swept[f, r]["objective"] for f in findings]))
        own = {f: max(rules, key=lambda r: (swept[f, r]["objective"], r == overall)) if boxes.get(f, 0) >= MIN_BOXES
               else overall for f in findings}
        mean = float(np.mean([swept[f, own[f]]["objective"] for f in findings]))
        results.append((mean, cand, overall, own, {f: swept[f, own[f]]["objective"] for f in findings}))
    _, cand, overall, _, _ = max(results, key=lambda t: t[0])
    mine = {}
    for f in results[0][4]:
        if boxes.get(f, 0) >= MIN_BOXES:
            mine[f] = max(((t[4][f], (*t[1], t[3][f])) for t in results if f in t[3]), key=lambda o: o[0])[1]
    return (*cand, overall), mine


def describe(choice: Choice) -> str:
    method, layer, r = choice
    level = {"fixed": f"fixed {r.low}/{r.high}", "otsu": f"otsu /{r.high}",
             "prior": f"prior x{r.prior_scale:g} /{r.high}"}[r.level]
    return f"{method} {layer} {level}" + (f" grow {r.grow:g}" if r.grow != 1 else "")


def tables(work: Path, names: list[str]) -> str:
    """The docs' tables in Markdown: each family built-in against calibrated, per finding, and the ablation."""
    rep = json.loads((work / "report.json").read_text())
    chosen = pickle.loads((work / "choice.pkl").read_bytes())

    def ci(v: list[float]) -> str:
        return f"{v[0]:.3f} ({v[1]:.2f}-{v[2]:.2f})"

    lines = ["| family (scored half) | defaults | IoU>0.5 | T(IoBB)=0.5 | false boxes / image | pointing |",
             "|---|---|---:|---:|---:|---:|"]
    for n in names:
        for kind in ("built-in", "calibrated"):
            m = rep["families"][n][kind]["mean"]
            lines.append(f"| {n} | {kind} | {ci(m['iou>0.5'])} | {ci(m['iobb_0.5'])} | {ci(m['afp'])} | "
                         f"{ci(m['pointing'])} |")
    lines += ["", "| family | per finding, IoU>0.5 built-in / calibrated (maps) |", "|---|---|"]
    for n in names:
        fam = rep["families"][n]
        cells = [f"{f} {fam['built-in'][f]['iou>0.5'][0]:.2f} / {fam['calibrated'][f]['iou>0.5'][0]:.2f} "
                 f"({fam['built-in'][f]['maps']})" for f in fam["built-in"] if f != "mean"]
        lines.append(f"| {n} | {', '.join(cells)} |")
    lines += ["", "| step (chosen by the worst family) | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for step, v in chosen["steps"].items():
        lines.append(f"| {step} | " + " | ".join(f"{v['scored'][n]['iou>0.5']:.3f} / {v['scored'][n]['iobb_0.5']:.3f}"
                                                  f" ({v['scored'][n]['afp']:.2f})" for n in names) + " |")
    lines += ["", f"built-in: {rep['built_in']['overall']}; per finding: "
              + "; ".join(f"{f} {c}" for f, c in rep["built_in"]["own"].items())]
    lines += [f"calibrated on {n}: {rep['families'][n]['calibrated_choice']}" for n in names]
    return "\n".join(lines)


def overlays(work: Path, out: Path) -> None:
    """`classifier localize` with the built-in defaults on every boxed NIH film, and five of its overlays
    side by side in one PNG for the docs."""
    from PIL import Image

    nih = families(work)[-1]
    folder = work / "nih_overlays"
    shutil.rmtree(folder, ignore_errors=True)
    print(classifier("localize", nih.run, nih.labels, "--images", nih.images, "-o", folder, "--boxes", nih.boxes,
                     "--boxes-size", 1024, "--overlays", 9, "--device", "cpu"))
    tiles = [Image.open(p).convert("RGB") for p in sorted((folder / "overlays").glob("*.png"))[:5]]
    width = sum(t.width for t in tiles)
    sheet = Image.new("RGB", (width, max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width
    sheet.resize((width * 2 // 5, sheet.height * 2 // 5), Image.LANCZOS).save(out, optimize=True)
    print(f"{len(tiles)} overlays → {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="+", choices=["cache", "choose", "report", "tables", "overlays"])
    parser.add_argument("--work", type=Path, default=Path("out/fam"))
    parser.add_argument("--choose-on", default="films-128,ward-256,ward-512,nih-64",
                        help="Families whose choosing halves choose the built-in defaults (worst family first).")
    parser.add_argument("--cache-only", default="films-128,ward-256,ward-512,nih-64", help="Families to cache.")
    parser.add_argument("--halves", default="choose,score", help="Halves to cache (one process each runs in parallel).")
    args = parser.parse_args()
    fams = families(args.work)
    names = [f.name for f in fams]
    if "cache" in args.steps:
        wanted = args.cache_only.split(",")
        if "nih-64" in wanted:
            nih_inputs(args.work / "nih")
        for fam in fams:
            if fam.name in wanted:
                for half in args.halves.split(","):
                    cache(fam, args.work, half)
    if "choose" in args.steps:
        choose(args.work, names, args.choose_on.split(","))
    if "report" in args.steps:
        report(args.work, names)
    if "tables" in args.steps:
        print(tables(args.work, names))
    if "overlays" in args.steps:
        overlays(args.work, Path(__file__).resolve().parents[1] / "docs" / "localization_nih.png")


if __name__ == "__main__":
    main()
