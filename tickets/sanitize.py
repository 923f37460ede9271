"""Untrusted HTML (email bodies) is cleaned here before anything stores or shows it."""

from __future__ import annotations

import nh3

_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "div",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
    "img",
    "font",
    "center",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"alt", "title", "width", "height", "src"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "*": {"dir", "lang"},
}


def sanitize_html(html: str) -> str:
    """Keep the structure of an email, drop scripts, styles, handlers and remote content.

    Images are kept only when they point at an attachment (cid:) or are inline data, so
    opening a ticket never calls a tracker; links get rel="noopener noreferrer".
    """
    if not html:
        return ""
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_filter_attribute,
        strip_comments=True,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src" and not value.startswith(("cid:", "data:image/")):
        return None
    if attribute == "href" and value.lower().startswith("data:"):
        return None
    return value
