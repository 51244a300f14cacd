"""SEC EDGAR client: ticker -> CIK, the submissions API, filing index pages and primary documents.

Fair access is enforced here, not hoped for:

* **User-Agent.** SEC refuses automated traffic that does not name its requester with a contact e-mail.
  ``EdgarClient`` refuses to be built without one (``EdgarConfigError``), before any request is sent. The
  User-Agent is never logged.
* **Rate.** Every request first takes a slot from the Redis-backed ``SharedRateLimiter`` under the provider
  key ``quota:{sec:fair-access}:*`` -- one budget for every worker on every machine, default 8 requests/s
  (``HEADWATER_EDGAR_MAX_REQUESTS_PER_S``, at most 10; SEC blocks at about 10 in any second).
* **Blocks.** A 403 or 429 from either host means SEC has blocked us (it sends no Retry-After, and every
  request during a block extends it). The client sets the limiter's shared block for
  ``block_cooloff_s`` (default 600 s), which makes *every* worker's next ``acquire()`` wait, and raises
  ``EdgarBlocked`` (not retryable): callers stop instead of retrying into the block.

``acceptanceDateTime``: the submissions JSON writes it with a trailing ``Z``, but about one filer in five puts
the New York wall-clock time there. We never trust the ``Z``: ``acceptance_time`` reads the "Accepted" time
from the filing's ``-index.htm`` page, which EDGAR always shows on the New York clock, and converts it to UTC.
If the index page cannot be read, the later of the two possible readings of the JSON value (as UTC, or as
New York time) is used, so a filing is never treated as public before it was (no look-ahead).

Hosts: ``www.sec.gov`` (ticker map, archives) is ``EdgarSettings.resolved_base_url()``; ``data.sec.gov``
(submissions) is ``LIVE_DATA_URL`` in live mode, the stand-in's ``/sec-data`` prefix in simulated mode.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import requests
from bs4 import BeautifulSoup

from headwater.keys import Keys
from headwater.models import Filing
from headwater.providers.http import BadRequest, HttpClient, MalformedResponse, ProviderError, ProviderTimeout
from headwater.ratelimit import Limits, SharedRateLimiter
from headwater.settings import EdgarSettings, ProviderMode, StandInSettings
from headwater.timeframes import NEW_YORK

log = logging.getLogger("headwater.providers.edgar")

PROVIDER = "sec"
LIMITER_KEY_ID = "fair-access"  # one budget per requester (SEC counts per organisation), not per worker
PERIODIC_FORMS: tuple[str, ...] = ("10-K", "10-Q", "10-K/A", "10-Q/A")
DEFAULT_MAX_DOCUMENT_BYTES = 50_000_000  # real 10-Ks with inline XBRL run to tens of MB
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_SAMPLE_AGENTS = {"sample company name admincontact@example.com"}  # SEC's documentation example


class EdgarConfigError(ValueError):
    """The client is not configured for fair access (no User-Agent with a contact e-mail)."""


class EdgarBlocked(ProviderError):
    """SEC answered 403/429: every worker is paused for ``cooloff_s``; do not retry into the block."""

    retryable = False

    def __init__(self, message: str, *, status: int, cooloff_s: float) -> None:
        super().__init__(PROVIDER, message, status=status)
        self.cooloff_s = cooloff_s


class DocumentTooLarge(ProviderError):
    """A document is larger than the configured limit (not retryable: it will not shrink)."""

    retryable = False


def check_user_agent(user_agent: str | None) -> str:
    """Return the User-Agent if it names a requester with a contact e-mail, else raise ``EdgarConfigError``."""
    agent = (user_agent or "").strip()
    if not agent:
        raise EdgarConfigError(
            "SEC EDGAR requires a User-Agent naming you with a contact e-mail: set HEADWATER_EDGAR_USER_AGENT, "
            "e.g. 'Acme Research ops@acme.com'. Refusing to send requests without it."
        )
    if not _EMAIL.search(agent) or agent.lower() in _SAMPLE_AGENTS:
        raise EdgarConfigError(
            "HEADWATER_EDGAR_USER_AGENT must name your organisation and give a real contact e-mail "
            "(e.g. 'Acme Research ops@acme.com'); SEC blocks undeclared tools. Refusing to send requests."
        )
    return agent


def data_url(settings: EdgarSettings, standins: StandInSettings | None = None) -> str:
    """The data.sec.gov base URL (submissions API) matching ``settings.resolved_base_url()``.

    An explicit ``base_url`` ending in the stand-in's ``/sec`` prefix maps to ``/sec-data``; any other
    explicit base URL (a proxy) is assumed to serve both hosts.
    """
    if settings.base_url:
        base = settings.base_url.rstrip("/")
        if base.endswith(settings.STANDIN_PREFIX):
            return base[: -len(settings.STANDIN_PREFIX)] + settings.STANDIN_DATA_PREFIX
        return base
    if settings.effective_mode is ProviderMode.LIVE:
        return settings.LIVE_DATA_URL
    www = settings.resolved_base_url(standins)  # raises the clear "start the stand-in" error if needed
    return www[: -len(settings.STANDIN_PREFIX)] + settings.STANDIN_DATA_PREFIX


def fair_access_limiter(client: redis.Redis, keys: Keys, settings: EdgarSettings, **kwargs: Any) -> SharedRateLimiter:
    """The limiter every EDGAR worker shares (rate ``max_requests_per_s``, shared block flag)."""
    return SharedRateLimiter(client, keys, PROVIDER, LIMITER_KEY_ID, Limits(per_second=settings.max_requests_per_s),
                             **kwargs)  # fmt: skip


def fiscal_period(report_date: str | None, fiscal_year_end: str | None) -> int | None:
    """Fiscal period ``YYYYQ`` of a period ending ``report_date`` for a fiscal year ending ``MMDD``.

    A fiscal year is named by the calendar year in which it ends (EDGAR's convention). Period ends in the
    first week of a month belong to the previous month (52/53-week years end e.g. on Oct 1 for a September
    year end).
    """
    if not report_date or not fiscal_year_end or len(fiscal_year_end) != 4:
        return None
    try:
        end = dt.date.fromisoformat(report_date)
        fye_month = int(fiscal_year_end[:2])
    except ValueError:
        return None
    if not 1 <= fye_month <= 12:
        return None
    if end.day <= 7:
        end = end.replace(day=1) - dt.timedelta(days=1)
    year = end.year if end.month <= fye_month else end.year + 1
    quarter = ((end.month - fye_month - 1) % 12) // 3 + 1
    return year * 10 + quarter


def parse_acceptance(text: str) -> dt.datetime:
    """``acceptanceDateTime`` as written (``2024-11-01T06:01:36.000Z``), read as UTC."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def conservative_acceptance(text: str) -> dt.datetime:
    """The later of the two readings of a ``...Z`` acceptance time: as UTC, or as New York wall time."""
    as_utc = parse_acceptance(text)
    as_new_york = as_utc.replace(tzinfo=None).replace(tzinfo=NEW_YORK).astimezone(dt.timezone.utc)
    return max(as_utc, as_new_york)


@dataclass(frozen=True)
class FilingRef:
    """A filing from the submissions API, with what the fetcher needs besides ``Filing``."""

    filing: Filing
    acceptance_text: str  # as the submissions JSON wrote it
    period: int | None  # fiscal YYYYQ
    url: str  # the primary document

    @property
    def index_url_path(self) -> str:
        f = self.filing
        return f"/Archives/edgar/data/{f.cik}/{f.accession.replace('-', '')}/{f.accession}-index.htm"


class EdgarClient(HttpClient):
    """EDGAR over HTTP with fair access enforced (see the module docstring)."""

    provider = PROVIDER

    def __init__(
        self,
        user_agent: str | None,
        *,
        base_url: str,
        data_url: str,
        limiter: SharedRateLimiter,
        cooloff_s: float = 600.0,
        timeout_s: float = 30.0,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        agent = check_user_agent(user_agent)  # before anything else: no request without a declared agent
        if limiter is None:
            raise EdgarConfigError("EdgarClient needs the shared fair-access limiter (fair_access_limiter())")
        super().__init__(base_url, timeout_s=timeout_s, limiter=limiter, user_agent=agent, session=session)
        self.data_url = data_url.rstrip("/")
        self.cooloff_s = cooloff_s
        self.max_document_bytes = max_document_bytes
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        self._cik_map: dict[str, int] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: EdgarSettings,
        client: redis.Redis,
        keys: Keys,
        *,
        standins: StandInSettings | None = None,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        **limiter_kwargs: Any,
    ) -> EdgarClient:
        """A client for the configured mode, sharing the fair-access limiter in ``client``'s Redis."""
        check_user_agent(settings.user_agent)  # refuse before resolving URLs or touching Redis
        return cls(
            settings.user_agent,
            base_url=settings.resolved_base_url(standins),
            data_url=data_url(settings, standins),
            limiter=fair_access_limiter(client, keys, settings, **limiter_kwargs),
            cooloff_s=settings.block_cooloff_s,
            timeout_s=settings.timeout_s,
            max_document_bytes=max_document_bytes,
        )

    def __repr__(self) -> str:  # never show the User-Agent (it carries a person's e-mail)
        return f"EdgarClient(base_url={self.base_url!r}, data_url={self.data_url!r})"

    # -- fair access -----------------------------------------------------------------------------------
    def _raise_for_status(self, response: requests.Response) -> None:
        if response.status_code in (403, 429):
            title = _page_title(response.text) or f"HTTP {response.status_code}"
            reason = f"{response.status_code} from {response.url.split('?')[0]}: {title}"
            self.limiter.block(self.cooloff_s, reason)
            raise EdgarBlocked(f"{reason}; every worker paused for {self.cooloff_s:.0f}s", status=response.status_code,
                               cooloff_s=self.cooloff_s)  # fmt: skip
        super()._raise_for_status(response)

    # -- API -------------------------------------------------------------------------------------------
    def cik_map(self) -> dict[str, int]:
        """Ticker -> CIK from ``/files/company_tickers.json`` (fetched once per client)."""
        if self._cik_map is None:
            body = self.get_json("/files/company_tickers.json")
            if not isinstance(body, dict):
                raise self.malformed("company_tickers.json is not an object")
            mapping: dict[str, int] = {}
            try:
                for row in body.values():
                    mapping[str(row["ticker"]).upper()] = int(row["cik_str"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self.malformed(f"company_tickers.json row without ticker/cik_str: {exc}") from exc
            self._cik_map = mapping
        return self._cik_map

    def cik(self, ticker: str) -> int | None:
        """The CIK of a ticker (EDGAR writes class shares with '-': ``BRK.B`` is ``BRK-B``), or None."""
        mapping = self.cik_map()
        return mapping.get(ticker.upper()) or mapping.get(ticker.upper().replace(".", "-"))

    def submissions(self, cik: int) -> dict[str, Any]:
        """``data.sec.gov/submissions/CIK##########.json``, shape-checked."""
        body = self.get_json(f"{self.data_url}/submissions/CIK{cik:010d}.json")
        recent = body.get("filings", {}).get("recent") if isinstance(body, dict) else None
        if not isinstance(recent, dict) or not isinstance(recent.get("accessionNumber"), list):
            raise self.malformed(f"submissions of CIK {cik} without filings.recent")
        n = len(recent["accessionNumber"])
        for column in ("form", "acceptanceDateTime", "filingDate", "primaryDocument", "reportDate"):
            if not isinstance(recent.get(column), list) or len(recent[column]) != n:
                raise self.malformed(f"submissions of CIK {cik}: column {column!r} missing or of another length")
        return body

    def filings(self, ticker: str, cik: int, forms: Iterable[str] = PERIODIC_FORMS,
                since: dt.datetime | None = None) -> list[FilingRef]:
        """The ticker's filings of ``forms`` accepted at or after ``since`` (conservatively read), oldest first."""
        body = self.submissions(cik)
        recent = body["filings"]["recent"]
        wanted = set(forms)
        out: list[FilingRef] = []
        for i, form in enumerate(recent["form"]):
            if form not in wanted:
                continue
            accepted_text = recent["acceptanceDateTime"][i]
            try:
                accepted = conservative_acceptance(accepted_text)
            except (AttributeError, ValueError) as exc:
                raise self.malformed(f"acceptanceDateTime {accepted_text!r} of CIK {cik}: {exc}") from exc
            if since is not None and accepted < since:
                continue
            accession = recent["accessionNumber"][i]
            document = recent["primaryDocument"][i]
            filing = Filing(
                ticker=ticker, cik=cik, accession=accession, form=form, filed_on=recent["filingDate"][i],
                report_date=recent["reportDate"][i] or None, accepted_at=parse_acceptance(accepted_text),
                primary_document=document,
            )  # fmt: skip
            url = f"{self.base_url}/Archives/edgar/data/{cik}/{accession.replace('-', '')}/{document}"
            out.append(FilingRef(filing, accepted_text, fiscal_period(filing.report_date, body.get("fiscalYearEnd")), url))
        return sorted(out, key=lambda ref: (ref.filing.accepted_at, ref.filing.accession))

    def acceptance_time(self, ref: FilingRef) -> dt.datetime:
        """When the market could know the filing: the index page's New York "Accepted" time, in UTC.

        Falls back to the conservative reading of the JSON value when the page has no such field or is
        missing (a fair-access block is raised, never swallowed).
        """
        try:
            page = self.request("GET", ref.index_url_path).text
        except (BadRequest, MalformedResponse) as exc:
            log.warning("%s: index page unreadable (%s); using the conservative acceptance time", ref.filing.accession, exc)
            return conservative_acceptance(ref.acceptance_text)
        accepted = _accepted_on_index_page(page)
        if accepted is None:
            log.warning("%s: no 'Accepted' time on the index page; using the conservative acceptance time",
                        ref.filing.accession)  # fmt: skip
            return conservative_acceptance(ref.acceptance_text)
        return accepted

    def download(self, url: str, max_bytes: int | None = None) -> bytes:
        """GET a document, refusing more than ``max_bytes`` (default ``max_document_bytes``) without reading it all."""
        limit = max_bytes or self.max_document_bytes
        response = self.request("GET", url, stream=True)
        try:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit and "gzip" not in response.headers.get(
                "Content-Encoding", ""
            ):
                raise DocumentTooLarge(self.provider, f"{url.split('?')[0]} is {int(declared):,} bytes, over the "
                                                      f"{limit:,}-byte limit")  # fmt: skip
            body = bytearray()
            try:
                for piece in response.iter_content(chunk_size=1 << 16):
                    body += piece
                    if len(body) > limit:
                        raise DocumentTooLarge(self.provider, f"{url.split('?')[0]} exceeds the {limit:,}-byte limit")
            except requests.RequestException as exc:
                raise ProviderTimeout(self.provider, f"download of {url.split('?')[0]} broke off: {exc.__class__.__name__}") from exc
            return bytes(body)
        finally:
            response.close()


def _page_title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html[:4000], re.I | re.S)
    return re.sub(r"\s+", " ", match.group(1)).strip() if match else ""


def _accepted_on_index_page(html: str) -> dt.datetime | None:
    """The "Accepted" time (New York clock) of an EDGAR filing index page, in UTC."""
    soup = BeautifulSoup(html, "lxml")
    for head in soup.select("div.infoHead"):
        if head.get_text(strip=True).lower() == "accepted":
            info = head.find_next_sibling("div", class_="info")
            if info is None:
                return None
            try:
                local = dt.datetime.strptime(info.get_text(strip=True), "%Y-%m-%d %H:%M:%S")
            except ValueError:
                return None
            return local.replace(tzinfo=NEW_YORK).astimezone(dt.timezone.utc)
    return None
