"""How `localize` draws when its options are not given: the run's recorded defaults, else built-in ones.

`localize --calibrate BOXES` chooses the heatmap (method and layer) and the box rules on true boxes
held apart from the scored ones, and records them in `RUN_DIR/localization_defaults.json` with the
content digest of every image they were chosen on, so that no later call can score those images with
them unnoticed, and with the family of those images (size, bit depth, source), so that `localize` can
say when it draws on films of another family. A run without that file uses the built-in defaults,
chosen across image families by the worst of them (docs/classifier.md says how). An option given on
the command line always wins over both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection

from cxrcore.errors import InputError
from cxrcore.output import atomic_text, json_text

from .boxes import BoxRules

Choice = tuple[str, str, BoxRules]  # method, layer, box rules

DEFAULTS_FILE = "localization_defaults.json"
# ((method, layer, rules) overall, finding → its own choice): chosen across image families by
# benchmarks/localization_families.py on the first half of each family's boxed films, by the worst family's
# shortfall from its own best (the IoU objective of calibration.py): the first generator's films at 128 px
# (the README demo's ResNet-18 recipe), the second generator's bedside films at 256 and 512 px (a ResNet-18
# trained at 96 px) and NIH's boxed films at 64 px (docs/classifier.md has the figures). A layer the network
# lacks is read at its transition layer (`built_in`).
_SALIENCY = "saliency-gradcam"
BUILT_IN: tuple[Choice, dict[str, Choice]] = (
    ("layercam", "layer1", BoxRules(high=250, level="prior", prior_scale=0.5)),
    {"Atelectasis": (_SALIENCY, "layer2", BoxRules(100, 250)),
     "Cardiomegaly": (_SALIENCY, "layer2", BoxRules(100, 220, grow=1.4)),
     "Consolidation": (_SALIENCY, "layer2", BoxRules(140, 140, grow=1.2)),
     "Effusion": (_SALIENCY, "transition", BoxRules(160, 220, grow=1.4)),
     "Infiltration": (_SALIENCY, "layer2", BoxRules(high=250, level="prior", prior_scale=0.5, grow=1.2)),
     "Mass": ("gradcam", "layer2", BoxRules(200, 250, grow=1.2)),
     "Nodule": (_SALIENCY, "layer1", BoxRules(200, 220, grow=1.4)),
     "Pneumonia": (_SALIENCY, "layer1", BoxRules(high=140, level="otsu", grow=1.4)),
     "Pneumothorax": ("layercam", "layer1", BoxRules(high=250, level="prior"))})
# The image families the built-in defaults were chosen on: what `localize` compares the scored films with.
BUILT_IN_FAMILY: tuple[dict[str, Any], ...] = (
    {"source": "generated upright films (classifier synth)", "sizes": [128], "bits": [8]},
    {"source": "generated bedside films (classifier synth --family ward)", "sizes": [256, 512], "bits": [8]},
    {"source": "NIH ChestX-ray14 films with radiologists' boxes", "sizes": [64], "bits": [8]})


@dataclass(frozen=True)
class Settings:
    """The heatmap and the box rules `localize` draws with, and where they came from."""

    method: str
    layer: str
    rules: BoxRules
    per_finding: dict[str, Choice] = field(default_factory=dict)  # finding → its own (method, layer, low, high)
    source: str = "built-in"
    calibration_digests: frozenset[str] = frozenset()  # images the recorded values were chosen on

    family: tuple[dict[str, Any], ...] = ()  # the image families these settings were chosen on

    def choice_for(self, finding: str) -> tuple[str, str, BoxRules]:
        """(method, layer, rules) of one finding: its own calibrated ones where it has them."""
        return self.per_finding.get(finding, (self.method, self.layer, self.rules))

    def groups(self, findings: list[str]) -> dict[tuple[str, str], list[str]]:
        """The findings drawn from each heatmap: one pass over the images per heatmap."""
        out: dict[tuple[str, str], list[str]] = {}
        for finding in findings:
            method, layer, _ = self.choice_for(finding)
            out.setdefault((method, layer), []).append(finding)
        return out

    def heatmap(self) -> dict[str, Any]:
        """What localization.json records of these settings."""
        return {"method": self.method, "layer": self.layer if self.method != "cam" else "transition",
                **_rules_record(self.rules), "min_area": self.rules.min_area, "merge": self.rules.merge,
                "max_boxes": self.rules.max_boxes,
                "per_finding": {f: {"method": m, "layer": layer, **_rules_record(r)}
                                for f, (m, layer, r) in self.per_finding.items()},
                "source": self.source, "family": list(self.family)}


def _rules_record(rules: BoxRules) -> dict[str, Any]:
    return {"thresholds": [rules.low, rules.high], "level": rules.level, "prior_scale": rules.prior_scale,
            "grow": rules.grow}


def _rules_read(record: dict[str, Any], base: BoxRules) -> BoxRules:
    """Rules from a record; a file from before the level rules has none and keeps the fixed level."""
    return replace(base, low=int(record["thresholds"][0]), high=int(record["thresholds"][1]),
                   level=str(record.get("level", "fixed")), prior_scale=float(record.get("prior_scale", 1.0)),
                   grow=float(record.get("grow", 1.0)))


@dataclass(frozen=True)
class Options:
    """What the command line fixed (None: not given)."""

    method: str | None = None
    layer: str | None = None
    thresholds: tuple[int, int] | None = None
    min_area: float | None = None
    max_boxes: int | None = None


def built_in(arch: str, layers: Collection[str]) -> Settings:
    """The built-in defaults for a network of `arch` offering `layers`: a choice at a layer it lacks
    (a DenseNet has no layer1, `--trunk-stages 3` no layer4) is read at its transition layer."""
    (method, layer, rules), per_finding = BUILT_IN

    def at(name: str) -> str:
        return name if name in layers else "transition"

    own = {f: (m, at(name), rules) for f, (m, name, rules) in per_finding.items()}
    return Settings(method, at(layer), rules, own, source=f"built-in for {arch}", family=BUILT_IN_FAMILY)


def resolve(base: Settings, options: Options) -> Settings:
    """`base` with every option the command line gave put in its place. A given heatmap or threshold
    applies to every finding (per-finding choices are dropped); settings that keep no recorded value
    keep no calibration digests."""
    rules = base.rules
    if options.thresholds is not None:  # the paper's rule at the given levels
        rules = replace(rules, low=options.thresholds[0], high=options.thresholds[1], level="fixed", grow=1.0)
    if options.min_area is not None:
        rules = replace(rules, min_area=options.min_area)
    if options.max_boxes is not None:
        rules = replace(rules, max_boxes=options.max_boxes)
    method = options.method or base.method
    layer = options.layer or (base.layer if base.method != "cam" and method != "cam" else "transition")
    given = (options.method, options.layer, options.thresholds)
    per_finding = {} if any(v is not None for v in given) else base.per_finding
    everything_given = options.method is not None and options.thresholds is not None and (
        method == "cam" or options.layer is not None)
    source = "options" if everything_given else base.source
    digests = frozenset() if everything_given else base.calibration_digests
    return Settings(method, layer, rules, per_finding, source, digests, () if everything_given else base.family)


def read_defaults(run_dir: Path, arch: str, layers: Collection[str]) -> Settings:
    """The run's recorded defaults, else the built-in ones of its architecture for a network offering `layers`."""
    path = run_dir / DEFAULTS_FILE
    if not path.is_file():
        return built_in(arch, layers)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = BoxRules(min_area=float(data["min_area"]), merge=float(data["merge"]), max_boxes=int(data["max_boxes"]))
        rules = _rules_read(data, base)
        per_finding = {str(f): (str(c["method"]), str(c["layer"]), _rules_read(c, base))
                       for f, c in data["per_finding"].items()}
        for r in (rules, *(c[2] for c in per_finding.values())):
            r.check()
        family = data["chosen_on"].get("family")
        settings = Settings(str(data["method"]), str(data["layer"]), rules, per_finding,
                            f"{path}, chosen on {data['chosen_on']['images']} images of {data['chosen_on']['boxes']}",
                            frozenset(data["chosen_on"]["image_digests"]), (family,) if family else ())
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"{path}: not a localization defaults file this version can read ({exc}); calibrate "
                         f"again with --calibrate, or delete it to use the built-in defaults") from None
    return settings


def write_defaults(run_dir: Path, settings: Settings, chosen_on: dict[str, Any], report: dict[str, Any]) -> Path:
    """Record calibrated settings in the run, atomically; `chosen_on` says on what, `report` how they measured."""
    heatmap = settings.heatmap()
    heatmap.pop("source")
    heatmap.pop("family")
    path = run_dir / DEFAULTS_FILE
    atomic_text(path, json_text({**heatmap, "chosen_on": chosen_on, **report}))
    return path
