"""Drafts as the coordinator uploads them (Markdown or Word), split into numbered sections, and their
rendering for the review pages. Pure functions: no I/O, no database."""

from services.drafts.docx import parse_docx
from services.drafts.markdown import ParsedDraft, ParsedSection, parse_markdown
from services.drafts.rendering import paragraph_anchor, render_markdown_html, render_section_html

__all__ = [
    "ParsedDraft",
    "ParsedSection",
    "paragraph_anchor",
    "parse_docx",
    "parse_markdown",
    "render_markdown_html",
    "render_section_html",
]
