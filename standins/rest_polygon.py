"""Polygon.io (Massive) REST aggregates stand-in: ``GET /v2/aggs/ticker/{T}/range/{mult}/{timespan}/{from}/{to}``.

Wire format as the real service: ``{"ticker","queryCount","resultsCount","adjusted","results":[{"v","vw",
"o","c","h","l","t","n"}],"status":"OK","request_id","count"}``, ``results`` omitted when empty, and
``next_url`` (same path with a moved ``from``/``to`` plus an opaque ``cursor``, *without* the API key, which
the client must add again) when ``limit`` cut the answer. ``limit`` counts *base* aggregates (minutes for
minute/hour bars, days for day bars): default 5,000, max 50,000.

Minute bars are exactly ``MarketSim.minute_bar`` (the WebSocket stand-in streams the same trades), wider
minute/hour bars aggregate them; only fully completed bars are served (wall clock). Day bars carry
``MarketSim.daily_bar`` values with ``t`` at New York midnight, as Polygon stamps them, weekdays only.
``from``/``to`` are inclusive: epoch milliseconds, or ``YYYY-MM-DD`` meaning that New York calendar day.

Errors: no key -> 401 ``API Key was not provided``; unknown key -> 401 ``Unknown API Key``; quota -> 429
``You've exceeded the maximum requests per minute...``; bad parameters -> 400; all ``{"status":"ERROR",
"request_id","error"}``. Unknown tickers answer 200 with ``resultsCount`` 0, as the real API does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from standins.corpus import NEW_YORK, UTC
from standins.http_server import Request, Response, b64, request_id, unb64
from standins.market import MINUTE_MS, SimBar

if TYPE_CHECKING:
    from standins.http_server import ProviderStandIn

_AGGS = re.compile(r"/v2/aggs/ticker/([^/]+)/range/([^/]+)/([^/]+)/([^/]+)/([^/]+)/?")
_TIMESPAN_MINUTES = {"minute": 1, "hour": 60}
DEFAULT_LIMIT, MAX_LIMIT = 5000, 50_000
RATE_MESSAGE = ("You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
                "to continue. https://polygon.io/pricing")


def in_extended_session(minute_start_ms: int) -> bool:
    """04:00 <= New York time < 20:00 on a weekday."""
    local = dt.datetime.fromtimestamp(minute_start_ms / 1000, UTC).astimezone(NEW_YORK)
    return local.weekday() < 5 and 4 * 60 <= local.hour * 60 + local.minute < 20 * 60


def ny_midnight_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)


def day_bar_available(day: dt.date, now_s: float) -> bool:
    """A day's bar exists once its session closed: 21:00 UTC covers the sim's close in EST and EDT."""
    return now_s >= dt.datetime(day.year, day.month, day.day, 21, tzinfo=UTC).timestamp()


def merge(ticker: str, start_ms: int, bars: list[SimBar]) -> SimBar:
    """One bar from consecutive bars (a single bar is only re-stamped)."""
    if len(bars) == 1:
        b = bars[0]
        return SimBar(ticker, start_ms, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades)
    volume = sum(b.volume for b in bars)
    vwap = sum(b.vwap * b.volume for b in bars) / volume if volume else bars[0].close
    return SimBar(ticker, start_ms, bars[0].open, max(b.high for b in bars), min(b.low for b in bars),
                  bars[-1].close, volume, round(vwap, 4), sum(b.trades for b in bars))


class PolygonError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PolygonHandler:
    content_type = "application/json"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub

    # -- errors ---------------------------------------------------------------------------------------------
    def _error(self, req: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response.json({"status": "ERROR", "request_id": request_id(req), "error": message}, status, headers)

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        return self._error(req, 429, RATE_MESSAGE, {"Retry-After": str(int(retry_after))})

    def server_error(self, req: Request, status: int) -> Response:
        return self._error(req, status, "Internal Server Error")

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        key = req.query.get("apiKey") or req.bearer()
        if not key:
            return self._error(req, 401, "API Key was not provided")
        if not self.hub.key_ok("polygon", key):
            return self._error(req, 401, "Unknown API Key")
        if self.hub.quotas.take("polygon", key).exceeded:
            return self._error(req, 429, RATE_MESSAGE)
        match = _AGGS.fullmatch(req.path)
        if req.method != "GET" or not match:
            return Response.json({"status": "NOT_FOUND", "request_id": request_id(req),
                                  "message": "The requested resource was not found"}, 404)
        try:
            return Response.json(self._aggregates(req, *match.groups()))
        except PolygonError as exc:
            return self._error(req, exc.status, str(exc))

    # -- aggregates -----------------------------------------------------------------------------------------
    def _aggregates(self, req: Request, ticker: str, mult: str, timespan: str, from_: str, to: str) -> dict[str, Any]:
        params = dict(req.query)
        if "cursor" in params:
            try:
                params.update(dict(p.split("=", 1) for p in unb64(params["cursor"]).split("&") if p))
            except ValueError:
                raise PolygonError(400, "Could not parse the cursor parameter") from None
        if not mult.isdigit() or int(mult) < 1:
            raise PolygonError(400, f"Could not parse the multiplier parameter: '{mult}'")
        if timespan not in ("minute", "hour", "day"):
            raise PolygonError(400, f"Could not parse the timespan parameter: '{timespan}'")
        multiplier = int(mult)
        start_ms = self._parse_time(from_, "from", end=False)
        end_ms = self._parse_time(to, "to", end=True)
        sort = params.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise PolygonError(400, "sort must be 'asc' or 'desc'")
        try:
            limit = min(MAX_LIMIT, max(1, int(params.get("limit", DEFAULT_LIMIT))))
        except ValueError:
            raise PolygonError(400, "Could not parse the limit parameter") from None
        adjusted = params.get("adjusted", "true").lower() != "false"
        ticker = ticker.upper()
        body: dict[str, Any] = {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": adjusted}
        if ticker in self.hub.tickers and start_ms <= end_ms:
            if timespan == "day":
                bars, base, more = self._day_bars(ticker, multiplier, start_ms, end_ms, sort, limit)
            else:
                span = _TIMESPAN_MINUTES[timespan] * multiplier
                bars, base, more = self._intraday_bars(ticker, span, start_ms, end_ms, sort, limit)
            if bars:
                body["queryCount"] = base
                body["resultsCount"] = len(bars)
                body["results"] = [{"v": b.volume, "vw": b.vwap, "o": b.open, "c": b.close, "h": b.high,
                                    "l": b.low, "t": b.start_ms, "n": b.trades} for b in bars]
            if more and bars:
                cursor = b64(f"adjusted={str(adjusted).lower()}&limit={limit}&sort={sort}")
                if sort == "asc":
                    nxt_from, nxt_to = str(bars[-1].start_ms + 1), to
                else:
                    nxt_from, nxt_to = from_, str(bars[-1].start_ms - 1)
                body["next_url"] = (f"{req.base_url}/v2/aggs/ticker/{ticker}/range/{mult}/{timespan}/"
                                    f"{nxt_from}/{nxt_to}?cursor={cursor}")
        body["status"] = "OK"
        body["request_id"] = request_id(req)
        body["count"] = body["resultsCount"]
        # Key order as the service writes it: next_url after count.
        if "next_url" in body:
            body["next_url"] = body.pop("next_url")
        return body

    @staticmethod
    def _parse_time(value: str, name: str, end: bool) -> int:
        if value.isdigit():
            return int(value)
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise PolygonError(400, f"Could not parse the time parameter: '{name}'. Use YYYY-MM-DD or Unix MS "
                                    "Timestamps") from None
        if end:
            return ny_midnight_ms(day + dt.timedelta(days=1)) - 1
        return ny_midnight_ms(day)

    def _bar_starts(self, span: int, start_ms: int, end_ms: int, sort: str) -> Iterator[int]:
        """Starts of completed span-minute bars with start in [start_ms, end_ms], in ``sort`` order."""
        span_ms = span * MINUTE_MS
        first = -(-start_ms // span_ms) * span_ms
        last_complete = int(self.hub.now() * 1000) // MINUTE_MS * MINUTE_MS - span_ms  # start + span <= now
        last = min(end_ms // span_ms * span_ms, last_complete // span_ms * span_ms)
        if last < first:
            return iter(())
        return iter(range(first, last + 1, span_ms) if sort == "asc" else range(last, first - 1, -span_ms))

    def _intraday_bars(self, ticker: str, span: int, start_ms: int, end_ms: int, sort: str,
                       limit: int) -> tuple[list[SimBar], int, bool]:
        per_bar = span
        max_bars = max(1, limit // per_bar)
        extended_only = self.hub.polygon_session == "extended"
        bars: list[SimBar] = []
        base = 0
        starts = self._bar_starts(span, start_ms, end_ms, sort)
        for bar_start in starts:
            minutes = [m for m in range(bar_start, bar_start + span * MINUTE_MS, MINUTE_MS)
                       if not extended_only or in_extended_session(m)]
            if not minutes:
                continue
            if len(bars) == max_bars:
                return bars, base, True
            minute_bars = [self.hub.minute_bar(ticker, m) for m in minutes]
            bars.append(minute_bars[0] if span == 1 else merge(ticker, bar_start, minute_bars))
            base += len(minute_bars)
        return bars, base, False

    def _day_bars(self, ticker: str, multiplier: int, start_ms: int, end_ms: int, sort: str,
                  limit: int) -> tuple[list[SimBar], int, bool]:
        first = dt.datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(NEW_YORK).date()
        last = dt.datetime.fromtimestamp(end_ms / 1000, UTC).astimezone(NEW_YORK).date()
        if ny_midnight_ms(first) < start_ms:
            first += dt.timedelta(days=1)  # a day bar is stamped at midnight: it must lie inside the range
        now = self.hub.now()
        groups = []
        day = first
        while day <= last:
            group = [day + dt.timedelta(days=k) for k in range(multiplier)]
            days = [d for d in group if d <= last and d.weekday() < 5 and day_bar_available(d, now)]
            if days:
                groups.append(days)
            day += dt.timedelta(days=multiplier)
        if sort == "desc":
            groups.reverse()
        max_bars = max(1, limit // multiplier)
        page = list(islice(groups, max_bars))
        bars = []
        for days in page:
            daily = [self.hub.market.daily_bar(ticker, int(dt.datetime(d.year, d.month, d.day, tzinfo=UTC)
                                                        .timestamp() * 1000)) for d in days]
            merged = merge(ticker, ny_midnight_ms(days[0]), daily)
            bars.append(merged)
        return bars, sum(len(d) for d in page), len(groups) > len(page)

