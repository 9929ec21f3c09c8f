"""Babel's extractor for the Python modules whose refusals people read on the review page.

Their error messages stay in English where they are raised, and are translated where they are shown
(the page looks each up in its catalog). This extractor gives Babel, besides the usual `_()`/`N_()`
marks, the first argument of every call of a DomainError class that is written as plain text: a literal,
or a module-level constant holding one. A message made with an f-string is not extracted: it cannot be
looked up, and shows in English.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator, Mapping
from io import BytesIO
from typing import IO, Any

from babel.messages.extract import extract_python

ERROR_CLASSES = frozenset(
    {
        "DomainError",
        "InvalidInput",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "Conflict",
        "Gone",
        "TooManyRequests",
        "PayloadTooLarge",
        "ServiceUnavailable",
        "CsrfFailed",
    }
)
"""services.errors' classes, and the web layer's own (csrf.CsrfFailed); a test holds this to them."""

Extracted = tuple[Any, ...]
"""(line, function, message, comments), as Babel takes them."""


def _called(node: ast.Call) -> str:
    function = node.func
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return ""


def domain_errors(source: bytes) -> Iterator[tuple[int, str]]:
    """(line, message) of each DomainError made with a message written as plain text."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _called(node) in ERROR_CLASSES and node.args):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value
        elif isinstance(first, ast.Name) and first.id in constants:
            yield node.lineno, constants[first.id]


def messages_and_errors(
    fileobj: IO[bytes], keywords: Mapping[str, Any], comment_tags: Collection[str], options: Any
) -> Iterator[Extracted]:
    """Babel's Python extraction, plus the module's DomainError messages."""
    source = fileobj.read()
    yield from extract_python(BytesIO(source), keywords, comment_tags, options)
    for line, message in domain_errors(source):
        yield line, "_", message, []
