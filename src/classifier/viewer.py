"""The study viewer: `predict --html FILE` as one self-contained HTML page (template, script and style in
viewer_page/), each film with its probabilities, decisions, heatmaps and boxes. No torch here: the
films are encoded on the decoding workers.

Nothing is fetched: the films and heatmaps are data URIs, and a Content-Security-Policy allows no
network at all and only this page's own script and style, named by their SHA-256 (the audit page's
pattern). Ids and paths are file names, so untrusted: the data sits in a JSON block that no string
can end, and the script writes every text with `textContent`.

Size budget, per film: at most FILM_BUDGET bytes in the page. The film is the shared decode
(images.decode, DICOM windowed as for the network) at its own size up to FILM_PX on the long side,
as JPEG, its quality lowered and then its pixels halved until it fits beside its heatmaps; the
heatmaps are one 8-bit PNG strip of HEAT_PX-pixel maps, one per finding (about 1 KB each), coloured
in the browser. 200 films of 15 findings make a page of at most 200 x 64 KB = 12.8 MB.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, TextIO

import numpy as np
from PIL import Image

from cxrcore.output import json_text

FILM_PX = 512  # the longest side of a film in the page, at most
FILM_BUDGET = 64_000  # bytes of one film's entry in the page (film, heatmaps, numbers), at most
HEAT_PX = 48  # each finding's heatmap in the page, square
QUALITIES = (85, 70, 55, 40)
ENTRY_OVERHEAD = 2_000  # bytes left for a film's id, path, probabilities and boxes


def film_pixels(width: int, height: int) -> int:
    """The square decode size of a film for the page: its own longest side, at most FILM_PX."""
    return max(16, min(FILM_PX, max(width, height)))


def film_uri(grey: np.ndarray, budget: int) -> str:
    """A data URI of the 8-bit film as JPEG in at most `budget` bytes of text: the best quality that fits,
    else the same at half the pixels, and so on."""
    image = Image.fromarray(grey, mode="L")
    while True:
        for quality in QUALITIES:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality, optimize=True)
            uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
            if len(uri) <= budget or image.width <= 16:
                return uri
        image = image.resize((max(16, image.width // 2), max(16, image.height // 2)), Image.BILINEAR)


def heat_uri(maps: np.ndarray) -> str:
    """A data URI of (C, H, W) maps already on the 0-255 scale as one PNG strip of C HEAT_PX squares,
    top to bottom in finding order (a flat map, which shows nothing, is black)."""
    strip = np.concatenate([np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(
        (HEAT_PX, HEAT_PX), Image.BILINEAR)) for m in maps])
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(strip), 0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG",
                                                                                        optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def film_entry(image_id: str, path: str, size: tuple[int, int], film: str, probs: np.ndarray, decisions: np.ndarray,
               heat: str | None, boxes: list[tuple[int, float, float, float, float, float]] | None) -> str:
    """One film of the page as embeddable JSON: id, path, original (width, height), film, probabilities,
    decisions, heatmap strip and boxes ([finding index, x, y, w, h, score] in the film's own pixels)."""
    entry = {"id": image_id, "path": path, "w": size[0], "h": size[1], "film": film,
             "p": [round(float(p), 4) for p in probs], "d": [int(d) for d in decisions], "heat": heat,
             "boxes": None if boxes is None else [[j, round(x, 1), round(y, 1), round(w, 1), round(h, 1), round(s, 3)]
                                                  for j, x, y, w, h, s in boxes]}
    return embed_json(entry)


def asset(name: str) -> str:
    """One file of the page's package data (classifier/viewer_page/)."""
    return (resources.files("classifier") / "viewer_page" / name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that cannot end the script block it is embedded in (nor start a comment or entity)."""
    text = json_text(data, indent=None)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def source_hash(body: str) -> str:
    """A CSP source naming one inline script or style by its content."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"


def write_page(out: TextIO, header: dict[str, Any], films: Iterable[str], title: str) -> int:
    """Write the page to `out`, the films' JSON entries streamed into it one by one; return how many.
    `header`: findings, thresholds and where the predictions came from."""
    style, script = asset("viewer.css"), asset("viewer.js")
    policy = (f"default-src 'none'; script-src {source_hash(script)}; style-src {source_hash(style)}; "
              f"img-src data:; base-uri 'none'; form-action 'none'")
    values = {"csp": html.escape(policy, quote=False), "title": html.escape(title), "style": style, "script": script}
    head, tail = asset("page.html").split("{{data}}")
    fill = lambda text: re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)  # noqa: E731 (one pass)
    out.write(fill(head))
    out.write('{"header":' + embed_json(header) + ',"films":[')
    count = 0
    for entry in films:
        out.write(("," if count else "") + entry)
        count += 1
    out.write("]}")
    out.write(fill(tail))
    return count


def read_entries(path: Path) -> Iterable[str]:
    """The film entries a chunk wrote (one JSON a line)."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip("\n")


def entries_text(entries: list[str]) -> str:
    """A chunk's film entries as the lines `read_entries` reads back (JSON without indent is one line)."""
    return "".join(e + "\n" for e in entries)
