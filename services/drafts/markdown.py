"""Split a Markdown draft into its title, preamble and numbered sections.

The conventions a draft follows (the DOCX import produces the same ones):

- The first `# ` heading before any section is the draft's title. Everything else before the first
  `## ` heading is the preamble.
- Each `## ` heading (ATX style, at the top level: not inside a list, quote or fenced code) starts a
  section, which runs until the next such heading. Setext headings (underlined) do not start sections.
- A section's number is read from the start of its heading: `1. Purpose and scope` is section "1"
  with heading "Purpose and scope"; `Annex 1. Action Plan (summary)` is section "Annex 1"
  (also Appendix/Schedule); `4.2 Details` is "4.2"; `IV. Budget` is "IV" (a Roman numeral needs
  its dot). A heading without a number takes its 1-based position among the sections ("3" for the
  third). Section numbers must be unique, so a draft that numbers some headings and not others can
  clash; the error says so.
- A numbered paragraph is a top-level paragraph whose text starts with a dotted number such as
  `4.2` or `4.2.1` (optionally followed by a dot, and optionally in bold or italics) and then
  whitespace. Table cells, list items, quotes and code never count. Paragraph numbers must be
  unique within the draft.
- A section's `text` is its Markdown exactly as written, from its `## ` line up to the next one,
  with line endings normalised to `\\n` and trailing blank space removed; `sha256` is the hex SHA-256
  of that text as UTF-8. It is what focal points sign, so it never depends on how it is rendered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, pairwise

from markdown_it import MarkdownIt
from markdown_it.token import Token

from services.errors import InvalidInput, PayloadTooLarge

MAX_SECTION_NUMBER_LENGTH = 40
MAX_HEADING_LENGTH = 500

# What a draft may contain, checked on its text before it is parsed (the parse is what takes time), so
# that an absurd or hostile one is refused at once and one at the limits still parses well within a second.
MAX_CHARACTERS = 3_000_000
"""The draft's text, several times the longest strategy."""
MAX_SECTIONS = 1_000
"""Section headings: a strategy has tens; every section is a row to store and to assign in a round."""
MAX_NUMBERED_PARAGRAPHS = 5_000
"""Numbered paragraphs: a national strategy has a few thousand paragraphs, and each is a comment anchor."""
MAX_LINES = 30_000
"""Lines: each block of the draft (a paragraph, a heading, a list item, a table row) takes one at least, and
the parse costs time for each block. A long strategy has a few thousand, hard-wrapped text several times
more."""
MAX_MARKUP_CHARACTERS = 100_000
"""Line breaks and the punctuation at which markdown-it stops to try its rules (* _ [ ] \\ - : and so on):
the parse costs time for each one, far more than for plain text. A long strategy has a fraction of this."""

# Lines that could begin a section, or a numbered paragraph (its number possibly behind emphasis, a link
# or a character reference): at least as many as there are, and counted without parsing.
_SECTION_LINE = re.compile(r"^ {0,3}##(?:[ \t]|$)", re.MULTILINE)
_NUMBERED_LINE = re.compile(
    r"^ {0,3}(?:[*_\[<]|&#[0-9]{1,7};|&#[xX][0-9a-fA-F]{1,6};)*(?:[0-9]|&#)", re.MULTILINE
)
_MARKUP = re.compile(r"[\n!#$%&*+\-:<=>@\[\\\]^_`{}~]")  # markdown-it's inline terminator characters

SECTION_NUMBER = re.compile(
    r"""^(?P<number>
          (?:annex|appendix|schedule)\s+[0-9a-z]{1,6}
        | \d{1,3}(?:\.\d{1,3})*
        | (?-i:[IVXLC]{1,7})(?=\.)
        )
        [.:)]?
        (?:\s+(?:[-\u2013\u2014]\s+)?(?P<heading>.*))?$""",
    re.IGNORECASE | re.VERBOSE,
)
PARAGRAPH_NUMBER = re.compile(r"^(?P<number>\d+(?:\.\d+)+)\.?(?=\s|$)")


@dataclass(frozen=True)
class ParsedSection:
    number: str
    heading: str
    text: str
    sha256: str
    paragraphs: list[str]


@dataclass(frozen=True)
class ParsedDraft:
    title: str
    preamble: str
    sections: list[ParsedSection]


def markdown_parser() -> MarkdownIt:
    """CommonMark with tables. Raw HTML is not interpreted: a signer must see every character they sign."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


_PARSER = markdown_parser()


def normalise_text(text: str) -> str:
    return re.sub(r"\r\n?", "\n", text.removeprefix("\ufeff"))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def visible_prefix(inline: Token) -> str:
    """The paragraph's leading plain text, emphasis markers left out, up to the first code span or image."""
    parts = []
    for child in inline.children or []:
        if child.type == "text":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.nesting == 0:
            break
    return "".join(parts)


def paragraph_number(inline: Token) -> tuple[str, int] | None:
    """The paragraph's number and how many visible characters it takes up, if it is numbered."""
    match = PARAGRAPH_NUMBER.match(visible_prefix(inline))
    if match is None:
        return None
    return match.group("number"), match.end()


def plain_text(inline: Token) -> str:
    return "".join(
        child.content if child.type in ("text", "code_inline") else " "
        for child in inline.children or []
        if child.type in ("text", "code_inline", "softbreak", "hardbreak")
    ).strip()


def split_heading(text: str, *, position: int) -> tuple[str, str]:
    """(number, heading) of a section heading; see the module docstring for the rule."""
    match = SECTION_NUMBER.match(text)
    if match is None:
        return str(position), text
    number = " ".join(match.group("number").split())
    return number, (match.group("heading") or "").strip()


def is_section_heading(token: Token) -> bool:
    return token.type == "heading_open" and token.tag == "h2" and token.markup == "##" and token.level == 0


def is_title_heading(token: Token) -> bool:
    return token.type == "heading_open" and token.tag == "h1" and token.markup == "#" and token.level == 0


def parse_markdown(text: str) -> ParsedDraft:
    """Split a draft into title, preamble and sections. Raises InvalidInput when it cannot be used."""
    source = normalise_text(text)
    _check_limits(source)
    lines = source.split("\n")
    tokens = _PARSER.parse(source)

    heading_indexes = [index for index, token in enumerate(tokens) if is_section_heading(token)]
    if not heading_indexes:
        raise InvalidInput(
            "The draft has no sections: start each section with a '## ' heading, e.g. '## 1. Purpose'."
        )
    first_section_line = _start_line(tokens[heading_indexes[0]])

    title, title_lines = _title(tokens[: heading_indexes[0]])
    preamble_lines = [
        line for number, line in enumerate(lines[:first_section_line]) if number not in title_lines
    ]
    preamble = "\n".join(preamble_lines).strip()

    sections = []
    boundaries = [*heading_indexes, len(tokens)]
    for position, (start, end) in enumerate(pairwise(boundaries), start=1):
        section_tokens = tokens[start:end]
        first_line = _start_line(section_tokens[0])
        last_line = _start_line(tokens[end]) if end < len(tokens) else len(lines)
        section_text = "\n".join(lines[first_line:last_line]).rstrip()
        number, heading = split_heading(plain_text(section_tokens[1]), position=position)
        sections.append(
            ParsedSection(
                number=number,
                heading=heading,
                text=section_text,
                sha256=sha256_hex(section_text),
                paragraphs=_paragraph_numbers(section_tokens),
            )
        )
    _check(sections)
    return ParsedDraft(title=title, preamble=preamble, sections=sections)


def _check_limits(source: str) -> None:
    """Refuse a draft beyond the limits above, before parsing it; every count stops at its limit."""
    if len(source) > MAX_CHARACTERS:
        raise PayloadTooLarge(
            f"The draft is longer than {MAX_CHARACTERS:,} characters: split it into several documents."
        )
    if _more_than(MAX_SECTIONS, _SECTION_LINE.finditer(source)):
        raise InvalidInput(
            f"The draft has more than {MAX_SECTIONS:,} sections ('## ' headings): split it into several "
            "documents."
        )
    if _more_than(MAX_NUMBERED_PARAGRAPHS, _NUMBERED_LINE.finditer(source)):
        raise InvalidInput(
            f"The draft has more than {MAX_NUMBERED_PARAGRAPHS:,} numbered paragraphs: split it into "
            "several documents."
        )
    if source.count("\n") >= MAX_LINES:
        raise InvalidInput(f"The draft has more than {MAX_LINES:,} lines: split it into several documents.")
    if _more_than(MAX_MARKUP_CHARACTERS, _MARKUP.finditer(source)):
        raise InvalidInput(
            f"The draft has more than {MAX_MARKUP_CHARACTERS:,} line breaks and markup characters "
            "(such as * _ [ ] \\ - :), more than a draft needs: split it into several documents."
        )


def _more_than(limit: int, items: Iterator[object]) -> bool:
    """Whether `items` holds more than `limit` of them, reading no further than that."""
    return next(islice(items, limit, None), None) is not None


def _start_line(token: Token) -> int:
    assert token.map is not None, "block tokens carry their source lines"
    return token.map[0]


def _title(tokens: list[Token]) -> tuple[str, set[int]]:
    for index, token in enumerate(tokens):
        if is_title_heading(token):
            assert token.map is not None
            return plain_text(tokens[index + 1]), set(range(*token.map))
    return "", set()


def _paragraph_numbers(tokens: list[Token]) -> list[str]:
    numbers = []
    for index, token in enumerate(tokens):
        if token.type == "paragraph_open" and token.level == 0:
            found = paragraph_number(tokens[index + 1])
            if found is not None:
                numbers.append(found[0])
    return numbers


def _check(sections: list[ParsedSection]) -> None:
    problems = []
    seen_sections: dict[str, ParsedSection] = {}
    for section in sections:
        label = f"section '{section.number}' ({section.heading or 'no heading'})"
        if len(section.number) > MAX_SECTION_NUMBER_LENGTH:
            problems.append(f"{label}: the number is longer than {MAX_SECTION_NUMBER_LENGTH} characters")
        if len(section.heading) > MAX_HEADING_LENGTH:
            problems.append(f"{label}: the heading is longer than {MAX_HEADING_LENGTH} characters")
        earlier = seen_sections.get(section.number)
        if earlier is not None:
            problems.append(
                f"section number {section.number} is used twice ('{earlier.heading}' and "
                f"'{section.heading}'); a heading without a number is numbered by its position, "
                "so number every '## ' heading or none"
            )
        seen_sections.setdefault(section.number, section)

    seen_paragraphs: dict[str, str] = {}
    for section in sections:
        for paragraph in section.paragraphs:
            earlier_section = seen_paragraphs.get(paragraph)
            if earlier_section is not None:
                where = (
                    f"section {section.number}"
                    if earlier_section == section.number
                    else f"sections {earlier_section} and {section.number}"
                )
                problems.append(
                    f"paragraph number {paragraph} appears twice ({where}); "
                    "paragraph numbers must be unique so comments can refer to them"
                )
            seen_paragraphs.setdefault(paragraph, section.number)
    if problems:
        raise InvalidInput("The draft cannot be used: " + "; ".join(problems), problems=problems)
