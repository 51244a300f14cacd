"""Raw documents -> clean text in sections: 10-K items, 10-Q parts and items, transcript prepared remarks and Q&A.

Filings (HTML or inline XBRL):

* Inline XBRL is XHTML and must be well-formed XML; it is parsed strictly (no entity expansion, no network),
  so a truncated download is a ``MalformedDocument`` and never half-indexed. Plain HTML must end with
  ``</html>`` or ``</body>`` for the same reason.
* Hidden content goes (``ix:header`` with its contexts and units, ``display:none`` blocks, scripts, styles);
  inline XBRL facts stay as the text they tag. Text is collected per block element (div, p, table row, list
  item, heading); table cells are joined with `` | ``.
* Sections start at block-level headings outside tables (tables of contents are tables): ``Item 1A.``
  starts section ``Item 1A`` of a 10-K, ``Part I Item 2`` of a 10-Q (parts restart item numbers there).
  Text before the first item is ``Cover``; ``SIGNATURES`` starts ``Signatures``. Sections without text
  beyond their heading (table-of-contents lines outside tables) are dropped. A filing with text but no
  item headings is one ``Document`` section.
* ``dei:DocumentFiscalYearFocus`` / ``dei:DocumentFiscalPeriodFocus``, when tagged, give the fiscal period.

Transcripts: ``headwater.providers.transcripts.parse_transcript`` (configurable selectors) -> two sections,
``prepared_remarks`` and ``qa``, each the speaker turns as ``Speaker (Role): text`` paragraphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree
from lxml import html as lxml_html

from headwater.models import Transcript
from headwater.providers.transcripts import TranscriptParseError, TranscriptSelectors, parse_transcript


class MalformedDocument(ValueError):
    """The document cannot be read as what it claims to be (truncated, not HTML, no text)."""


@dataclass(frozen=True)
class Section:
    name: str
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    sections: tuple[Section, ...]
    fiscal_period: int | None = None  # YYYYQ from dei facts, when the filing tags them

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "center", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "html", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
})  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_DROP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_HIDDEN = re.compile(r"display\s*:\s*none", re.I)
_ITEM = re.compile(r"^item\s+(\d{1,2}(?:\.\d{2})?[a-d]?)\b\s*[.:\-\u2012-\u2015]?", re.I)
_PART = re.compile(r"^part\s+(iv|i{1,3})\b", re.I)
_SIGNATURES = re.compile(r"^signatures?\s*$", re.I)
_MAX_HEADING_CHARS = 250
_XML_START = re.compile(rb"^\s*(?:\xef\xbb\xbf)?\s*<\?xml", re.S)


def parse_filing(raw: bytes, form: str) -> ParsedDocument:
    """A filing's primary document -> sections (see the module docstring); raises ``MalformedDocument``."""
    root, inline_xbrl = _load(raw)
    period = _fiscal_focus(root) if inline_xbrl else None
    try:
        blocks = _blocks(root)
    except RecursionError:
        raise MalformedDocument("elements nested too deeply to read") from None
    if not any(text for text, _ in blocks):
        raise MalformedDocument("the document has no text")
    sections = _sectioned(blocks, with_part=form.upper().startswith("10-Q"))
    return ParsedDocument(tuple(sections), period)


def parse_transcript_document(
    raw: bytes, *, ticker: str, year: int, quarter: int, url: str, selectors: TranscriptSelectors | None = None
) -> ParsedDocument:
    """A transcript page -> ``prepared_remarks`` and ``qa`` sections; raises ``MalformedDocument``."""
    try:
        transcript = parse_transcript(raw, ticker=ticker, year=year, quarter=quarter, url=url, selectors=selectors)
    except TranscriptParseError as exc:
        raise MalformedDocument(f"not a transcript page: {exc}") from exc
    return ParsedDocument(transcript_sections(transcript), year * 10 + quarter)


def transcript_sections(transcript: Transcript) -> tuple[Section, ...]:
    """The turns of each part of the call as ``Speaker (Role): text`` paragraphs."""
    out = []
    for name in ("prepared_remarks", "qa"):
        turns = [t for t in transcript.turns if t.section == name]
        if turns:
            text = "\n\n".join(f"{t.speaker} ({t.role}): {t.text}" if t.role else f"{t.speaker}: {t.text}" for t in turns)
            out.append(Section(name, text))
    return tuple(out)


# -- loading -----------------------------------------------------------------------------------------------
def _load(raw: bytes) -> tuple[etree._Element, bool]:
    head = raw[:4096].lower()
    if not raw.strip():
        raise MalformedDocument("empty document")
    if b"\x00" in raw[:4096]:
        raise MalformedDocument("binary content, not HTML")
    inline_xbrl = bool(_XML_START.match(raw[:64])) or b"xmlns:ix=" in head or b"inlinexbrl" in head
    if inline_xbrl:
        parser = etree.XMLParser(recover=False, resolve_entities=False, no_network=True, huge_tree=True,
                                 load_dtd=False)  # fmt: skip
        try:
            return etree.fromstring(raw, parser=parser), True
        except etree.XMLSyntaxError as exc:
            raise MalformedDocument(f"inline XBRL document is not well-formed XML ({exc}); truncated download?") from None
    if b"<html" not in head and b"<body" not in head and b"<!doctype html" not in head:
        snippet = raw[:40].decode("latin-1").replace("\n", " ")
        raise MalformedDocument(f"not an HTML document (starts with {snippet!r})")
    tail = raw[-2048:].lower()
    if b"</html>" not in tail and b"</body>" not in tail:
        raise MalformedDocument("HTML document ends before </body>/</html>; truncated download?")
    try:
        return lxml_html.document_fromstring(raw), False
    except (etree.ParserError, ValueError) as exc:
        raise MalformedDocument(f"unreadable HTML: {exc}") from None


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""  # comments, processing instructions
    return tag.rsplit("}", 1)[-1].lower() if "}" in tag else tag.lower().rsplit(":", 1)[-1]


def _qualified(tag: object) -> str:
    return tag.lower() if isinstance(tag, str) else ""


def _fiscal_focus(root: etree._Element) -> int | None:
    year = period = None
    for el in root.iter():
        name = el.get("name") if isinstance(el.tag, str) else None
        if name == "dei:DocumentFiscalYearFocus":
            year = "".join(el.itertext()).strip()
        elif name == "dei:DocumentFiscalPeriodFocus":
            period = "".join(el.itertext()).strip().upper()
    quarter = {"Q1": 1, "Q2": 2, "Q3": 3, "Q4": 4, "FY": 4}.get(period or "")
    if year and year.isdigit() and quarter:
        return int(year) * 10 + quarter
    return None


# -- text blocks -------------------------------------------------------------------------------------------
def _hidden(el: etree._Element) -> bool:
    tag = _qualified(el.tag)
    if _local(el.tag) in _DROP_TAGS or tag.endswith("}header") and "inlinexbrl" in tag or tag == "ix:header":
        return True
    return bool(_HIDDEN.search(el.get("style") or ""))


def _blocks(root: etree._Element) -> list[tuple[str, bool]]:
    """(text, inside a table) per block, in document order."""
    blocks: list[tuple[str, bool]] = []
    line: list[str] = []
    table_depth = 0

    def flush() -> None:
        text = re.sub(r"\s+", " ", "".join(line).replace("\xa0", " ")).strip()
        line.clear()
        if text:
            blocks.append((text, table_depth > 0))

    def walk(el: etree._Element) -> None:
        nonlocal table_depth
        name = _local(el.tag)
        if not name or _hidden(el):
            return
        block = name in _BLOCK_TAGS
        if block:
            flush()
        if name == "table":
            table_depth += 1
        if el.text:
            line.append(el.text)
        for child in el:
            walk(child)
            if child.tail:
                line.append(child.tail)
            if _local(child.tag) in _CELL_TAGS:
                line.append(" | ")
        if name == "table":
            table_depth -= 1
        if block:
            if line and line[-1] == " | ":
                line.pop()
            flush()

    walk(root)
    flush()
    return blocks


def _sectioned(blocks: list[tuple[str, bool]], *, with_part: bool) -> list[Section]:
    sections: list[tuple[str, list[str]]] = [("Cover", [])]
    part = ""
    for text, in_table in blocks:
        heading = None
        if not in_table and len(text) <= _MAX_HEADING_CHARS:
            if m := _PART.match(text):
                part = m.group(1).upper()
                continue  # a part heading belongs to no item
            if m := _ITEM.match(text):
                number = m.group(1).upper()
                heading = f"Part {part} Item {number}" if with_part and part else f"Item {number}"
            elif _SIGNATURES.match(text):
                heading = "Signatures"
        if heading is not None:
            sections.append((heading, [text]))
        else:
            sections[-1][1].append(text)
    found_items = any(name.startswith(("Item", "Part")) for name, _ in sections)
    out = []
    for name, lines in sections:
        body = lines if name == "Cover" else lines[1:]
        if not any(body):
            continue  # heading only: a table-of-contents line
        out.append(Section(name, "\n".join(lines)))
    if not found_items:
        return [Section("Document", "\n".join(s.text for s in out))]
    return out
