"""The preview's HTML document: the sanitized body in a page with its own
inline style and nothing else, and the headers every such response carries
(``Content-Security-Policy: sandbox``: no notebook script runs on CKAN's
origin even if the sanitizer missed something)."""

from __future__ import annotations

import html
import logging
from typing import Optional

from .errors import InvalidNotebook
from .load import load_notebook
from .render import render_notebook_body

log = logging.getLogger(__name__)

#: Headers of every response that carries notebook-derived HTML.
PREVIEW_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
        # no frame-ancestors: CKAN's "Embed" of a resource view must work
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=0, must-revalidate",
}


def render_page(raw: bytes, title: str, limit: Optional[int] = None) -> str:
    """Notebook bytes → full, sanitized preview page; raises PreviewError."""
    nb = load_notebook(raw, limit)
    try:
        body = render_notebook_body(nb)
    except Exception as e:  # nbconvert on odd but valid input
        log.warning("nbconvert failed on %r: %s", title, e)
        raise InvalidNotebook(str(e)) from e
    return _page(title, body)


def message_page(title: str, message: str) -> str:
    body = f"<p class=\"jn-message\">{html.escape(message)}</p>"
    return _page(title, body)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_page_css()}</style></head>"
        f"<body><main class=\"jn-preview\">{body}</main></body></html>\n"
    )


def _page_css() -> str:
    from pygments.formatters import HtmlFormatter

    return _BASE_CSS + HtmlFormatter(style="default").get_style_defs(".highlight")


_BASE_CSS = """
body{margin:0;padding:12px 16px;font:14px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif;color:#212529;background:#fff}
.cell{margin:0 0 12px;display:flex;flex-direction:column}
.input,.output_area{display:flex;gap:8px}
.prompt{flex:0 0 70px;color:#6c757d;font:12px/1.6 monospace;text-align:right}
.input_prompt{color:#303f9f}.output_prompt{color:#d84315}
.inner_cell,.output_subarea{flex:1 1 auto;min-width:0;overflow-x:auto}
.input_area{background:#f7f7f7;border:1px solid #e0e0e0;border-radius:3px;padding:4px 8px}
pre{margin:0;font:13px/1.45 SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
word-break:break-word}
.output_stderr{background:#fdd}
.text_cell_render{padding:0 4px}
img{max-width:100%;height:auto}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #dee2e6;padding:3px 8px;text-align:right}
thead th{background:#f1f3f5}
blockquote{border-left:4px solid #dee2e6;margin:0;padding-left:12px;color:#495057}
.jn-message{padding:16px;border:1px solid #ffe69c;background:#fff3cd;border-radius:4px}
"""
