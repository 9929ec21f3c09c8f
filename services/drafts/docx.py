"""Word (.docx) drafts, converted to the Markdown conventions of `services.drafts.markdown`.

So that a draft gives the same sections and paragraph numbers whether it arrives as DOCX or Markdown:

- The first paragraph in the Title style becomes the `# ` title. Without one, a lone top-level heading
  that comes first and has deeper headings under it is taken as the title.
- The highest remaining heading level starts sections (`## `); deeper headings become `### ` and so on.
  Drafts typically use Title + Heading 1, or Heading 1 + Heading 2.
- Body paragraphs become Markdown paragraphs (bold and italic runs kept, hyperlinks kept); list
  paragraphs become `- ` items; tables become pipe tables with the first row as the header.
- Text is escaped so that Word text is never read as Markdown syntax.

Word's automatic numbering is not part of the text, so an auto-numbered heading gets its position as
its number and an auto-numbered paragraph is not a numbered paragraph: drafts should type the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import NamedTuple, cast

import docx
from docx.document import Document as WordDocument
from docx.opc.part import Part
from docx.oxml.ns import qn
from docx.oxml.table import CT_Tbl
from lxml import etree

from services.drafts.markdown import ParsedDraft, parse_markdown
from services.drafts.package import UNREADABLE, check_package
from services.errors import DomainError, InvalidInput

MAX_HEADING_DEPTH = 6
MAX_TABLE_COLUMNS = 100
"""Columns of a table, counting a cell that spans several once for each: the pipe table repeats it."""

_ESCAPED = re.compile(r"[\\`*_\[\]<]|&(?=#?[0-9A-Za-z]+;)")  # inline syntax, and what starts an entity
_BLOCK_START = re.compile(r"^([#>+=~-])")
_LIST_NUMBER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_HEADING_STYLE = re.compile(r"heading ([1-9])")
_URL_BREAKERS = re.compile(r"[<>\s]")
_PARAGRAPH, _TABLE, _RUN, _HYPERLINK = qn("w:p"), qn("w:tbl"), qn("w:r"), qn("w:hyperlink")
_VAL, _RELATIONSHIP, _ANCHOR = qn("w:val"), qn("r:id"), qn("w:anchor")
_PARAGRAPH_PROPERTIES, _PARAGRAPH_STYLE, _NUMBERING, _LIST_LEVEL = (
    qn("w:pPr"), qn("w:pStyle"), qn("w:numPr"), qn("w:ilvl")
)  # fmt: skip
_RUN_PROPERTIES, _BOLD, _ITALIC, _TEXT = qn("w:rPr"), qn("w:b"), qn("w:i"), qn("w:t")
_NAME, _BASED_ON = qn("w:name"), qn("w:basedOn")
_OTHER_RUN_TEXT = frozenset(qn(tag) for tag in ("w:br", "w:cr", "w:noBreakHyphen", "w:ptab", "w:tab"))


@dataclass(frozen=True)
class Block:
    kind: str  # title, heading, list, body, table
    text: str
    level: int = 0  # heading level, or list nesting depth


def parse_docx(content: bytes) -> ParsedDraft:
    """Read a .docx draft; raises InvalidInput for a file that is not one or has no headings."""
    return parse_markdown(docx_to_markdown(content))


def docx_to_markdown(content: bytes) -> str:
    document = _open(content)
    try:
        blocks = list(_blocks(document))
    except DomainError:
        raise
    except Exception as exc:  # python-docx reads a damaged part's values in many ways; all mean bad input
        raise InvalidInput(UNREADABLE) from exc
    if not any(block.kind == "heading" for block in blocks):
        raise InvalidInput(
            "The Word document has no section headings: give each section's heading the 'Heading 1' style "
            "(and the draft's title the 'Title' style)."
        )
    return _markdown(_assign_title(blocks))


def _open(content: bytes) -> WordDocument:
    check_package(content)
    try:
        return docx.Document(BytesIO(content))
    except Exception as exc:  # python-docx reports a damaged package in many ways; all mean bad input
        raise InvalidInput(UNREADABLE) from exc


def _blocks(document: WordDocument) -> Iterator[Block]:
    """The body's paragraphs and tables as blocks. Read from the XML python-docx has parsed rather than
    through its objects, which query it with XPath for every property of every paragraph and run."""
    styles_of = _StyleNames(document.styles.element)
    part = document.part
    for element in document.element.body.iterchildren(_PARAGRAPH, _TABLE):
        if element.tag == _TABLE:
            table = _table(cast(CT_Tbl, element))
            if table:
                yield Block("table", table)
            continue
        pieces = _pieces(element, part)
        text = "".join(piece.text for piece in pieces)
        if not text.strip():
            continue
        properties = _first(element, _PARAGRAPH_PROPERTIES)
        numbering = _first(properties, _NUMBERING)
        styles = styles_of(_value(_first(properties, _PARAGRAPH_STYLE)))
        level = next((int(m.group(1)) for name in styles if (m := _HEADING_STYLE.fullmatch(name))), None)
        if "title" in styles:
            yield Block("title", _heading_text(text))
        elif level is not None:
            yield Block("heading", _heading_text(text), level)
        elif numbering is not None or any(name.startswith("list") for name in styles):
            yield Block("list", _escape_line_starts(_formatted(pieces)), _list_depth(numbering))
        else:
            yield Block("body", _escape_line_starts(_formatted(pieces)))


def _assign_title(blocks: list[Block]) -> list[Block]:
    """Keep the first title; else promote a lone leading top heading; then number heading depths."""
    titles = [index for index, block in enumerate(blocks) if block.kind == "title"]
    blocks = [
        Block("body", _escape_line_starts(block.text)) if block.kind == "title" else block for block in blocks
    ]
    levels = [block.level for block in blocks if block.kind == "heading"]
    top = min(levels)
    if titles:
        blocks[titles[0]] = Block("title", blocks[titles[0]].text)
    else:
        first_heading = next(index for index, block in enumerate(blocks) if block.kind == "heading")
        deeper = [level for level in levels if level > top]
        if levels.count(top) == 1 and blocks[first_heading].level == top and deeper:
            blocks[first_heading] = Block("title", blocks[first_heading].text)
            top = min(deeper)
    return [
        Block("heading", block.text, max(2, min(MAX_HEADING_DEPTH, 2 + block.level - top)))
        if block.kind == "heading"
        else block
        for block in blocks
    ]


def _markdown(blocks: list[Block]) -> str:
    parts: list[str] = []
    previous: Block | None = None
    for block in blocks:
        if block.kind == "title":
            text = f"# {block.text}"
        elif block.kind == "heading":
            text = f"{'#' * block.level} {block.text}"
        elif block.kind == "list":
            text = "  " * block.level + "- " + block.text.replace("\n", "\n" + "  " * (block.level + 1))
        else:
            text = block.text
        if parts:
            tight_list = previous is not None and previous.kind == "list" and block.kind == "list"
            parts.append("\n" if tight_list else "\n\n")
        parts.append(text)
        previous = block
    return "".join(parts) + "\n"


class _StyleNames:
    """The names of a paragraph's style and of the styles it is based on, lower case (custom headings
    inherit), as python-docx's `paragraph.style` and `base_style` would give them.

    Read from styles.xml in one pass and kept per style id: python-docx finds a style by searching all of
    them, and the default style (that of most paragraphs) by reading the type of each, so asking it for
    every paragraph costs as many steps as the document has styles, for each paragraph."""

    MAX_DEPTH = 10  # styles based on styles; also what ends a loop of them

    def __init__(self, styles: etree._Element) -> None:
        self._by_id: dict[str, _Style] = {}
        self._default: _Style | None = None
        for element in styles.iterchildren(qn("w:style")):
            style = _Style(
                name=_value(_first(element, _NAME)) or "",
                based_on=_value(_first(element, _BASED_ON)),
                is_paragraph=element.get(qn("w:type")) == "paragraph",
            )
            style_id = element.get(qn("w:styleId"))
            if style_id is not None:
                self._by_id.setdefault(style_id, style)  # the first of an id is the one found
            if style.is_paragraph and element.get(qn("w:default")) in ("1", "true", "on"):
                self._default = style  # the last default is the one that counts
        self._chains: dict[str | None, list[str]] = {}

    def __call__(self, style_id: str | None) -> list[str]:
        """The names for a paragraph of this style id (None: the paragraph names no style)."""
        chain = self._chains.get(style_id)
        if chain is None:
            chain = self._chains[style_id] = self._chain(style_id)
        return chain

    def _chain(self, style_id: str | None) -> list[str]:
        style = self._by_id.get(style_id) if style_id else None
        if style is None or not style.is_paragraph:
            style = self._default
        names: list[str] = []
        while style is not None and len(names) < self.MAX_DEPTH:
            names.append(style.name.lower())
            style = self._by_id.get(style.based_on) if style.based_on is not None else None
        return names


@dataclass(frozen=True)
class _Style:
    name: str
    based_on: str | None
    is_paragraph: bool


def _list_depth(numbering: etree._Element | None) -> int:
    depth = _value(_first(numbering, _LIST_LEVEL))
    try:
        return max(0, min(int(depth or 0), 4))
    except ValueError:
        return 0


def _first(element: etree._Element | None, tag: str) -> etree._Element | None:
    """The element's first `tag` child, as python-docx's ZeroOrOne properties give it (None for none)."""
    return None if element is None else next(element.iterchildren(tag), None)


def _value(element: etree._Element | None) -> str | None:
    return None if element is None else element.get(_VAL)


class _Piece(NamedTuple):
    """A run (with its emphasis) or a hyperlink (with its address) of a paragraph."""

    text: str
    bold: bool = False
    italic: bool = False
    hyperlink: bool = False
    url: str = ""


def _pieces(paragraph: etree._Element, part: Part) -> list[_Piece]:
    """The paragraph's runs and hyperlinks in order, as python-docx's `iter_inner_content` gives them."""
    pieces = []
    for element in paragraph.iterchildren(_RUN, _HYPERLINK):
        if element.tag == _RUN:
            pieces.append(_run(element))
        else:
            text = "".join(_run(run).text for run in element.iterchildren(_RUN))
            pieces.append(_Piece(text, hyperlink=True, url=_url(element, part)))
    return pieces


def _run(run: etree._Element) -> _Piece:
    """A run's text as python-docx's `Run.text` gives it (tabs and breaks as characters), and whether
    `Run.bold` and `Run.italic` are on, in one pass over its children."""
    texts: list[str] = []
    emphasis: dict[str, bool] = {}
    properties_seen = False
    for child in run:
        tag = child.tag
        if tag == _TEXT:
            texts.append(child.text or "")
        elif tag in _OTHER_RUN_TEXT:
            texts.append(str(child))
        elif tag == _RUN_PROPERTIES and not properties_seen:  # python-docx reads the first of each
            properties_seen = True
            for flag in child.iterchildren(_BOLD, _ITALIC):
                emphasis.setdefault(flag.tag, flag.get(_VAL, "true") in ("1", "true", "on"))
    return _Piece("".join(texts), emphasis.get(_BOLD, False), emphasis.get(_ITALIC, False))


def _paragraph_text(paragraph: etree._Element) -> str:
    return "".join(
        _run(child).text if child.tag == _RUN else "".join(_run(run).text for run in child.iterchildren(_RUN))
        for child in paragraph.iterchildren(_RUN, _HYPERLINK)
    )


def _url(hyperlink: etree._Element, part: Part) -> str:
    """python-docx's `Hyperlink.url`: the address, and its #fragment; none for a link inside the draft,
    or one whose relationship is missing."""
    relationship = part.rels.get(hyperlink.get(_RELATIONSHIP) or "")
    address = relationship.target_ref if relationship is not None else ""
    fragment = hyperlink.get(_ANCHOR)
    return f"{address}#{fragment}" if address and fragment else address


def _formatted(pieces: list[_Piece]) -> str:
    """The paragraph's text with bold/italic runs and hyperlinks as Markdown."""
    merged: list[tuple[list[str], bool, bool]] = []  # neighbours with the same emphasis, joined once
    for piece in pieces:
        text = _escape_inline(piece.text)
        if piece.hyperlink:
            if piece.url and text.strip() and not _URL_BREAKERS.search(piece.url):
                text = f"[{text}](<{piece.url}>)"
            emphasis = (False, False)
        else:
            emphasis = (piece.bold, piece.italic)
        if merged and (merged[-1][1], merged[-1][2]) == emphasis:
            merged[-1][0].append(text)
        else:
            merged.append(([text], *emphasis))
    return "".join(_emphasised("".join(texts), bold, italic) for texts, bold, italic in merged).strip()


def _emphasised(text: str, bold: bool, italic: bool) -> str:
    marker = ("**" if bold else "") + ("*" if italic else "")
    core = text.strip()
    if not marker or not core or "\n" in core:
        return text
    leading = text[: len(text) - len(text.lstrip())]
    trailing = text[len(text.rstrip()) :]
    return f"{leading}{marker}{core}{marker[::-1]}{trailing}"


def _table(table: CT_Tbl) -> str:
    """A pipe table of the cells python-docx's `row.cells` gives (a cell spanning columns repeated, a
    vertically merged one taking the text of the cell it continues), in one pass over the rows: python-docx
    finds a merged cell's origin by climbing the merge a row at a time, with XPath queries at each step."""
    rows: list[list[str]] = []
    above: dict[int, tuple[str, int]] = {}  # grid column: text and span of the cell that starts there
    for tr in table.tr_lst:
        row: list[str] = []
        starts: dict[int, tuple[str, int]] = {}
        column = tr.grid_before
        for tc in tr.tc_lst:
            span = tc.grid_span
            continued = above.get(column) if tc.vMerge == "continue" else None
            text, width = starts[column] = continued or (_cell_text(tc), span)
            if len(row) + width > MAX_TABLE_COLUMNS:
                raise InvalidInput(
                    f"A table in the Word document is wider than {MAX_TABLE_COLUMNS} columns: split it "
                    "into narrower tables."
                )
            row.extend([text] * width)
            column += span
        above = starts
        if row:
            rows.append(row)
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    header, *body = rows
    lines = [_table_row(header), "|" + "---|" * width, *(_table_row(row) for row in body)]
    return "\n".join(lines)


def _cell_text(cell: etree._Element) -> str:
    texts = (_escape_inline(_single_line(_paragraph_text(p))) for p in cell.iterchildren(_PARAGRAPH))
    return " ".join(text for text in texts if text).replace("|", "\\|")


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _heading_text(text: str) -> str:
    escaped = _escape_inline(_single_line(text))
    return escaped[:-1] + "\\#" if escaped.endswith("#") else escaped  # not a closing '#' sequence


def _single_line(text: str) -> str:
    return " ".join(text.split())


def _escape_inline(text: str) -> str:
    return _ESCAPED.sub(r"\\\g<0>", text)


def _escape_line_starts(text: str) -> str:
    """Stop a line of Word text from starting a Markdown heading, quote, list, rule or code block."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        line = _BLOCK_START.sub(r"\\\1", line)
        lines.append(_LIST_NUMBER.sub(r"\1\\\2", line))
    return "\n".join(line for line in lines if line)
