"""Write the per-finding box size prior that `localize` grows its boxes to, from NIH's 984 radiologist
boxes (`BBox_List_2017.csv`, drawn on 1,024-pixel films): for each finding, how many boxes, and the
quartiles of each box's width, height and area relative to the film (area as a share of the film).

    python benchmarks/localization_size_prior.py ../shared/data/nih/BBox_List_2017.csv

writes src/classifier/size_prior.json (shipped with the package; re-run it to rebuild the file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrcore.boxes import read_boxes

NIH_BOXED = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax")
FILM = 1024  # NIH's boxes are in pixels of its 1,024-pixel films
OUT = Path(__file__).resolve().parents[1] / "src" / "classifier" / "size_prior.json"


def prior(path: Path) -> dict:
    """Per finding: count and the 25/50/75th percentiles of relative width, height and area."""
    boxes = read_boxes(path, list(NIH_BOXED))
    boxes = boxes.assign(w=boxes["w"] / FILM, h=boxes["h"] / FILM)
    boxes["area"] = boxes["w"] * boxes["h"]
    out = {}
    for finding, group in sorted(boxes.groupby("Finding Label")):
        out[finding] = {"boxes": len(group), **{f"{c}_q{q}": round(float(group[c].quantile(q / 100)), 5)
                                                for c in ("w", "h", "area") for q in (25, 50, 75)}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bbox_list", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    data = {"source": "NIH ChestX-ray14 BBox_List_2017.csv (984 boxes on 880 films, 1,024 px)",
            "units": "width, height: share of the film's side; area: share of the film's area",
            "findings": prior(args.bbox_list)}
    args.output.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{sum(f['boxes'] for f in data['findings'].values())} boxes, {len(data['findings'])} findings → {args.output}")


if __name__ == "__main__":
    main()
