"""Hostile and absurd drafts: each is refused with a clear message, at once and in bounded memory, and a
draft just within the limits still imports. The files are built here, the way an attacker would."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docx
import pytest
from lxml import etree
from sqlmodel import func, select

from models.audit import Actor
from models.documents import Document, DocumentVersion, Section
from models.enums import ActorKind
from services import documents
from services.db import Database
from services.drafts import markdown as markdown_limits
from services.drafts import package as package_limits
from services.drafts import parse_docx, parse_markdown
from services.drafts.docx import MAX_TABLE_COLUMNS
from services.errors import DomainError, InvalidInput, PayloadTooLarge

# Timing bounds: run alone, after the parallel suite (see the Makefile).
pytestmark = pytest.mark.serial

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MIB = 1024 * 1024
REFUSED_WITHIN_SECONDS = 1.0
REFUSED_WITHIN_BYTES = 32 * MIB  # Python allocations while refusing, the upload itself not counted
FILLER = "The ministry reports to the committee on the progress of each measure once a year."
ACTOR = Actor(kind=ActorKind.system, id="test")


# --------------------------------------------------------------------------------------- building files


def empty_word_parts() -> dict[str, bytes]:
    """The parts of an empty document as python-docx (and so Word's template) writes them."""
    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture(scope="module")
def word_parts() -> dict[str, bytes]:
    return empty_word_parts()


def package(parts: dict[str, bytes], *, stored: bool = False, **replaced: bytes) -> bytes:
    """A .docx of these parts, some replaced (keyword `word_document` for word/document.xml, and so on);
    `stored`: not compressed, as a file too repetitive to pass for anything but a zip bomb must be."""
    names = {key.replace("word_", "word/", 1) + ".xml": value for key, value in replaced.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**parts, **names}.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def document_xml(*blocks: str, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n{prolog}'
        f'<w:document xmlns:w="{W}"><w:body>{"".join(blocks)}</w:body></w:document>'
    ).encode()


def heading(text: str) -> str:
    return f'<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{text}</w:t></w:r></w:p>'


def paragraph(text: str, *, properties: str = "", run_properties: str = "") -> str:
    return f'<w:p>{properties}<w:r>{run_properties}<w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def numbered_paragraphs(count: int, *, per_section: int = 50) -> list[str]:
    """`count` paragraphs in all, headings included, numbered as a strategy numbers them."""
    blocks: list[str] = []
    section = 0
    while len(blocks) < count:
        if len(blocks) % (per_section + 1) == 0:
            section += 1
            blocks.append(heading(f"{section}. Section {section}"))
        else:
            blocks.append(paragraph(f"{section}.{len(blocks) % (per_section + 1)} {FILLER}"))
    return blocks


@dataclass(frozen=True)
class Entry:
    """A zip entry written by hand, so that it can say what no zip library would write."""

    name: str
    data: bytes
    deflate: bool = True
    declared_size: int | None = None  # the unpacked size the directory claims
    flags: int = 0
    method: int | None = None


def handmade_zip(entries: Iterable[Entry]) -> bytes:
    out, directory, count = bytearray(), bytearray(), 0
    for entry in entries:
        name = entry.name.encode()
        packed = zlib.compress(entry.data)[2:-4] if entry.deflate else entry.data
        size = len(entry.data) if entry.declared_size is None else entry.declared_size
        crc = zlib.crc32(entry.data[:size])
        method = entry.method if entry.method is not None else (8 if entry.deflate else 0)
        fields = (20, entry.flags, method, 0, 0, crc, len(packed), size, len(name))
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, len(out))
        directory += name
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + name + packed
        count += 1
    listed = min(count, 0xFFFF)  # all the end record can say; zipfile reads the whole directory anyway
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, listed, listed, len(directory), len(out), 0)
    return bytes(out + directory + end)


def laughs(levels: int = 10) -> str:
    """The "billion laughs" entity declarations: each entity ten of the one before."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, levels)]
    return f"<!DOCTYPE w:document [{''.join(entities)}]>"


# --------------------------------------------------------------------------------------- measuring


def refused_quickly(
    parse: Callable[[bytes], object], content: bytes, error: type[DomainError], match: str
) -> DomainError:
    """Refused with `error` matching `match`, within the time and memory the service allows itself."""
    started = time.perf_counter()
    with pytest.raises(error, match=match) as caught:
        parse(content)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            parse(content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < REFUSED_WITHIN_SECONDS, f"refused after {elapsed:.2f} s"
    assert peak < REFUSED_WITHIN_BYTES, f"refusing took {peak / MIB:.0f} MB"
    return caught.value


def imported_within(seconds: float, parse: Callable[[], object]) -> float:
    started = time.perf_counter()
    parse()
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    return elapsed


# --------------------------------------------------------------------------------------- Word: the package


def test_two_megabytes_of_paragraphs_in_a_small_file_are_refused(word_parts: dict[str, bytes]) -> None:
    xml = document_xml(*numbered_paragraphs(15_000))
    content = package(word_parts, word_document=xml)
    assert len(xml) > 2 * MIB
    assert zipfile.ZipFile(io.BytesIO(content)).getinfo("word/document.xml").compress_size < 64 * 1024

    refused = refused_quickly(parse_docx, content, InvalidInput, "more than 5,000 paragraphs")
    assert refused.status_code == 422
    assert "word/document.xml" in refused.detail


def test_a_draft_at_the_paragraph_limit_imports_and_one_paragraph_more_is_refused(
    word_parts: dict[str, bytes],
) -> None:
    blocks = numbered_paragraphs(package_limits.MAX_PARAGRAPHS)
    content = package(word_parts, word_document=document_xml(*blocks))

    imported_within(2.0, lambda: parse_docx(content))  # generous for a busy machine; well within 1 s idle
    draft = parse_docx(content)
    assert len(draft.sections) == 99
    assert sum(len(section.paragraphs) for section in draft.sections) == package_limits.MAX_PARAGRAPHS - 99

    one_more = package(word_parts, word_document=document_xml(*blocks, paragraph("one more")))
    refused_quickly(parse_docx, one_more, InvalidInput, "more than 5,000 paragraphs")


@pytest.mark.parametrize("prefix", ["", "x:"])
def test_paragraphs_are_counted_whatever_the_namespace_prefix(
    word_parts: dict[str, bytes], prefix: str
) -> None:
    colon = prefix.rstrip(":")
    declaration = f"xmlns:{colon}" if colon else "xmlns"
    tag = f"{prefix}p"
    paragraphs = "".join(
        f"<{tag}><{prefix}r><{prefix}t>1.{n} x</{prefix}t></{prefix}r></{tag}>" for n in range(6000)
    )
    xml = f'<?xml version="1.0" encoding="UTF-8"?><{prefix}document {declaration}="{W}"><{prefix}body>'
    xml += f"{paragraphs}</{prefix}body></{prefix}document>"

    refused_quickly(parse_docx, package(word_parts, word_document=xml.encode()), InvalidInput, "paragraphs")


def test_a_zip_bomb_is_refused_from_its_directory() -> None:
    bomb = handmade_zip([Entry("word/document.xml", b" " * (15 * MIB))])
    assert len(bomb) < 64 * 1024

    refused = refused_quickly(parse_docx, bomb, InvalidInput, r"compressed [\d,]+ to 1.*zip bomb")
    assert refused.status_code == 422


def test_too_much_unpacked_is_refused_as_too_large(word_parts: dict[str, bytes]) -> None:
    # Four parts that each pack as text does (neither a bomb nor too large alone), too much together.
    part = document_xml(*(paragraph(f"{n} {FILLER}") for n in range(90_000)))
    assert 7 * MIB < len(part) < package_limits.MAX_PART_BYTES
    content = handmade_zip([Entry(f"word/part{n}.xml", part) for n in range(4)])

    refused = refused_quickly(parse_docx, content, PayloadTooLarge, "larger than 30 MB unpacked")
    assert refused.status_code == 413

    huge_part = handmade_zip([Entry("word/document.xml", part * 3)])
    refused_quickly(parse_docx, huge_part, PayloadTooLarge, "'word/document.xml'.*larger than 20 MB")


def test_an_entry_that_unpacks_to_more_than_it_declares_is_refused_unread() -> None:
    # The directory claims a small part; the data unpacks to a hundred times more.
    liar = handmade_zip([Entry("word/document.xml", b"<" + b" " * (50 * MIB), declared_size=500 * 1024)])

    refused_quickly(parse_docx, liar, InvalidInput, "could not be read as a Word document")


def test_a_hundred_thousand_entries_are_refused_before_the_directory_is_read() -> None:
    content = handmade_zip(Entry(f"{n}", b"", deflate=False) for n in range(100_000))
    assert len(content) < 10 * MIB  # within what the upload accepts

    refused_quickly(parse_docx, content, InvalidInput, "more than 1,000 files")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Entry("word/document.xml", b"<x/>", flags=0x1), "password-protected"),
        (Entry("word/document.xml", b"<x/>", method=12), "could not be read as a Word document"),  # bzip2
    ],
)
def test_encrypted_or_oddly_compressed_entries_are_refused(entry: Entry, message: str) -> None:
    refused_quickly(parse_docx, handmade_zip([entry]), InvalidInput, message)


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.7 not a docx",
        b"PK\x03\x04 truncated zip",
        b"",
        bytes(range(256)) * 4000,
        handmade_zip([Entry("[Content_Types].xml", b"<Types/>")])[:-30],  # the directory cut off
    ],
    ids=["pdf", "truncated", "empty", "noise", "cut-directory"],
)
def test_a_file_that_is_not_a_zip_is_refused(content: bytes) -> None:
    refused_quickly(parse_docx, content, InvalidInput, "could not be read as a Word document")


# --------------------------------------------------------------------------------------- Word: DTDs


def test_python_docx_does_not_resolve_entities_and_the_draft_is_refused_anyway(
    word_parts: dict[str, bytes], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's secret")
    xxe = f'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
    content = package(
        word_parts, word_document=document_xml(heading("1. One"), paragraph("1.1 &xxe;"), prolog=xxe)
    )

    # What the parser under python-docx does by itself: the external entity is left unresolved...
    loaded = docx.Document(io.BytesIO(content))
    assert "secret" not in "".join(p.text for p in loaded.paragraphs)
    # ... and the service does not rely on it: a DTD is refused before python-docx sees the file.
    refused = refused_quickly(parse_docx, content, InvalidInput, "declares a DTD")
    assert "'word/document.xml'" in refused.detail


def test_billion_laughs_are_refused(word_parts: dict[str, bytes]) -> None:
    content = package(
        word_parts, word_document=document_xml(heading("1. One"), paragraph("1.1 &lol9;"), prolog=laughs())
    )

    with pytest.raises(etree.XMLSyntaxError):  # libxml2 stops the expansion by itself, as a syntax error
        docx.Document(io.BytesIO(content))
    refused_quickly(parse_docx, content, InvalidInput, "declares a DTD")


def test_a_dtd_in_any_part_or_hidden_by_an_encoding_is_refused(word_parts: dict[str, bytes]) -> None:
    styles = word_parts["word/styles.xml"].replace(b"?>", b"?><!DOCTYPE x [<!ENTITY a 'b'>]>", 1)
    refused_quickly(
        parse_docx, package(word_parts, word_styles=styles), InvalidInput, "'word/styles.xml'.*DTD"
    )

    text = document_xml(heading("1. One"), prolog=laughs(3)).decode()
    in_utf16 = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    refused_quickly(parse_docx, package(word_parts, word_document=in_utf16), InvalidInput, "declares a DTD")

    in_utf7 = text.replace('encoding="UTF-8"', 'encoding="UTF-7"').replace("<!", "+ADw-!").encode()
    refused_quickly(parse_docx, package(word_parts, word_document=in_utf7), InvalidInput, "neither in UTF-8")

    in_ucs4 = text.encode("utf-32-be")
    refused_quickly(parse_docx, package(word_parts, word_document=in_ucs4), InvalidInput, "neither in UTF-8")


def test_utf16_parts_without_a_dtd_are_read(word_parts: dict[str, bytes]) -> None:
    text = document_xml(heading("1. One"), paragraph("1.1 Read.")).decode()
    content = package(word_parts, word_document=text.replace("UTF-8", "UTF-16").encode("utf-16"))

    assert parse_docx(content).sections[0].paragraphs == ["1.1"]


# --------------------------------------------------------------------------------------- Word: the content


def test_too_many_runs_cells_or_elements_are_refused(word_parts: dict[str, bytes]) -> None:
    runs = "<w:r><w:t>x</w:t></w:r>" * (package_limits.MAX_RUNS + 1)
    body = document_xml(heading("1. One"), f"<w:p>{runs}</w:p>")
    refused_quickly(
        parse_docx,
        package(word_parts, stored=True, word_document=body),
        InvalidInput,
        "more than 50,000 runs of text",
    )

    cells = "<w:tr>" + "<w:tc/>" * 50 + "</w:tr>"
    table = f"<w:tbl>{cells * 101}</w:tbl>"  # cells without the paragraph Word gives every cell
    content = package(word_parts, stored=True, word_document=document_xml(heading("1. One"), table))
    refused_quickly(parse_docx, content, InvalidInput, "more than 5,000 table cells")

    tabs = "<w:tab/>" * package_limits.MAX_XML_ELEMENTS
    body = document_xml(heading("1. One"), f"<w:p><w:r>{tabs}</w:r></w:p>")
    content = package(word_parts, stored=True, word_document=body)
    refused_quickly(parse_docx, content, InvalidInput, "more than 500,000 XML elements")


def test_a_cell_spanning_a_million_columns_is_refused(word_parts: dict[str, bytes]) -> None:
    cell = '<w:tc><w:tcPr><w:gridSpan w:val="1000000"/></w:tcPr><w:p><w:r><w:t>x</w:t></w:r></w:p></w:tc>'
    content = package(
        word_parts, word_document=document_xml(heading("1. One"), f"<w:tbl><w:tr>{cell}</w:tr></w:tbl>")
    )

    refused_quickly(parse_docx, content, InvalidInput, f"wider than {MAX_TABLE_COLUMNS} columns")


def test_a_long_vertical_merge_reads_in_one_pass(word_parts: dict[str, bytes]) -> None:
    # python-docx finds each merged cell's origin from the rows above it, over and over.
    merged = "<w:tc><w:tcPr><w:vMerge/></w:tcPr><w:p><w:r><w:t>ignored</w:t></w:r></w:p></w:tc>"
    first = (
        '<w:tc><w:tcPr><w:vMerge w:val="restart"/></w:tcPr><w:p><w:r><w:t>Ministry</w:t></w:r></w:p></w:tc>'
    )
    plain = "<w:tc><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:tc>"
    rows = [f"<w:tr>{first}{plain.format('task 0')}</w:tr>"]
    rows += [f"<w:tr>{merged}{plain.format(f'task {n}')}</w:tr>" for n in range(1, 2_000)]
    content = package(
        word_parts, word_document=document_xml(heading("1. One"), f"<w:tbl>{''.join(rows)}</w:tbl>")
    )

    imported_within(REFUSED_WITHIN_SECONDS, lambda: parse_docx(content))
    text = parse_docx(content).sections[0].text
    assert "| Ministry | task 1999 |" in text
    assert "ignored" not in text


LINKS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
RUN = "<w:r><w:t>{}</w:t></w:r>"


@pytest.mark.parametrize(
    ("block", "text"),
    [
        (
            paragraph("1.1 Listed.", properties='<w:pPr><w:numPr><w:ilvl w:val="deep"/></w:numPr></w:pPr>'),
            "- 1.1 Listed.",
        ),
        (paragraph("1.1 Bold?", run_properties='<w:rPr><w:b w:val="maybe"/></w:rPr>'), "1.1 Bold?"),
        (
            f'<w:p><w:hyperlink xmlns:r="{LINKS}" r:id="rId404">{RUN.format("nowhere")}</w:hyperlink></w:p>',
            "nowhere",
        ),
        ("<w:tbl><w:tr><w:tc><w:tcPr><w:vMerge/></w:tcPr><w:p/></w:tc></w:tr></w:tbl>", "|  |\n|---|"),
        (paragraph("1.1 Styled", properties="<w:pPr><w:pStyle w:val='a\"b'/></w:pPr>"), "1.1 Styled"),
    ],
    ids=["list-level", "bold-value", "missing-link", "merge-from-nothing", "quote-in-style-id"],
)
def test_odd_values_python_docx_would_crash_on_are_read(
    word_parts: dict[str, bytes], block: str, text: str
) -> None:
    content = package(word_parts, word_document=document_xml(heading("1. One"), block))

    assert parse_docx(content).sections[0].text == f"## 1. One\n\n{text}"


def test_a_damaged_value_python_docx_cannot_read_is_bad_input(word_parts: dict[str, bytes]) -> None:
    cell = '<w:tc><w:tcPr><w:gridSpan w:val="wide"/></w:tcPr><w:p/></w:tc>'
    content = package(
        word_parts, word_document=document_xml(heading("1. One"), f"<w:tbl><w:tr>{cell}</w:tr></w:tbl>")
    )

    refused_quickly(parse_docx, content, InvalidInput, "could not be read as a Word document")


def test_a_style_sheet_of_thousands_of_styles_costs_nothing_per_paragraph(
    word_parts: dict[str, bytes],
) -> None:
    extra = "".join(
        f'<w:style w:type="paragraph" w:styleId="Extra{n}"><w:name w:val="Extra {n}"/>'
        f'<w:basedOn w:val="Extra{n - 1}"/></w:style>'
        for n in range(20_000)
    ).encode()
    styles = word_parts["word/styles.xml"].replace(b"</w:styles>", extra + b"</w:styles>")
    body = [
        *numbered_paragraphs(2_000),
        paragraph("Custom", properties='<w:pPr><w:pStyle w:val="Extra19999"/></w:pPr>'),
    ]
    content = package(word_parts, word_styles=styles, word_document=document_xml(*body))

    imported_within(2.0, lambda: parse_docx(content))


# --------------------------------------------------------------------------------------- Markdown


def markdown_strategy(paragraphs: int, *, per_section: int = 50) -> str:
    lines = ["# Strategy"]
    for n in range(paragraphs):
        section, number = divmod(n, per_section)
        if number == 0:
            lines.append(f"## {section + 1}. Section {section + 1}")
        lines.append(f"{section + 1}.{number + 1} {FILLER}")
    return "\n\n".join(lines) + "\n"


def test_markdown_at_the_limits_parses_quickly() -> None:
    at_limit = markdown_strategy(markdown_limits.MAX_NUMBERED_PARAGRAPHS)
    draft = parse_markdown(at_limit)
    assert (
        sum(len(section.paragraphs) for section in draft.sections) == markdown_limits.MAX_NUMBERED_PARAGRAPHS
    )
    imported_within(2.0, lambda: parse_markdown(at_limit))

    sections = "".join(
        f"## {n}. Section\n\n{n}.1 Text.\n\n" for n in range(1, markdown_limits.MAX_SECTIONS + 1)
    )
    assert len(parse_markdown(sections).sections) == markdown_limits.MAX_SECTIONS


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (markdown_strategy(5_001), InvalidInput, "more than 5,000 numbered paragraphs"),
        (
            "## 1. One\n\n" + "**1.1** x\n\n" * 3_000 + "&#49;.2 y\n\n" * 3_000,
            InvalidInput,
            "numbered paragraphs",
        ),
        ("".join(f"## {n}. Section\n\n" for n in range(1_001)), InvalidInput, "more than 1,000 sections"),
        ("## 1. One\n\n" + "![" * 60_000, InvalidInput, "more than 100,000 line breaks and markup"),
        ("## 1. One\n\n" + "a\n\n" * 20_000, InvalidInput, "more than 30,000 lines"),
        (
            "## 1. One\n\n" + "- a *b* c: d\n" * 25_000,
            InvalidInput,
            "more than 100,000 line breaks and markup",
        ),
        ("## 1. One\n\n" + "word " * 700_000, PayloadTooLarge, "longer than 3,000,000 characters"),
    ],
    ids=[
        "numbered-paragraphs",
        "numbers-behind-markup",
        "sections",
        "brackets",
        "lines",
        "markup",
        "characters",
    ],
)
def test_markdown_over_the_limits_is_refused(text: str, error: type[DomainError], message: str) -> None:
    refused_quickly(lambda content: parse_markdown(content.decode()), text.encode(), error, message)


# --------------------------------------------------------------------------------------- through the service


async def test_a_hostile_upload_writes_nothing_and_says_why(
    db: Database, word_parts: dict[str, bytes]
) -> None:
    bomb = handmade_zip([Entry("word/document.xml", b" " * (15 * MIB))])
    too_long = package(word_parts, word_document=document_xml(*numbered_paragraphs(15_000)))
    sections = "".join(f"## {n}. S\n\n" for n in range(1_001)).encode()
    at_limit = package(word_parts, word_document=document_xml(*numbered_paragraphs(5_000)))

    async with db.write_session() as session:
        for name, content, message in (
            ("strategy.docx", bomb, "zip bomb"),
            ("strategy.docx", too_long, "more than 5,000 paragraphs"),
            ("strategy.md", sections, "more than 1,000 sections"),
        ):
            with pytest.raises(InvalidInput, match=message):
                await documents.create_document(
                    session, title="Strategy", filename=name, content=content, actor=ACTOR
                )
        created = await documents.create_document(
            session, title="Strategy", filename="strategy.docx", content=at_limit, actor=ACTOR
        )
        with pytest.raises(InvalidInput, match="more than 5,000 paragraphs"):
            await documents.add_version(
                session, document_id=created.id, filename="strategy.docx", content=too_long, actor=ACTOR
            )

    async with db.session() as session:
        for table, expected in ((Document, 1), (DocumentVersion, 1), (Section, 99)):
            assert (await session.exec(select(func.count()).select_from(table))).one() == expected
