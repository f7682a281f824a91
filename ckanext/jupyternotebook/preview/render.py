"""A notebook node → its sanitized HTML body: outputs that need script are
dropped, nbconvert's ``basic`` template (markup only) renders the rest, and
the sanitizer cleans the result."""

from __future__ import annotations

import logging

from .sanitize import sanitize_html

log = logging.getLogger(__name__)

# Output mime types that only make sense with script, or that load code.
_DROPPED_MIME_TYPES = frozenset({
    "application/javascript",
    "text/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/ecmascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
    "application/vnd.bokehjs_load.v0+json",
    "application/vnd.bokehjs_exec.v0+json",
    "application/vnd.holoviews_load.v0+json",
    "application/vnd.holoviews_exec.v0+json",
    "application/vnd.plotly.v1+json",
})


def render_notebook_body(nb) -> str:
    """Notebook node → sanitized HTML fragment."""
    _strip_active_outputs(nb)
    body, _resources = _exporter().from_notebook_node(nb)
    return sanitize_html(body)


def _strip_active_outputs(nb) -> None:
    """Drop outputs that need script, and widget state from the metadata."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []) or []:
            data = output.get("data")
            if isinstance(data, dict):
                for mime in list(data):
                    if mime.lower() in _DROPPED_MIME_TYPES:
                        del data[mime]
        # Attachments other than images could smuggle anything; keep images.
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for name, bundle in list(attachments.items()):
                if not isinstance(bundle, dict):
                    del attachments[name]
                    continue
                for mime in list(bundle):
                    if not mime.startswith("image/"):
                        del bundle[mime]


def _exporter():
    from nbconvert import HTMLExporter

    # nbconvert's own export, BeautifulSoup pass included (alt texts): the
    # package pins soupsieve<4, whose selectors compile on Python 3.11.2.
    return HTMLExporter(
        template_name="basic",
        embed_images=False,  # would read files from CKAN's disk
        log=_nbconvert_log,
    )


# nbconvert warns on every image without alt text (most plots): errors only,
# unless the operator's logging configuration says otherwise
_nbconvert_log = log.getChild("nbconvert")
if _nbconvert_log.level == logging.NOTSET:
    _nbconvert_log.setLevel(logging.ERROR)
