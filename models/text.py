"""What typed text may hold: one-line fields (names, titles, addresses) take no control character, no line
break and no hidden direction character; text of several lines (comments, reasons, messages) takes line
breaks and tabs, and no other control character.

Why: a name with a line break breaks the email headers it ends up in (an organisation imported with one
was never invited), and a direction control (U+202E and its kin) makes text display in another order
than it is stored, so a name or a title could show one thing and say another. Comments are different:
they are kept exactly as typed, direction controls included, and every display shows those controls as
visible markers (`visible_bidi`) instead of obeying them.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, overrides and their pop
    "\u2066\u2067\u2068\u2069"  # isolates and their pop
    "\u200e\u200f\u061c"  # the left-to-right, right-to-left and Arabic letter marks
)
_BIDI = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
"""What ends a line for someone: str.splitlines' breaks (the file separators aside, which are controls)."""
MULTI_LINE_ALLOWED = frozenset("\n\r\t")


def code_point(character: str) -> str:
    return f"U+{ord(character):04X}"


def has_bidi_controls(text: str | None) -> bool:
    return bool(text) and _BIDI.search(text or "") is not None


def visible_bidi(text: str) -> str:
    """The text with each direction control replaced by a visible marker (⟦U+202E⟧), which does nothing."""
    return _BIDI.sub(lambda match: f"⟦{code_point(match.group())}⟧", text)


def _is_control(character: str) -> bool:
    return unicodedata.category(character) == "Cc"


def line_problem(value: str) -> PydanticCustomError | None:
    """Why `value` cannot be a one-line field, or None."""
    for character in value:
        if character in LINE_BREAKS:
            return PydanticCustomError(
                "line_break",
                "contains a line break ({character}); this field is a single line",
                {"character": code_point(character)},
            )
        if _is_control(character):
            return PydanticCustomError(
                "control_character",
                "contains the control character {character}, which cannot be shown; remove it",
                {"character": code_point(character)},
            )
        if character in BIDI_CONTROLS:
            return PydanticCustomError(
                "bidi_control",
                "contains the hidden direction character {character}, which can make the text display "
                "in another order than it is written; remove it",
                {"character": code_point(character)},
            )
    return None


def text_problem(value: str) -> PydanticCustomError | None:
    """Why `value` cannot be a field of several lines (line breaks, tabs and direction controls are
    kept), or None."""
    for character in value:
        if _is_control(character) and character not in MULTI_LINE_ALLOWED:
            return PydanticCustomError(
                "control_character",
                "contains the control character {character}, which cannot be shown; remove it",
                {"character": code_point(character)},
            )
    return None


def _check_line(value: str) -> str:
    problem = line_problem(value)
    if problem is not None:
        raise problem
    return value


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise problem
    return value


OneLine = Annotated[str, AfterValidator(_check_line)]
"""A name, a title, a position: one line of visible characters."""
Text = Annotated[str, AfterValidator(_check_text)]
"""A comment, a reason, a message: lines of text, stored as typed."""
