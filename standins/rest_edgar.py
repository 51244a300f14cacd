"""SEC EDGAR stand-ins: www.sec.gov (``/sec``) and data.sec.gov (``/sec-data``), with fair-access enforcement.

www.sec.gov (``SecWwwHandler``):
* ``GET /files/company_tickers.json`` -> ``{"0":{"cik_str":320193,"ticker":"AAPL","title":"Apple Inc."},...}``
* ``GET /Archives/edgar/data/{cik}/{accession without dashes}/{primaryDocument}`` -> the filing's primary
  document: inline-XBRL XHTML for 10-K (Items 1, 1A Risk Factors, 7 MD&A, 8 ...), 10-K/A, 10-Q (Part I
  Item 2 MD&A ...), 8-K (Item 2.02 etc.), and the XML ownership document for Form 4; tens of KB each.
* ``GET /Archives/edgar/data/{cik}/{accession without dashes}/{accession}-index.htm`` -> the filing index
  page whose "Accepted" time is on the New York clock (how to resolve the acceptanceDateTime quirk below).

data.sec.gov (``SecDataHandler``):
* ``GET /submissions/CIK##########.json`` -> the real shape (cik, entityType, sic, sicDescription, name,
  tickers, exchanges, fiscalYearEnd, ..., ``filings.recent`` as parallel arrays accessionNumber, filingDate,
  reportDate, acceptanceDateTime, act, form, fileNumber, filmNumber, items, core_type, size, isXBRL,
  isInlineXBRL, primaryDocument, primaryDocDescription; newest first; ``filings.files`` empty). Unknown CIK
  -> 404 with S3's ``NoSuchKey`` XML, as data.sec.gov answers.

Filings: from fiscal 2019 to now, per quarter an earnings 8-K (Items 2.02, 9.01) after the close on the call
date and the 10-Q/10-K a day or two later; a few other 8-Ks, Form 4s and the odd 10-K/A each year. Only
filings accepted by now (wall clock) are listed; ``EdgarState.new_filing`` publishes one accepted now.
``filingDate`` follows EDGAR's rule: accepted after 17:30 New York (22:00 for Forms 3/4/5) or on a weekend
-> next business day. ``acceptanceDateTime`` ends in ``Z`` but, as on the real API, about one filer in five
writes the New York wall time there (``corpus.Company.acceptance_clock == "et"``); the index page always
shows New York time.

Fair access, across both hosts and all clients: a User-Agent without a contact e-mail -> 403 "Your Request
Originates from an Undeclared Automated Tool" HTML; more than ``rate_limit_per_s`` requests in any
1-second window -> 429 "Request Rate Threshold Exceeded" HTML, then a block of ``block_seconds`` during
which every request gets 403 with the same page (and, with ``block_extends``, each refused request restarts
the block, as SEC's page warns). No Retry-After header anywhere, as on the real site.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections import deque
from dataclasses import dataclass, replace
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING, Any

from standins.corpus import (
    NEW_YORK,
    RISK_FACTORS,
    UTC,
    Company,
    FiscalQuarter,
    company,
    executives,
    fiscal_quarters,
    mda_bank,
    next_weekday,
    paragraphs,
    person,
    quarter_results,
    rng,
    unit,
)
from standins.http_server import Response

if TYPE_CHECKING:
    from standins.http_server import ProviderStandIn, Request

FIRST_FISCAL_YEAR = 2019
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_SECTION16 = {"3", "4", "5"}


# -- filings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filing:
    ticker: str
    accession: str
    form: str
    acceptance: dt.datetime  # aware, UTC
    report_date: str
    items: str
    primary_document: str
    description: str
    size: int
    xbrl: bool
    fiscal_year: int | None = None
    quarter: int | None = None
    film_number: str = ""

    @property
    def accession_nodash(self) -> str:
        return self.accession.replace("-", "")

    @property
    def filing_date(self) -> dt.date:
        local = self.acceptance.astimezone(NEW_YORK)
        cutoff = (22, 0) if self.form in _SECTION16 else (17, 30)
        day = local.date()
        if (local.hour, local.minute) > cutoff:
            day += dt.timedelta(days=1)
        return next_weekday(day)

    def acceptance_text(self, co: Company) -> str:
        moment = self.acceptance.astimezone(NEW_YORK) if co.acceptance_clock == "et" else self.acceptance
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _at(day: dt.date, minutes_after_midnight: int) -> dt.datetime:
    local = dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK) + dt.timedelta(minutes=minutes_after_midnight)
    return local.replace(second=int(minutes_after_midnight * 7) % 60).astimezone(UTC)


def _doc_name(co: Company, day: dt.date | str) -> str:
    text = day if isinstance(day, str) else day.isoformat()
    return f"{co.ticker.lower()}-{text.replace('-', '')}.htm"


@lru_cache(maxsize=512)
def generated_filings(seed: int, ticker: str, last_year: int) -> tuple[Filing, ...]:
    """Every filing of ``ticker`` from fiscal 2019 through ``last_year`` (future ones included), oldest first."""
    co = company(ticker)
    drafts = _company_drafts(seed, co, last_year) if co.kind == "stock" else _fund_drafts(seed, co, last_year)
    drafts.sort(key=lambda d: d["acceptance"])
    filings, seq_by_year = [], {}
    for d in drafts:
        yy = d["acceptance"].year % 100
        seq_by_year[yy] = seq_by_year.get(yy, 0) + 1 + int(40 * unit(seed, "seq", ticker, d["acceptance"]))
        accession = f"{co.cik10}-{yy:02d}-{seq_by_year[yy]:06d}"
        filings.append(_make_filing(seed, co, accession, d["form"], d["acceptance"], d["report_date"], d["items"],
                                    d["fq"]))
    return tuple(filings)


def _company_drafts(seed: int, co: Company, last_year: int) -> list[dict[str, Any]]:
    """A listed company's filings: per quarter an earnings 8-K then the 10-Q/10-K; other 8-Ks, Form 4s, 10-K/As."""
    ticker = co.ticker
    drafts: list[dict[str, Any]] = []
    for fq in fiscal_quarters(seed, co, FIRST_FISCAL_YEAR, last_year):
        r = rng(seed, "filings", ticker, fq.fiscal_year, fq.quarter)
        drafts.append(dict(form="8-K", acceptance=_at(fq.call_date, 16 * 60 + 2 + r.randrange(30)),
                           report_date=fq.call_date.isoformat(), items="2.02,9.01", fq=fq))
        periodic_day = next_weekday(fq.call_date + dt.timedelta(days=1 + r.randrange(2)))
        form = "10-K" if fq.quarter == 4 else "10-Q"
        drafts.append(dict(form=form, acceptance=_at(periodic_day, 6 * 60 + r.randrange(11 * 60 + 20)),
                           report_date=fq.period_end.isoformat(), items="", fq=fq))
        if fq.quarter == 4 and r.random() < 0.2:
            amend_day = next_weekday(periodic_day + dt.timedelta(days=80 + r.randrange(40)))
            drafts.append(dict(form="10-K/A", acceptance=_at(amend_day, 8 * 60 + r.randrange(8 * 60)),
                               report_date=fq.period_end.isoformat(), items="", fq=fq))
    for year in range(FIRST_FISCAL_YEAR, last_year + 1):
        r = rng(seed, "other-filings", ticker, year)
        meeting = next_weekday(dt.date(year, 5, 1) + dt.timedelta(days=r.randrange(45)))
        drafts.append(dict(form="8-K", acceptance=_at(meeting, 16 * 60 + r.randrange(60)),
                           report_date=meeting.isoformat(), items="5.07", fq=None))
        other = next_weekday(dt.date(year, 1, 10) + dt.timedelta(days=r.randrange(330)))
        drafts.append(dict(form="8-K", acceptance=_at(other, 8 * 60 + r.randrange(9 * 60)),
                           report_date=other.isoformat(), items=r.choice(("8.01,9.01", "5.02", "1.01,9.01")),
                           fq=None))
        for _ in range(6 + r.randrange(6)):
            day = next_weekday(dt.date(year, 1, 2) + dt.timedelta(days=r.randrange(360)))
            drafts.append(dict(form="4", acceptance=_at(day, 16 * 60 + r.randrange(5 * 60 + 50)),
                               report_date=(day - dt.timedelta(days=2)).isoformat(), items="", fq=None))
    return drafts


def _fund_drafts(seed: int, co: Company, last_year: int) -> list[dict[str, Any]]:
    """An exchange-traded fund's filings: annual and semi-annual shareholder reports and a prospectus update."""
    drafts = []
    for year in range(FIRST_FISCAL_YEAR, last_year + 1):
        r = rng(seed, "fund-filings", co.ticker, year)
        annual_end, semi_end = dt.date(year, 9, 30), dt.date(year, 3, 31)
        for form, period_end, lag in (("N-CSR", annual_end, 60), ("N-CSRS", semi_end, 60), ("485BPOS", None, 0)):
            day = next_weekday(period_end + dt.timedelta(days=lag + r.randrange(10)) if period_end
                               else dt.date(year, 1, 15) + dt.timedelta(days=r.randrange(20)))
            drafts.append(dict(form=form, acceptance=_at(day, 9 * 60 + r.randrange(7 * 60)),
                               report_date=(period_end or day).isoformat(), items="", fq=None))
    return drafts


def _make_filing(seed: int, co: Company, accession: str, form: str, acceptance: dt.datetime, report_date: str,
                 items: str, fq: FiscalQuarter | None) -> Filing:
    size_base = {"10-K": 9_000_000, "10-Q": 5_500_000, "10-K/A": 400_000, "8-K": 350_000, "4": 5_000,
                 "N-CSR": 2_500_000, "N-CSRS": 2_000_000, "485BPOS": 1_500_000}
    size = int(size_base.get(form, 100_000) * (0.7 + 0.6 * unit(seed, "size", accession)))
    if form == "4":
        document = f"xslF345X05/wk-form4_{int(acceptance.timestamp())}.xml"
        description, film = "FORM 4", ""
    else:
        document = _doc_name(co, report_date)
        description = form
        film = str(24_000_000 + int(900_000 * unit(seed, "film", accession)))
    return Filing(co.ticker, accession, form, acceptance, report_date, items, document, description, size,
                  form not in ("4", "485BPOS"), fq.fiscal_year if fq else None, fq.quarter if fq else None, film)


def file_number(co: Company) -> str:
    return f"001-{10_000 + co.cik % 29_989:05d}"


# -- fair-access pages --------------------------------------------------------------------------------------
def _sec_page(title: str, heading: str, paragraphs_html: str, reference: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>SEC.gov | {title}</title>\n</head>\n<body>\n"
        '<div id="header">U.S. Securities and Exchange Commission</div>\n'
        f'<div id="content">\n<h1>{heading}</h1>\n{paragraphs_html}\n'
        f"<p>Reference ID: {reference}</p>\n</div>\n"
        '<div id="footer">For more information, see <a href="https://www.sec.gov/developer">'
        "sec.gov/developer</a>.</div>\n</body>\n</html>\n"
    )


def undeclared_tool_page(reference: str) -> str:
    return _sec_page(
        "Your Request Originates from an Undeclared Automated Tool",
        "Your Request Originates from an Undeclared Automated Tool",
        "<p>To keep access fair for everyone, the SEC limits requests from automated tools that do not "
        "identify themselves. Declare your traffic by sending a User-Agent header that names your "
        "organisation and gives a contact e-mail address, for example "
        "<code>Sample Company Name AdminContact@example.com</code>.</p>\n"
        "<p>Guidance on downloading EDGAR data efficiently is at "
        '<a href="https://www.sec.gov/os/accessing-edgar-data">Accessing EDGAR Data</a>.</p>',
        reference,
    )


def threshold_page(reference: str, limit: int) -> str:
    return _sec_page(
        "Request Rate Threshold Exceeded",
        "Your Request Rate Exceeds the Threshold",
        f"<p>Automated access to SEC.gov is limited to {limit} requests per second in total, whatever the "
        "number of machines used. Requests from your address are being refused for a period.</p>\n"
        "<p>Access resumes once your request rate has stayed below the threshold for 10 minutes; requests "
        "sent while access is limited extend the period.</p>",
        reference,
    )


def not_found_page() -> str:
    return _sec_page("Page Not Found", "Page Not Found",
                     "<p>The page you requested does not exist or has been moved.</p>", "0.0.0")


class EdgarState:
    """Filings and fair-access enforcement shared by the www.sec.gov and data.sec.gov stand-ins."""

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.block_until = 0.0
        self._added: dict[str, list[Filing]] = {}
        self._added_count = 0

    # -- fair access ----------------------------------------------------------------------------------------
    def _reference(self, now: float) -> str:
        return f"0.{hashlib.blake2b(repr(now).encode(), digest_size=4).hexdigest()}.{int(now)}"

    def gate(self, req: Request) -> Response | None:
        """The fair-access answer for this request, or None to serve it."""
        now = self.hub.now()
        with self._lock:
            if now < self.block_until:
                if self.hub.block_extends:
                    self.block_until = max(self.block_until, now + self.hub.block_seconds)
                return Response.html(threshold_page(self._reference(now), self.hub.rate_limit_per_s), 403)
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) > self.hub.rate_limit_per_s:
                self._recent.clear()
                self.block_until = now + self.hub.block_seconds
                return Response.html(threshold_page(self._reference(now), self.hub.rate_limit_per_s), 429)
        agent = req.header("User-Agent") or ""
        if not _EMAIL.search(agent):
            return Response.html(undeclared_tool_page(self._reference(now)), 403)
        if self.hub.quotas.take(req.provider, "*").exceeded:
            return Response.html(threshold_page(self._reference(now), self.hub.rate_limit_per_s), 429)
        return None

    def start_block(self, seconds: float) -> Response:
        now = self.hub.now()
        with self._lock:
            self.block_until = max(self.block_until, now + seconds)
        return Response.html(threshold_page(self._reference(now), self.hub.rate_limit_per_s), 403)

    def blocked(self) -> bool:
        return self.hub.now() < self.block_until

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self.block_until = 0.0

    # -- filings --------------------------------------------------------------------------------------------
    def filings(self, ticker: str) -> list[Filing]:
        """Filings accepted by now, newest first."""
        now = dt.datetime.fromtimestamp(self.hub.now(), UTC)
        generated = generated_filings(self.hub.seed, ticker, now.year + 1)
        with self._lock:
            added = list(self._added.get(ticker, ()))
        visible = [f for f in (*generated, *added) if f.acceptance <= now]
        return sorted(visible, key=lambda f: (f.acceptance, f.accession), reverse=True)

    def new_filing(self, ticker: str, form: str = "8-K", **fields: Any) -> dict[str, Any]:
        """Publish a filing accepted now; returns its submissions-style metadata and document URL.

        ``fields`` may set ``items`` (8-K, default "8.01,9.01"), ``report_date`` (YYYY-MM-DD) and
        ``fiscal_year``/``quarter`` (10-K/10-Q numbers).
        """
        ticker = ticker.upper()
        if ticker not in self.hub.tickers:
            raise ValueError(f"{ticker} is not in the stand-in's universe")
        co = company(ticker)
        allowed = ("10-K", "10-Q", "10-K/A", "8-K", "4") if co.kind == "stock" else ("N-CSR", "N-CSRS", "485BPOS")
        if form not in allowed:
            raise ValueError(f"unsupported form {form!r} for {ticker}; one of {allowed}")
        now = dt.datetime.fromtimestamp(self.hub.now(), UTC).replace(microsecond=0)
        report_date = fields.get("report_date") or now.astimezone(NEW_YORK).date().isoformat()
        fq = None
        if form in ("10-K", "10-Q", "10-K/A"):
            quarters = [q for q in fiscal_quarters(self.hub.seed, co, now.year - 1, now.year + 1)
                        if q.period_end <= now.date() and (q.quarter == 4) == (form != "10-Q")]
            fq = quarters[-1]
            if "fiscal_year" in fields:
                fq = FiscalQuarter(int(fields["fiscal_year"]), int(fields.get("quarter", 4)), fq.period_end,
                                   fq.call_date)
            report_date = fields.get("report_date") or fq.period_end.isoformat()
        items = fields.get("items", "8.01,9.01" if form == "8-K" else "")
        with self._lock:
            self._added_count += 1
            accession = f"{co.cik10}-{now.year % 100:02d}-{900_000 + self._added_count:06d}"
            filing = _make_filing(self.hub.seed, co, accession, form, now, report_date, items, fq)
            if form == "8-K":
                filing = replace(filing, primary_document=f"{co.ticker.lower()}-8k-{self._added_count}.htm")
            self._added.setdefault(ticker, []).append(filing)
        row = submission_row(co, filing)
        row["url"] = (f"{self.hub.base_urls()['sec']}/Archives/edgar/data/{co.cik}/{filing.accession_nodash}/"
                      f"{filing.primary_document}")
        return row

    def find(self, cik: int, accession_nodash: str) -> tuple[Company, Filing] | None:
        for ticker in self.hub.tickers:
            co = company(ticker)
            if co.cik == cik:
                for filing in self.filings(ticker):
                    if filing.accession_nodash == accession_nodash:
                        return co, filing
        return None


def submission_row(co: Company, f: Filing) -> dict[str, Any]:
    return {
        "accessionNumber": f.accession,
        "filingDate": f.filing_date.isoformat(),
        "reportDate": f.report_date,
        "acceptanceDateTime": f.acceptance_text(co),
        "act": "34" if f.form != "4" else "",
        "form": f.form,
        "fileNumber": file_number(co) if f.form != "4" else "",
        "filmNumber": f.film_number,
        "items": f.items,
        "core_type": f.form,
        "size": f.size,
        "isXBRL": int(f.xbrl),
        "isInlineXBRL": int(f.xbrl),
        "primaryDocument": f.primary_document,
        "primaryDocDescription": f.description,
    }


# -- handlers -----------------------------------------------------------------------------------------------
class _EdgarHandler:
    content_type = "application/json"

    def __init__(self, state: EdgarState) -> None:
        self.state = state
        self.hub = state.hub

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        # SEC never sends Retry-After: clients must pause on their own (about 10 minutes).
        now = self.hub.now()
        return Response.html(threshold_page(self.state._reference(now), self.hub.rate_limit_per_s), 429)

    def handle(self, req: Request) -> Response:
        refused = self.state.gate(req)
        if refused is not None:
            return refused
        if req.method != "GET":
            return Response.html(not_found_page(), 405)
        return self.route(req)

    def route(self, req: Request) -> Response:
        raise NotImplementedError


class SecDataHandler(_EdgarHandler):
    """data.sec.gov: the submissions API."""

    def route(self, req: Request) -> Response:
        match = re.fullmatch(r"/submissions/CIK(\d{10})\.json", req.path)
        cik = int(match.group(1)) if match else None
        ticker = next((t for t in self.hub.tickers if company(t).cik == cik), None)
        if ticker is None:
            return Response.text('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                                 "<Message>The specified key does not exist.</Message>"
                                 f"<Key>{escape(req.path.lstrip('/'))}</Key></Error>", 404,
                                 content_type="application/xml")
        return Response.json(self.submissions(ticker))

    def submissions(self, ticker: str) -> dict[str, Any]:
        co = company(ticker)
        rows = [submission_row(co, f) for f in self.state.filings(ticker)]
        recent = {key: [row[key] for row in rows] for key in submission_row(co, _EMPTY_FILING).keys()}
        r = rng(0, "address", co.cik)
        street = f"{100 + r.randrange(9800)} {r.choice(('Market', 'Main', 'Park', 'Lake', 'Harbor'))} Street"
        address = {"street1": street, "street2": None, "city": r.choice(("Wilmington", "Seattle", "New York",
                                                                        "Austin", "Cupertino", "Chicago")),
                   "stateOrCountry": co.state, "zipCode": f"{10000 + r.randrange(89999)}",
                   "stateOrCountryDescription": co.state, "isForeignLocation": 0, "foreignStateTerritory": None,
                   "country": None, "countryCode": None}
        return {
            "cik": str(co.cik),
            "entityType": "operating" if co.kind == "stock" else "other",
            "sic": co.sic,
            "sicDescription": co.sic_description,
            "ownerOrg": "06 Technology" if co.sic.startswith(("35", "36", "73")) else "",
            "insiderTransactionForOwnerExists": 0,
            "insiderTransactionForIssuerExists": 1,
            "name": co.name,
            "tickers": [co.ticker],
            "exchanges": [co.exchange],
            "ein": f"{10_000_000 + co.cik % 89_999_999:09d}",
            "lei": None,
            "description": "",
            "website": "",
            "investorWebsite": "",
            "category": "Large accelerated filer" if co.kind == "stock" else "",
            "fiscalYearEnd": co.fiscal_year_end,
            "stateOfIncorporation": co.state,
            "stateOfIncorporationDescription": co.state,
            "addresses": {"mailing": dict(address), "business": dict(address)},
            "phone": f"({200 + r.randrange(700)}) {100 + r.randrange(900)}-{1000 + r.randrange(9000)}",
            "flags": "",
            "formerNames": [],
            "filings": {"recent": recent, "files": []},
        }


class SecWwwHandler(_EdgarHandler):
    """www.sec.gov: the ticker map, filing documents and index pages."""

    def route(self, req: Request) -> Response:
        if req.path == "/files/company_tickers.json":
            return Response.json({str(i): {"cik_str": company(t).cik, "ticker": t, "title": company(t).name}
                                  for i, t in enumerate(self.hub.tickers)})
        match = re.fullmatch(r"/Archives/edgar/data/(\d+)/(\d{18})/(.+)", req.path)
        if not match:
            return Response.html(not_found_page(), 404)
        found = self.state.find(int(match.group(1)), match.group(2))
        if found is None:
            return Response.html(not_found_page(), 404)
        co, filing = found
        name = match.group(3)
        if name == f"{filing.accession}-index.htm":
            return Response.html(index_page(co, filing))
        if name != filing.primary_document:
            return Response.html(not_found_page(), 404)
        if filing.form == "4":
            return Response.text(form4_xml(self.hub.seed, co, filing), content_type="text/xml")
        return Response.html(primary_document(self.hub.seed, co, filing))


_EMPTY_FILING = Filing("", "", "", dt.datetime(2000, 1, 1, tzinfo=UTC), "", "", "", "", 0, False)


# -- documents ----------------------------------------------------------------------------------------------
_P = ('<div style="margin-top:9pt;text-align:justify"><span style="color:#000000;font-family:\'Helvetica\','
      'sans-serif;font-size:10pt;font-weight:400;line-height:120%">{}</span></div>')
_H = ('<div style="margin-top:12pt;text-align:justify"><span style="color:#000000;font-family:\'Helvetica\','
      'sans-serif;font-size:10pt;font-weight:700;line-height:120%">{}</span></div>')
_ELABORATION = (
    "Any of these events could materially adversely affect the Company's business, results of operations, "
    "financial condition and stock price.",
    "The Company may not be able to anticipate or respond to these developments in a timely manner, and its "
    "mitigation efforts may be costly and may not succeed.",
    "Although the Company monitors these risks closely, their timing and magnitude are difficult to predict, "
    "and they may be heightened by the other risks described in this section.",
)


def _p(text: str) -> str:
    return _P.format(text)


def _h(text: str) -> str:
    return _H.format(escape(text))


def _money(value_musd: int) -> str:
    return f"{abs(value_musd):,}"


class _Facts:
    """Builds ``ix:nonFraction`` / ``ix:nonNumeric`` tags with running ids."""

    def __init__(self) -> None:
        self.n = 0

    def num(self, name: str, value: float, context: str = "c-1", unit: str = "usd", scale: int = 6,
            decimals: int = -6) -> str:
        self.n += 1
        sign = ' sign="-"' if value < 0 else ""
        shown = _money(int(value)) if scale else f"{abs(value):.2f}"
        return (f'<ix:nonFraction unitRef="{unit}" contextRef="{context}" decimals="{decimals}" name="{name}" '
                f'format="ixt:num-dot-decimal" scale="{scale}" id="f-{self.n}"{sign}>{shown}</ix:nonFraction>')

    def text(self, name: str, value: str, context: str = "c-1") -> str:
        self.n += 1
        return f'<ix:nonNumeric contextRef="{context}" name="{name}" id="f-{self.n}">{escape(value)}</ix:nonNumeric>'


def _period(filing: Filing) -> tuple[dt.date, dt.date]:
    """(start, end) of the period a document reports on: a fiscal year, a quarter, or the event day."""
    end = dt.date.fromisoformat(filing.report_date)
    days = {"10-K": 364, "10-K/A": 364, "10-Q": 90}.get(filing.form, 0)
    return end - dt.timedelta(days=days), end


def _annual(seed: int, co: Company, fiscal_year: int, quarter: int | None, annual: bool) -> dict[str, float]:
    quarters = range(1, 5) if annual else [quarter or 1]
    results = [quarter_results(seed, co, fiscal_year, q) for q in quarters]
    revenue = sum(r.revenue_musd for r in results)
    prior = sum(r.prior_revenue_musd for r in results)
    net = sum(r.net_income_musd for r in results)
    margin = results[-1].gross_margin_pct
    return {"revenue": revenue, "prior": prior, "growth": round((revenue / prior - 1) * 100, 1),
            "net": net, "eps": round(sum(r.eps for r in results), 2), "gross": int(revenue * margin / 100),
            "margin": margin, "cash": int(revenue * 0.6), "assets": int(revenue * 2.7),
            "liabilities": int(revenue * 1.6)}


def primary_document(seed: int, co: Company, filing: Filing) -> str:
    """The primary document: inline-XBRL XHTML for a 10-K, 10-K/A, 10-Q or 8-K, HTML for fund reports."""
    if filing.form in ("N-CSR", "N-CSRS", "485BPOS"):
        return fund_document(seed, co, filing)
    return _render_document(seed, co.ticker, filing)


def fund_document(seed: int, co: Company, filing: Filing) -> str:
    r = rng(seed, "fund-document", filing.accession)
    kind = {"N-CSR": "Annual Shareholder Report", "N-CSRS": "Semi-Annual Shareholder Report",
            "485BPOS": "Prospectus"}[filing.form]
    body = [_h(f"{co.name} &#8212; {kind}"),
            _p(f"For the period ended {filing.report_date}. {escape(co.short)} seeks to provide investment results "
               "that correspond generally to the price and yield performance of its index "
               f"({escape(co.products[1])})."),
            _p(f"Net assets: ${200 + r.randrange(500)},{r.randrange(1000):03d} million. Expense ratio: "
               f"0.{9 + r.randrange(12):02d}%. Portfolio turnover: {1 + r.randrange(9)}%."),
            _h("Performance"),
            _p(f"Over the period the fund returned {r.uniform(-15, 30):.2f}% at net asset value, in line with its "
               "index before expenses."),
            _h("Principal Risks"),
            _p("Market risk, index tracking risk, concentration risk and the risk that shares trade at a "
               "premium or discount to net asset value.")]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(co.ticker.lower())} {escape(filing.form)}</title></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


@lru_cache(maxsize=256)
def _render_document(seed: int, ticker: str, filing: Filing) -> str:
    co = company(ticker)
    facts = _Facts()
    start, end = _period(filing)
    annual = filing.form in ("10-K", "10-K/A")
    fy = filing.fiscal_year or end.year
    numbers = _annual(seed, co, fy, filing.quarter, annual)
    sentiment = "positive" if numbers["growth"] >= 6 else "negative" if numbers["growth"] <= -3 else "neutral"
    r = rng(seed, "document", filing.accession)
    body: list[str] = []
    cover_form = filing.form
    body.append('<div style="text-align:center"><span style="font-size:14pt;font-weight:700">UNITED STATES<br/>'
                "SECURITIES AND EXCHANGE COMMISSION</span><br/>Washington, D.C. 20549</div>")
    body.append(f'<div style="text-align:center"><span style="font-size:18pt;font-weight:700">FORM '
                f'{facts.text("dei:DocumentType", cover_form)}</span></div>')
    if filing.form == "8-K":
        body.append(_p("CURRENT REPORT Pursuant to Section 13 or 15(d) of the Securities Exchange Act of 1934"))
        body.append(_p(f"Date of Report (Date of earliest event reported): "
                       f"{facts.text('dei:DocumentPeriodEndDate', end.strftime('%B %d, %Y'))}"))
    else:
        kind = "ANNUAL REPORT" if annual else "QUARTERLY REPORT"
        period_word = "fiscal year" if annual else "quarterly period"
        body.append(_p(f"&#9746; {kind} PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934"))
        body.append(_p(f"For the {period_word} ended "
                       f"{facts.text('dei:DocumentPeriodEndDate', end.strftime('%B %d, %Y'))}"))
    body.append(_p(f"Commission File Number: {file_number(co)}"))
    body.append(f'<div style="text-align:center"><span style="font-size:16pt;font-weight:700">'
                f'{facts.text("dei:EntityRegistrantName", co.name)}</span><br/>(Exact name of Registrant as '
                f"specified in its charter)</div>")
    body.append('<table style="border-collapse:collapse;width:100%"><tr><td>Title of each class</td>'
                "<td>Trading symbol(s)</td><td>Name of each exchange on which registered</td></tr>"
                f"<tr><td>Common Stock</td><td>{facts.text('dei:TradingSymbol', co.ticker)}</td>"
                f"<td>{'The Nasdaq Stock Market LLC' if co.exchange == 'Nasdaq' else 'New York Stock Exchange'}"
                "</td></tr></table>")
    if filing.form == "8-K":
        body += _eight_k(seed, co, filing, facts, numbers, sentiment, r)
    elif filing.form == "10-K/A":
        body += _ten_k_amendment(seed, co, filing, r)
    elif annual:
        body += _ten_k(seed, co, filing, facts, numbers, sentiment, r)
    else:
        body += _ten_q(seed, co, filing, facts, numbers, sentiment, r)
    body.append(_h("SIGNATURES"))
    body.append(_p("Pursuant to the requirements of the Securities Exchange Act of 1934, the Registrant has duly "
                   "caused this report to be signed on its behalf by the undersigned thereunto duly authorized."))
    cfo = executives(seed, co)[1]
    body.append(_p(f"{escape(co.name)}<br/>By: /s/ {escape(cfo.name)}<br/>{escape(cfo.title)}<br/>"
                   f"Date: {filing.filing_date.strftime('%B %d, %Y')}"))
    header = _ix_header(co, filing, start, end)
    return ("<?xml version='1.0' encoding='ASCII'?>\n"
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:ix="http://www.xbrl.org/2013/inlineXBRL" '
            'xmlns:xbrli="http://www.xbrl.org/2003/instance" xmlns:link="http://www.xbrl.org/2003/linkbase" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:us-gaap="http://fasb.org/us-gaap/2024" '
            'xmlns:dei="http://xbrl.sec.gov/dei/2024" xmlns:iso4217="http://www.xbrl.org/2003/iso4217" '
            'xmlns:ixt="http://www.xbrl.org/inlineXBRL/transformation/2020-02-12">\n'
            f"<head><meta http-equiv=\"Content-Type\" content=\"text/html\"/>"
            f"<title>{escape(co.ticker.lower())}-{end:%Y%m%d}</title></head>\n<body>\n{header}\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _ix_header(co: Company, filing: Filing, start: dt.date, end: dt.date) -> str:
    return (
        '<div style="display:none"><ix:header><ix:hidden>'
        f'<ix:nonNumeric name="dei:AmendmentFlag" contextRef="c-1">{str(filing.form.endswith("/A")).lower()}'
        "</ix:nonNumeric>"
        f'<ix:nonNumeric name="dei:EntityCentralIndexKey" contextRef="c-1">{co.cik10}</ix:nonNumeric>'
        "</ix:hidden><ix:references>"
        f'<link:schemaRef xlink:type="simple" xlink:href="{co.ticker.lower()}-{end:%Y%m%d}.xsd"/>'
        "</ix:references><ix:resources>"
        f'<xbrli:context id="c-1"><xbrli:entity><xbrli:identifier scheme="http://www.sec.gov/CIK">{co.cik10}'
        f"</xbrli:identifier></xbrli:entity><xbrli:period><xbrli:startDate>{start.isoformat()}</xbrli:startDate>"
        f"<xbrli:endDate>{end.isoformat()}</xbrli:endDate></xbrli:period></xbrli:context>"
        f'<xbrli:context id="c-2"><xbrli:entity><xbrli:identifier scheme="http://www.sec.gov/CIK">{co.cik10}'
        f"</xbrli:identifier></xbrli:entity><xbrli:period><xbrli:instant>{end.isoformat()}</xbrli:instant>"
        "</xbrli:period></xbrli:context>"
        '<xbrli:unit id="usd"><xbrli:measure>iso4217:USD</xbrli:measure></xbrli:unit>'
        '<xbrli:unit id="usdPerShare"><xbrli:divide><xbrli:unitNumerator><xbrli:measure>iso4217:USD'
        "</xbrli:measure></xbrli:unitNumerator><xbrli:unitDenominator><xbrli:measure>xbrli:shares"
        "</xbrli:measure></xbrli:unitDenominator></xbrli:divide></xbrli:unit>"
        "</ix:resources></ix:header></div>"
    )


def _fields(co: Company, numbers: dict[str, float], r: Any) -> dict[str, Any]:
    return {"prod": r.choice(co.products), "growth": numbers["growth"], "growth_abs": abs(numbers["growth"]),
            "margin": numbers["margin"], "revenue": _money(int(numbers["revenue"])),
            "prior": _money(int(numbers["prior"])), "co": co.short}


def _mda(co: Company, numbers: dict[str, float], facts: _Facts, sentiment: str, r: Any, period: str) -> list[str]:
    out = [_p(f"The following discussion should be read in conjunction with the consolidated financial "
              f"statements and accompanying notes included elsewhere in this report. {escape(co.short)} "
              f"designs, develops and sells {', '.join(co.products[:-1])} and {co.products[-1]}.")]
    out.append(_h(f"{period} Highlights"))
    revenue = facts.num("us-gaap:RevenueFromContractWithCustomerExcludingAssessedTax", numbers["revenue"])
    eps = facts.num("us-gaap:EarningsPerShareDiluted", numbers["eps"], unit="usdPerShare", scale=0, decimals=2)
    out.append(_p(f"Total net sales were ${revenue} "
                  f"million, compared with ${_money(int(numbers['prior']))} million in the prior-year period, a "
                  f"change of {numbers['growth']}%. Net income was "
                  f"${facts.num('us-gaap:NetIncomeLoss', numbers['net'])} million and diluted earnings per share "
                  f"were ${eps}."))
    fields = _fields(co, numbers, r)
    for text in paragraphs(r, mda_bank(sentiment), 4, **fields):
        out.append(_p(escape(text)))
    out.append(_h("Net Sales by Category"))
    rows = "".join(
        f"<tr><td>{escape(prod)}</td><td style=\"text-align:right\">"
        f"${_money(int(numbers['revenue'] * w))}</td><td style=\"text-align:right\">"
        f"{numbers['growth'] + (i - 2) * 1.7:+.1f}%</td></tr>"
        for i, (prod, w) in enumerate(zip(co.products, (0.4, 0.25, 0.15, 0.12, 0.08)))
    )
    out.append(f'<table style="border-collapse:collapse;width:100%"><tr><td></td><td>Net sales (millions)</td>'
               f"<td>Change</td></tr>{rows}</table>")
    out.append(_h("Gross Margin"))
    out.append(_p(f"Gross margin was ${facts.num('us-gaap:GrossProfit', numbers['gross'])} million, or "
                  f"{numbers['margin']}% of net sales."))
    out.append(_h("Liquidity and Capital Resources"))
    cash = facts.num("us-gaap:CashAndCashEquivalentsAtCarryingValue", numbers["cash"], context="c-2")
    out.append(_p(f"As of the end of the period the Company had ${cash} "
                  "million in cash and cash equivalents. The Company believes its balances of cash, cash "
                  "equivalents and marketable securities, along with cash generated by operations and access to "
                  "capital markets, will be sufficient to satisfy its cash requirements for at least the next "
                  "12 months."))
    for text in paragraphs(r, mda_bank("neutral"), 3, **fields):
        out.append(_p(escape(text)))
    return out


def _statements(numbers: dict[str, float], facts: _Facts) -> list[str]:
    rows = [
        ("Net sales", numbers["revenue"]),
        ("Cost of sales", numbers["revenue"] - numbers["gross"]),
        ("Gross margin", numbers["gross"]),
        ("Operating expenses", numbers["gross"] - numbers["net"] * 1.2),
        ("Operating income", numbers["net"] * 1.2),
        ("Provision for income taxes", numbers["net"] * 0.2),
        ("Net income", numbers["net"]),
    ]
    table = "".join(f"<tr><td>{label}</td><td style=\"text-align:right\">${_money(int(v))}</td></tr>"
                    for label, v in rows)
    balance = "".join(
        f"<tr><td>{label}</td><td style=\"text-align:right\">${facts.num(name, v, context='c-2')}</td></tr>"
        for label, name, v in (("Total assets", "us-gaap:Assets", numbers["assets"]),
                               ("Total liabilities", "us-gaap:Liabilities", numbers["liabilities"]),
                               ("Total shareholders' equity", "us-gaap:StockholdersEquity",
                                numbers["assets"] - numbers["liabilities"])))
    return [_h("CONSOLIDATED STATEMENTS OF OPERATIONS (In millions, except per-share amounts)"),
            f'<table style="border-collapse:collapse;width:100%">{table}</table>',
            _h("CONSOLIDATED BALANCE SHEETS (In millions)"),
            f'<table style="border-collapse:collapse;width:100%">{balance}</table>']


_NOTES = (
    ("Summary of Significant Accounting Policies",
     "The consolidated financial statements include the accounts of the Company and its wholly owned "
     "subsidiaries. The preparation of these statements requires management to make estimates and "
     "assumptions that affect the amounts reported; actual results could differ materially."),
    ("Revenue", "Net sales consist of revenue from the sale of {prod} and related services. The Company "
                "recognizes revenue when control of the promised goods or services transfers to customers."),
    ("Financial Instruments", "The Company classifies its marketable debt securities as available-for-sale "
                              "and uses derivative instruments to partially offset foreign exchange risk."),
    ("Income Taxes", "The Company's effective tax rate differs from the statutory federal rate primarily due to "
                     "earnings of foreign subsidiaries and research and development credits."),
    ("Leases", "The Company has lease arrangements for retail, data center, manufacturing and office space, "
               "with remaining terms of up to 20 years."),
    ("Debt", "The Company issues unsecured short-term promissory notes under a commercial paper program and has "
             "outstanding fixed-rate notes with maturities through 2060."),
    ("Commitments and Contingencies", "The Company is subject to legal proceedings and claims that have arisen "
                                      "in the ordinary course of business and have not been fully resolved."),
    ("Segment Information", "The Company manages its business primarily on a geographic basis; its reportable "
                            "segments are the Americas, Europe, Greater China, Japan and Rest of Asia Pacific."),
)


def _ten_k(seed: int, co: Company, filing: Filing, facts: _Facts, numbers: dict[str, float], sentiment: str,
           r: Any) -> list[str]:
    ceo = executives(seed, co)[0]
    prods = ", ".join(co.products)
    out = [_h("PART I"), _h("Item 1. Business"), _h("Company Background")]
    out.append(_p(f"{escape(co.name)} (the &#8220;Company&#8221;) designs, manufactures and markets {escape(prods)}. "
                  f"The Company's fiscal year ends in {dt.date(2000, int(co.fiscal_year_end[:2]), 1):%B}."))
    for prod in co.products:
        out.append(_h(prod[:1].upper() + prod[1:]))
        out.append(_p(f"{escape(prod[:1].upper() + prod[1:])} is one of the Company's principal offerings. The Company "
                      f"continues to invest in research and development for {escape(prod)} and competes on "
                      "price, quality, features, ecosystem and service."))
    out.append(_h("Human Capital"))
    out.append(_p(f"As of the end of fiscal {filing.fiscal_year}, the Company had approximately "
                  f"{20 + r.randrange(200)},000 full-time equivalent employees. {escape(ceo.name)} serves as "
                  f"{escape(ceo.title)}."))
    out.append(_h("Item 1A. Risk Factors"))
    out.append(_p("The Company's business, reputation, results of operations, financial condition and stock "
                  "price can be affected by a number of factors, whether currently known or unknown, including "
                  "those described below."))
    for i, risk in enumerate(RISK_FACTORS):
        text = risk.format(prod=r.choice(co.products))
        out.append(_h(text.split(",")[0].rstrip(".") + "."))
        out.append(_p(escape(text)))
        out.append(_p(_ELABORATION[i % 3]))
        out.append(_p(_ELABORATION[(i + 1) % 3]))
    out += [_h("Item 1B. Unresolved Staff Comments"), _p("None."),
            _h("Item 1C. Cybersecurity"),
            _p("The Company maintains a cybersecurity program overseen by its Audit Committee and led by its "
               "Chief Information Security Officer, with regular assessments and incident response planning."),
            _h("Item 2. Properties"),
            _p("The Company's headquarters are in the United States; it owns or leases facilities for research, "
               "manufacturing, data centers, retail and administration in the U.S. and abroad."),
            _h("Item 3. Legal Proceedings"),
            _p("The Company is subject to legal proceedings and claims, including the matters described in Note "
               "7 of the Notes to Consolidated Financial Statements."),
            _h("Item 4. Mine Safety Disclosures"), _p("Not applicable."),
            _h("PART II"),
            _h("Item 5. Market for Registrant's Common Equity, Related Stockholder Matters and Issuer Purchases "
               "of Equity Securities"),
            _p(f"The Company's common stock is traded on the {escape(co.exchange)} under the symbol "
               f"{escape(co.ticker)}."),
            _h("Item 6. [Reserved]"),
            _h("Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations")]
    out += _mda(co, numbers, facts, sentiment, r, f"Fiscal {filing.fiscal_year}")
    out += [_h("Item 7A. Quantitative and Qualitative Disclosures About Market Risk"),
            _p("The Company is exposed to interest rate risk and foreign currency exchange rate risk, which it "
               "manages in part through derivative instruments."),
            _h("Item 8. Financial Statements and Supplementary Data")]
    out += _statements(numbers, facts)
    out.append(_h("Notes to Consolidated Financial Statements"))
    for i, (title, text) in enumerate(_NOTES, 1):
        out.append(_h(f"Note {i} &#8211; {title}"))
        out.append(_p(escape(text.format(prod=r.choice(co.products)))))
        out.append(_p(_ELABORATION[i % 3]))
    out += [_h("Item 9. Changes in and Disagreements with Accountants on Accounting and Financial Disclosure"),
            _p("None."), _h("Item 9A. Controls and Procedures"),
            _p("Based on an evaluation under the supervision and with the participation of management, the "
               "Company's disclosure controls and procedures were effective as of the end of the period."),
            _h("Item 9B. Other Information"), _p("None."),
            _h("PART III"),
            _h("Item 10. Directors, Executive Officers and Corporate Governance"),
            _p("Incorporated by reference to the Company's Proxy Statement for its annual meeting."),
            _h("Item 11. Executive Compensation"), _p("Incorporated by reference to the Proxy Statement."),
            _h("PART IV"), _h("Item 15. Exhibit and Financial Statement Schedules"),
            _p("31.1 Rule 13a-14(a) / 15d-14(a) Certification of the Chief Executive Officer; 31.2 Certification "
               "of the Chief Financial Officer; 32.1 Section 1350 Certifications; 101 Inline XBRL documents."),
            _h("Item 16. Form 10-K Summary"), _p("None.")]
    return out


def _ten_q(seed: int, co: Company, filing: Filing, facts: _Facts, numbers: dict[str, float], sentiment: str,
           r: Any) -> list[str]:
    out = [_h("PART I &#8212; FINANCIAL INFORMATION"), _h("Item 1. Financial Statements")]
    out += _statements(numbers, facts)
    out.append(_h("Notes to Condensed Consolidated Financial Statements"))
    for i, (title, text) in enumerate(_NOTES[:5], 1):
        out.append(_h(f"Note {i} &#8211; {title}"))
        out.append(_p(escape(text.format(prod=r.choice(co.products)))))
    out.append(_h("Item 2. Management's Discussion and Analysis of Financial Condition and Results of Operations"))
    out += _mda(co, numbers, facts, sentiment, r, f"Fiscal {filing.fiscal_year} Q{filing.quarter}")
    out += [_h("Item 3. Quantitative and Qualitative Disclosures About Market Risk"),
            _p("There have been no material changes to the Company's market risk during the period."),
            _h("Item 4. Controls and Procedures"),
            _p("The Company's disclosure controls and procedures were effective as of the end of the period."),
            _h("PART II &#8212; OTHER INFORMATION"), _h("Item 1. Legal Proceedings"),
            _p("See Note 7 &#8211; Commitments and Contingencies."), _h("Item 1A. Risk Factors")]
    for i, risk in enumerate(RISK_FACTORS[:6]):
        out.append(_p(escape(risk.format(prod=r.choice(co.products)))))
        out.append(_p(_ELABORATION[i % 3]))
    out += [_h("Item 2. Unregistered Sales of Equity Securities and Use of Proceeds"),
            _p(f"During the quarter the Company repurchased {1 + r.randrange(90)} million shares of its common "
               "stock under its share repurchase program."),
            _h("Item 5. Other Information"), _p("None."), _h("Item 6. Exhibits"),
            _p("31.1, 31.2 Certifications; 32.1 Section 1350 Certifications; 101 Inline XBRL documents.")]
    return out


def _eight_k(seed: int, co: Company, filing: Filing, facts: _Facts, numbers: dict[str, float], sentiment: str,
             r: Any) -> list[str]:
    out: list[str] = []
    items = filing.items.split(",")
    if "2.02" in items:
        q = f"Q{filing.quarter} of fiscal {filing.fiscal_year}" if filing.fiscal_year else "the quarter"
        out += [_h("Item 2.02 Results of Operations and Financial Condition."),
                _p(f"On {filing.filing_date.strftime('%B %d, %Y')}, {escape(co.name)} issued a press release "
                   f"regarding its financial results for {q}. A copy is furnished as Exhibit 99.1."),
                _h("Press release summary"),
                _p(f"{escape(co.short)} reported net sales of ${_money(int(numbers['revenue']))} million, a change "
                   f"of {numbers['growth']}% from a year earlier, and diluted earnings per share of "
                   f"${numbers['eps']:.2f}.")]
        for text in paragraphs(r, mda_bank(sentiment), 3, **_fields(co, numbers, r)):
            out.append(_p(escape(text)))
    if "5.07" in items:
        out += [_h("Item 5.07 Submission of Matters to a Vote of Security Holders."),
                _p(f"At the annual meeting, shareholders elected each of the {7 + r.randrange(5)} director nominees, "
                   "ratified the appointment of the independent registered public accounting firm and approved, "
                   "on an advisory basis, executive compensation. A shareholder proposal was not approved.")]
    if "5.02" in items:
        out += [_h("Item 5.02 Departure of Directors or Certain Officers; Election of Directors; Appointment of "
                   "Certain Officers."),
                _p(f"The Board appointed {escape(person(seed, co.ticker, filing.accession))} as a director, "
                   "effective immediately.")]
    if "1.01" in items:
        out += [_h("Item 1.01 Entry into a Material Definitive Agreement."),
                _p(f"The Company entered into a credit agreement providing for a ${5 + r.randrange(20)} billion "
                   "unsecured revolving credit facility.")]
    if "8.01" in items:
        out += [_h("Item 8.01 Other Events."),
                _p(f"{escape(co.short)} announced an update regarding its {escape(r.choice(co.products))} "
                   "business. The information is furnished and not filed.")]
    out += [_h("Item 9.01 Financial Statements and Exhibits."),
            _p("(d) Exhibits. 99.1 Press release; 104 Cover Page Interactive Data File (embedded within the "
               "Inline XBRL document).")]
    return out


def _ten_k_amendment(seed: int, co: Company, filing: Filing, r: Any) -> list[str]:
    ceo, cfo, _ = executives(seed, co)
    return [_h("EXPLANATORY NOTE"),
            _p(f"This Amendment No. 1 on Form 10-K/A amends the Annual Report on Form 10-K of {escape(co.name)} for "
               f"the fiscal year ended {filing.report_date} solely to include the information required by Part "
               "III. No other changes have been made."),
            _h("PART III"), _h("Item 10. Directors, Executive Officers and Corporate Governance"),
            _p(f"{escape(ceo.name)}, {escape(ceo.title)}; {escape(cfo.name)}, {escape(cfo.title)}."),
            _h("Item 11. Executive Compensation"),
            _p(f"Total compensation of the Chief Executive Officer was ${10 + r.randrange(40)}.{r.randrange(10)} "
               "million, most of it in performance-based equity awards.")]


def form4_xml(seed: int, co: Company, filing: Filing) -> str:
    r = rng(seed, "form4", filing.accession)
    owner = person(seed, co.ticker, "insider", r.randrange(6))
    shares = 1000 * (1 + r.randrange(200))
    code = r.choice(("S", "S", "M", "A", "P"))
    return (
        '<?xml version="1.0"?>\n<ownershipDocument>\n<schemaVersion>X0508</schemaVersion>\n'
        "<documentType>4</documentType>\n"
        f"<periodOfReport>{filing.report_date}</periodOfReport>\n"
        f"<issuer><issuerCik>{co.cik10}</issuerCik><issuerName>{escape(co.name)}</issuerName>"
        f"<issuerTradingSymbol>{co.ticker}</issuerTradingSymbol></issuer>\n"
        f"<reportingOwner><reportingOwnerId><rptOwnerCik>{1_800_000 + r.randrange(99_999):010d}</rptOwnerCik>"
        f"<rptOwnerName>{escape(owner)}</rptOwnerName></reportingOwnerId><reportingOwnerRelationship>"
        "<isOfficer>1</isOfficer><officerTitle>Senior Vice President</officerTitle></reportingOwnerRelationship>"
        "</reportingOwner>\n<nonDerivativeTable><nonDerivativeTransaction>"
        "<securityTitle><value>Common Stock</value></securityTitle>"
        f"<transactionDate><value>{filing.report_date}</value></transactionDate>"
        f"<transactionCoding><transactionFormType>4</transactionFormType><transactionCode>{code}"
        "</transactionCode></transactionCoding><transactionAmounts>"
        f"<transactionShares><value>{shares}</value></transactionShares>"
        f"<transactionPricePerShare><value>{50 + r.random() * 400:.2f}</value></transactionPricePerShare>"
        f"<transactionAcquiredDisposedCode><value>{'D' if code == 'S' else 'A'}</value>"
        "</transactionAcquiredDisposedCode></transactionAmounts></nonDerivativeTransaction></nonDerivativeTable>\n"
        "</ownershipDocument>\n"
    )


def index_page(co: Company, filing: Filing) -> str:
    accepted = filing.acceptance.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>EDGAR Filing Documents for {filing.accession}</title></head><body>\n"
        f'<div id="formName"><strong>Form {escape(filing.form)}</strong></div>\n'
        f'<div class="formGrouping"><div class="infoHead">Filing Date</div><div class="info">'
        f"{filing.filing_date.isoformat()}</div>"
        f'<div class="infoHead">Accepted</div><div class="info">{accepted}</div>'
        f'<div class="infoHead">Period of Report</div><div class="info">{filing.report_date}</div></div>\n'
        f'<div class="companyInfo"><span class="companyName">{escape(co.name)} (Filer) CIK: {co.cik10}</span></div>\n'
        '<table class="tableFile" summary="Document Format Files"><tr><th>Seq</th><th>Description</th>'
        "<th>Document</th><th>Type</th><th>Size</th></tr>"
        f'<tr><td>1</td><td>{escape(filing.description)}</td><td><a href="{escape(filing.primary_document)}">'
        f"{escape(filing.primary_document)}</a></td><td>{escape(filing.form)}</td><td>{filing.size}</td></tr>"
        "</table>\n</body></html>\n"
    )
