"""Earnings-call transcript web site stand-in (HTML pages, as a scraper sees them).

* ``GET /robots.txt`` -> ``User-agent: *``, ``Crawl-delay: 1``, ``Disallow: <prefix>/drafts/`` (paths carry
  the stand-in's prefix, so ``urllib.robotparser`` works on full URLs). ``/drafts/...`` pages exist, so a
  scraper that ignores robots.txt shows up in the request log.
* ``GET /{TICKER}`` -> index page: ``<ul class="transcripts">`` of ``<li>`` with a link to each published
  transcript and a ``<time datetime=...>``, newest first. Unknown ticker -> 404 HTML.
* ``GET /{TICKER}/{fiscal year}/q{1-4}`` -> the transcript: ``<h1>`` title, ``<time class="call-date">``,
  a participants section (corporate participants and analysts), ``<section class="prepared-remarks">``
  then ``<section class="question-and-answer">``, each made of speaker turns
  ``<div class="turn"><span class="speaker">Name</span><span class="role">CEO</span><p>...</p></div>``
  (the Operator's turns have no role span). A call is published three hours after it starts (17:00 or 08:30
  New York, 3-5 weeks after the fiscal quarter ends); earlier, or an unknown quarter -> 404.

Executives and analysts are invented names; numbers and tone follow ``corpus.quarter_results`` so the call,
the 8-K and the 10-Q/10-K of a quarter agree.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from standins.corpus import (
    ANALYST_FIRMS,
    NEW_YORK,
    UTC,
    Company,
    FiscalQuarter,
    company,
    executives,
    fiscal_quarters,
    mda_bank,
    paragraphs,
    person,
    quarter_results,
    rng,
    sentences,
)
from standins.http_server import Response

if TYPE_CHECKING:
    from standins.http_server import ProviderStandIn, Request

FIRST_YEAR = 2019
PUBLISH_DELAY = dt.timedelta(hours=3)


def call_start(seed: int, co: Company, fq: FiscalQuarter) -> dt.datetime:
    morning = rng(seed, "call-time", co.ticker).random() < 0.3
    hour, minute = (8, 30) if morning else (17, 0)
    return dt.datetime(fq.call_date.year, fq.call_date.month, fq.call_date.day, hour, minute, tzinfo=NEW_YORK)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n<body>\n'
            f'<header class="site-header"><a href="/">Earnings Call Transcripts</a></header>\n<main>\n{body}\n'
            f"</main>\n<footer>&#169; Stand-in transcripts. For testing only.</footer>\n</body>\n</html>\n")


def _turn(name: str, role: str | None, texts: list[str]) -> str:
    role_html = f'<span class="role">{escape(role)}</span>' if role else ""
    paras = "".join(f"<p>{escape(t)}</p>" for t in texts)
    return f'<div class="turn"><span class="speaker">{escape(name)}</span>{role_html}{paras}</div>'


@lru_cache(maxsize=512)
def transcript_html(seed: int, ticker: str, fiscal_year: int, quarter: int, prefix: str) -> str:
    co = company(ticker)
    fq = next(q for q in fiscal_quarters(seed, co, fiscal_year, fiscal_year) if q.quarter == quarter)
    start = call_start(seed, co, fq)
    res = quarter_results(seed, co, fiscal_year, quarter)
    r = rng(seed, "transcript", ticker, fiscal_year, quarter)
    ceo, cfo, ir = executives(seed, co)
    greeting = "morning" if start.hour < 12 else "afternoon"
    analysts = [(person(seed, "analyst", firm), firm) for firm in r.sample(ANALYST_FIRMS, 3 + r.randrange(3))]
    title = f"{co.name} ({co.ticker}) Q{quarter} {fiscal_year} Earnings Call Transcript"
    label = f"fiscal {fiscal_year} {['first', 'second', 'third', 'fourth'][quarter - 1]} quarter"
    fields = {"prod": r.choice(co.products), "growth": res.growth_pct, "growth_abs": abs(res.growth_pct),
              "margin": res.gross_margin_pct, "revenue": f"{res.revenue_musd:,}",
              "prior": f"{res.prior_revenue_musd:,}", "co": co.short}

    prepared = [
        _turn("Operator", None, [f"Good day, and welcome to the {co.short} {label} earnings conference call. "
                                 "Today's call is being recorded. At this time, I would like to turn the call over "
                                 f"to {ir.name}, {ir.title}. Please go ahead."]),
        _turn(ir.name, ir.short_title, [
            f"Thank you. Good {greeting}, and thank you for joining us. Speaking first today is {ceo.name}, "
            f"{ceo.title}, followed by {cfo.name}, {cfo.title}. After that, we'll open the call "
            "to questions from analysts.",
            "Please note that some of the information you'll hear during our discussion today will consist of "
            "forward-looking statements, including, without limitation, those regarding revenue, gross margin, "
            "operating expenses and future business outlook. Actual results or trends could differ materially "
            "from our forecast.",
            f"With that, I'll turn the call over to {ceo.name}."]),
        _turn(ceo.name, ceo.short_title, [
            f"Thank you, {ir.name.split()[0]}, and good {greeting}, everyone.",
            *sentences(r, res.sentiment, co, 3),
            *paragraphs(r, mda_bank(res.sentiment), 2, **fields),
            f"Let me now turn it over to {cfo.name} to walk you through the numbers."]),
        _turn(cfo.name, cfo.short_title, [
            f"Thanks, {ceo.name.split()[0]}. Revenue for the quarter was ${res.revenue_musd:,} million, "
            f"{'up' if res.growth_pct >= 0 else 'down'} {abs(res.growth_pct)}% year over year. Gross margin was "
            f"{res.gross_margin_pct}%, and diluted earnings per share were ${res.eps:.2f}.",
            *paragraphs(r, mda_bank(res.sentiment), 3, **fields),
            {"positive": "Given the strength we are seeing, we are raising our outlook for the full year.",
             "negative": "Given the weaker demand environment, we are lowering our outlook for the full year.",
             "neutral": "We are reaffirming the outlook we provided last quarter."}[res.sentiment],
            "With that, let's open the call to questions."]),
    ]
    qa = [_turn("Operator", None, ["We will now begin the question-and-answer session. To ask a question, please "
                                   "press star then one on your telephone keypad."])]
    for i, (name, firm) in enumerate(analysts):
        which = ("first", "next")[min(i, 1)]
        qa.append(_turn("Operator", None, [f"Our {which} question comes from {name} with {firm}. Please go ahead."]))
        topic = r.choice(co.products)
        qa.append(_turn(name, f"Analyst, {firm}", [
            f"Thanks for taking my question. Could you talk about the trends you're seeing in {topic}, and how "
            "you're thinking about margins for the rest of the year?"]))
        responder = ceo if r.random() < 0.5 else cfo
        qa.append(_turn(responder.name, responder.short_title, sentences(r, res.sentiment, co, 2) + [
            f"On margins, we expect to stay around {res.gross_margin_pct}% near term."]))
    qa.append(_turn("Operator", None, ["This concludes today's question-and-answer session and today's conference "
                                       "call. Thank you for participating. You may now disconnect."]))

    participants = "".join(f'<li><span class="name">{escape(e.name)}</span> &#8212; '
                           f'<span class="title">{escape(e.title)}</span></li>' for e in (ir, ceo, cfo))
    analyst_items = "".join(f'<li><span class="name">{escape(n)}</span> &#8212; '
                            f'<span class="firm">{escape(f)}</span></li>' for n, f in analysts)
    body = (
        f'<article class="transcript" data-ticker="{co.ticker}" data-fiscal-year="{fiscal_year}" '
        f'data-fiscal-quarter="{quarter}">\n'
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="meta"><a href="{prefix}/{co.ticker}">{escape(co.name)}</a> &#183; '
        f'<time class="call-date" datetime="{start.isoformat()}">{start:%B %d, %Y, %I:%M %p} ET</time></p>\n'
        '<section class="participants"><h2>Call participants</h2>\n'
        f'<h3>Corporate participants</h3><ul class="corporate">{participants}</ul>\n'
        f'<h3>Analysts</h3><ul class="analysts">{analyst_items}</ul></section>\n'
        '<section class="prepared-remarks"><h2>Prepared Remarks</h2>\n' + "\n".join(prepared) + "\n</section>\n"
        '<section class="question-and-answer"><h2>Question-and-Answer Session</h2>\n' + "\n".join(qa)
        + "\n</section>\n</article>"
    )
    return _page(title, body)


class TranscriptsHandler:
    content_type = "text/html; charset=utf-8"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        return Response.html(_page("429 Too Many Requests", "<h1>Too Many Requests</h1><p>Slow down.</p>"), 429,
                             {"Retry-After": str(int(retry_after))})

    @staticmethod
    def _not_found() -> Response:
        return Response.html(_page("Page not found", "<h1>Page not found</h1>"), 404)

    def handle(self, req: Request) -> Response:
        prefix = urlsplit(req.base_url).path
        if req.path == "/robots.txt":
            return Response.text(f"User-agent: *\nCrawl-delay: 1\nDisallow: {prefix}/drafts/\n")
        state = self.hub.quotas.take("transcripts", "*")
        if state.exceeded:
            return self.rate_limited(req, max(1.0, state.reset_at - self.hub.now()))
        if req.method != "GET":
            return Response.html(_page("Method not allowed", "<h1>Method not allowed</h1>"), 405)
        parts = [p for p in req.path.split("/") if p]
        if parts and parts[0] == "drafts":
            return Response.html(_page("Draft", "<h1>Draft transcript</h1><p>Not for publication.</p>"))
        if not parts:
            links = "".join(f'<li><a href="{prefix}/{t}">{escape(company(t).name)} ({t})</a></li>'
                            for t in self.hub.tickers if company(t).kind == "stock")
            return Response.html(_page("Earnings call transcripts", f'<h1>Companies</h1><ul>{links}</ul>'))
        ticker = parts[0].upper()
        if ticker not in self.hub.tickers or company(ticker).kind != "stock":  # funds hold no earnings calls
            return self._not_found()
        published = self._published(ticker)
        if len(parts) == 1:
            return Response.html(self._index(ticker, published, prefix))
        match = re.fullmatch(r"(\d{4})/[qQ]([1-4])", "/".join(parts[1:]))
        if not match or (int(match.group(1)), int(match.group(2))) not in published:
            return self._not_found()
        return Response.html(transcript_html(self.hub.seed, ticker, int(match.group(1)), int(match.group(2)),
                                             prefix))

    def _published(self, ticker: str) -> dict[tuple[int, int], dt.datetime]:
        """(fiscal year, quarter) -> call start, for calls already published, newest first."""
        co = company(ticker)
        now = dt.datetime.fromtimestamp(self.hub.now(), UTC)
        calls = {}
        for fq in reversed(fiscal_quarters(self.hub.seed, co, FIRST_YEAR, now.year + 1)):
            start = call_start(self.hub.seed, co, fq)
            if start + PUBLISH_DELAY <= now:
                calls[(fq.fiscal_year, fq.quarter)] = start
        return calls

    def _index(self, ticker: str, published: dict[tuple[int, int], dt.datetime], prefix: str) -> str:
        co = company(ticker)
        items = "".join(
            f'<li><a href="{prefix}/{ticker}/{fy}/q{q}">{escape(co.name)} ({ticker}) Q{q} {fy} Earnings Call '
            f'Transcript</a> <time datetime="{start.isoformat()}">{start:%b %d, %Y}</time></li>\n'
            for (fy, q), start in published.items())
        return _page(f"{co.name} ({ticker}) earnings call transcripts",
                     f'<h1>{escape(co.name)} ({ticker}) earnings call transcripts</h1>\n'
                     f'<ul class="transcripts">\n{items}</ul>')
