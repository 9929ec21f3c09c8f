"""What a Word package may hold, checked before python-docx reads it, so that a hostile or absurd file is
refused at once and in bounded memory, whatever it claims about itself.

A .docx is a zip of parts, mostly XML (Open Packaging Conventions, ECMA-376 Part 2, which allows only
stored and deflated entries, and XML in UTF-8 or UTF-16). The checks, cheapest first:

- the zip directory: how many entries (counted in the raw bytes, before `zipfile` reads the directory one
  entry at a time), their declared sizes in total and each, and each one's compression ratio (a zip bomb);
- then every entry is unpacked once, never beyond its declared size, and must end exactly there with the
  right CRC: python-docx unpacks a part in one call that only the length of the deflate stream bounds,
  so a part that claims to be small must be small;
- every XML part must be UTF-8 or UTF-16, and have no DTD: python-docx's parser does not resolve entities,
  but a DTD has no business in a draft and `<!ENTITY` is how XXE and "billion laughs" files begin;
- no XML part (whichever of them is the main document) may have more paragraphs or elements than a long
  strategy could need, since reading the document costs time for each.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
import zlib
from io import BytesIO

from services.errors import InvalidInput, PayloadTooLarge

MIB = 1024 * 1024

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

_CENTRAL_DIRECTORY_ENTRY = b"PK\x01\x02"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name's and the extra field's lengths
_ENCRYPTED = 0x1
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(rb"""<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
# Start tags of paragraphs, table rows and cells, and runs, whatever the namespace prefix.
_COUNTED_TAG = re.compile(rb"<(?:[^\s<>/?!:=]+:)?(p|tr|tc|r)[\s/>]")
_COUNTED = {
    b"p": (MAX_PARAGRAPHS, "paragraphs"),
    b"tr": (MAX_PARAGRAPHS, "table rows"),
    b"tc": (MAX_PARAGRAPHS, "table cells"),
    b"r": (MAX_RUNS, "runs of text"),
}
# How libxml2 recognises XML in UCS-4 or EBCDIC, which a byte search for '<!DOCTYPE' would not see.
_OTHER_ENCODINGS = (
    b"\x00\x00\x00<",
    b"<\x00\x00\x00",
    b"\x00\x00<\x00",
    b"\x00<\x00\x00",
    b"\x4c\x6f\xa7\x94",
)
_UTF16 = {
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
    b"<\x00": "utf-16-le",
    b"\x00<": "utf-16-be",
}

UNREADABLE = (
    "The file could not be read as a Word document: save it as .docx (Word 2007 or later) and try again."
)


def check_package(content: bytes) -> None:
    """Raise InvalidInput (or PayloadTooLarge) unless `content` is a zip that python-docx may safely read."""
    # Every directory entry starts with this signature, so the count bounds what zipfile will read; packed
    # data may hold it too, which can only over-count.
    if content.count(_CENTRAL_DIRECTORY_ENTRY) > MAX_ENTRIES:
        raise InvalidInput(
            f"The Word document is made of more than {MAX_ENTRIES:,} files, where a draft needs a few dozen: "
            "save it again from Word, without embedded files."
        )
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InvalidInput(UNREADABLE) from exc
    _check_directory(entries)
    for entry in entries:
        _check_part(entry.filename, _unpack(content, entry))


def _check_directory(entries: list[zipfile.ZipInfo]) -> None:
    for entry in entries:
        if entry.flag_bits & _ENCRYPTED:
            raise InvalidInput(
                "The Word document is password-protected: remove the password and upload it again."
            )
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidInput(UNREADABLE)
        if entry.file_size > MAX_PART_BYTES:
            raise PayloadTooLarge(
                f"'{entry.filename}' in the Word document is larger than {MAX_PART_BYTES // MIB} MB unpacked."
            )
        if (
            entry.file_size > COMPRESSION_CHECKED_ABOVE
            and entry.file_size > MAX_COMPRESSION_RATIO * entry.compress_size
        ):
            ratio = entry.file_size // max(entry.compress_size, 1)
            raise InvalidInput(
                f"'{entry.filename}' in the Word document is compressed {ratio:,} to 1, far more than Word "
                "compresses anything: the file is refused as a zip bomb."
            )
    if sum(entry.file_size for entry in entries) > MAX_UNPACKED_BYTES:
        raise PayloadTooLarge(
            f"The Word document is larger than {MAX_UNPACKED_BYTES // MIB} MB unpacked: a draft's text takes "
            "far less, so remove large images or embedded files and upload it again."
        )


def _unpack(content: bytes, entry: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, unpacked no further than its declared size, which they must match exactly."""
    start = entry.header_offset
    header = content[start : start + _LOCAL_HEADER.size] if start >= 0 else b""
    if len(header) < _LOCAL_HEADER.size:
        raise InvalidInput(UNREADABLE)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise InvalidInput(UNREADABLE)
    start += _LOCAL_HEADER.size + name_length + extra_length
    packed = memoryview(content)[start : start + entry.compress_size]
    if len(packed) != entry.compress_size:
        raise InvalidInput(UNREADABLE)
    if entry.compress_type == zipfile.ZIP_STORED:
        data = bytes(packed)
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(packed, entry.file_size + 1)
        except zlib.error as exc:
            raise InvalidInput(UNREADABLE) from exc
        if not inflater.eof:
            raise InvalidInput(UNREADABLE)
    if len(data) != entry.file_size or zlib.crc32(data) != entry.CRC:
        raise InvalidInput(UNREADABLE)
    return data


def _check_part(name: str, data: bytes) -> None:
    xml = _as_xml(name, data)
    if xml is None:
        return
    if _DTD.search(xml):
        raise InvalidInput(
            f"'{name}' in the Word document declares a DTD (<!DOCTYPE> or <!ENTITY>), which Word never "
            "writes and which is how entity-expansion attacks begin: the file is refused."
        )
    counts = dict.fromkeys(_COUNTED, 0)
    for tag in _COUNTED_TAG.finditer(xml):  # ends at the first limit passed: a bounded number of steps
        element = tag.group(1)
        counts[element] += 1
        limit, what = _COUNTED[element]
        if counts[element] > limit:
            raise InvalidInput(
                f"The Word document has more than {limit:,} {what} (in '{name}'), where a long strategy "
                "has a few thousand paragraphs: split it into several documents."
            )
    # In XML '<' only opens markup, so start tags are those that do not open an end tag, a processing
    # instruction, a comment or a DTD (comments and CDATA can only over-count).
    if xml.count(b"<") - xml.count(b"</") - xml.count(b"<?") - xml.count(b"<!") > MAX_XML_ELEMENTS:
        raise InvalidInput(
            f"'{name}' in the Word document has more than {MAX_XML_ELEMENTS:,} XML elements, more than any "
            "draft needs: split it into several documents."
        )


def _as_xml(name: str, data: bytes) -> bytes | None:
    """The part as UTF-8 (or ASCII-compatible) bytes to search, or None when it is not XML (an image)."""
    if data.startswith(_OTHER_ENCODINGS) or data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise InvalidInput(f"'{name}' in the Word document is XML neither in UTF-8 nor in UTF-16.")
    for start, encoding in _UTF16.items():
        if data.startswith(start):
            try:
                return data.decode(encoding).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(UNREADABLE) from exc
    text = data.removeprefix(codecs.BOM_UTF8).lstrip()
    if not text.startswith(b"<"):
        return None
    declared = _DECLARED_ENCODING.match(text)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise InvalidInput(f"'{name}' in the Word document is XML neither in UTF-8 nor in UTF-16.")
    return text
