"""The sanitizer every preview passes through: nh3 with a tight allowlist
of tags and attributes, links only ``http(s)``/``mailto:``/``#fragment``,
images only inline ``data:image/``, and ``style`` values checked so that
nothing can load a URL or run script (no ``url()``, ``image-set()``,
``expression()``, escapes, comments or ``@import``)."""

from __future__ import annotations

import re
from typing import Optional

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
