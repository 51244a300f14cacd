"""Deterministic simulated market: the single source of truth behind every market-data stand-in.

Every price is a pure function of ``(seed, ticker, time)`` with O(log t) cost, so the WebSocket stand-in,
Polygon's REST aggregates (used for gap fill) and Alpha Vantage's bars all agree with each other without
sharing state: a minute bar fetched over REST equals the aggregate of the trades streamed for that minute.

Model: a per-ticker log-price random walk sampled at minute boundaries (``minute_open``); the trades of a
minute interpolate between its open and the next minute's open with bounded noise; ``minute_bar`` aggregates
exactly those trades.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from functools import lru_cache

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def _unit(seed: int, *parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the seed and any hashable parts."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2**64


def _normal(seed: int, *parts: object) -> float:
    """A deterministic standard-normal number (Box-Muller on two hashed uniforms)."""
    u1 = max(_unit(seed, "n1", *parts), 1e-12)
    u2 = _unit(seed, "n2", *parts)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@dataclass(frozen=True, slots=True)
class SimTrade:
    """One simulated trade; ``seq`` is unique and increasing per ticker."""

    ticker: str
    t_ms: int
    price: float
    size: int
    seq: int
    exchange: int


@dataclass(frozen=True, slots=True)
class SimBar:
    """An OHLCV aggregate with Polygon's extra fields (volume-weighted price, trade count)."""

    ticker: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float
    trades: int


class MarketSim:
    """Deterministic prices, trades, quotes and bars for a universe of tickers.

    ``trades_per_minute`` sets the density of trades per ticker and minute (the WebSocket stand-in scales it
    to reach a target event rate). ``minute_vol`` is the per-minute log-price volatility.
    """

    def __init__(self, seed: int = 42, trades_per_minute: int = 30, minute_vol: float = 0.0008) -> None:
        if trades_per_minute < 1:
            raise ValueError("trades_per_minute must be >= 1")
        self.seed = seed
        self.trades_per_minute = trades_per_minute
        self.minute_vol = minute_vol
        self._base_cache: dict[str, float] = {}

    # -- prices ------------------------------------------------------------------------------------------
    def base_price(self, ticker: str) -> float:
        """The ticker's reference price, between 10 and 510."""
        price = self._base_cache.get(ticker)
        if price is None:
            price = round(10.0 + 500.0 * _unit(self.seed, "base", ticker), 2)
            self._base_cache[ticker] = price
        return price

    def minute_open(self, ticker: str, minute_index: int) -> float:
        """Price at the start of minute ``minute_index`` (minutes since the Unix epoch)."""
        return _minute_open(self.seed, self.minute_vol, ticker, minute_index, self.base_price(ticker))

    # -- trades and bars --------------------------------------------------------------------------------
    def minute_trades(self, ticker: str, minute_start_ms: int) -> list[SimTrade]:
        """The trades of one minute, in time order (the same list on every call)."""
        minute = minute_start_ms // MINUTE_MS
        start_ms = minute * MINUTE_MS
        p0 = self.minute_open(ticker, minute)
        p1 = self.minute_open(ticker, minute + 1)
        n = self.trades_per_minute
        step = MINUTE_MS // n
        trades = []
        for k in range(n):
            frac = k / n
            noise = 1.0 + 0.25 * self.minute_vol * (2.0 * _unit(self.seed, "tn", ticker, minute, k) - 1.0)
            price = round((p0 + (p1 - p0) * frac) * noise, 4)
            offset = step * k + int(step * _unit(self.seed, "tt", ticker, minute, k))
            size = 1 + int(499 * _unit(self.seed, "ts", ticker, minute, k) ** 3)
            exchange = 1 + int(20 * _unit(self.seed, "tx", ticker, minute, k))
            trades.append(SimTrade(ticker, start_ms + offset, price, size, minute * n + k, exchange))
        return trades

    def quote_around(self, trade: SimTrade) -> tuple[float, float, int, int]:
        """A (bid, ask, bid_size, ask_size) quote consistent with a trade."""
        half_spread = max(0.01, round(trade.price * 0.0002, 2))
        bid_size = 1 + int(20 * _unit(self.seed, "qb", trade.ticker, trade.seq))
        ask_size = 1 + int(20 * _unit(self.seed, "qa", trade.ticker, trade.seq))
        return round(trade.price - half_spread, 2), round(trade.price + half_spread, 2), bid_size, ask_size

    def minute_bar(self, ticker: str, minute_start_ms: int) -> SimBar:
        """The aggregate of exactly the trades that ``minute_trades`` returns for that minute."""
        trades = self.minute_trades(ticker, minute_start_ms)
        return _aggregate(ticker, (minute_start_ms // MINUTE_MS) * MINUTE_MS, trades)

    def bars(self, ticker: str, start_ms: int, end_ms: int, span_minutes: int = 1) -> list[SimBar]:
        """Bars of ``span_minutes`` covering [start_ms, end_ms), aligned to the span, oldest first."""
        span_ms = span_minutes * MINUTE_MS
        first = (start_ms // span_ms) * span_ms
        out = []
        for bar_start in range(first, end_ms, span_ms):
            trades = [
                t
                for m in range(bar_start, bar_start + span_ms, MINUTE_MS)
                for t in self.minute_trades(ticker, m)
            ]
            out.append(_aggregate(ticker, bar_start, trades))
        return out

    def daily_bar(self, ticker: str, day_start_ms: int) -> SimBar:
        """A daily bar from the walk at the session's open/close (cheap: no per-minute trades)."""
        day = day_start_ms // DAY_MS
        open_minute = day * 1440 + 14 * 60 + 30  # 09:30 New York as 14:30 UTC (approximate, sim only)
        o = self.minute_open(ticker, open_minute)
        c = self.minute_open(ticker, open_minute + 390)
        spread = abs(_normal(self.seed, "dh", ticker, day)) * self.minute_vol * 8
        h = round(max(o, c) * (1 + spread), 4)
        low = round(min(o, c) * (1 - abs(_normal(self.seed, "dl", ticker, day)) * self.minute_vol * 8), 4)
        volume = int(1_000_000 * (0.5 + _unit(self.seed, "dv", ticker, day)))
        vwap = round((h + low + c) / 3, 4)
        return SimBar(ticker, day * DAY_MS, round(o, 4), h, low, round(c, 4), volume, vwap, volume // 100)


def _aggregate(ticker: str, start_ms: int, trades: list[SimTrade]) -> SimBar:
    prices = [t.price for t in trades]
    volume = sum(t.size for t in trades)
    vwap = sum(t.price * t.size for t in trades) / volume
    return SimBar(
        ticker, start_ms, prices[0], max(prices), min(prices), prices[-1], volume, round(vwap, 4), len(trades)
    )


# Periods (minutes) of the slow components of the walk: an hour to two years. Amplitudes grow with the
# square root of the period, like a random walk's spread, so a day moves ~1-2% and a year tens of percent.
_PERIODS = (60, 390, 1_440, 7_200, 30_000, 130_000, 525_600, 1_051_200)


@lru_cache(maxsize=131_072)
def _minute_open(seed: int, vol: float, ticker: str, minute: int, base: float) -> float:
    # Smooth multi-scale path (O(1) random access, continuous across minutes) plus independent per-minute
    # noise; the log move is bounded so prices stay positive and in a sane band over years.
    log_move = 0.0
    for k, period in enumerate(_PERIODS):
        phase = 2.0 * math.pi * _unit(seed, "ph", ticker, k)
        amplitude = vol * math.sqrt(period) * (0.5 + _unit(seed, "am", ticker, k)) / 2.0
        log_move += amplitude * math.sin(2.0 * math.pi * minute / period + phase)
    log_move += vol * _normal(seed, "eps", ticker, minute)
    log_move = max(-1.2, min(1.2, log_move))
    return round(base * math.exp(log_move), 4)
