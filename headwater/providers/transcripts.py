"""Earnings-call transcript scraper: a polite HTML scraper with a configurable URL template and CSS selectors.

* **Where.** ``TranscriptSettings.url_template`` (default ``{base}/{ticker}/{year}/q{quarter}``) builds a
  transcript's URL; the same template, turned into a pattern, recognises transcript links on a ticker's
  index page (``index_template``, default ``{base}/{ticker}``). ``year`` is the fiscal year.
* **What.** ``TranscriptSelectors`` name the page's parts (defaults fit the stand-in's markup, which follows
  the common layout of transcript sites): the call time, the prepared-remarks and Q&A sections, the speaker
  turns and, inside a turn, the speaker, role and paragraphs. ``parse_transcript`` keeps every turn with its
  speaker, role and section; a page without turns in both sections is a ``TranscriptParseError``.
* **Politeness.** robots.txt is read once per scraper (site root, else the base path) and honoured for
  every URL (``RobotsDisallowed``, no request sent); requests are spaced by at least the robots
  ``Crawl-delay`` and ``min_interval_s``, and, with a Redis client, by the shared limiter across workers
  (``quota:{transcripts:site}:*``). Pages over ``max_bytes`` are refused while downloading
  (``TranscriptTooLarge``). A 429 raises ``RateLimited`` with the site's Retry-After (retryable).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import urllib.robotparser
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import redis
import requests
from bs4 import BeautifulSoup, Tag
from pydantic import BaseModel, ConfigDict, ValidationError

from headwater.keys import Keys, check_ticker
from headwater.models import Transcript, TranscriptTurn
from headwater.providers.http import BadRequest, HttpClient, ProviderError, ProviderTimeout
from headwater.ratelimit import Limits, SharedRateLimiter
from headwater.settings import StandInSettings, TranscriptSettings

log = logging.getLogger("headwater.providers.transcripts")

PROVIDER = "transcripts"
DEFAULT_USER_AGENT = "headwater/0.1 (earnings-call transcript scraper)"
ROBOTS_AGENT = "headwater"
DEFAULT_INDEX_TEMPLATE = "{base}/{ticker}"


class TranscriptSelectors(BaseModel):
    """CSS selectors for one transcript site's markup (defaults: the stand-in's, a common layout)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index_link: str = "ul.transcripts a[href]"
    call_time: str = "time.call-date"
    call_time_attr: str = "datetime"
    prepared_remarks: str = "section.prepared-remarks"
    qa: str = "section.question-and-answer"
    turn: str = "div.turn"
    speaker: str = ".speaker"
    role: str = ".role"
    paragraph: str = "p"


class RobotsDisallowed(ProviderError):
    """robots.txt forbids the URL: it was not requested."""


class TranscriptTooLarge(ProviderError):
    """A page is larger than ``max_bytes`` (not retryable)."""


class TranscriptParseError(ValueError):
    """The page does not look like a transcript under the configured selectors."""


@dataclass(frozen=True)
class TranscriptLink:
    ticker: str
    year: int
    quarter: int
    url: str

    @property
    def doc_id(self) -> str:
        return f"transcript:{self.ticker}:{self.year}Q{self.quarter}"


def template_pattern(template: str, base: str) -> re.Pattern[str]:
    """A regex matching the URLs ``template`` builds, capturing ``ticker``, ``year`` and ``quarter``."""
    fields = {"base": re.escape(base.rstrip("/")), "ticker": r"(?P<ticker>[A-Za-z0-9.\-]+)",
              "year": r"(?P<year>\d{4})", "quarter": r"(?P<quarter>[1-4])"}  # fmt: skip
    pattern, pos = "", 0
    for match in re.finditer(r"\{(\w+)\}", template):
        pattern += re.escape(template[pos : match.start()]) + fields[match.group(1)]
        pos = match.end()
    pattern += re.escape(template[pos:])
    return re.compile(f"^{pattern}/?$", re.IGNORECASE)


def parse_transcript(
    html: bytes | str, *, ticker: str, year: int, quarter: int, url: str,
    selectors: TranscriptSelectors | None = None,
) -> Transcript:  # fmt: skip
    """A transcript page -> ``Transcript`` with every speaker turn in its section (prepared remarks or Q&A)."""
    sel = selectors or TranscriptSelectors()
    soup = BeautifulSoup(html, "lxml")
    time_tag = soup.select_one(sel.call_time)
    if time_tag is None or not time_tag.get(sel.call_time_attr):
        raise TranscriptParseError(f"{url}: no call time ({sel.call_time}[{sel.call_time_attr}])")
    try:
        call_at = dt.datetime.fromisoformat(str(time_tag[sel.call_time_attr]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise TranscriptParseError(f"{url}: unreadable call time {time_tag[sel.call_time_attr]!r}") from exc
    if call_at.tzinfo is None:
        raise TranscriptParseError(f"{url}: call time {call_at.isoformat()} has no time zone")
    turns: list[TranscriptTurn] = []
    for section, selector in (("prepared_remarks", sel.prepared_remarks), ("qa", sel.qa)):
        container = soup.select_one(selector)
        found = _turns(container, section, sel) if container is not None else []
        if not found:
            raise TranscriptParseError(f"{url}: no speaker turns in {section} ({selector} {sel.turn})")
        turns += found
    try:
        return Transcript(ticker=ticker, year=year, quarter=quarter, call_at=call_at, url=url, turns=tuple(turns))
    except ValidationError as exc:
        raise TranscriptParseError(f"{url}: {exc.errors()[0]['msg']}") from exc


def _turns(container: Tag, section: str, sel: TranscriptSelectors) -> list[TranscriptTurn]:
    out = []
    for turn in container.select(sel.turn):
        speaker = turn.select_one(sel.speaker)
        role = turn.select_one(sel.role)
        paragraphs = [re.sub(r"\s+", " ", p.get_text(" ", strip=True)) for p in turn.select(sel.paragraph)]
        text = "\n".join(p for p in paragraphs if p)
        if speaker is None or not text:
            continue
        out.append(TranscriptTurn(speaker=speaker.get_text(" ", strip=True), role=role.get_text(" ", strip=True) if role else "",
                                  section=section, text=text))  # fmt: skip
    return out


class TranscriptScraper(HttpClient):
    """Fetches transcript pages politely and parses them (see the module docstring)."""

    provider = PROVIDER

    def __init__(
        self,
        base_url: str,
        *,
        url_template: str = "{base}/{ticker}/{year}/q{quarter}",
        index_template: str = DEFAULT_INDEX_TEMPLATE,
        selectors: TranscriptSelectors | None = None,
        max_bytes: int = 5_000_000,
        min_interval_s: float = 1.0,
        limiter: SharedRateLimiter | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout_s: float = 30.0,
        respect_robots: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("transcripts: no base URL configured (HEADWATER_TRANSCRIPTS_BASE_URL)")
        super().__init__(base_url, timeout_s=timeout_s, limiter=limiter, user_agent=user_agent, session=session)
        self.url_template = url_template
        self.index_template = index_template
        self.selectors = selectors or TranscriptSelectors()
        self.max_bytes = max_bytes
        self.min_interval_s = min_interval_s
        self.respect_robots = respect_robots
        self._pattern = template_pattern(url_template, self.base_url)
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._last_request = 0.0
        self._pace_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: TranscriptSettings,
        client: redis.Redis | None = None,
        keys: Keys | None = None,
        *,
        standins: StandInSettings | None = None,
        per_second: float = 1.0,
        **kwargs: Any,
    ) -> TranscriptScraper:
        """A scraper for the configured site; with a Redis ``client`` its rate is shared by every worker."""
        limiter = None
        if client is not None:
            limiter = SharedRateLimiter(client, keys or Keys(), PROVIDER, "site", Limits(per_second=per_second))
        kwargs.setdefault("min_interval_s", 1.0 / per_second)
        return cls(settings.resolved_base_url(standins), url_template=settings.url_template, max_bytes=settings.max_bytes,
                   limiter=limiter, timeout_s=settings.timeout_s, **kwargs)  # fmt: skip

    # -- politeness ------------------------------------------------------------------------------------
    def robots(self) -> urllib.robotparser.RobotFileParser:
        """robots.txt of the site (root first, then the base path; none found = everything allowed)."""
        if self._robots is None:
            parser = urllib.robotparser.RobotFileParser()
            parts = urlsplit(self.base_url)
            candidates = [f"{parts.scheme}://{parts.netloc}/robots.txt"]
            if parts.path.strip("/"):
                candidates.append(f"{self.base_url}/robots.txt")
            lines: list[str] | None = None
            for url in candidates:
                try:
                    lines = self.get_page(url, check_robots=False).decode("utf-8", "replace").splitlines()
                    break
                except BadRequest:  # 404 & co: no robots.txt here
                    continue
            parser.parse(lines or [])
            self._robots = parser
            delay = parser.crawl_delay(ROBOTS_AGENT)
            if delay:
                self.min_interval_s = max(self.min_interval_s, float(delay))
        return self._robots

    def allowed(self, url: str) -> bool:
        return not self.respect_robots or self.robots().can_fetch(ROBOTS_AGENT, url)

    def _pace(self) -> None:
        with self._pace_lock:
            wait = self._last_request + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()

    def get_page(self, url: str, *, check_robots: bool = True) -> bytes:
        """GET ``url`` politely, refusing robots-disallowed URLs and bodies over ``max_bytes``."""
        if check_robots and not self.allowed(url):
            raise RobotsDisallowed(self.provider, f"robots.txt disallows {url}")
        self._pace()
        response = self.request("GET", url, stream=True)
        try:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise TranscriptTooLarge(self.provider, f"{url} is {int(declared):,} bytes, over the {self.max_bytes:,}-byte limit")
            body = bytearray()
            try:
                for piece in response.iter_content(chunk_size=1 << 16):
                    body += piece
                    if len(body) > self.max_bytes:
                        raise TranscriptTooLarge(self.provider, f"{url} exceeds the {self.max_bytes:,}-byte limit")
            except requests.RequestException as exc:
                raise ProviderTimeout(self.provider, f"download of {url} broke off: {exc.__class__.__name__}") from exc
            return bytes(body)
        finally:
            response.close()

    # -- pages -----------------------------------------------------------------------------------------
    def transcript_url(self, ticker: str, year: int, quarter: int) -> str:
        return self.url_template.format(base=self.base_url, ticker=ticker, year=year, quarter=quarter)

    def list_transcripts(self, ticker: str) -> list[TranscriptLink]:
        """Transcripts linked from the ticker's index page, as the site orders them (newest first)."""
        check_ticker(ticker)
        index_url = self.index_template.format(base=self.base_url, ticker=ticker)
        try:
            page = self.get_page(index_url)
        except BadRequest as exc:
            if exc.status == 404:
                return []
            raise
        soup = BeautifulSoup(page, "lxml")
        links: dict[tuple[int, int], TranscriptLink] = {}
        for anchor in soup.select(self.selectors.index_link):
            url = urljoin(index_url, str(anchor["href"]))
            match = self._pattern.match(url)
            if match and match.group("ticker").upper() == ticker:
                key = (int(match.group("year")), int(match.group("quarter")))
                links.setdefault(key, TranscriptLink(ticker, key[0], key[1], url))
        return list(links.values())

    def fetch(self, link: TranscriptLink) -> tuple[Transcript, bytes]:
        """Download and parse one transcript page; returns the model and the raw page."""
        raw = self.get_page(link.url)
        transcript = parse_transcript(raw, ticker=link.ticker, year=link.year, quarter=link.quarter, url=link.url,
                                      selectors=self.selectors)  # fmt: skip
        return transcript, raw
