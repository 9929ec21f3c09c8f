"""Hostile registry files (CSV and XLSX): each is refused with a clear message, within a second and in
bounded memory, before openpyxl opens a workbook. The files are built here, in memory."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from collections.abc import Callable

import openpyxl
import pytest

from services import registry_import
from services.errors import DomainError, InvalidInput, PayloadTooLarge
from tests.services.test_hostile_drafts import MIB, Entry, handmade_zip

# Timing bounds: run alone, after the parallel suite (see the Makefile).
pytestmark = pytest.mark.serial

REFUSED_WITHIN_SECONDS = 1.0
REFUSED_WITHIN_BYTES = 64 * MIB
"""Python allocations while refusing, the upload itself not counted: a worksheet's part may be 40 MB
unpacked, and is unpacked once to be checked."""
HEADER = ["key", "name_en", "kind", "focal_point_email"]
SHEET = "xl/worksheets/sheet1.xml"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def workbook_parts() -> dict[str, bytes]:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def workbook_with(sheet_xml: bytes, *, prolog: str = "") -> bytes:
    parts = {**workbook_parts(), SHEET: sheet_xml}
    if prolog:
        parts[SHEET] = b'<?xml version="1.0" encoding="UTF-8"?>' + prolog.encode() + sheet_xml
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sheet_of(rows: str) -> bytes:
    return f'<worksheet xmlns="{MAIN}"><sheetData>{rows}</sheetData></worksheet>'.encode()


def laughs(levels: int = 10) -> str:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, levels)]
    return f"<!DOCTYPE worksheet [{''.join(entities)}]>"


def _row(number: int, value: str) -> str:
    return f'<row r="{number}"><c r="A{number}" t="inlineStr"><is><t>{value}</t></is></c></row>'


HOSTILE: dict[str, tuple[str, Callable[[], bytes], type[DomainError], str]] = {
    # id: file name, how to build it, the refusal and its words
    "xxe": (
        "r.xlsx",
        lambda: workbook_with(
            sheet_of(_row(1, "&xxe;")),
            prolog='<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        ),
        InvalidInput,
        "declares a DTD",
    ),
    "laughs": (
        "r.xlsx",
        lambda: workbook_with(sheet_of(_row(1, "&lol9;")), prolog=laughs()),
        InvalidInput,
        "DTD",
    ),
    "zip-bomb": ("r.xlsx", lambda: handmade_zip([Entry(SHEET, b" " * (30 * MIB))]), InvalidInput, "zip bomb"),
    "entries": (
        "r.xlsx",
        lambda: handmade_zip(Entry(f"{n}", b"", deflate=False) for n in range(100_000)),
        InvalidInput,
        "more than 500 files",
    ),
    "2-MB-of-rows": (
        "r.xlsx",
        lambda: workbook_with(sheet_of("".join(f'<row r="{n}"/>' for n in range(1, 140_000)))),
        InvalidInput,
        "more than 51,000 rows",
    ),
    "cells": (
        "r.xlsx",
        lambda: workbook_with(
            sheet_of('<row r="1">' + "".join(f"<c><v>{n}</v></c>" for n in range(1_000_001)) + "</row>")
        ),
        InvalidInput,
        "more than 2,000,000 XML elements",
    ),
    "pdf-named-xlsx": ("r.xlsx", lambda: b"%PDF-1.7\n" + bytes(range(256)) * 100, InvalidInput, "A PDF"),
    "pdf": ("registry.pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", InvalidInput, "A PDF"),
    "csv-2-MB-cell": (
        "r.csv",
        lambda: (",".join(HEADER) + '\nm,"' + "\n" * (2 * MIB) + '",ministry,a@b.example.org\n').encode(),
        InvalidInput,
        "not valid CSV",
    ),
    "csv-2-MB-of-lines": (
        "r.csv",
        lambda: (",".join(HEADER) + "\n" * (2 * MIB)).encode(),
        PayloadTooLarge,
        "lines",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_registry_file_is_refused_within_a_second_in_bounded_memory(case: str) -> None:
    name, build, error, words = HOSTILE[case]
    content = build()
    assert len(content) <= registry_import.MAX_FILE_BYTES  # what the upload accepts

    started = time.perf_counter()
    with pytest.raises(error, match=words):
        registry_import.read_registry(content, name)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(error, match=words):
            registry_import.read_registry(content, name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < REFUSED_WITHIN_SECONDS, f"refused after {elapsed:.2f} s"
    assert peak < REFUSED_WITHIN_BYTES, f"refusing took {peak / MIB:.0f} MB"


def test_a_workbook_within_the_limits_still_reads() -> None:
    rows = "".join(
        f'<row r="{n}">'
        + "".join(f'<c r="{col}{n}" t="inlineStr"><is><t>{value}</t></is></c>' for col, value in cells)
        + "</row>"
        for n, cells in enumerate(
            [list(zip("ABCD", HEADER, strict=True))]
            + [
                list(zip("ABCD", [f"m{n}", f"Ministry {n}", "ministry", f"fp@m{n}.example.org"], strict=True))
                for n in range(2_000)
            ],
            start=1,
        )
    )
    read = registry_import.read_registry(workbook_with(sheet_of(rows)), "r.xlsx")
    assert (read.format, len(read.rows)) == ("xlsx", 2_000)
