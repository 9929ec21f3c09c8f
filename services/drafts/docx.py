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
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO

import docx
from docx.document import Document as WordDocument
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph

from services.drafts.markdown import ParsedDraft, parse_markdown
from services.errors import InvalidInput

MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_HEADING_DEPTH = 6

_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]<])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_BLOCK_START = re.compile(r"^([#>+=~-])")
_LIST_NUMBER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_HEADING_STYLE = re.compile(r"heading ([1-9])")


@dataclass(frozen=True)
class Block:
    kind: str  # title, heading, list, body, table
    text: str
    level: int = 0  # heading level, or list nesting depth


def parse_docx(content: bytes) -> ParsedDraft:
    """Read a .docx draft; raises InvalidInput for a file that is not one or has no headings."""
    return parse_markdown(docx_to_markdown(content))


def docx_to_markdown(content: bytes) -> str:
    blocks = list(_blocks(_open(content)))
    if not any(block.kind == "heading" for block in blocks):
        raise InvalidInput(
            "The Word document has no section headings: give each section's heading the 'Heading 1' style "
            "(and the draft's title the 'Title' style)."
        )
    return _markdown(_assign_title(blocks))


def _open(content: bytes) -> WordDocument:
    unreadable = InvalidInput(
        "The file could not be read as a Word document: save it as .docx (Word 2007 or later) and try again."
    )
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise unreadable from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise InvalidInput("The Word document is too large once unpacked.")
    try:
        return docx.Document(BytesIO(content))
    except Exception as exc:  # python-docx reports a damaged package in many ways; all mean bad input
        raise unreadable from exc


def _blocks(document: WordDocument) -> Iterator[Block]:
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            table = _table(item)
            if table:
                yield Block("table", table)
            continue
        if not item.text.strip():
            continue
        styles = _style_names(item)
        level = next((int(m.group(1)) for name in styles if (m := _HEADING_STYLE.fullmatch(name))), None)
        if "title" in styles:
            yield Block("title", _heading_text(item.text))
        elif level is not None:
            yield Block("heading", _heading_text(item.text), level)
        elif _is_list(item, styles):
            yield Block("list", _escape_line_starts(_formatted(item)), _list_depth(item))
        else:
            yield Block("body", _escape_line_starts(_formatted(item)))


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


def _style_names(paragraph: Paragraph) -> list[str]:
    """The paragraph's style and the styles it is based on, lower case (custom headings inherit)."""
    names: list[str] = []
    style = paragraph.style
    while style is not None and len(names) < 10:
        names.append((style.name or "").lower())
        style = style.base_style
    return names


def _is_list(paragraph: Paragraph, styles: list[str]) -> bool:
    properties = paragraph._p.pPr
    return any(name.startswith("list") for name in styles) or (
        properties is not None and properties.numPr is not None
    )


def _list_depth(paragraph: Paragraph) -> int:
    properties = paragraph._p.pPr
    numbering = properties.numPr if properties is not None else None
    depth = getattr(getattr(numbering, "ilvl", None), "val", None)
    return min(int(depth), 4) if depth is not None else 0


def _formatted(paragraph: Paragraph) -> str:
    """The paragraph's text with bold/italic runs and hyperlinks as Markdown."""
    pieces: list[tuple[str, bool, bool]] = []
    for item in paragraph.iter_inner_content():
        if isinstance(item, Hyperlink):
            text = _escape_inline(item.text)
            url = item.url
            linked = f"[{text}](<{url}>)" if url and text.strip() and not re.search(r"[<>\s]", url) else text
            pieces.append((linked, False, False))
        else:
            pieces.append((_escape_inline(item.text), bool(item.bold), bool(item.italic)))
    merged: list[tuple[str, bool, bool]] = []
    for text, bold, italic in pieces:
        if merged and merged[-1][1:] == (bold, italic):
            merged[-1] = (merged[-1][0] + text, bold, italic)
        else:
            merged.append((text, bold, italic))
    return "".join(_emphasised(text, bold, italic) for text, bold, italic in merged).strip()


def _emphasised(text: str, bold: bool, italic: bool) -> str:
    marker = ("**" if bold else "") + ("*" if italic else "")
    core = text.strip()
    if not marker or not core or "\n" in core:
        return text
    leading = text[: len(text) - len(text.lstrip())]
    trailing = text[len(text.rstrip()) :]
    return f"{leading}{marker}{core}{marker[::-1]}{trailing}"


def _table(table: Table) -> str:
    rows = [[_cell_text(cell.paragraphs) for cell in row.cells] for row in table.rows]
    rows = [row for row in rows if row]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    header, *body = rows
    lines = [_table_row(header), "|" + "---|" * width, *(_table_row(row) for row in body)]
    return "\n".join(lines)


def _cell_text(paragraphs: list[Paragraph]) -> str:
    texts = (_escape_inline(_single_line(paragraph.text)) for paragraph in paragraphs)
    return " ".join(text for text in texts if text).replace("|", "\\|")


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _heading_text(text: str) -> str:
    escaped = _escape_inline(_single_line(text))
    return escaped[:-1] + "\\#" if escaped.endswith("#") else escaped  # not a closing '#' sequence


def _single_line(text: str) -> str:
    return " ".join(text.split())


def _escape_inline(text: str) -> str:
    return _ENTITY.sub(r"\\&", _INLINE_SPECIALS.sub(r"\\\1", text))


def _escape_line_starts(text: str) -> str:
    """Stop a line of Word text from starting a Markdown heading, quote, list, rule or code block."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        line = _BLOCK_START.sub(r"\\\1", line)
        lines.append(_LIST_NUMBER.sub(r"\1\\\2", line))
    return "\n".join(line for line in lines if line)
