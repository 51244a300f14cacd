"""Alpha Vantage REST client: intraday and daily OHLCV bars.

Alpha Vantage answers almost everything with HTTP 200, so the body decides (``check_body``):

| body key          | meaning                                              | raised as                              |
|-------------------|------------------------------------------------------|----------------------------------------|
| ``Note``          | per-minute throttle                                  | ``RateLimited`` (retry after 60 s)     |
| ``Information``   | burst throttle ("1 request per second")              | ``RateLimited`` (retry after 1 s)      |
| ``Information``   | daily limit ("... requests per day")                 | ``AlphaVantageDailyLimit`` (a ``RateLimited`` that waits until UTC midnight; the shared limiter is blocked so every worker stops) |
| ``Information``   | premium endpoint / demo key                          | ``BadRequest`` / ``AuthError``         |
| ``Error Message`` | bad symbol, bad parameters, missing key             | ``BadRequest``                         |

Timestamps arrive as US/Eastern wall time (``"2024-03-08 15:59:00"``, DST-dependent) and are converted to
epoch milliseconds UTC with the IANA ``America/New_York`` zone. An intraday bar is labelled by its start; a
daily bar by its date at 00:00 UTC (the bucket convention of the TimeSeries ``1d`` compactions).

The parsed series is a ``pandas.DataFrame`` (one row per bar: ``ticker, timeframe, source, ts, open, high,
low, close, volume, local_time``), not ``Bar`` models: the batch goes through the Great Expectations gate
first, and a row with inconsistent OHLC must reach the gate (and quarantine) rather than fail the parse.
``bars_from_frame`` turns validated rows into ``headwater.models.Bar``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from headwater.models import Bar
from headwater.providers.http import AuthError, BadRequest, HttpClient, RateLimited
from headwater.timeframes import DAY_S, NEW_YORK_TZ

SOURCE = "alphavantage"
INTERVALS = {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h"}
FRAME_COLUMNS = ["ticker", "timeframe", "source", "ts", "open", "high", "low", "close", "volume", "local_time"]
_FIELDS = {"open": "1. open", "high": "2. high", "low": "3. low", "close": "4. close", "volume": "5. volume"}


class AlphaVantageDailyLimit(RateLimited):
    """Alpha Vantage says the key's daily limit is used up: nothing helps before the reset."""


def seconds_to_utc_midnight(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return DAY_S - now % DAY_S


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in _FIELDS else "object") for c in FRAME_COLUMNS}).astype(
        {"ts": "int64"}
    )


def eastern_to_utc_ms(local: pd.Series | list[str], *, daily: bool = False) -> pd.Series:
    """US/Eastern wall-clock strings -> epoch ms UTC (daily: the date at 00:00 UTC).

    On the autumn fall-back day 01:00-01:59 exists twice; Alpha Vantage does not say which, and those minutes are
    outside every session, so the first (daylight) reading is taken. Spring-forward's missing hour cannot occur.
    """
    values = pd.Series(local, dtype="object")
    fmt = "%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S"
    naive = pd.to_datetime(values, format=fmt, errors="coerce")
    zone = "UTC" if daily else NEW_YORK_TZ  # the tz name: pandas' fast path (a ZoneInfo is ~7x slower)
    aware = naive.dt.tz_localize(zone, ambiguous=True, nonexistent="NaT")
    ns = aware.array.asi8  # UTC nanoseconds (NaT: the minimum int64)
    return pd.Series(np.where(aware.isna().to_numpy(), 0, ns // 1_000_000), index=values.index, dtype="int64")


def _numbers(raw: list[Any]) -> np.ndarray:
    """Wire values as float64; a value that is not a number becomes NaN (and the GX gate quarantines its row)."""
    try:
        return np.array(raw, dtype=np.float64)  # the usual case, numeric strings: parsed in C
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(raw, dtype="object"), errors="coerce").astype("float64").to_numpy()


def parse_series(body: dict[str, Any], ticker: str, *, timeframe: str) -> pd.DataFrame:
    """The ``Time Series (...)`` object of an answer as a frame (oldest first); raises on a wrong shape.

    Values that are not numbers become NaN (the GX gate quarantines those rows); a missing or non-object
    series is a malformed answer.
    """
    series_key = next((k for k in body if k.startswith("Time Series")), None)
    if series_key is None:
        raise ValueError(f"no 'Time Series' object in the answer (keys: {sorted(body)[:5]})")
    series = body[series_key]
    if not isinstance(series, dict):
        raise ValueError(f"{series_key!r} is a {type(series).__name__}, not an object")
    if not series:
        return empty_frame()
    local = sorted(series)
    bars = [series[k] if isinstance(series[k], dict) else {} for k in local]
    frame = pd.DataFrame({"local_time": local})
    for name, wire in _FIELDS.items():
        frame[name] = _numbers([bar.get(wire) for bar in bars])
    frame["ts"] = eastern_to_utc_ms(frame["local_time"], daily=timeframe == "1d")
    frame["ticker"] = ticker
    frame["timeframe"] = timeframe
    frame["source"] = SOURCE
    return frame[FRAME_COLUMNS]


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """Validated rows -> strict ``Bar`` models (floats, as the strict wire model wants)."""
    return [
        Bar(ticker=r.ticker, start=int(r.ts), open=float(r.open), high=float(r.high), low=float(r.low),
            close=float(r.close), volume=float(r.volume), timeframe=r.timeframe, source=r.source)
        for r in frame.itertuples(index=False)
    ]  # fmt: skip


class AlphaVantageClient(HttpClient):
    """``TIME_SERIES_INTRADAY`` and ``TIME_SERIES_DAILY`` with the API key as the ``apikey`` parameter."""

    provider = "alphavantage"

    def auth_params(self) -> dict[str, str]:
        return {"apikey": self.api_key.get_secret_value()} if self.api_key else {}

    def check_body(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise self.malformed(f"expected a JSON object, got {type(body).__name__}")
        if "Error Message" in body:
            raise BadRequest(self.provider, f"Error Message: {body['Error Message']}", status=200)
        if "Note" in body:
            raise RateLimited(self.provider, f"throttled (HTTP 200 'Note'): {body['Note'][:160]}", retry_after_s=60.0,
                              status=200)  # fmt: skip
        if "Information" in body:
            raise self._information(str(body["Information"]))
        return body

    def _information(self, text: str) -> Exception:
        lowered = text.lower()
        if "premium endpoint" in lowered:
            return BadRequest(self.provider, f"Information: {text[:200]}", status=200)
        if "demo" in lowered and "api key" in lowered:
            return AuthError(self.provider, f"Information: {text[:200]}", status=200)
        if "per day" in lowered:
            wait = seconds_to_utc_midnight()
            block = getattr(self.limiter, "block", None)
            if callable(block):  # the provider's own counter is authoritative: stop every worker on this key
                block(wait, f"Alpha Vantage daily limit reached: {text[:120]}")
            return AlphaVantageDailyLimit(self.provider, f"daily limit reached (HTTP 200 'Information'): {text[:160]}",
                                          retry_after_s=wait, status=200)  # fmt: skip
        return RateLimited(self.provider, f"throttled (HTTP 200 'Information'): {text[:160]}", retry_after_s=1.0,
                           status=200)  # fmt: skip

    def _series(self, params: dict[str, Any], ticker: str, timeframe: str) -> pd.DataFrame:
        body = self.get_json("/query", params=params)
        try:
            return parse_series(body, ticker, timeframe=timeframe)
        except ValueError as exc:
            raise self.malformed(f"{params['function']} {ticker}: {exc}") from exc

    def intraday(
        self,
        ticker: str,
        *,
        interval: str = "1min",
        outputsize: str = "compact",
        month: str | None = None,
        extended_hours: bool = True,
    ) -> pd.DataFrame:
        """Intraday bars (compact = latest 100; full = trailing 30 days or the whole ``month=YYYY-MM``)."""
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {sorted(INTERVALS)}")
        params: dict[str, Any] = {"function": "TIME_SERIES_INTRADAY", "symbol": ticker, "interval": interval,
                                  "outputsize": outputsize, "extended_hours": str(extended_hours).lower()}  # fmt: skip
        if month:
            params["month"] = month
        return self._series(params, ticker, INTERVALS[interval])

    def daily(self, ticker: str, *, outputsize: str = "full") -> pd.DataFrame:
        """Daily bars (compact = latest 100 sessions; full = the whole history)."""
        params = {"function": "TIME_SERIES_DAILY", "symbol": ticker, "outputsize": outputsize}
        return self._series(params, ticker, "1d")

    def intraday_bars(self, ticker: str, **kwargs: Any) -> list[Bar]:
        """``intraday`` as strict ``Bar`` models (raises on any inconsistent row; flows use the frame + GX)."""
        return bars_from_frame(self.intraday(ticker, **kwargs))

