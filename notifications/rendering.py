"""Turns a message kind, a language and a context into the subject, text and HTML of one email.

Templates live in ``templates/<kind>/<language>.{subject,txt,html}.j2``: every kind is written in each
language, subject line included, with the same context (tests/web/test_i18n.py holds them to it). The
language is the recipient's: an organisation's contacts get theirs; the coordinator's messages go in
English, the console's language. A template missing in a language falls back to ``en``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from models.enums import Language, MessageKind

TEMPLATES_DIR = Path(__file__).with_name("templates")
FALLBACK_LANGUAGE = Language.en

# A context value outside these sets would render a sentence that says something false, so it is refused
# before rendering rather than shown to a recipient.
_CHOICES: dict[MessageKind, dict[str, frozenset[str]]] = {
    MessageKind.invitation: {"contact_role": frozenset({"focal_point", "alternate"})},
    MessageKind.round_closed: {"reason": frozenset({"all_signed_off", "deadline", "coordinator"})},
}
_URL_KEYS: dict[MessageKind, tuple[str, ...]] = {
    MessageKind.invitation: ("link_url",),
    MessageKind.round_closed: ("round_url",),
    MessageKind.escalation_summary: ("round_url",),
    MessageKind.deadline_extended: ("link_url",),
    MessageKind.extension_requested: ("round_url",),
    MessageKind.extension_refused: ("link_url",),
    MessageKind.handover: ("link_url",),
}
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        # Only the HTML part is markup; escaping the text part would show "&amp;" to the reader.
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Templates ship with the code; checking their mtimes on every one of 10,000 renders buys nothing.
        auto_reload=False,
    )


@cache
def _template(kind: MessageKind, language: Language, part: str) -> Template:
    names = [f"{kind.value}/{language.value}.{part}.j2", f"{kind.value}/{FALLBACK_LANGUAGE.value}.{part}.j2"]
    return _environment().select_template(names)


def _check_context(kind: MessageKind, context: Mapping[str, object]) -> None:
    for key, allowed in _CHOICES.get(kind, {}).items():
        if key in context and context[key] not in allowed:
            raise ValueError(f"{kind.value}: {key}={context[key]!r} is not one of {sorted(allowed)}")
    for key in _URL_KEYS.get(kind, ()):
        value = context.get(key)
        if isinstance(value, str) and not value.startswith(("https://", "http://")):
            raise ValueError(f"{kind.value}: {key} must be an http(s) URL, got {value!r}")


def render_email(
    kind: MessageKind | str, language: Language | str, context: Mapping[str, object]
) -> RenderedEmail:
    """Render one email; a context key the templates use but the caller left out raises UndefinedError."""
    kind = MessageKind(kind)
    language = Language(language)
    _check_context(kind, context)
    values = dict(context)
    subject = _template(kind, language, "subject").render(values)
    return RenderedEmail(
        # A header is one line: a newline from a template or a value must not reach it.
        subject=_WHITESPACE.sub(" ", subject).strip(),
        text=_template(kind, language, "txt").render(values).strip() + "\n",
        html=_template(kind, language, "html").render(values),
    )
