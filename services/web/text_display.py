"""Text others typed, shown so that it cannot pass for something else: the templates' `isolated` filter.

A comment is kept exactly as its author typed it, hidden direction characters (U+202E and its kin)
included, because it is a record. Obeyed on a page, those characters would make a comment, a proposed
wording or a name display in another order than it is written ("approve" over a text that says
otherwise). So every such text is shown escaped, with each direction character replaced by a visible
marker (⟦U+202E⟧) and a badge saying that the text holds some; a text that holds any right-to-left
character is put inside `<bdi>` too, so that its direction cannot reach into what surrounds it (a text
of left-to-right characters only has no direction to leak, and is shown as it is).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from models.text import BIDI_CONTROLS, code_point, has_bidi_controls, visible_bidi
from services.web import i18n
from services.web.i18n import N_

# Letters of the right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko, ... and their presentation
# forms), whose direction an isolate must keep to the text itself.
_RIGHT_TO_LEFT = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]"
)

BADGE = N_("contains hidden direction characters")
BADGE_HINT = N_(
    "This text holds characters that change the direction in which it is displayed. They are shown as "
    "markers such as ⟦U+202E⟧ and have no effect here."
)


def isolated(language: str, text: Any) -> Markup:
    """`text` escaped inside `<bdi>`, its direction controls as visible markers, flagged by a badge."""
    if text is None or text == "":
        return Markup("")
    value = str(text)
    if not has_bidi_controls(value):
        if _RIGHT_TO_LEFT.search(value) is None:
            return escape(text)
        return Markup("<bdi>{}</bdi>").format(text)
    if isinstance(text, Markup):  # already safe for a page (JSON): Markup.replace keeps it so
        marked = text
        for control in BIDI_CONTROLS:
            marked = marked.replace(control, f"⟦{code_point(control)}⟧")
    else:
        marked = escape(visible_bidi(value))
    return Markup(
        '<bdi class="bidi-marked">{}</bdi> <span class="badge badge-bidi" title="{}">{}</span>'
    ).format(marked, i18n.translated(language, BADGE_HINT), i18n.translated(language, BADGE))


def install(environment: Environment, language: str) -> None:
    environment.filters["isolated"] = functools.partial(isolated, language)
