"""The audit page as one self-contained HTML file: the template with its CSS and JavaScript inlined
and the data embedded as JSON. Nothing is fetched: no server, no CDN, no font (reports are patient
data and the page must work on a machine without a network).

Report texts are untrusted. Three walls keep them text:
1. the data sits in a `<script type="application/json">` block with `<`, `>` and `&` written as
   JSON escapes, so no report can end the block;
2. the script builds every element with `textContent`, never by parsing a report as HTML;
3. a Content-Security-Policy allows no network at all, and only this page's own script and style
   (named by their SHA-256), so markup that slipped through could neither run nor fetch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from importlib import resources
from typing import Any

from cxrcore.output import json_text

def asset(name: str) -> str:
    """One file of the page's package data (reportminer/audit_page/)."""
    return (resources.files("reportminer") / "audit_page" / name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON that cannot end the script block it is embedded in (nor start a comment or entity)."""
    text = json_text(data, indent=None)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def source_hash(body: str) -> str:
    """A CSP source naming one inline script or style by its content."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() + "'"


def render(data: dict[str, Any], title: str) -> str:
    """The page's HTML. Placeholders are filled in one pass, so text in the data is never read as one."""
    style, script = asset("audit.css"), asset("audit.js")
    policy = (f"default-src 'none'; script-src {source_hash(script)}; style-src {source_hash(style)}; "
              f"img-src data:; base-uri 'none'; form-action 'none'")
    values = {"csp": html.escape(policy, quote=False), "title": html.escape(title), "style": style, "script": script,
              "data": embed_json(data)}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], asset("page.html"))
