"""The pages' languages: the gettext catalogs, which language a request gets, and what templates call.

The words of the pages are English in the source (`_("...")`, `{% trans %}` in templates, `N_("...")`
in Python) and translated by the catalogs under `locale/<language>/LC_MESSAGES/messages.po`, read and
compiled when first needed (no build step: the `.po` files are the catalogs). `make messages` extracts
the words again and updates the catalogs; `python -m services.web.locale.check` lists what has no
Albanian yet, and a test fails while anything is missing.

A request's language: the one a switch link asked for (`?lang=sq`, then kept in a cookie), else the
cookie's, else the page's own (a review page: its organisation's language; the console: English), else
what the browser prefers among ours. One place applies it (`Templates.TemplateResponse`): every page
is rendered with `lang` in its context, by the Jinja environment of its language, whose templates are
compiled with that language's words in them (`Translated`: the texts cost a render nothing); what is
only known at render time (a plural, a text with values, a notice or refusal decided in Python) reads
the language of the render, never one translation installed for all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, Template, nodes
from jinja2.ext import InternationalizationExtension
from jinja2.lexer import Token, TokenStream
from markupsafe import Markup
from starlette.background import BackgroundTask
from starlette.templating import _TemplateResponse

LANGUAGES = ("en", "sq")
"""The languages of the catalogs; English is the source language."""
SOURCE_LANGUAGE = "en"
NAMES = {"en": "English", "sq": "Shqip"}
"""Each language by its own name, as the switch shows it."""
COOKIE = "rt_lang"
QUERY = "lang"
COOKIE_MAX_AGE = int(timedelta(days=365).total_seconds())
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"


def N_(message: str) -> str:
    """Marks an English text for the catalogs where it is defined; it is translated where it is shown."""
    return message


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(language: str) -> Translations:
    """The language's catalog, compiled in memory from its `.po` file once per process (fuzzy entries,
    guesses that nobody checked, and empty ones are left out: their English shows)."""
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


_rendering: ContextVar[str] = ContextVar("page_language", default=SOURCE_LANGUAGE)


def template_gettext(language: str, message: str, /, **variables: Any) -> Markup:
    """The templates' `_()` and `gettext()` where a text is not written out (`_(name)`) or takes values
    (`_("Round %(id)s", id=...)`): as Jinja's "newstyle" gettext has them (the translation marked safe,
    then formatted with `%` and the values, which are escaped). `install` binds the language."""
    return Markup(translations(language).gettext(message)) % variables  # noqa: S704 (our catalog; check.py)


def template_ngettext(language: str, singular: str, plural: str, num: int, /, **variables: Any) -> Markup:
    variables.setdefault("num", num)
    return Markup(translations(language).ngettext(singular, plural, num)) % variables  # noqa: S704


class Translated(InternationalizationExtension):
    """Jinja's i18n extension, translating at compile time: each language has its environment (`install`)
    whose templates are compiled with its words in them, so that `_("Save comment")` and a `{% trans %}`
    block without a plural cost a page nothing (the review page has a hundred of them). What can only be
    known at render time, `_()` of a name, a text with values, a plural, goes to `template_gettext` and
    `template_ngettext` of the environment's language; either way the words are those of the catalog."""

    def _words(self) -> Translations:
        return translations(getattr(self.environment, "page_language", SOURCE_LANGUAGE))

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        """`_("text")` and `gettext("text")`, the text written out and nothing else passed: the
        translation as a string literal marked safe, which Jinja writes into the compiled template."""
        tokens = list(stream)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            folded = (
                self._fold(tokens, index)
                if token.type == "name" and token.value in ("_", "gettext")
                else None
            )
            if folded is None:
                yield token
                index += 1
            else:
                # `"translation"|safe`: marked safe, as the newstyle `_()` marks it; Jinja folds it.
                text, index = folded
                yield Token(token.lineno, "string", text)
                yield Token(token.lineno, "pipe", "|")
                yield Token(token.lineno, "name", "safe")

    def _fold(self, tokens: list[Token], index: int) -> tuple[str, int] | None:
        if index and tokens[index - 1].type == "dot":
            return None
        position = index + 1
        if position >= len(tokens) or tokens[position].type != "lparen":
            return None
        parts = []
        position += 1
        while position < len(tokens) and tokens[position].type == "string":
            parts.append(tokens[position].value)
            position += 1
        if not parts or position >= len(tokens) or tokens[position].type != "rparen":
            return None
        try:
            lookup = self._words().gettext
            text = lookup("".join(parts)) % {}  # newstyle: "%%" is a "%"
        except (TypeError, ValueError, KeyError):
            return None
        return text, position + 1

    def _make_node(
        self,
        singular: str,
        plural: str | None,
        context: str | None,
        variables: dict[str, nodes.Expr],
        plural_expr: nodes.Expr | None,
        vars_referenced: bool,
        num_called_num: bool,
    ) -> nodes.Output:
        if plural_expr is not None or context is not None:
            return super()._make_node(
                singular, plural, context, variables, plural_expr, vars_referenced, num_called_num
            )
        translation = self._words().gettext(singular)
        if not variables:  # newstyle: the text is formatted all the same ("%%" is a "%")
            return nodes.Output([nodes.MarkSafeIfAutoescape(nodes.Const(translation % {}))])
        values = nodes.Dict([nodes.Pair(nodes.Const(name), value) for name, value in variables.items()])
        # The translation marked safe (our catalog's), then the values put in: Markup escapes them.
        return nodes.Output([nodes.Mod(nodes.MarkSafeIfAutoescape(nodes.Const(translation)), values)])


def install(environment: Environment, language: str) -> None:
    """Makes `environment` the one of `language`'s pages (its templates compiled with its words), with
    `_`, `gettext` and `ngettext` for what is translated at render time. Add `Translated` to its
    extensions."""
    environment.extend(page_language=language)
    words = functools.partial(template_gettext, language)
    plurals = functools.partial(template_ngettext, language)
    environment.install_gettext_callables(words, plurals, newstyle=True)  # type: ignore[attr-defined]
    # Called as they are (Jinja's newstyle wrappers would add two context calls to each).
    environment.globals.update(_=words, gettext=words, ngettext=plurals)
    environment.policies["ext.i18n.trimmed"] = True  # a {% trans %} block's line breaks are not its words
    environment.filters["tr"] = functools.partial(translated, language)
    environment.filters["number"] = functools.partial(number, language)


def translator(language: str) -> Callable[[str], str]:
    """`gettext` of one language, for the words a page puts together in Python before it renders."""
    return translations(language if language in LANGUAGES else SOURCE_LANGUAGE).gettext


def translated(language: str, text: Any) -> str:
    """An English text decided at run time (a notice, a service's refusal, a label) in the language when
    the catalogs have it, as it is otherwise: the templates' `tr` filter. Plain text, escaped like any
    other value, unlike the templates' `_()`, which marks its result safe and formats it with `%`."""
    if not text:
        return ""
    return translations(language).gettext(str(text))


def number(language: str, value: int | float) -> str:
    """A number as the language writes it (1,250 in English; 1 250 in Albanian): the `number` filter."""
    return format_decimal(value, locale=language)


def asked(request: Request) -> str | None:
    """The language the person chose: by a switch link now, else earlier (the cookie)."""
    for value in (request.query_params.get(QUERY), request.cookies.get(COOKIE)):
        if value in LANGUAGES:
            return value
    return None


def _preferred(request: Request) -> str | None:
    """The first of our languages in the browser's Accept-Language, by its weights."""
    choices = []
    for position, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, parameters = part.strip().partition(";")
        weight = 1.0
        if parameters.strip().startswith("q="):
            try:
                weight = float(parameters.strip()[2:])
            except ValueError:
                continue
        language = tag.strip().lower().split("-")[0]
        if language in LANGUAGES and weight > 0:
            choices.append((-weight, position, language))
    return min(choices)[2] if choices else None


def language_of(request: Request, default: str | None = None) -> str:
    """The language a page is shown in: the person's choice, else the page's `default`, else the
    browser's preference, else English."""
    return asked(request) or (default if default in LANGUAGES else None) or _preferred(request) or "en"


def switch_links(request: Request, page_path: str | None) -> list[tuple[str, str, str]]:
    """(language, its name, the address of this page in it) for the switch in the page's header. A GET
    keeps its address and query; the page a refused form shows again (a POST) goes to `page_path`, the
    page the form is on, or offers no switch when it has none."""
    if request.method in ("GET", "HEAD"):
        query = request.scope.get("query_string", b"").decode("latin-1")
        if QUERY in request.query_params:
            kept = [(name, value) for name, value in request.query_params.multi_items() if name != QUERY]
            query = urlencode(kept)
        start = f"{request.url.path}?{query}&" if query else f"{request.url.path}?"
    elif page_path:
        start = f"{page_path}?"
    else:
        return []
    return [(code, NAMES[code], f"{start}{QUERY}={code}") for code in LANGUAGES]


class Templates(Jinja2Templates):
    """Renders every page in its request's language: `lang` in the context (or the page's `lang`, or its
    `default_language`), the gettext functions reading it, the switch's links, and the cookie that
    keeps a language chosen by a switch link."""

    def __init__(self, *, environments: Mapping[str, Environment], secure_cookies: bool) -> None:
        super().__init__(env=environments[SOURCE_LANGUAGE])
        self.environments = dict(environments)
        for environment in self.environments.values():
            self._setup_env_defaults(environment)  # url_for, as Starlette gives its one environment
        self.secure_cookies = secure_cookies

    def get_template(self, name: str) -> Template:
        """The template as the language of the render has it."""
        return self.environments[_rendering.get()].get_template(name)

    def TemplateResponse(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> _TemplateResponse:
        values = dict(context or {})
        language = values.get("lang")
        if language not in LANGUAGES:
            language = language_of(request, values.get("default_language"))
        values["lang"] = language
        values.setdefault("language_links", switch_links(request, values.get("page_path")))
        rendering = _rendering.set(language)
        try:
            response = super().TemplateResponse(
                request,
                name,
                values,
                status_code=status_code,
                headers=headers,
                media_type=media_type,
                background=background,
            )
        finally:
            _rendering.reset(rendering)
        response.headers["Content-Language"] = language
        chosen = request.query_params.get(QUERY)
        if chosen in LANGUAGES and request.cookies.get(COOKIE) != chosen:
            response.set_cookie(
                COOKIE,
                chosen,
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                samesite="lax",
                secure=self.secure_cookies,
                path="/",
            )
        return response
