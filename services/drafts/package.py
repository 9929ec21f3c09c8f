"""What a Word package may hold, checked before python-docx reads it (`services.ooxml` does the checks):
its limits and its words. python-docx's parser does not resolve entities, but a DTD has no business in a
draft; no XML part (whichever of them is the main document) may have more paragraphs or elements than a
long strategy could need, since reading the document costs time for each.
"""

from __future__ import annotations

from services import ooxml

MIB = ooxml.MIB

MAX_ENTRIES = 1_000
"""Files in the package. Word writes a few dozen (one more per image); `zipfile` spends time on each
directory entry before any other check can run."""

MAX_UNPACKED_BYTES = 30 * MIB
"""All parts together, unpacked: what reading the package may cost in memory. The text and formatting of
a long strategy take a few MB; the rest leaves room for images."""

MAX_PART_BYTES = 20 * MIB
"""Any one part unpacked, word/document.xml in particular (parsed whole into memory)."""

MAX_COMPRESSION_RATIO = 200
"""Unpacked size over packed size of an entry. Word's XML packs to between a third and a thirtieth, a long
table of identically formatted cells to somewhat less; far more is a zip bomb. Checked only above
COMPRESSION_CHECKED_ABOVE, where it can matter."""
COMPRESSION_CHECKED_ABOVE = 1 * MIB

MAX_PARAGRAPHS = 5_000
"""Paragraphs (`w:p`, empty ones and those in table cells included) in any XML part. A national strategy
has a few thousand, and reading each one, then parsing the Markdown it becomes, costs time: a draft at this
limit still imports well within a second. Table rows and cells have the same limit, which only a hostile
file can reach first: in a Word document every row has a cell and every cell a paragraph."""

MAX_RUNS = 50_000
"""Runs of text (`w:r`, a stretch of text in one formatting) in any XML part: ten for each paragraph the
limit allows. Word splits a paragraph into a few runs, more where it was edited; reading each costs time."""

MAX_XML_ELEMENTS = 500_000
"""Elements of any kind in any XML part: a bound on what parsing it holds in memory and reading it walks
through, whatever the elements are. A long, heavily formatted strategy has a few hundred thousand."""

UNREADABLE = (
    "The file could not be read as a Word document: save it as .docx (Word 2007 or later) and try again."
)

WORD = ooxml.PackageRules(
    what="Word document",
    program="Word",
    unreadable=UNREADABLE,
    max_entries=MAX_ENTRIES,
    entries_hint="where a draft needs a few dozen: save it again from Word, without embedded files",
    max_unpacked_bytes=MAX_UNPACKED_BYTES,
    unpacked_hint=(
        "a draft's text takes far less, so remove large images or embedded files and upload it again"
    ),
    max_part_bytes=MAX_PART_BYTES,
    max_compression_ratio=MAX_COMPRESSION_RATIO,
    compression_checked_above=COMPRESSION_CHECKED_ABOVE,
    max_xml_elements=MAX_XML_ELEMENTS,
    too_many_hint="where a long strategy has a few thousand paragraphs: split it into several documents",
    counted={
        "p": (MAX_PARAGRAPHS, "paragraphs"),
        "tr": (MAX_PARAGRAPHS, "table rows"),
        "tc": (MAX_PARAGRAPHS, "table cells"),
        "r": (MAX_RUNS, "runs of text"),
    },
)


def check_package(content: bytes) -> None:
    """Raise InvalidInput (or PayloadTooLarge) unless `content` is a zip that python-docx may safely read."""
    ooxml.check_package(content, WORD)
