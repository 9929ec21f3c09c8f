"""What an Office file (a Word .docx, an Excel .xlsx) may hold, checked before the library that reads it
(python-docx, openpyxl) opens it, so that a hostile or absurd file is refused at once and in bounded
memory, whatever it claims about itself. Each kind of file gives its limits and its words as
`PackageRules` (`drafts.package.WORD`, `registry_import.WORKBOOK`).

Such a file is a zip of parts, mostly XML (Open Packaging Conventions, ECMA-376 Part 2, which allows only
stored and deflated entries, and XML in UTF-8 or UTF-16). The checks, cheapest first:

- the zip directory: how many entries (counted in the raw bytes, before `zipfile` reads the directory one
  entry at a time), their declared sizes in total and each, and each one's compression ratio (a zip bomb);
- then every entry is unpacked once, never beyond its declared size, and must end exactly there with the
  right CRC: the readers unpack a part in one call that only the length of the deflate stream bounds,
  so a part that claims to be small must be small;
- every XML part must be UTF-8 or UTF-16, and have no DTD: neither reader needs one, and `<!ENTITY` is
  how XXE and "billion laughs" files begin;
- no XML part may have more of the elements the kind counts (paragraphs, rows, cells), or more elements
  of any kind, than a real file could need, since reading each costs time.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

from services.errors import InvalidInput, PayloadTooLarge

MIB = 1024 * 1024


@dataclass(frozen=True)
class PackageRules:
    """The limits of one kind of Office file, and the words of its refusals."""

    what: str
    """The file as its refusals name it: "Word document", "workbook"."""
    program: str
    """The program that writes such files: "Word", "Excel"."""
    unreadable: str
    """The refusal of a file that is not a package of this kind at all."""
    max_entries: int
    entries_hint: str
    """After "made of more than N files, ": what such a file has and what to do."""
    max_unpacked_bytes: int
    unpacked_hint: str
    max_part_bytes: int
    max_compression_ratio: int
    compression_checked_above: int
    max_xml_elements: int
    too_many_hint: str
    """After a count passed: what a real file has and what to do."""
    counted: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Local tag names counted in every XML part: their limit and their name in a refusal."""

    def counted_tag(self) -> re.Pattern[bytes] | None:
        if not self.counted:
            return None
        names = "|".join(re.escape(name) for name in self.counted)
        # Start tags of these elements, whatever the namespace prefix.
        return re.compile(rb"<(?:[^\s<>/?!:=]+:)?(" + names.encode() + rb")[\s/>]")


_CENTRAL_DIRECTORY_ENTRY = b"PK\x01\x02"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name's and the extra field's lengths
_ENCRYPTED = 0x1
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(rb"""<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
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


def check_package(content: bytes, rules: PackageRules) -> None:
    """Raise InvalidInput (or PayloadTooLarge) unless `content` is a zip its reader may safely open."""
    # Every directory entry starts with this signature, so the count bounds what zipfile will read; packed
    # data may hold it too, which can only over-count.
    if content.count(_CENTRAL_DIRECTORY_ENTRY) > rules.max_entries:
        raise InvalidInput(
            f"The {rules.what} is made of more than {rules.max_entries:,} files, {rules.entries_hint}."
        )
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InvalidInput(rules.unreadable) from exc
    _check_directory(entries, rules)
    counted = rules.counted_tag()
    for entry in entries:
        _check_part(entry.filename, _unpack(content, entry, rules), rules, counted)


def _check_directory(entries: list[zipfile.ZipInfo], rules: PackageRules) -> None:
    for entry in entries:
        if entry.flag_bits & _ENCRYPTED:
            raise InvalidInput(
                f"The {rules.what} is password-protected: remove the password and upload it again."
            )
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidInput(rules.unreadable)
        if entry.file_size > rules.max_part_bytes:
            raise PayloadTooLarge(
                f"'{entry.filename}' in the {rules.what} is larger than {rules.max_part_bytes // MIB} MB "
                "unpacked."
            )
        if (
            entry.file_size > rules.compression_checked_above
            and entry.file_size > rules.max_compression_ratio * entry.compress_size
        ):
            ratio = entry.file_size // max(entry.compress_size, 1)
            raise InvalidInput(
                f"'{entry.filename}' in the {rules.what} is compressed {ratio:,} to 1, far more than "
                f"{rules.program} compresses anything: the file is refused as a zip bomb."
            )
    if sum(entry.file_size for entry in entries) > rules.max_unpacked_bytes:
        raise PayloadTooLarge(
            f"The {rules.what} is larger than {rules.max_unpacked_bytes // MIB} MB unpacked: "
            f"{rules.unpacked_hint}."
        )


def _unpack(content: bytes, entry: zipfile.ZipInfo, rules: PackageRules) -> bytes:
    """The entry's bytes, unpacked no further than its declared size, which they must match exactly."""
    start = entry.header_offset
    header = content[start : start + _LOCAL_HEADER.size] if start >= 0 else b""
    if len(header) < _LOCAL_HEADER.size:
        raise InvalidInput(rules.unreadable)
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise InvalidInput(rules.unreadable)
    start += _LOCAL_HEADER.size + name_length + extra_length
    packed = memoryview(content)[start : start + entry.compress_size]
    if len(packed) != entry.compress_size:
        raise InvalidInput(rules.unreadable)
    if entry.compress_type == zipfile.ZIP_STORED:
        data = bytes(packed)
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(packed, entry.file_size + 1)
        except zlib.error as exc:
            raise InvalidInput(rules.unreadable) from exc
        if not inflater.eof:
            raise InvalidInput(rules.unreadable)
    if len(data) != entry.file_size or zlib.crc32(data) != entry.CRC:
        raise InvalidInput(rules.unreadable)
    return data


def _check_part(name: str, data: bytes, rules: PackageRules, counted: re.Pattern[bytes] | None) -> None:
    xml = _as_xml(name, data, rules)
    if xml is None:
        return
    if _DTD.search(xml):
        raise InvalidInput(
            f"'{name}' in the {rules.what} declares a DTD (<!DOCTYPE> or <!ENTITY>), which {rules.program} "
            "never writes and which is how entity-expansion attacks begin: the file is refused."
        )
    # In XML '<' only opens markup, so start tags are those that do not open an end tag, a processing
    # instruction, a comment or a DTD (comments and CDATA can only over-count). Counted first: it is the
    # cheap check, and refuses the largest parts before they are searched.
    if xml.count(b"<") - xml.count(b"</") - xml.count(b"<?") - xml.count(b"<!") > rules.max_xml_elements:
        raise InvalidInput(
            f"'{name}' in the {rules.what} has more than {rules.max_xml_elements:,} XML elements, "
            f"{rules.too_many_hint}."
        )
    if counted is not None:
        counts = dict.fromkeys(rules.counted, 0)
        for tag in _start_tags(counted, xml):  # ends at the first limit passed: a bounded number of steps
            element = tag.group(1).decode()
            counts[element] += 1
            limit, what = rules.counted[element]
            if counts[element] > limit:
                raise InvalidInput(
                    f"The {rules.what} has more than {limit:,} {what} (in '{name}'), {rules.too_many_hint}."
                )


SEARCHED_AT_ONCE = 256 * 1024
"""Bytes one regular-expression search covers: a search holds the interpreter for its whole length, and
the part is checked in a thread beside the event loop, which must keep answering."""


def _start_tags(pattern: re.Pattern[bytes], xml: bytes) -> Iterator[re.Match[bytes]]:
    """`pattern`'s matches, each beginning at a '<' and holding no other, searched a slice at a time.
    Each slice ends just before a '<', so no match is cut in two."""
    start = 0
    while start < len(xml):
        boundary = xml.find(b"<", start + SEARCHED_AT_ONCE)
        end = len(xml) if boundary == -1 else boundary
        yield from pattern.finditer(xml, start, end)
        start = end


def _as_xml(name: str, data: bytes, rules: PackageRules) -> bytes | None:
    """The part as UTF-8 (or ASCII-compatible) bytes to search, or None when it is not XML (an image)."""
    neither = f"'{name}' in the {rules.what} is XML neither in UTF-8 nor in UTF-16."
    if data.startswith(_OTHER_ENCODINGS) or data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise InvalidInput(neither)
    for start, encoding in _UTF16.items():
        if data.startswith(start):
            try:
                return data.decode(encoding).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(rules.unreadable) from exc
    text = data.removeprefix(codecs.BOM_UTF8).lstrip()
    if not text.startswith(b"<"):
        return None
    declared = _DECLARED_ENCODING.match(text)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise InvalidInput(neither)
    return text
