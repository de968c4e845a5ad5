"""One self-contained HTML file: inline CSS and JS, the report data as escaped JSON, and a
Content-Security-Policy that runs only the page's own script (by hash) and allows no network at all.

Everything from a record reaches the page as JSON text that the script writes with `textContent`,
never as markup; the CSP is a second wall in case that ever slips."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from pathlib import Path
from typing import Any

import orjson

from pocketguide.engine.store import atomic_write_bytes

ASSETS = Path(__file__).with_name("assets")
REPORT_DIR = "report"
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no `<`, `>` or `&` can close the block
    or open a comment (they only occur inside JSON strings, where the \\u escapes mean the same)."""
    try:
        text = orjson.dumps(data, default=str).decode()
    except TypeError:  # lone surrogates in model output: json escapes them
        text = json.dumps(data, ensure_ascii=True, default=str)
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def _sha256_b64(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


SCRIPTS = ("dom.js", "sections.js", "browser.js")  # one function scope, in this order


def page_script() -> str:
    """The page's one script: the asset files joined inside one strict-mode function."""
    body = "".join((ASSETS / name).read_text() for name in SCRIPTS)
    return f'"use strict";\n(function () {{\n{body}}})();\n'


def render_page(data: dict[str, Any], *, csp: bool = True) -> str:
    """The page. `csp=False` only for tests that check the escaping holds without the policy."""
    css = (ASSETS / "report.css").read_text()
    js = page_script()
    policy = (f"default-src 'none'; script-src 'sha256-{_sha256_b64(js)}'; style-src 'sha256-{_sha256_b64(css)}'; "
              f"img-src data:; base-uri 'none'; form-action 'none'")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">' if csp else ""
    title = html.escape(f"pocketguide report: {data.get('meta', {}).get('pipeline', '')}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{css}</style></head>\n<body>"
            f'<noscript><p>This report draws its charts and tables with JavaScript; enable it for this file.</p>'
            f"</noscript><div id=\"app\"></div>\n"
            f'<script type="application/json" id="report-data">{embed_json(data)}</script>\n'
            f"<script>{js}</script></body></html>\n")


def default_out_dir(pipe: Any) -> Path:
    """<data_dir>/report (a name no stage may take: engine/store.RESERVED_NAMES)."""
    return pipe.data_dir / REPORT_DIR


def write_page(data: dict[str, Any], out_dir: Path) -> Path:
    """index.html in out_dir, written atomically (a reader never sees half a page)."""
    path = out_dir / "index.html"
    atomic_write_bytes(path, render_page(data).encode())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a page to share: readable like any file the user makes (not 0600)
    return path
