"""Splitting drafts into sections (Markdown and Word) and rendering them for the review page."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import docx
import pytest

from services.drafts import parse_docx, parse_markdown, render_markdown_html, render_section_html
from services.errors import InvalidInput

FIXTURE_TITLE = (
    "National Strategy on Migration Governance 2026\u20132030 \u2014 "
    "Draft for inter-institutional consultation"
)
FIXTURE_NUMBERS = [str(number) for number in range(1, 13)] + ["Annex 1"]


@pytest.fixture(scope="module")
def markdown_text(fixtures_dir: Path) -> str:
    return (fixtures_dir / "draft-migration-governance-strategy.md").read_text(encoding="utf-8")


def word_file(*paragraphs: tuple[str, str]) -> bytes:
    """A .docx with (style, text) paragraphs, the way Word would save it."""
    document = docx.Document()
    for style, text in paragraphs:
        document.add_paragraph(text, style=style)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_the_fixture_gives_thirteen_numbered_sections(markdown_text: str) -> None:
    draft = parse_markdown(markdown_text)

    assert draft.title == FIXTURE_TITLE
    assert draft.preamble.startswith("Version 0.9, prepared by the Technical Secretariat")
    assert [section.number for section in draft.sections] == FIXTURE_NUMBERS
    assert draft.sections[0].heading == "Purpose and scope"
    assert draft.sections[3].heading == "Labour migration"
    assert draft.sections[-1].heading == "Action Plan (summary)"
    assert draft.sections[3].paragraphs == ["4.1", "4.2", "4.3", "4.4", "4.5"]
    assert draft.sections[2].paragraphs == [f"3.{n}" for n in range(1, 9)]


def test_section_text_is_the_source_markdown_and_its_hash(markdown_text: str) -> None:
    draft = parse_markdown(markdown_text)

    labour = draft.sections[3]
    assert labour.text.startswith("## 4. Labour migration\n\n4.1 The single permit procedure")
    assert labour.text.endswith("in every regional employment office and online.")
    assert labour.text in markdown_text
    for section in draft.sections:
        assert section.sha256 == hashlib.sha256(section.text.encode("utf-8")).hexdigest()
    assert parse_markdown(markdown_text).sections[3].sha256 == labour.sha256


def test_the_annex_table_is_kept_and_its_cells_are_not_paragraphs(markdown_text: str) -> None:
    annex = parse_markdown(markdown_text).sections[-1]

    assert "| 4.1 Online single permit | Ministry of Interior |" in annex.text
    assert "|---|---|---|---|---|" in annex.text
    assert annex.paragraphs == []


def test_bom_and_windows_line_endings_change_nothing(markdown_text: str) -> None:
    plain = parse_markdown(markdown_text)
    from_windows = parse_markdown("\ufeff" + markdown_text.replace("\n", "\r\n"))

    assert from_windows == plain


def test_code_blocks_quotes_and_lists_do_not_start_sections_or_paragraphs() -> None:
    draft = parse_markdown(
        "# Title\n\n## 1. Scope\n\n1.1 Counted.\n\n```\n## 2. Not a section\n1.2 not a paragraph\n```\n\n"
        "> 1.3 quoted\n\n- 1.4 listed\n\n    1.5 indented code\n\n"
        "**1.6** Bold number.\n\n1.7. Trailing dot.\n"
    )

    assert [section.number for section in draft.sections] == ["1"]
    assert draft.sections[0].paragraphs == ["1.1", "1.6", "1.7"]
    assert "## 2. Not a section" in draft.sections[0].text


def test_heading_numbers_annexes_and_unnumbered_headings() -> None:
    draft = parse_markdown(
        "## Introduction\n\ntext\n\n## 2 Scope\n\n## Annex A \u2014 Budget\n\n"
        "## Appendix 2: Terms\n\n## IV. Roman\n"
    )

    assert [(section.number, section.heading) for section in draft.sections] == [
        ("1", "Introduction"),
        ("2", "Scope"),
        ("Annex A", "Budget"),
        ("Appendix 2", "Terms"),
        ("IV", "Roman"),
    ]
    assert draft.title == ""


def test_a_draft_without_sections_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no sections"):
        parse_markdown("# Title\n\nJust a preamble.\n")
    with pytest.raises(InvalidInput, match="no sections"):
        parse_markdown("")


def test_duplicate_section_numbers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="section number 2 is used twice") as caught:
        parse_markdown("## 1. One\n\n## 2. Two\n\n## 2. Again\n")
    assert caught.value.problems


def test_an_unnumbered_heading_that_clashes_explains_the_rule() -> None:
    with pytest.raises(InvalidInput, match="numbered by its position"):
        parse_markdown("## Introduction\n\n## 1. Purpose\n")


def test_duplicate_paragraph_numbers_are_refused_naming_the_sections() -> None:
    with pytest.raises(InvalidInput, match=r"paragraph number 1\.2 appears twice \(sections 1 and 2\)"):
        parse_markdown("## 1. One\n\n1.2 First.\n\n## 2. Two\n\n1.2 Again.\n")


def test_the_word_fixture_gives_the_same_sections_as_the_markdown(
    fixtures_dir: Path, markdown_text: str
) -> None:
    from_word = parse_docx((fixtures_dir / "draft-migration-governance-strategy.docx").read_bytes())
    from_markdown = parse_markdown(markdown_text)

    assert from_word.title == from_markdown.title
    assert [(s.number, s.heading, s.paragraphs) for s in from_word.sections] == [
        (s.number, s.heading, s.paragraphs) for s in from_markdown.sections
    ]
    # Stronger still: the converted text, and so what focal points sign, is identical.
    assert [s.sha256 for s in from_word.sections] == [s.sha256 for s in from_markdown.sections]


def test_word_headings_lists_and_markdown_characters() -> None:
    content = word_file(
        ("Heading 1", "Draft law on foreigners"),
        ("Normal", "Intro with *stars* and <b>tags</b>."),
        ("Heading 2", "1. General"),
        ("Normal", "1.1 First paragraph."),
        ("List Bullet", "a listed item"),
        ("List Bullet", "# not a heading"),
        ("Heading 3", "Details"),
        ("Normal", "1.2 Second paragraph."),
        ("Heading 2", "2. Final"),
    )

    draft = parse_docx(content)

    assert draft.title == "Draft law on foreigners"
    assert draft.preamble == r"Intro with \*stars\* and \<b>tags\</b>."
    assert [(s.number, s.heading) for s in draft.sections] == [("1", "General"), ("2", "Final")]
    assert draft.sections[0].paragraphs == ["1.1", "1.2"]
    assert "- a listed item\n- \\# not a heading" in draft.sections[0].text
    assert "### Details" in draft.sections[0].text
    assert "<b>" not in render_markdown_html(draft.preamble).replace("&lt;b&gt;", "")


def test_a_file_that_is_not_a_word_document_is_refused() -> None:
    with pytest.raises(InvalidInput, match="could not be read as a Word document"):
        parse_docx(b"%PDF-1.7 not a docx")
    with pytest.raises(InvalidInput, match="could not be read as a Word document"):
        parse_docx(b"PK\x03\x04 truncated zip")


def test_a_word_document_without_headings_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no section headings"):
        parse_docx(word_file(("Normal", "1.1 Only body text.")))


def test_rendered_paragraphs_carry_anchors_and_show_their_number_once(markdown_text: str) -> None:
    labour = parse_markdown(markdown_text).sections[3]

    html = render_section_html(labour.text)

    assert "Labour migration" not in html  # the page renders the heading itself
    assert (
        '<div class="para" id="p-4-2" data-paragraph="4.2"><p><span class="para-number">4.2</span> '
        "The National Agency for Employment and Skills"
    ) in html
    assert html.count("4.2") == 2  # the data attribute and the visible number
    assert html.count('class="para"') == 5


def test_bold_paragraph_numbers_are_not_shown_twice() -> None:
    html = render_section_html("## 1. One\n\n**1.1** Bold number.\n\n**1.2 Lead-in.** Rest.\n")

    assert '<span class="para-number">1.1</span> Bold number.' in html
    assert '<span class="para-number">1.2</span> <strong>Lead-in.</strong> Rest.' in html


def test_tables_render_and_raw_html_never_survives(markdown_text: str) -> None:
    annex = parse_markdown(markdown_text).sections[-1]
    assert "<td>4.1 Online single permit</td>" in render_section_html(annex.text)

    html = render_section_html(
        '## 1. One\n\n1.1 Text <script>alert("x")</script>\n\n<script>alert(1)</script>\n\n'
        '<img src=x onerror="alert(1)">\n\n[click](javascript:alert(1))\n'
    )
    assert "<script" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;" in html  # shown as text: a signer sees every character they sign


def test_the_preamble_renders_without_anchors() -> None:
    html = render_markdown_html("Version *0.9*.\n\n1.1 not a section paragraph\n")

    assert "<em>0.9</em>" in html
    assert "data-paragraph" not in html
