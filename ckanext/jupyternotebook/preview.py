"""Static, sanitized HTML previews of ``.ipynb`` resources.

A notebook is rendered with nbconvert's ``basic`` template (markup only: no
scripts, stylesheets or fonts from the network), then cleaned with nh3 under a
tight allowlist. The page is served with ``Content-Security-Policy: sandbox``
and embedded in an ``<iframe sandbox>``: the sanitizer is the first wall, the
sandbox the second, so a sanitizer bug still cannot run script on CKAN's
origin.

Rendered pages are kept in an in-process LRU keyed by resource id plus the
resource's hash (or last_modified, or metadata_modified), bounded in bytes.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import ckan.plugins.toolkit as tk

log = logging.getLogger(__name__)

#: Used when ``ckanext.jupyternotebook.preview_max_size`` is not set.
DEFAULT_MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024

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

NOTEBOOK_FORMATS = frozenset({"ipynb", ".ipynb", "jupyter notebook", "jupyter",
                              "notebook", "application/x-ipynb+json"})

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


# --------------------------------------------------------------------------
# errors


class PreviewError(Exception):
    """A notebook that cannot be previewed; ``message()`` is for the user."""

    code = "preview_error"

    def message(self) -> str:
        return tk._("This notebook cannot be previewed.")


class NotebookTooLarge(PreviewError):
    code = "too_large"

    def __init__(self, limit: int):
        super().__init__(f"notebook larger than {limit} bytes")
        self.limit = limit

    def message(self) -> str:
        return tk._(
            "This notebook is too large to preview (the limit is {size})."
            " You can still download it or run it."
        ).format(size=format_size(self.limit))


class MalformedNotebook(PreviewError):
    """Not JSON at all."""

    code = "malformed"

    def message(self) -> str:
        return tk._(
            "This file is not a valid Jupyter notebook: it is not readable"
            " JSON. It may be damaged or in another format."
        )


class InvalidNotebook(PreviewError):
    """JSON, but not a notebook nbformat accepts."""

    code = "invalid"

    def message(self) -> str:
        return tk._(
            "This file is not a valid Jupyter notebook: its structure does"
            " not follow the notebook format."
        )


class NotebookUnavailable(PreviewError):
    """The file could not be read (missing upload, refused or failed URL)."""

    code = "unavailable"

    def message(self) -> str:
        return tk._("The notebook file could not be read for a preview.")


def format_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024
    return str(n)


# --------------------------------------------------------------------------
# settings


def max_notebook_bytes() -> int:
    value = tk.config.get("ckanext.jupyternotebook.preview_max_size")
    try:
        return int(value) if value not in (None, "") else DEFAULT_MAX_NOTEBOOK_BYTES
    except (TypeError, ValueError):
        return DEFAULT_MAX_NOTEBOOK_BYTES


# --------------------------------------------------------------------------
# which resources are notebooks


def is_notebook_resource(resource: dict[str, Any]) -> bool:
    """True for ``.ipynb`` resources, by format or by file name (pure)."""
    fmt = (resource.get("format") or "").strip().lower()
    if fmt in NOTEBOOK_FORMATS:
        return True
    for value in (resource.get("url"), resource.get("name")):
        if value and urlsplit(str(value)).path.lower().endswith(".ipynb"):
            return True
    return False


# --------------------------------------------------------------------------
# parsing and rendering


def load_notebook(raw: bytes, limit: Optional[int] = None):
    """Parse and validate notebook bytes into an nbformat v4 node."""
    import nbformat

    limit = max_notebook_bytes() if limit is None else limit
    if len(raw) > limit:
        raise NotebookTooLarge(limit)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedNotebook(str(e)) from e
    if not isinstance(data, dict) or "nbformat" not in data:
        raise InvalidNotebook("no nbformat field")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises several unrelated types
        raise InvalidNotebook(str(e)) from e
    return nb


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
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class PreviewExporter(HTMLExporter):
        """HTMLExporter without its BeautifulSoup pass (alt texts, tabindex).

        That pass is cosmetic, and soupsieve 4 cannot compile any selector
        on Python 3.11.2 (Debian 12's), which broke every render.
        """

        def from_notebook_node(self, nb, resources=None, **kw):
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name"))
            self.register_filter("highlight_code", Highlight2HTML(
                pygments_lexer=lexer, parent=self))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self,
                resources=resources))
            return TemplateExporter.from_notebook_node(self, nb, resources,
                                                       **kw)

    return PreviewExporter(
        template_name="basic",
        embed_images=False,  # would read files from CKAN's disk
    )


def render_notebook_body(nb) -> str:
    """Notebook node → sanitized HTML fragment."""
    _strip_active_outputs(nb)
    body, _resources = _exporter().from_notebook_node(nb)
    return sanitize_html(body)


# --------------------------------------------------------------------------
# the sanitizer

_ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite",
    "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl",
    "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "rp",
    "rt", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time",
    "tr", "tt", "u", "ul", "var", "wbr",
})

# Removed together with everything inside them.
_DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed",
    "applet", "form", "noscript", "template", "svg", "math", "textarea",
    "select", "button", "title", "head", "link", "meta", "base", "audio",
    "video", "canvas", "noembed", "noframes", "xmp", "plaintext", "portal",
})

_ALLOWED_ATTRIBUTES = {
    "*": {"class", "id", "title", "lang", "dir", "style"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "details": {"open"},
    "time": {"datetime"},
    "table": {"border"},
}

# Properties that cannot name a URL (no background, no content, no cursor).
_ALLOWED_STYLE_PROPERTIES = frozenset({
    "color", "background-color", "text-align", "vertical-align",
    "font-weight", "font-style", "font-size", "font-family", "text-decoration",
    "white-space", "width", "height", "max-width", "min-width", "padding",
    "padding-left", "padding-right", "padding-top", "padding-bottom",
    "margin", "margin-left", "margin-right", "margin-top", "margin-bottom",
    "border", "border-collapse", "border-color", "border-style",
    "border-width", "border-top", "border-bottom", "border-left",
    "border-right", "display", "line-height",
})

_LINK_SCHEMES = ("http://", "https://", "mailto:")
_IMAGE_DATA_PREFIX = "data:image/"

# A style value may call only these functions: anything else can load a URL
# (url(), image-set()) or run script in old browsers (expression()).
_STYLE_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})
# Escapes and comments could spell a forbidden word ("expr\65ssion",
# "expr/**/ession"); "@" starts @import, ":" a scheme such as javascript:.
_STYLE_FORBIDDEN_CHARS = ("\\", "/*", "*/", "@", ":", ";", "<", ">", "\"", "'", "{", "}")


def _style_value_is_safe(value: str) -> bool:
    v = value.strip().lower()
    if not v or any(c in v for c in _STYLE_FORBIDDEN_CHARS):
        return False
    if any(ord(c) < 32 for c in v):
        return False
    functions = re.findall(r"([a-z0-9_-]*)\s*\(", v)
    return all(name in _STYLE_FUNCTIONS for name in functions)


def _filter_style(value: str) -> Optional[str]:
    """Keep the declarations whose property is allowed and whose value is plain."""
    kept = []
    for declaration in value.split(";"):
        name, colon, val = declaration.partition(":")
        name = name.strip().lower()
        if colon and name in _ALLOWED_STYLE_PROPERTIES and _style_value_is_safe(val):
            kept.append(f"{name}: {val.strip()}")
    return "; ".join(kept) or None


def _filter_attribute(tag: str, attribute: str, value: str) -> Optional[str]:
    if attribute == "style":
        return _filter_style(value)
    if attribute == "src":
        # Only inline images: nothing may be fetched from anywhere.
        return value if value.strip().lower().startswith(_IMAGE_DATA_PREFIX) else None
    if attribute == "href":
        v = value.strip()
        if v.startswith("#") or v.lower().startswith(_LINK_SCHEMES):
            return v
        return None
    return value


def sanitize_html(fragment: str) -> str:
    """Keep formatting, tables, code and inline images; drop anything active."""
    import nh3

    return nh3.clean(
        fragment,
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes={k: set(v) for k, v in _ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        url_schemes={"http", "https", "mailto", "data"},
        filter_style_properties=set(_ALLOWED_STYLE_PROPERTIES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


# --------------------------------------------------------------------------
# the page


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


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta name=\"referrer\" content=\"no-referrer\">"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_page_css()}</style></head>"
        f"<body><main class=\"jn-preview\">{body}</main></body></html>\n"
    )


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


# --------------------------------------------------------------------------
# reading the resource


def _read_limited(chunks, limit: int) -> bytes:
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise NotebookTooLarge(limit)
    return bytes(buf)


def _read_upload(resource: dict[str, Any], limit: int) -> bytes:
    from ckan.lib import uploader

    from .compat import files, keeper_storage

    upload = uploader.get_resource_uploader(resource)
    path = upload.get_path(resource["id"])
    storage = keeper_storage(upload)
    try:
        if storage is not None:
            location = files.Location(path)
            size = storage.size(location)
            if size > limit:
                raise NotebookTooLarge(limit)
            return _read_limited(
                storage.stream(files.FileData(location, size=size)), limit)
        with open(path, "rb") as f:
            return _read_limited(iter(lambda: f.read(1 << 16), b""), limit)
    except PreviewError:
        raise
    except Exception as e:
        log.warning("cannot read upload of resource %s: %s", resource["id"], e)
        raise NotebookUnavailable(str(e)) from e


#: The whole read of a link resource (resolution, redirects, body) ends
#: after this long: a visitor waits for the page meanwhile.
READ_URL_SECONDS = 20.0


def _fetch_allowlist() -> list[str]:
    allow = tk.config.get("ckanext.jupyternotebook.fetch_allowlist") or []
    return allow.split() if isinstance(allow, str) else list(allow)


def _read_url(url: str, limit: int, timeout: float) -> bytes:
    """GET an external notebook through the bridge's guarded downloader:
    public addresses only (every hop, pinned), no proxy, one deadline."""
    from jupyterhub_service.guarded_download import FetchError, GuardedDownloader, TooLarge

    downloader = GuardedDownloader(
        max_bytes=limit, timeout=timeout, allowlist=_fetch_allowlist(),
        user_agent="ckanext-jupyternotebook-preview",
    )
    sink = io.BytesIO()
    try:
        downloader.fetch(url, sink)
    except TooLarge as e:
        raise NotebookTooLarge(limit) from e
    except FetchError as e:
        log.info("preview of %s not read: %s", url, e)
        raise NotebookUnavailable(str(e)) from e
    return sink.getvalue()


def read_resource(resource: dict[str, Any], limit: Optional[int] = None,
                  timeout: Optional[float] = None) -> bytes:
    limit = max_notebook_bytes() if limit is None else limit
    timeout = READ_URL_SECONDS if timeout is None else timeout
    if resource.get("url_type") == "upload":
        return _read_upload(resource, limit)
    if resource.get("url_type"):
        # Another extension's storage (e.g. datastore): nothing to read here.
        raise NotebookUnavailable(f"url_type {resource['url_type']!r}")
    return _read_url(resource.get("url") or "", limit, timeout)


# --------------------------------------------------------------------------
# the cache

#: Link resources without hash or last_modified are re-read after this long.
LINK_TTL_SECONDS = 600
#: A read that failed (host down, refused, timed out) is retried after this
#: long, so anonymous views cannot make CKAN hammer a slow or dead host.
FAILED_READ_TTL_SECONDS = 60


class PreviewCache:
    """Thread-safe LRU of rendered pages (or their PreviewError), in bytes."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[Any, int, Optional[float]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, _size, expires = item
            if expires is not None and expires < time.monotonic():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any, ttl: Optional[float] = None) -> None:
        size = len(value) if isinstance(value, str) else 256
        if size > self.max_bytes:
            return
        expires = time.monotonic() + ttl if ttl else None
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (value, size, expires)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: tuple) -> None:
        _value, size, _exp = self._items.pop(key)
        self._bytes -= size


cache = PreviewCache()


def cache_key(resource: dict[str, Any]) -> tuple[tuple, Optional[float]]:
    """(key, ttl): id plus the first of hash, last_modified, metadata_modified."""
    version = resource.get("hash") or resource.get("last_modified")
    ttl = None
    if not version:
        version = resource.get("metadata_modified") or ""
        if resource.get("url_type") != "upload":
            ttl = LINK_TTL_SECONDS
    key = (resource["id"], str(version), resource.get("url") or "",
           max_notebook_bytes())
    return key, ttl


def resource_preview(
    resource: dict[str, Any],
    reader: Callable[[dict[str, Any]], bytes] = read_resource,
) -> str:
    """The preview page of a resource the caller may read; raises PreviewError.

    Access checks are the caller's: this reads the file unconditionally.
    """
    key, ttl = cache_key(resource)
    hit = cache.get(key)
    if hit is None:
        title = resource.get("name") or resource["id"]
        try:
            hit = render_page(reader(resource), title)
        except NotebookUnavailable as e:
            # often transient: remembered briefly, then read again
            cache.put(key, e, FAILED_READ_TTL_SECONDS)
            raise
        except PreviewError as e:
            hit = e
        cache.put(key, hit, ttl)
    if isinstance(hit, PreviewError):
        raise hit
    return hit
