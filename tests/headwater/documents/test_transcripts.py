"""Transcript scraper against the stand-in site: turns and sections, robots.txt, pacing, size limit, selectors."""

from __future__ import annotations

import pytest

from headwater.providers.transcripts import (
    RobotsDisallowed,
    TranscriptParseError,
    TranscriptScraper,
    TranscriptSelectors,
    TranscriptTooLarge,
    parse_transcript,
    template_pattern,
)

from .support import logged_requests


def scraper(standins, **kwargs) -> TranscriptScraper:
    return TranscriptScraper(standins.base_urls()["transcripts"], **kwargs)


def test_lists_and_parses_a_transcript_with_turns_and_sections(standins):
    site = scraper(standins)
    links = site.list_transcripts("AAPL")
    assert links and (links[0].year, links[0].quarter) > (links[-1].year, links[-1].quarter)  # newest first
    transcript, raw = site.fetch(links[0])
    assert raw.startswith(b"<!DOCTYPE html>")
    assert transcript.doc_id == f"transcript:AAPL:{links[0].year}Q{links[0].quarter}"
    assert transcript.call_at.tzinfo is not None
    prepared = [t for t in transcript.turns if t.section == "prepared_remarks"]
    qa = [t for t in transcript.turns if t.section == "qa"]
    assert prepared[0].speaker == "Operator" and prepared[0].role == ""
    assert any("Revenue for the quarter" in t.text for t in prepared)
    assert any(t.role.startswith("Analyst") for t in qa) and "question-and-answer" in qa[0].text
    assert transcript.turns.index(qa[0]) == len(prepared)  # prepared remarks first, then Q&A

    log = logged_requests(standins, 3, ("transcripts",))  # robots.txt, the index, the transcript
    assert log[0]["path"].endswith("/robots.txt")
    gaps = [b["ts"] - a["ts"] for a, b in zip(log[1:], log[2:])]
    assert all(gap >= 0.9 for gap in gaps)  # robots.txt says Crawl-delay: 1


def test_robots_disallowed_pages_are_never_requested(standins):
    site = scraper(standins)
    with pytest.raises(RobotsDisallowed):
        site.get_page(standins.base_urls()["transcripts"] + "/drafts/AAPL")
    assert not [e for e in standins.requests_log("transcripts") if "/drafts/" in e["path"]]


def test_pages_over_the_size_limit_are_refused(standins):
    site = scraper(standins, max_bytes=2000)
    link = scraper(standins, min_interval_s=0).list_transcripts("AAPL")[0]
    with pytest.raises(TranscriptTooLarge, match="2,000-byte limit"):
        site.fetch(link)


def test_unknown_ticker_has_no_transcripts(standins):
    assert scraper(standins).list_transcripts("ZZZZ") == []


def test_selectors_and_url_template_are_configuration():
    html = """<html><body><div id="when" data-t="2024-05-02T17:00:00-04:00"></div>
      <div class="pr"><div class="u"><b>Operator</b><p>Welcome.</p></div>
                      <div class="u"><b>Jane Doe</b><i>CEO</i><p>We grew.</p></div></div>
      <div class="q"><div class="u"><b>Sam Roe</b><i>Analyst</i><p>Margins?</p></div></div></body></html>"""
    sel = TranscriptSelectors(call_time="#when", call_time_attr="data-t", prepared_remarks="div.pr", qa="div.q",
                              turn="div.u", speaker="b", role="i", paragraph="p")
    t = parse_transcript(html, ticker="AAPL", year=2024, quarter=2, url="https://x.test/AAPL/2024/q2", selectors=sel)
    assert [(x.speaker, x.role, x.section) for x in t.turns] == [
        ("Operator", "", "prepared_remarks"), ("Jane Doe", "CEO", "prepared_remarks"), ("Sam Roe", "Analyst", "qa")]
    with pytest.raises(TranscriptParseError, match="no speaker turns in qa"):
        parse_transcript(html.replace('class="q"', 'class="x"'), ticker="AAPL", year=2024, quarter=2, url="u",
                         selectors=sel)
    pattern = template_pattern("{base}/calls/{ticker}-{year}-Q{quarter}.html", "https://x.test")
    match = pattern.match("https://x.test/calls/BRK.B-2024-Q3.html")
    assert match and match.group("ticker", "year", "quarter") == ("BRK.B", "2024", "3")
