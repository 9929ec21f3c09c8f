"""Uploaded bytes as text, with the line of the first bad byte when they are not UTF-8."""

from __future__ import annotations

from services.errors import InvalidInput


def decode_utf8(content: bytes, *, what: str, hint: str) -> str:
    """UTF-8 (a leading BOM dropped) or an InvalidInput naming `what`, the bad line and how to fix it."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise InvalidInput(f"{what} is not UTF-8 text (first bad byte on line {line}); {hint}.") from exc
