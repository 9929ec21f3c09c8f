"""Draft Markdown to safe HTML for the review pages.

A section renders without its `## ` heading line (the page shows headings itself). Each numbered
paragraph becomes a linkable, commentable block, its number shown once:

    <div class="para" id="p-4-2" data-paragraph="4.2"><p><span class="para-number">4.2</span> ...</p></div>

Raw HTML in a draft is shown as text, never interpreted, and the output is sanitised again with nh3.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from html import escape
from typing import Any

import nh3
from markdown_it.token import Token

from services.drafts.markdown import is_section_heading, markdown_parser, normalise_text, paragraph_number

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "div", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "div": {"id", "data-paragraph"},
}
ALLOWED_CLASSES = {"div": {"para"}, "span": {"para-number"}}
ALLOWED_STYLES = {"text-align"}  # table column alignment


def paragraph_anchor(number: str) -> str:
    """The HTML id of a numbered paragraph: 4.2 -> p-4-2."""
    return "p-" + number.replace(".", "-")


def _open_paragraph(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    number = tokens[idx].meta.get("paragraph")
    if number is None:
        return str(self.renderToken(tokens, idx, options, env))
    return (
        f'<div class="para" id="{paragraph_anchor(number)}" data-paragraph="{escape(number)}">'
        f'<p><span class="para-number">{escape(number)}</span> '
    )


def _close_paragraph(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    if tokens[idx].meta.get("paragraph") is None:
        return str(self.renderToken(tokens, idx, options, env))
    return "</p></div>\n"


_PARSER = markdown_parser()
_PARSER.add_render_rule("paragraph_open", _open_paragraph)
_PARSER.add_render_rule("paragraph_close", _close_paragraph)


@lru_cache(maxsize=2048)
def render_section_html(text: str) -> str:
    """A section's Markdown as sanitised HTML, without its heading line, numbered paragraphs anchored."""
    tokens = _PARSER.parse(normalise_text(text))
    if tokens and is_section_heading(tokens[0]):
        tokens = tokens[3:]  # heading_open, inline, heading_close
    for index, token in enumerate(tokens):
        if token.type != "paragraph_open" or token.level != 0:
            continue
        inline, closing = tokens[index + 1], tokens[index + 2]
        found = paragraph_number(inline)
        if found is None:
            continue
        number, length = found
        token.meta["paragraph"] = closing.meta["paragraph"] = number
        inline.children = _without_leading_characters(inline.children or [], length)
    return sanitise(_PARSER.renderer.render(tokens, _PARSER.options, {}))


@lru_cache(maxsize=256)
def render_markdown_html(text: str) -> str:
    """Markdown such as a draft's preamble as sanitised HTML."""
    return sanitise(_PARSER.render(normalise_text(text)))


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        filter_style_properties=ALLOWED_STYLES,
        url_schemes={"http", "https", "mailto"},
    )


def _without_leading_characters(children: list[Token], count: int) -> list[Token]:
    """Inline tokens minus the first `count` visible characters (the number) and the space after them,
    keeping emphasis that goes on past the number and dropping emphasis left empty."""
    kept: list[Token] = []
    for child in children:
        if count > 0 and child.type in ("text", "softbreak", "hardbreak"):
            size = len(child.content) if child.type == "text" else 1
            if size <= count:
                count -= size
                continue
            child = child.copy(content=child.content[count:])
            count = 0
        kept.append(child)
    _strip_leading_space(kept)
    return _without_empty_markup(kept)


def _strip_leading_space(children: list[Token]) -> None:
    index = 0
    while index < len(children):
        child = children[index]
        if child.nesting != 0:
            index += 1
        elif child.type in ("softbreak", "hardbreak"):
            del children[index]
        elif child.type == "text":
            child.content = child.content.lstrip()
            if child.content:
                return
            del children[index]
        else:
            return


def _without_empty_markup(children: list[Token]) -> list[Token]:
    result: list[Token] = []
    for child in children:
        if child.nesting == -1 and result and result[-1].nesting == 1 and result[-1].tag == child.tag:
            result.pop()
        else:
            result.append(child)
    return result
