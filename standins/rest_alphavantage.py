"""Alpha Vantage stand-in: ``GET /query?function=TIME_SERIES_INTRADAY|TIME_SERIES_DAILY&symbol&apikey...``.

Answers as the real service does, *always with HTTP 200*: data as ``{"Meta Data": {...}, "Time Series
(1min)": {"YYYY-MM-DD HH:MM:SS": {"1. open": "..", ..., "5. volume": ".."}}}`` (newest first, New York wall
time, DST-correct, prices as strings with 4 decimals), or instead of data a single key:

* ``"Error Message"``: missing/unknown key ("the parameter apikey is invalid or missing..."), unknown symbol,
  bad interval or month ("Invalid API call..."), unknown function;
* ``"Note"``: the per-minute (or per-second) throttle; ``"Information"``: the daily quota.

Intraday bars cover 04:00-19:59 New York on weekdays (``extended_hours=false``: 09:30-15:59), are the
aggregates of ``MarketSim`` minute bars over the interval (at most 30 trades a minute: a denser shared
simulator is swapped for a sparse one on the same price path, see ``ProviderStandIn``), labelled by their
start, and only completed bars are served. ``outputsize=compact`` gives the latest 100 bars; ``full`` the
trailing 30 days, or the whole ``month=YYYY-MM``. Daily bars (``MarketSim.daily_bar``) run from 1999-11-01
to the last closed session. ``datatype=csv`` is supported. Cost: ~0.3 ms per minute bar on first use (cached
afterwards), so a full month of intraday bars takes ~5 s.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from standins.corpus import NEW_YORK, UTC
from standins.http_server import Response
from standins.market import MINUTE_MS
from standins.rest_polygon import day_bar_available, merge

if TYPE_CHECKING:
    from standins.http_server import ProviderStandIn, Request

INTERVALS = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}
DAILY_HISTORY_START = dt.date(1999, 11, 1)
COMPACT_ROWS = 100
PAST_MONTHS_KEPT = 32  # built answers for whole past months kept (~4 MB each for 1-minute bars)

MISSING_KEY = ("the parameter apikey is invalid or missing. Please claim your free API key on "
               "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.")
INVALID_CALL = ("Invalid API call. Please retry or visit the documentation "
                "(https://www.alphavantage.co/documentation/) for {function}.")
NO_FUNCTION = "This API function ({function}) does not exist."
NOTE = ("Thank you for using Alpha Vantage! Our standard API call frequency is {per_minute} calls per minute "
        "and {per_day} calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to "
        "target a higher API call frequency.")
INFORMATION_DAILY = ("Thank you for using Alpha Vantage! Our standard API rate limit is {per_day} requests per "
                     "day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
                     "to instantly remove all daily rate limits.")
INFORMATION_BURST = ("Thank you for using Alpha Vantage! Please consider spreading out your free API requests "
                     "more sparingly (1 request per second). You may subscribe to any of the premium plans at "
                     "https://www.alphavantage.co/premium/ to lift the free key rate limit ({per_day} requests "
                     "per day), raise the per-second burst limit, and instantly unlock all premium endpoints")


def _fmt(x: float) -> str:
    return f"{x:.4f}"


class AlphaVantageHandler:
    content_type = "application/json"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub
        # Answers for whole past months never change (the simulator is deterministic): the last few are kept
        # built, so a backfill that re-reads a month costs the stand-in nothing (a month is ~4 MB of JSON).
        self._past_months: OrderedDict[tuple[Any, ...], Response] = OrderedDict()
        self._past_months_lock = threading.Lock()

    # -- throttling answers (HTTP 200, like the real service) ----------------------------------------------
    def _limits(self) -> tuple[int, int]:
        spec = self.hub.quotas.limits("alphavantage")
        return spec.get("per_minute", 5), spec.get("per_day", 25)

    def throttled(self, req: Request, window: str) -> Response:
        per_minute, per_day = self._limits()
        if window == "per_day":
            return self._body({"Information": INFORMATION_DAILY.format(per_day=per_day)})
        if window == "per_second":
            return self._body({"Information": INFORMATION_BURST.format(per_day=per_day)})
        return self._body({"Note": NOTE.format(per_minute=per_minute, per_day=per_day)})

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        # Alpha Vantage itself never answers 429; an injected one is what a proxy in front would send.
        return Response.json({"Note": NOTE.format(per_minute=self._limits()[0], per_day=self._limits()[1])},
                             429, {"Retry-After": str(int(retry_after))})

    @staticmethod
    def _body(obj: dict[str, Any]) -> Response:
        return Response.json(obj, indent=4)

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") != "/query":
            return Response.html("<h1>Not Found</h1>", 404)
        q = req.query
        key = q.get("apikey")
        if not self.hub.key_ok("alphavantage", key):
            return self._body({"Error Message": MISSING_KEY})
        exceeded = self.hub.quotas.take("alphavantage", key or "").exceeded
        if exceeded:
            return self.throttled(req, exceeded)
        function = q.get("function", "")
        if function not in ("TIME_SERIES_INTRADAY", "TIME_SERIES_DAILY"):
            return self._body({"Error Message": NO_FUNCTION.format(function=function)})
        invalid = self._body({"Error Message": INVALID_CALL.format(function=function)})
        symbol = q.get("symbol", "").upper()
        outputsize = q.get("outputsize", "compact")
        if symbol not in self.hub.tickers or outputsize not in ("compact", "full"):
            return invalid
        if function == "TIME_SERIES_DAILY":
            rows = self._daily(symbol, outputsize)
            meta = {"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": symbol,
                    "3. Last Refreshed": rows[0][0] if rows else "", "4. Output Size": _size(outputsize),
                    "5. Time Zone": "US/Eastern"}  # fmt: skip
            return self._render(rows, meta, "Time Series (Daily)", q.get("datatype"))
        interval = q.get("interval", "")
        window = self._window(q.get("month"))
        if interval not in INTERVALS or window is None:
            return invalid
        extended = q.get("extended_hours", "true").lower() != "false"
        args = (symbol, interval, window, extended, outputsize, q.get("datatype"))
        if not q.get("month") or window[1] > int(self.hub.now() * 1000):
            return self._intraday_response(*args)
        with self._past_months_lock:  # a whole past month: built once, then served as built
            cached = self._past_months.get(args)
            if cached is not None:
                self._past_months.move_to_end(args)
                return cached
        response = self._intraday_response(*args)
        with self._past_months_lock:
            self._past_months[args] = response
            while len(self._past_months) > PAST_MONTHS_KEPT:
                self._past_months.popitem(last=False)
        return response

    def _intraday_response(self, symbol: str, interval: str, window: tuple[int, int], extended: bool, outputsize: str,
                           datatype: str | None) -> Response:  # fmt: skip
        rows = self._intraday(symbol, INTERVALS[interval], window, extended, outputsize)
        meta = {"1. Information": f"Intraday ({interval}) open, high, low, close prices and volume",
                "2. Symbol": symbol, "3. Last Refreshed": rows[0][0] if rows else "",
                "4. Interval": interval, "5. Output Size": _size(outputsize), "6. Time Zone": "US/Eastern"}
        return self._render(rows, meta, f"Time Series ({interval})", datatype)

    def _render(self, rows: list[tuple[str, dict[str, str]]], meta: dict[str, str], series_name: str,
                datatype: str | None) -> Response:  # fmt: skip
        if datatype == "csv":
            lines = ["timestamp,open,high,low,close,volume"]
            lines += [f"{key},{v['1. open']},{v['2. high']},{v['3. low']},{v['4. close']},{v['5. volume']}"
                      for key, v in rows]
            return Response.text("\r\n".join(lines) + "\r\n", content_type="application/x-download")
        return self._body({"Meta Data": meta, series_name: dict(rows)})

    # -- series ---------------------------------------------------------------------------------------------
    def _window(self, month: str | None) -> tuple[int, int] | None:
        """[start, end) in epoch ms: the given month, or the trailing 30 days."""
        now_ms = int(self.hub.now() * 1000)
        if not month:
            return now_ms - 30 * 86_400_000, now_ms
        if not re.fullmatch(r"\d{4}-\d{2}", month):
            return None
        year, mon = int(month[:4]), int(month[5:])
        if not 1 <= mon <= 12 or year < 2000:
            return None
        start = dt.datetime(year, mon, 1, tzinfo=NEW_YORK)
        end = dt.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=NEW_YORK)
        start_ms = int(start.timestamp() * 1000)
        if start_ms > now_ms:
            return None
        return start_ms, min(int(end.timestamp() * 1000), now_ms)

    def _bar_starts(self, span: int, window: tuple[int, int], extended: bool) -> Iterator[tuple[int, int, int]]:
        """(bar start, session open, bar end) of completed bars in the window, newest first, New York sessions."""
        start_ms, end_ms = window
        now_ms = int(self.hub.now() * 1000)
        day = dt.datetime.fromtimestamp(end_ms / 1000, UTC).astimezone(NEW_YORK).date()
        first_day = dt.datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(NEW_YORK).date()
        while day >= first_day:
            if day.weekday() < 5:
                open_hm, close_hm = ((4, 0), (20, 0)) if extended else ((9, 30), (16, 0))
                midnight = dt.datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
                session_open = int(dt.datetime(day.year, day.month, day.day, *open_hm, tzinfo=NEW_YORK)
                                   .timestamp() * 1000)
                session_close = int(dt.datetime(day.year, day.month, day.day, *close_hm, tzinfo=NEW_YORK)
                                    .timestamp() * 1000)
                span_ms = span * MINUTE_MS
                midnight_ms = int(midnight.timestamp() * 1000)
                # Bars sit on the interval grid of the local day; a bar is served once it has completed.
                bar = midnight_ms + (session_close - 1 - midnight_ms) // span_ms * span_ms
                while bar + span_ms > session_open:
                    bar_end = min(bar + span_ms, session_close)
                    if start_ms <= bar < end_ms and bar_end <= now_ms:
                        yield bar, session_open, bar_end
                    bar -= span_ms
            day -= dt.timedelta(days=1)

    def _intraday(self, symbol: str, span: int, window: tuple[int, int], extended: bool,
                  outputsize: str) -> list[tuple[str, dict[str, str]]]:
        rows = []
        for bar_start, session_open, bar_end in self._bar_starts(span, window, extended):
            minutes = range(max(bar_start, session_open), bar_end, MINUTE_MS)
            bar = merge(symbol, bar_start, [self.hub.av_minute_bar(symbol, m) for m in minutes])
            local = dt.datetime.fromtimestamp(bar_start / 1000, UTC).astimezone(NEW_YORK)
            rows.append((local.strftime("%Y-%m-%d %H:%M:%S"), _ohlcv(bar.open, bar.high, bar.low, bar.close,
                                                                      bar.volume)))
            if outputsize == "compact" and len(rows) == COMPACT_ROWS:
                break
        return rows

    def _daily(self, symbol: str, outputsize: str) -> list[tuple[str, dict[str, str]]]:
        now = self.hub.now()
        day = dt.datetime.fromtimestamp(now, UTC).astimezone(NEW_YORK).date()
        rows = []
        while day >= DAILY_HISTORY_START:
            if day.weekday() < 5 and day_bar_available(day, now):
                bar = self.hub.market.daily_bar(symbol, int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
                                                            .timestamp() * 1000))
                rows.append((day.isoformat(), _ohlcv(bar.open, bar.high, bar.low, bar.close, bar.volume)))
                if outputsize == "compact" and len(rows) == COMPACT_ROWS:
                    break
            day -= dt.timedelta(days=1)
        return rows


def _size(outputsize: str) -> str:
    return "Compact" if outputsize == "compact" else "Full size"


def _ohlcv(o: float, h: float, low: float, c: float, v: int) -> dict[str, str]:
    return {"1. open": _fmt(o), "2. high": _fmt(h), "3. low": _fmt(low), "4. close": _fmt(c), "5. volume": str(v)}
