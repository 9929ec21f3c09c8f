"""Lists the pages' texts that a catalog lacks: `python -m services.web.locale.check [language ...]`.

It extracts every text marked for translation, as `make messages` does (babel.cfg: the templates' `_()`
and `{% trans %}`, Python's `_()`/`N_()`, the review page's services' refusals), and compares them with
each catalog (Albanian by default): a text missing from it, or whose translation is empty or fuzzy (a
guess `pybabel update` made, which nobody has checked), or whose translation drops or adds a
placeholder (`%(name)s`, `{name}`), or adds markup or a double quote, is listed with where it is used.
Exit status 1 if any is.

A new text, in a template or in Python, reaches the catalogs with `make messages` (it extracts and
updates `messages.pot` and every `messages.po`, the new texts with empty translations); write the
Albanian in `sq/LC_MESSAGES/messages.po` (an English catalog's empty translations mean: as written),
and this lists what is still missing. tests/web/test_i18n.py fails while anything is.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from services.web.i18n import DOMAIN, catalog_path

REPO = Path(__file__).resolve().parents[3]
MAPPING = REPO / "babel.cfg"
MessageId = str | tuple[str, ...]
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


@dataclass(frozen=True)
class Missing:
    msgid: MessageId
    where: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        text = " | ".join(self.msgid) if isinstance(self.msgid, tuple) else self.msgid
        return f"{self.why}: {text!r}  ({', '.join(self.where)})"


def extracted() -> dict[MessageId, list[str]]:
    """Every text marked for translation, with the files and lines that use it."""
    with MAPPING.open(encoding="utf-8") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping, str(MAPPING))
    found: dict[MessageId, list[str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        if not message or (isinstance(message, tuple) and not message[0]):
            continue
        msgid: MessageId = tuple(part or "" for part in message) if isinstance(message, tuple) else message
        found.setdefault(msgid, []).append(f"{filename}:{line}")
    return found


def catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as source:
        return read_po(source, locale=language, domain=DOMAIN)


def _placeholders(text: str) -> set[str]:
    return {name for match in _PLACEHOLDER.finditer(text) for name in match.groups() if name}


def _markup(texts: list[str]) -> set[str]:
    return {character for text in texts for character in '<>"' if character in text}


def missing(language: str = "sq") -> list[Missing]:
    """The texts the language's catalog lacks, or translates badly, in the order they are used."""
    known = catalog(language)
    problems = []
    for msgid, where in extracted().items():
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        entry = known.get(key)
        place = tuple(where[:3]) + (("…",) if len(where) > 3 else ())
        if entry is None:
            problems.append(Missing(msgid, place, "not in the catalog"))
            continue
        given = entry.string if isinstance(entry.string, tuple | list) else (entry.string,)
        strings = [text or "" for text in given]
        if entry.fuzzy:
            problems.append(Missing(msgid, place, "fuzzy (check it, then remove the fuzzy flag)"))
        elif not all(strings):
            problems.append(Missing(msgid, place, "not translated"))
        else:
            wanted = _placeholders(" ".join(msgid) if isinstance(msgid, tuple) else msgid)
            # A plural form may leave out the number (Albanian "one", "një"), never add a name.
            if any(_placeholders(text) - wanted for text in strings) or not any(
                _placeholders(text) == wanted for text in strings
            ):
                problems.append(Missing(msgid, place, "placeholders differ"))
            elif _markup(strings) - _markup([" ".join(msgid) if isinstance(msgid, tuple) else msgid]):
                # A template's _() marks its text safe: a quote would end an attribute, a tag would be live.
                problems.append(
                    Missing(msgid, place, 'the translation adds <, > or " that the English lacks')
                )
    return problems


def main(argv: list[str]) -> int:
    languages = argv or ["sq"]
    failed = False
    for language in languages:
        problems = missing(language)
        for problem in problems:
            sys.stdout.write(f"{language}: {problem}\n")
        sys.stdout.write(f"{language}: {len(problems)} text(s) to translate\n")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
