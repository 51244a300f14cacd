"""HTML/iXBRL -> sections (10-K items, 10-Q parts, transcript prepared remarks vs Q&A) and token-aware chunks."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater.documents.chunking import chunk_sections
from headwater.documents.parse import MalformedDocument, Section, parse_filing, parse_transcript_document
from standins.corpus import company
from standins.rest_edgar import generated_filings, primary_document
from standins.rest_transcripts import transcript_html

SEED = 42


def filing_html(ticker: str, form: str) -> bytes:
    filing = next(f for f in reversed(generated_filings(SEED, ticker, dt.date.today().year)) if f.form == form)
    return primary_document(SEED, company(ticker), filing).encode()


def test_10k_is_split_into_items_without_hidden_xbrl():
    doc = parse_filing(filing_html("AAPL", "10-K"), "10-K")
    names = [s.name for s in doc.sections]
    assert names[0] == "Cover" and names[-1] == "Signatures"
    for item in ("Item 1", "Item 1A", "Item 7", "Item 7A", "Item 8", "Item 9A"):
        assert item in names
    by_name = {s.name: s.text for s in doc.sections}
    assert by_name["Item 1A"].startswith("Item 1A. Risk Factors")
    assert by_name["Item 7"].startswith("Item 7. Management")
    assert "Total net sales were $" in by_name["Item 7"]  # inline XBRL facts keep their visible text
    assert "iso4217" not in doc.text and "xbrli" not in doc.text  # the hidden ix:header is gone
    assert "Net sales | $" in by_name["Item 8"]  # table rows become ' | '-separated lines


def test_10q_sections_carry_their_part():
    names = [s.name for s in parse_filing(filing_html("MSFT", "10-Q"), "10-Q").sections]
    assert {"Part I Item 1", "Part I Item 2", "Part I Item 4", "Part II Item 1", "Part II Item 1A", "Part II Item 6"} <= set(names)
    assert names.index("Part I Item 2") < names.index("Part II Item 1A")


def test_transcript_keeps_prepared_remarks_and_qa_apart():
    html = transcript_html(SEED, "AAPL", 2024, 3, "/transcripts").encode()
    doc = parse_transcript_document(html, ticker="AAPL", year=2024, quarter=3, url="http://x/AAPL/2024/q3")
    assert [s.name for s in doc.sections] == ["prepared_remarks", "qa"] and doc.fiscal_period == 20243
    prepared, qa = (s.text for s in doc.sections)
    assert prepared.startswith("Operator: Good day") and "Revenue for the quarter was" in prepared
    assert "(Analyst, " in qa and "question-and-answer session" in qa and "question-and-answer" not in prepared


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"%PDF-1.7 not a web page at all", "not an HTML document"),
    (b"<html><body><div>Item 1. Business</div><div>We make things", "truncated"),
])  # fmt: skip
def test_malformed_filings_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MalformedDocument, match=reason):
        parse_filing(raw, "10-K")


def test_truncated_inline_xbrl_is_refused():
    raw = filing_html("AAPL", "10-Q")
    with pytest.raises(MalformedDocument, match="not well-formed XML"):
        parse_filing(raw[: len(raw) // 2], "10-Q")


def test_transcript_page_without_turns_is_malformed():
    with pytest.raises(MalformedDocument, match="not a transcript page"):
        parse_transcript_document(b"<html><body><h1>Page not found</h1></body></html>", ticker="AAPL", year=2024,
                                  quarter=1, url="http://x")  # fmt: skip


def test_chunks_fit_the_model_overlap_and_keep_sections(embedder):
    sections = parse_filing(filing_html("AAPL", "10-K"), "10-K").sections
    chunks = chunk_sections(sections, embedder.tokenizer, max_tokens=embedder.chunk_tokens, overlap_tokens=32)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert [c.section for c in chunks] == sorted((c.section for c in chunks), key=[s.name for s in sections].index)
    for chunk in chunks:
        n = len(embedder.tokenizer(chunk.text, add_special_tokens=True)["input_ids"])
        assert n <= embedder.max_seq_length  # nothing is truncated when embedding
    section_text = {s.name: s.text for s in sections}
    risk = [c for c in chunks if c.section == "Item 1A"]
    assert len(risk) >= 3
    for a, b in zip(risk, risk[1:]):
        assert " ".join(b.text.split()[:5]) in " ".join(a.text.split())  # consecutive chunks overlap
        at = section_text["Item 1A"].index(b.text)
        assert at == 0 or section_text["Item 1A"][at - 1].isspace()  # chunks start at a word, never inside one
    assert {c.section for c in chunks} == {s.name for s in sections}


def test_small_sections_are_one_chunk_each_and_hashes_are_stable(embedder):
    sections = [Section("Item 1", "Item 1. Business\nWe sell widgets."), Section("Item 2", "Item 2. Properties\nNone.")]
    first = chunk_sections(sections, embedder.tokenizer, max_tokens=64, overlap_tokens=8)
    again = chunk_sections(sections, embedder.tokenizer, max_tokens=64, overlap_tokens=8)
    assert [(c.section, c.text) for c in first] == [(s.name, s.text) for s in sections]
    assert [c.content_hash for c in first] == [c.content_hash for c in again]
