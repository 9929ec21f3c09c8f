"""What the review page's template would otherwise work out again and again on every render.

The page is the busiest one there is, and Jinja is slow at loops and filters: filtering all comments once
per section, and looping over the same `<option>`s in every comment form, were most of its rendering
time. Here they are done once per render in Python, or once per process where nothing in them changes.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from models.enums import CommentKind, CommentStatus, CommentWeight
from services.comments import CommentView
from services.documents import SectionView
from services.web import i18n
from services.web.i18n import N_


@dataclass(frozen=True)
class CommentFields:
    """What a comment form's fields show: nothing yet, a comment to edit (a CommentView has the same
    attributes), or what was typed into a form that was refused. Attributes, not a dict's .get(): the
    template reads them for every comment form, and a method call costs Jinja several times more."""

    paragraph: str | None = None
    kind: str = "general"
    weight: str = "remark"
    body: str = ""
    proposed_wording: str | None = None

    @classmethod
    def typed(cls, form: Mapping[str, Any]) -> CommentFields:
        return cls(
            paragraph=form.get("paragraph"),
            kind=form.get("kind", "general"),
            weight=form.get("weight", "remark"),
            body=form.get("body", ""),
            proposed_wording=form.get("proposed_wording"),
        )


BLANK = CommentFields()


_OPTION = Markup('\n        <option value="{}" {}>{}</option>')
"""One `<option>` on its own line, indented as in the template, so that the page stays as it was."""


def _options(choices: Iterable[tuple[str, str]], selected: str | None) -> Markup:
    return Markup().join(
        _OPTION.format(value, "selected" if value == selected else "", text) for value, text in choices
    )


_KINDS = (
    (str(CommentKind.general), N_("General")),
    (str(CommentKind.editorial), N_("Editorial")),
    (str(CommentKind.substantive), N_("Substantive")),
    (str(CommentKind.legal), N_("Legal")),
)
_KIND_VALUES = frozenset(value for value, _ in _KINDS)


@functools.cache
def _kind_options(selected: str | None, language: str) -> Markup:
    words = i18n.translator(language)
    return _options(((value, words(text)) for value, text in _KINDS), selected)


def kind_options(selected: str | None, language: str = i18n.SOURCE_LANGUAGE) -> Markup:
    """The comment type's `<option>`s, with what the form held selected."""
    return _kind_options(selected if selected in _KIND_VALUES else None, language)


_WEIGHTS = (
    (str(CommentWeight.remark), N_("Remark")),
    (str(CommentWeight.proposal), N_("Proposal")),
    (str(CommentWeight.objection), N_("Objection: we cannot agree unless it is resolved")),
)
_WEIGHT_VALUES = frozenset(value for value, _ in _WEIGHTS)


@functools.cache
def _weight_options(selected: str | None, language: str) -> Markup:
    words = i18n.translator(language)
    return _options(((value, words(text)) for value, text in _WEIGHTS), selected)


def weight_options(selected: str | None, language: str = i18n.SOURCE_LANGUAGE) -> Markup:
    """The comment weight's `<option>`s, with what the form held selected."""
    return _weight_options(selected if selected in _WEIGHT_VALUES else None, language)


LABELS = (
    # ReviewState, as the page's status badge shows it
    N_("open"),
    N_("signed off"),
    N_("deadline passed"),
    N_("closed"),
    # ContactRole
    N_("focal point"),
    N_("alternate"),
    N_("delegate"),
    # CommentKind and CommentWeight, as a comment's tags show them
    N_("general"),
    N_("editorial"),
    N_("substantive"),
    N_("legal"),
    N_("proposal"),
    N_("objection"),
    # Decision, as the receipt shows it
    N_("approve"),
    N_("approve with comments"),
    N_("object"),
    N_("no opinion"),
)
"""The values the review page shows through its `label` filter (an enum's value as words), for the
catalogs."""


# Bounded: the drafts a long-running process serves keep changing.
@functools.lru_cache(maxsize=2048)
def _paragraph_options(paragraphs: tuple[str, ...], selected: str | None) -> Markup:
    return _options(((number, number) for number in paragraphs), selected)


def paragraph_options(section: SectionView, selected: str | None) -> Markup:
    """The section's paragraphs as `<option>`s, with what the form held selected."""
    # Anything typed that is not one of them selects nothing, and must not grow the cache.
    return _paragraph_options(section.paragraphs, selected if selected in section.paragraphs else None)


def comments_by_section(
    sections: Iterable[SectionView], comments: Iterable[CommentView]
) -> dict[int, list[CommentView]]:
    """Each section's comments, in the page's order; every section listed, with none or more."""
    grouped: dict[int, list[CommentView]] = {section.id: [] for section in sections}
    for comment in comments:
        if comment.section_id in grouped:
            grouped[comment.section_id].append(comment)
    return grouped


def active_counts(grouped: dict[int, list[CommentView]]) -> dict[int, int]:
    return {
        section_id: sum(comment.status == CommentStatus.active for comment in comments)
        for section_id, comments in grouped.items()
    }


new_submission_id: Callable[[], str] = functools.partial(secrets.token_hex, 16)
"""A form's submission id: 32 hex digits from the system's random source, as uuid4().hex gave, for less
(the page makes one per form, and uuid4 showed in its profile)."""
