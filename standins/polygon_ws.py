"""Polygon.io (Massive) stocks WebSocket stand-in: the real wire protocol over a real ``websockets`` server.

Speaks what ``wss://socket.polygon.io/stocks`` speaks: a ``connected`` status on connect, ``auth`` with an
API key (``auth_success`` / ``auth_failed`` + close), ``subscribe`` / ``unsubscribe`` with comma-separated
``<channel>.<ticker>`` params (``T``, ``Q``, ``A``, ``AM``; ``*`` = every ticker of the universe), and JSON
arrays of events batched into text frames. Every trade, quote and bar comes from ``standins.market.MarketSim``,
so a minute bar fetched later over REST equals the aggregate of the trades streamed for that minute.

How it keeps up with tens of thousands of events/s in Python:

* Each (ticker, minute) is generated once, one minute ahead, into a *chunk*: numpy columns of the minute's
  trades and quotes plus every event of the minute (trade, quote, per-second and per-minute aggregate)
  sorted by emission time; aggregates are serialized right away (there are few). Only tickers someone
  subscribed to are generated. ``market.py`` costs ~12 us of CPU per trade+quote, so from
  ``PROCESS_GENERATOR_RATE`` up a worker process does this (a thread would fight the event loop for the
  GIL); below it, one (ticker, minute) at a time runs on the event loop between ticks.
* A minute starts streaming only once it is generated for every subscribed ticker: an overloaded stand-in
  falls behind real time (and says so in the log) instead of leaving silent holes; ``max_catchup_ms``
  bounds how far behind it may fall before it skips ahead.
* Every tick (5 ms) the pump takes the events whose time the clock has passed (one ``searchsorted``),
  formats only those some connection wants -- once, shared by all subscribers -- with bytes templates,
  and appends frames of up to ``max_events_per_frame`` events to each connection's send queue.
* One writer task per connection drains its queue, so a slow reader never stalls the others; a reader that
  falls ``max_buffer_bytes`` behind is disconnected, as Polygon does when its server-side buffer fills.

Fault injection (thread-safe, for tests and demos): ``drop_connections``, ``disconnect_after_events``,
``pause`` and ``inject_raw``; ``max_connections_per_key`` makes the connection limit real: the status
``[{"ev":"status","status":"max_connections","message":...}]`` and a 1008 close go to the new connection
(``max_connections_policy="reject_new"``) or to the oldest one on that key (``"evict_oldest"``).
``deliveries`` says, per connection, which tickers it was sent and the event-time span written to its socket, so
a harness can count what a client must have stored (``bench/soak.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from standins.market import DAY_MS, MINUTE_MS, MarketSim, SimTrade

log = logging.getLogger("headwater.standins.polygon")

PATH = "/stocks"
DEFAULT_TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "SPY")
CHANNELS = ("T", "Q", "A", "AM")
_T, _Q, _A, _AM = range(4)
_CHANNEL_INDEX = {name: i for i, name in enumerate(CHANNELS)}
# Order of events that share a millisecond: aggregates (they close the window that just ended), then the
# quote(s) that precede a trade, then the trade.
_PRIO_AGG, _PRIO_QUOTE, _PRIO_TRADE = 0, 1, 2
# market.py spaces a minute's trades ``60_000 // n`` ms apart: above 60,000 trades a minute they collapse
# onto the same millisecond, so this is the densest a single ticker can trade.
MAX_TRADES_PER_MINUTE = MINUTE_MS
# From this target rate up, a worker process generates the market so the event loop keeps its core for
# formatting and sending. The worker is spawned (not forked): a script that starts the stand-in must guard
# its entry point with ``if __name__ == "__main__":``, as usual with multiprocessing.
PROCESS_GENERATOR_RATE = 10_000.0
# Events per worker job (~0.5 s of work): two jobs queued keep the worker busy between hand-overs.
_EVENTS_PER_JOB = 60_000
# Close codes: 1008 (policy violation) is what Polygon sends with ``max_connections``.
CLOSE_POLICY = 1008

_T_FMT = b'{"ev":"T","sym":%b,"x":%d,"i":"%d","z":%d,"p":%r,"s":%d,"c":[0],"t":%d,"q":%d}'
_Q_FMT = b'{"ev":"Q","sym":%b,"bx":%d,"bp":%r,"bs":%d,"ax":%d,"ap":%r,"as":%d,"c":0,"t":%d,"q":%d,"z":%d}'


def status_frame(status: str, message: str) -> bytes:
    """One Polygon status message as a frame: ``[{"ev":"status","status":...,"message":...}]``."""
    return orjson.dumps([{"ev": "status", "status": status, "message": message}])


CONNECTED = status_frame("connected", "Connected Successfully")
AUTH_SUCCESS = status_frame("auth_success", "authenticated")
AUTH_FAILED = status_frame("auth_failed", "authentication failed")
AUTH_TIMEOUT = status_frame("auth_timeout", "No authentication request received.")
MAX_CONNECTIONS = status_frame(
    "max_connections",
    "Maximum number of websocket connections exceeded. You have reached the connection limit for your "
    "account. Please contact support at https://polygon.io/contact to increase your limit.",
)


# -- generated data --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """One generated (ticker, minute): its trades and quotes as columns and its events, sorted.

    ``row`` points into this part's columns: T -> trade row; Q -> quote row (trade row * quotes_per_trade
    + j); A/AM -> index into ``aggs`` (pre-serialized: there are at most 61 a minute).
    """

    tidx: int
    t: np.ndarray
    p: np.ndarray
    s: np.ndarray
    q: np.ndarray
    x: np.ndarray
    bp: np.ndarray
    ap: np.ndarray
    bs: np.ndarray
    az: np.ndarray  # ask size
    key: np.ndarray  # (emit ms - minute start) * 4 + priority
    code: np.ndarray  # ticker index * 4 + channel
    row: np.ndarray
    aggs: list[bytes]


_TRADE_COLUMNS = ("t", "p", "s", "q", "x")
_QUOTE_COLUMNS = ("bp", "ap", "bs", "az")


@dataclass(slots=True)
class _Chunk:
    """Every event of one minute for the tickers in ``tickers``, sorted by emission time.

    Emission times run from the minute's start to its end inclusive: the A/AM aggregates of the minute are
    emitted once the clock reaches its end, before the next minute's trades of the same millisecond.
    """

    minute: int
    tickers: frozenset[int]
    key: np.ndarray
    code: np.ndarray
    row: np.ndarray
    columns: dict[str, np.ndarray]  # the trade and quote columns of all its parts
    aggs: list[bytes]

    @property
    def start(self) -> int:
        return self.minute * MINUTE_MS


def _merge(old: _Chunk | None, parts: list[_Part], minute: int) -> _Chunk:
    """A new chunk with ``parts`` added to ``old`` (a linear merge of two sorted event lists)."""
    n_trades = 0 if old is None else len(old.columns["t"])
    n_quotes = 0 if old is None else len(old.columns["bp"])
    n_aggs = 0 if old is None else len(old.aggs)
    keys, codes, rows, aggs = [], [], [], []
    for part in parts:
        chan = part.code & 3
        keys.append(part.key)
        codes.append(part.code)
        offset = np.where(chan == _T, n_trades, np.where(chan == _Q, n_quotes, n_aggs)).astype(np.int32)
        rows.append(part.row + offset)
        aggs.extend(part.aggs)
        n_trades += len(part.t)
        n_quotes += len(part.bp)
        n_aggs += len(part.aggs)
    new_key = np.concatenate(keys)
    order = np.argsort(new_key, kind="stable")
    new_key, new_code, new_row = new_key[order], np.concatenate(codes)[order], np.concatenate(rows)[order]
    names = _TRADE_COLUMNS + _QUOTE_COLUMNS
    if old is None:
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in names}
        return _Chunk(minute, frozenset(p.tidx for p in parts), new_key, new_code, new_row, columns, aggs)
    # Old events first on equal keys, so an already-emitted event never moves behind the cursor.
    pos = np.searchsorted(old.key, new_key, side="right") + np.arange(len(new_key))
    total = len(old.key) + len(new_key)
    is_old = np.ones(total, dtype=bool)
    is_old[pos] = False
    key, code, row = np.empty(total, np.int32), np.empty(total, np.int32), np.empty(total, np.int32)
    for out, a, b in ((key, old.key, new_key), (code, old.code, new_code), (row, old.row, new_row)):
        out[is_old] = a
        out[pos] = b
    columns = {name: np.concatenate([old.columns[name], *(getattr(p, name) for p in parts)]) for name in names}
    tickers = old.tickers | {p.tidx for p in parts}
    return _Chunk(minute, tickers, key, code, row, columns, old.aggs + aggs)


def _first_at(chunk: _Chunk, ms: int) -> int:
    """Index of the chunk's first event emitted at or after ``ms``."""
    key = min(max((ms - chunk.start) * 4, -1), MINUTE_MS * 4 + 4)
    return int(chunk.key.searchsorted(np.int32(key)))  # a typed scalar: a Python int would copy the array


def _window_stats(trades: Sequence[SimTrade]) -> tuple[float, float, float, float, int, float, float]:
    """(o, h, l, c, volume, vwap, sum of price*size): exactly market.py's arithmetic for ``minute_bar``."""
    prices = [t.price for t in trades]
    volume = sum(t.size for t in trades)
    pv = sum(t.price * t.size for t in trades)
    return prices[0], max(prices), min(prices), prices[-1], volume, round(pv / volume, 4), pv


class _PartFactory:
    """Turns the simulator's (ticker, minute) into a ``_Part``; runs in the server or in a worker process."""

    def __init__(self, seed: int, trades_per_minute: int, quotes_per_trade: int, tickers: Sequence[str]) -> None:
        self.sim = MarketSim(seed=seed, trades_per_minute=trades_per_minute)
        self.qpt = quotes_per_trade
        self.tickers = tuple(tickers)
        self._day_stats: dict[int, list[float]] = {}  # tidx -> [day, cumulative volume, cumulative p*v]

    def generate_many(self, tidxs: Sequence[int], minute: int) -> list[_Part]:
        return [self.generate(tidx, minute) for tidx in tidxs]

    def generate(self, tidx: int, minute: int) -> _Part:
        start = minute * MINUTE_MS
        trades = self.sim.minute_trades(self.tickers[tidx], start)
        n, qpt = len(trades), self.qpt
        t = np.fromiter((tr.t_ms for tr in trades), np.int64, n)
        p = np.fromiter((tr.price for tr in trades), np.float64, n)
        s = np.fromiter((tr.size for tr in trades), np.int32, n)
        q = np.fromiter((tr.seq for tr in trades), np.int64, n)
        x = np.fromiter((tr.exchange for tr in trades), np.int8, n)
        quote_around = self.sim.quote_around
        if qpt == 1:
            quotes = [quote_around(tr) for tr in trades]
        else:  # quote j of a trade: the same trade with sequence number seq * qpt + j
            quotes = [
                quote_around(SimTrade(tr.ticker, tr.t_ms, tr.price, tr.size, tr.seq * qpt + j, tr.exchange))
                for tr in trades
                for j in range(qpt)
            ]
        qa = np.array(quotes, dtype=np.float64).reshape(-1, 4)
        agg_keys, aggs = self._aggregates(tidx, start, trades)
        toff4 = ((t - start) * 4).astype(np.int32)
        key = np.concatenate(
            [np.asarray(agg_keys, np.int32), np.repeat(toff4 + _PRIO_QUOTE, qpt), toff4 + _PRIO_TRADE]
        )
        code = np.concatenate(
            [
                np.full(len(aggs) - 1, tidx * 4 + _A, np.int32),
                np.full(1, tidx * 4 + _AM, np.int32),
                np.full(n * qpt, tidx * 4 + _Q, np.int32),
                np.full(n, tidx * 4 + _T, np.int32),
            ]
        )
        row = np.concatenate([np.arange(len(aggs)), np.arange(n * qpt), np.arange(n)]).astype(np.int32)
        order = np.argsort(key, kind="stable")
        return _Part(
            tidx, t, p, s, q, x, qa[:, 0].copy(), qa[:, 1].copy(), qa[:, 2].astype(np.int32),
            qa[:, 3].astype(np.int32), key[order], code[order], row[order], aggs,
        )  # fmt: skip

    def _aggregates(self, tidx: int, start: int, trades: list[SimTrade]) -> tuple[list[int], list[bytes]]:
        """Per-second ``A`` (seconds with trades) then the minute's ``AM``, with their emission keys.

        ``op`` is the simulator's price at 09:30 New York (14:30 UTC) that day; ``av``/``a`` accumulate the
        volume and VWAP generated for the ticker since the UTC day began or the generator started (a real
        feed counts from the session start).
        """
        ticker = self.tickers[tidx]
        day = start // DAY_MS
        stats = self._day_stats.get(tidx)
        if stats is None or stats[0] != day:
            stats = self._day_stats[tidx] = [day, 0, 0.0]
        op = self.sim.minute_open(ticker, day * 1440 + 14 * 60 + 30)

        def payload(ev: str, window: Sequence[SimTrade], w_start: int, w_end: int, accumulate: bool) -> bytes:
            o, h, low, c, v, vw, pv = _window_stats(window)
            if accumulate:
                stats[1] += v
                stats[2] += pv
            return orjson.dumps(
                {
                    "ev": ev, "sym": ticker, "v": v, "av": int(stats[1]), "op": op, "vw": vw, "o": o, "c": c,
                    "h": h, "l": low, "a": round(stats[2] / stats[1], 4), "z": v // len(window),
                    "s": w_start, "e": w_end,
                }  # fmt: skip
            )

        keys: list[int] = []
        payloads: list[bytes] = []
        i, n = 0, len(trades)
        while i < n:
            second = trades[i].t_ms // 1000
            j = i + 1
            while j < n and trades[j].t_ms // 1000 == second:
                j += 1
            end = second * 1000 + 1000
            keys.append((end - start) * 4 + _PRIO_AGG)
            payloads.append(payload("A", trades[i:j], second * 1000, end, True))
            i = j
        keys.append(MINUTE_MS * 4 + _PRIO_AGG)
        payloads.append(payload("AM", trades, start, start + MINUTE_MS, False))
        return keys, payloads


_worker_factory: _PartFactory | None = None


def _worker_init(*args: Any) -> None:
    global _worker_factory
    _worker_factory = _PartFactory(*args)


def _worker_generate(tidxs: Sequence[int], minute: int) -> list[_Part]:
    assert _worker_factory is not None
    return _worker_factory.generate_many(tidxs, minute)


# -- connections -----------------------------------------------------------------------------------------

_DROP = object()


class _Conn:
    """Server-side state of one WebSocket connection; touched only on the server's event loop."""

    def __init__(self, cid: int, ws: ServerConnection, n_keys: int) -> None:
        self.id = cid
        self.ws = ws
        self.connected_at = time.time()
        self.key: str | None = None
        self.authed = False
        self.closing = False
        self.params: set[str] = set()
        self.want = np.zeros(n_keys, dtype=bool)
        self.wants_any = False
        self.queue: deque[tuple[Any, Any, Any]] = deque()  # (frame, events, tick span) or (_DROP, (code, reason), None)
        self.wake = asyncio.Event()
        self.buffered = 0
        self.budget: int | None = None  # events left before a scripted disconnect
        self.budget_code: int | None = 1011
        self.events_sent = 0
        self.writer_closing = False
        self.first_ms: int | None = None  # event-time span of the ticks fully written to the socket
        self.last_ms: int | None = None
        self.closed_at: float | None = None

    def push(self, frame: bytes, n_events: int = 0, span: tuple[int, int, bool] | None = None) -> None:
        """Queue a frame; ``span`` = (first ms, last ms, whether this frame ends that tick) for market events."""
        self.queue.append((frame, n_events, span))
        self.buffered += len(frame)
        self.wake.set()

    def push_drop(self, code: int | None, reason: str) -> None:
        """Close after everything queued so far has been sent."""
        self.closing = True
        self.queue.append((_DROP, (code, reason), None))
        self.wake.set()


class PolygonStandIn:
    """A local Polygon.io / Massive stocks WebSocket server driven by the deterministic market simulator.

    ``events_per_second`` is the target number of T+Q events per real second for the whole universe when
    everything is subscribed; it sets the simulator's ``trades_per_minute`` (override it with
    ``trades_per_minute``). ``clock`` returns the current time in epoch milliseconds (default: wall clock);
    a clock that runs faster than real time multiplies the real event rate accordingly.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("demo-key",),
        tickers: Sequence[str] | None = None,
        seed: int = 42,
        events_per_second: float = 1000.0,
        quotes_per_trade: int = 1,
        max_connections_per_key: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        *,
        trades_per_minute: int | None = None,
        max_events_per_frame: int = 500,
        tick_seconds: float = 0.005,
        max_connections_policy: str = "reject_new",
        auth_timeout_seconds: float | None = None,
        max_buffer_bytes: int = 128 * 2**20,
        max_catchup_ms: int = MINUTE_MS,
        max_events_per_tick: int = 20_000,
        compression: str | None = None,
        generator: str = "auto",
    ) -> None:
        if quotes_per_trade < 0:
            raise ValueError("quotes_per_trade must be >= 0")
        if max_connections_policy not in ("reject_new", "evict_oldest"):
            raise ValueError("max_connections_policy must be 'reject_new' or 'evict_oldest'")
        if generator not in ("auto", "inline", "process"):
            raise ValueError("generator must be 'auto', 'inline' or 'process'")
        self.api_keys = frozenset(api_keys)
        self.tickers: tuple[str, ...] = tuple(tickers) if tickers else DEFAULT_TICKERS
        if len(set(self.tickers)) != len(self.tickers):
            raise ValueError("duplicate tickers")
        self.quotes_per_trade = quotes_per_trade
        self.events_per_second = events_per_second
        wanted_tpm = trades_per_minute or round(
            events_per_second * 60.0 / (len(self.tickers) * (1 + quotes_per_trade))
        )
        tpm = max(1, min(MAX_TRADES_PER_MINUTE, wanted_tpm))
        if tpm < wanted_tpm:
            log.warning(
                "%d trades/minute per ticker is more than the simulator can space 1 ms apart; capped at %d "
                "(add tickers to reach %.0f events/s)", wanted_tpm, tpm, events_per_second,
            )  # fmt: skip
        self.trades_per_minute = tpm
        self.seed = seed
        self.sim = MarketSim(seed=seed, trades_per_minute=tpm)
        if generator == "auto":
            generator = "process" if events_per_second >= PROCESS_GENERATOR_RATE else "inline"
        self.generator = generator
        self.max_connections_per_key = max_connections_per_key
        self.max_connections_policy = max_connections_policy
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._clock = clock or (lambda: time.time() * 1000.0)
        self.max_events_per_frame = max_events_per_frame
        self.tick_seconds = tick_seconds
        self.auth_timeout_seconds = auth_timeout_seconds
        self.max_buffer_bytes = max_buffer_bytes
        self.max_catchup_ms = max_catchup_ms
        self.max_events_per_tick = max_events_per_tick
        self.compression = compression

        n = len(self.tickers)
        self._ticker_index = {t: i for i, t in enumerate(self.tickers)}
        self._sym = [orjson.dumps(t) for t in self.tickers]
        self._tape = [1 + zlib.crc32(t.encode()) % 3 for t in self.tickers]  # 1=NYSE, 2=other, 3=Nasdaq
        self._union_count = np.zeros(n * 4, dtype=np.int32)
        self._union = np.zeros(n * 4, dtype=bool)
        self._pinned: frozenset[int] = frozenset()
        self._active: frozenset[int] = frozenset()
        self._active_version = 0
        self._chunks: dict[int, _Chunk] = {}
        self._cursor = 0
        self._held_at: int | None = None
        self._factory = _PartFactory(seed, tpm, quotes_per_trade, self.tickers)
        self._pool: ProcessPoolExecutor | None = None
        self._gen_wake: asyncio.Event | None = None

        self._conns: dict[int, _Conn] = {}
        self._next_id = 0
        self._events_sent = 0
        self._auth_failures = 0
        self._paused_until = 0.0
        self._close_tasks: set[asyncio.Task[None]] = set()
        self._closed: deque[_Conn] = deque(maxlen=10_000)  # for ``deliveries``

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the stand-in is not listening; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/stocks``."""
        return f"ws://{self.host}:{self.port}{PATH}"

    def start(self, prewarm: bool = False, timeout: float = 30.0) -> PolygonStandIn:
        """Serve on a daemon thread with its own event loop; returns once the socket listens.

        ``prewarm`` generates the current minute for the whole universe before returning, so the first
        subscriber of a large universe is not kept waiting.
        """
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()

        def run() -> None:
            try:
                asyncio.run(self._run(ready))
            except BaseException as exc:  # reported to start() and logged; the thread ends either way
                self._error = exc
                log.exception("Polygon stand-in crashed")
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="polygon-standin", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None or self._port is None:
            self.stop()
            raise RuntimeError(f"Polygon stand-in did not start: {self._error!r}")
        if prewarm:
            self._call(self._pin_all)
            self.wait_ready(timeout)
        return self

    def stop(self) -> None:
        """Close every connection (1001 going away) and stop serving."""
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None

    def __enter__(self) -> PolygonStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Serve on the running event loop until cancelled (for a CLI process)."""
        await self._run(None)

    async def _run(self, ready: threading.Event | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop_event = asyncio.Event()
        self._cursor = int(self._clock())
        self._gen_wake = asyncio.Event()
        if self.generator == "process":
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.seed, self.trades_per_minute, self.quotes_per_trade, self.tickers),
            )
        tasks: list[asyncio.Task[None]] = []
        try:
            async with serve(
                self._handler,
                self.host,
                self._requested_port,
                process_request=self._process_request,
                compression=self.compression,
                write_limit=2**18,
                close_timeout=2,
            ) as server:
                self._port = _bound_port(server)
                tasks.append(asyncio.create_task(self._pump_loop(), name="polygon-standin-pump"))
                tasks.append(asyncio.create_task(self._gen_loop(), name="polygon-standin-generator"))
                log.info(
                    "Polygon stand-in on %s: %d tickers, %d trades/min/ticker (~%.0f T+Q events/s)",
                    self.url, len(self.tickers), self.trades_per_minute,
                    len(self.tickers) * self.trades_per_minute * (1 + self.quotes_per_trade) / 60.0,
                )  # fmt: skip
                if ready is not None:
                    ready.set()
                await self._stop_event.wait()
                await _cancel(tasks)
        finally:
            await _cancel(tasks)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            self._loop = None

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the server's loop (directly when already on it) and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the stand-in is not running")
        if threading.get_ident() == self._loop_thread:
            return fn(*args)

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)

    # -- counters --------------------------------------------------------------------------------------
    @property
    def events_sent(self) -> int:
        """Market events (T, Q, A, AM) written to sockets so far, over all connections."""
        return self._events_sent

    @property
    def connections(self) -> int:
        """WebSocket connections currently open (authenticated or not)."""
        return len(self._conns)

    @property
    def auth_failures(self) -> int:
        return self._auth_failures

    @property
    def subscriptions(self) -> list[list[str]]:
        """The sorted subscription params of each authenticated connection, oldest connection first."""
        if self._loop is None:
            return []
        return self._call(lambda: [sorted(c.params) for c in self._conns.values() if c.authed and not c.closing])

    def connection_info(self) -> list[dict[str, Any]]:
        """Per open connection: id, key, authenticated, subscriptions, events sent, bytes queued."""
        if self._loop is None:
            return []
        return self._call(
            lambda: [
                {
                    "id": c.id, "key": c.key, "authenticated": c.authed, "subscriptions": sorted(c.params),
                    "events_sent": c.events_sent, "buffered_bytes": c.buffered,
                }  # fmt: skip
                for c in self._conns.values()
            ]
        )

    @property
    def cursor_ms(self) -> int:
        """Simulated time up to which events have been emitted."""
        return self._cursor

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the streamed minute is generated for every active ticker -- and the next one too
        when generating a minute takes longer than what is left of this one."""
        started = time.monotonic()
        deadline = started + timeout

        def generated(minute: int) -> bool:
            chunk = self._chunks.get(minute)
            return not self._active or (chunk is not None and self._active <= chunk.tickers)

        while not generated(minute := self._cursor // MINUTE_MS):
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator did not generate the current minute in time")
            time.sleep(0.01)
        took_ms = (time.monotonic() - started) * 1000
        if (minute + 1) * MINUTE_MS - self._clock() < 1.5 * took_ms:
            while not generated(minute + 1):
                if time.monotonic() > deadline:
                    raise TimeoutError("the simulator did not generate the next minute in time")
                time.sleep(0.01)

    # -- fault injection -------------------------------------------------------------------------------
    def drop_connections(self, code: int | None = 1011, reason: str = "stand-in: injected disconnect") -> int:
        """Drop every open connection now: a close frame with ``code``, or (``None``) an abrupt TCP close."""
        return self._call(self._drop_all, code, reason)

    def disconnect_after_events(self, n: int, code: int | None = 1011) -> int:
        """Drop each currently open connection once it has been sent ``n`` more events."""
        if n < 0:
            raise ValueError("n must be >= 0")

        def arm() -> int:
            conns = [c for c in self._conns.values() if not c.closing]
            for c in conns:
                c.budget, c.budget_code = n, code
                if n == 0:
                    c.push_drop(code, "stand-in: scripted disconnect")
            return len(conns)

        return self._call(arm)

    def pause(self, seconds: float) -> None:
        """Stop sending events for ``seconds`` (sockets stay open; the backlog follows when it ends)."""
        self._paused_until = time.monotonic() + seconds

    def resume(self) -> None:
        """End a ``pause`` early."""
        self._paused_until = 0.0

    def deliveries(self) -> list[dict[str, Any]]:
        """Per connection (closed ones too, oldest first): its trade tickers and the event-time span sent.

        ``first_ms``..``last_ms`` covers every tick whose events were all written to the socket (a dropped
        connection's queued frames are discarded and not counted); ``closed_at`` is epoch seconds or None.
        """

        def collect() -> list[dict[str, Any]]:
            conns = sorted([*self._closed, *self._conns.values()], key=lambda c: c.id)
            return [
                {
                    "id": c.id, "tickers": sorted({p.partition(".")[2] for p in c.params if p.startswith("T.")}),
                    "first_ms": c.first_ms, "last_ms": c.last_ms, "events_sent": c.events_sent,
                    "connected_at": c.connected_at, "closed_at": c.closed_at,
                }  # fmt: skip
                for c in conns
            ]

        return self._call(collect)

    def inject_raw(self, text: str | bytes) -> int:
        """Send one arbitrary text frame to every authenticated connection; returns how many got it."""
        frame = text.encode() if isinstance(text, str) else bytes(text)

        def push() -> int:
            conns = [c for c in self._conns.values() if c.authed and not c.closing]
            for c in conns:
                c.push(frame)
            return len(conns)

        return self._call(push)

    def _drop_all(self, code: int | None, reason: str) -> int:
        conns = [c for c in self._conns.values() if not c.closing]
        for c in conns:
            self._drop_now(c, code, reason)
        log.info("dropped %d connection(s) (%s)", len(conns), "abrupt" if code is None else code)
        return len(conns)

    def _drop_now(self, conn: _Conn, code: int | None, reason: str) -> None:
        conn.closing = True
        conn.queue.clear()
        conn.buffered = 0
        conn.wake.set()
        if code is None:
            conn.ws.transport.abort()
        else:
            task = asyncio.get_running_loop().create_task(conn.ws.close(code, reason))
            self._close_tasks.add(task)
            task.add_done_callback(self._close_tasks.discard)

    # -- protocol --------------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != PATH:
            return connection.respond(404, "Not Found\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self._next_id += 1
        conn = _Conn(self._next_id, ws, len(self._union))
        self._conns[conn.id] = conn
        writer = asyncio.create_task(self._writer(conn))
        conn.push(CONNECTED)
        timer = None
        if self.auth_timeout_seconds is not None:
            timer = asyncio.get_running_loop().call_later(self.auth_timeout_seconds, self._auth_timeout, conn)
        try:
            async for message in ws:
                self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            if timer is not None:
                timer.cancel()
            conn.closing = True
            conn.closed_at = time.time()
            self._conns.pop(conn.id, None)
            self._closed.append(conn)
            params = conn.params
            self._set_params(conn, set())
            conn.params = params  # kept for ``deliveries``
            if conn.writer_closing or (conn.queue and conn.queue[-1][0] is _DROP):
                await asyncio.wait([writer], timeout=3)  # let a scripted close finish its handshake
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        queue = conn.queue
        try:
            while True:
                if not queue:
                    conn.wake.clear()
                    await conn.wake.wait()
                    continue
                frame, n, span = queue.popleft()
                if frame is _DROP:
                    code, reason = n
                    conn.writer_closing = True
                    if code is None:
                        ws.transport.abort()
                    else:
                        await ws.close(code, reason)
                    return
                conn.buffered -= len(frame)
                await ws.send(frame, text=True)
                if n:
                    conn.events_sent += n
                    self._events_sent += n
                if span is not None:
                    if conn.first_ms is None:
                        conn.first_ms = span[0]
                    if span[2]:
                        conn.last_ms = span[1]
        except ConnectionClosed:
            pass

    def _auth_timeout(self, conn: _Conn) -> None:
        if not conn.authed and not conn.closing:
            conn.push(AUTH_TIMEOUT)
            conn.push_drop(CLOSE_POLICY, "authentication timeout")

    def _on_message(self, conn: _Conn, message: str | bytes) -> None:
        if conn.closing:
            return
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            conn.push(status_frame("error", "invalid message: not JSON"))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
            conn.push(status_frame("error", 'invalid message: expected {"action": ..., "params": ...}'))
            return
        action, params = msg["action"], msg.get("params")
        if action == "auth":
            self._auth(conn, params)
        elif not conn.authed:
            conn.push(status_frame("error", "not authorized: authenticate first"))
        elif action in ("subscribe", "unsubscribe"):
            self._subscribe(conn, action, params)
        else:
            conn.push(status_frame("error", f"unknown action: {action}"))

    def _auth(self, conn: _Conn, key: object) -> None:
        if conn.authed:
            conn.push(AUTH_SUCCESS)
            return
        if not isinstance(key, str) or key not in self.api_keys:
            self._auth_failures += 1
            log.info("connection %d: auth_failed", conn.id)
            conn.push(AUTH_FAILED)
            conn.push_drop(CLOSE_POLICY, "authentication failed")
            return
        limit = self.max_connections_per_key
        if limit is not None:
            same_key = [c for c in self._conns.values() if c.authed and not c.closing and c.key == key]
            if len(same_key) >= limit:
                if self.max_connections_policy == "reject_new":
                    log.info("connection %d: max_connections (%d) for its key", conn.id, limit)
                    conn.push(MAX_CONNECTIONS)
                    conn.push_drop(CLOSE_POLICY, "max connections")
                    return
                for old in same_key[: len(same_key) - limit + 1]:
                    log.info("connection %d evicted by connection %d: max_connections", old.id, conn.id)
                    old.queue.clear()
                    old.buffered = 0
                    old.push(MAX_CONNECTIONS)
                    old.push_drop(CLOSE_POLICY, "max connections")
                    self._set_params(old, set())
        conn.authed = True
        conn.key = key
        conn.push(AUTH_SUCCESS)

    def _subscribe(self, conn: _Conn, action: str, params: object) -> None:
        if not isinstance(params, str):
            conn.push(status_frame("error", "params must be a comma-separated string"))
            return
        new = set(conn.params)
        verb = "subscribed to" if action == "subscribe" else "unsubscribed to"
        for param in filter(None, (p.strip() for p in params.split(","))):
            channel, _, symbol = param.partition(".")
            if channel not in _CHANNEL_INDEX or not symbol:
                conn.push(status_frame("error", f"invalid subscription: {param}"))
                continue
            if action == "subscribe":
                new.add(param)
            else:
                new.discard(param)
            conn.push(status_frame("success", f"{verb}: {param}"))
        self._set_params(conn, new)

    def _set_params(self, conn: _Conn, params: set[str]) -> None:
        conn.params = params
        want = np.zeros(len(self._union), dtype=bool)
        for param in params:
            channel, _, symbol = param.partition(".")
            ci = _CHANNEL_INDEX[channel]
            if symbol == "*":
                want[ci::4] = True
            elif (ti := self._ticker_index.get(symbol)) is not None:  # unknown tickers stream nothing
                want[ti * 4 + ci] = True
        delta = want.astype(np.int32) - conn.want.astype(np.int32)
        conn.want = want
        conn.wants_any = bool(want.any())
        if delta.any():
            self._union_count += delta
            self._union = self._union_count > 0
            self._refresh_active()

    def _pin_all(self) -> None:
        self._pinned = frozenset(range(len(self.tickers)))
        self._refresh_active()

    def _refresh_active(self) -> None:
        active = frozenset(np.flatnonzero(self._union.reshape(-1, 4).any(axis=1)).tolist()) | self._pinned
        if active != self._active:
            self._active = active
            self._active_version += 1
            if self._gen_wake is not None:
                self._gen_wake.set()

    # -- event pump ------------------------------------------------------------------------------------
    async def _pump_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self._pump_once()
            except Exception:
                log.exception("pump tick failed")
            await asyncio.sleep(max(0.0, self.tick_seconds - (time.monotonic() - started)))

    def _pump_once(self) -> None:
        now = int(self._clock())
        cursor = self._cursor
        if now <= cursor or time.monotonic() < self._paused_until:
            return
        if now - cursor > self.max_catchup_ms:
            log.warning("%d ms behind the clock; skipping to the last %d ms", now - cursor, self.max_catchup_ms)
            cursor = self._cursor = now - self.max_catchup_ms
        # A new minute starts only once it is generated for every active ticker (no silent holes).
        active = self._active
        end = now
        first = cursor // MINUTE_MS
        for minute in range(first + 1, now // MINUTE_MS + 1):
            chunk = self._chunks.get(minute)
            if active and (chunk is None or not active <= chunk.tickers):
                end = minute * MINUTE_MS - 1
                if self._held_at != minute:
                    self._held_at = minute
                    log.warning("minute %d is not generated yet; the stream waits for it", minute)
                break
        # At most ``max_events_per_tick`` events a tick (cut at a millisecond), so a backlog after a pause
        # or a stall drains over several ticks instead of blocking the loop and flooding the queues.
        # Cutting ``end`` never drops an event already taken: earlier chunks end at this one's start.
        segments: list[tuple[_Chunk, int, int]] = []
        budget = self.max_events_per_tick
        minute = first
        while minute * MINUTE_MS <= end:  # chunk m holds events emitted in [start(m), start(m + 1)]
            chunk = self._chunks.get(minute)
            minute += 1
            if chunk is None:
                continue
            lo = _first_at(chunk, cursor + 1)
            hi = _first_at(chunk, end + 1)
            keep = max(budget, 1)  # at least the events of one millisecond
            if hi - lo > keep:
                cut_ms = chunk.start + int(chunk.key[lo + keep]) // 4  # the first millisecond left out
                end = max(cut_ms - 1, chunk.start + int(chunk.key[lo]) // 4)
                hi = _first_at(chunk, end + 1)
            if hi > lo:
                segments.append((chunk, lo, hi))
                budget -= hi - lo
        if end <= cursor:
            return
        self._cursor = end
        if segments:
            self._distribute(segments, (cursor + 1, end))

    def _distribute(self, segments: list[tuple[_Chunk, int, int]], span: tuple[int, int] = (0, 0)) -> None:
        """Serialize the wanted events of ``segments`` once and queue them, framed, on each connection."""
        conns = [c for c in self._conns.values() if c.wants_any and not c.closing]
        if not conns:
            return
        union = self._union
        selected: dict[int, list[bytes]] = {c.id: [] for c in conns}
        for chunk, lo, hi in segments:
            codes = chunk.code[lo:hi]
            rows = chunk.row[lo:hi]
            needed = union[codes]
            if not needed.all():
                idx = np.flatnonzero(needed)
                if not len(idx):
                    continue
                codes, rows = codes[idx], rows[idx]
            events = self._serialize(chunk, codes, rows)
            for c in conns:
                mask = c.want[codes]
                if mask.all():
                    selected[c.id].extend(events)
                elif mask.any():
                    selected[c.id].extend([events[i] for i in np.flatnonzero(mask).tolist()])
        per_frame = self.max_events_per_frame
        for c in conns:
            events = selected[c.id]
            if not events:
                continue
            if c.budget is not None:
                events = events[: c.budget]
                c.budget -= len(events)
            for i in range(0, len(events), per_frame):
                part = events[i : i + per_frame]
                c.push(b"[" + b",".join(part) + b"]", len(part), (*span, i + per_frame >= len(events)))
            if c.budget == 0:
                c.push_drop(c.budget_code, "stand-in: scripted disconnect")
            elif c.buffered > self.max_buffer_bytes:
                log.warning("connection %d: %d bytes queued; disconnecting a slow consumer", c.id, c.buffered)
                self._drop_now(c, CLOSE_POLICY, "slow consumer: send buffer full")

    def _serialize(self, chunk: _Chunk, codes: np.ndarray, rows: np.ndarray) -> list[bytes]:
        """The JSON of each event (same order); trades and quotes are formatted from the chunk's columns."""
        qpt = max(self.quotes_per_trade, 1)
        cols = chunk.columns
        chan = codes & 3
        is_quote = chan == _Q
        trow = np.where(is_quote, rows // qpt, rows)
        trow[chan >= _A] = 0  # aggregates are pre-serialized; any valid row will do
        qrow = np.where(is_quote, rows, 0)
        t = cols["t"][trow].tolist()
        p = cols["p"][trow].tolist()
        s = cols["s"][trow].tolist()
        x = cols["x"][trow].tolist()
        seq = np.where(is_quote, cols["q"][trow] * qpt + rows % qpt, cols["q"][trow]).tolist()
        if len(cols["bp"]):
            bp, ap = cols["bp"][qrow].tolist(), cols["ap"][qrow].tolist()
            bs, az = cols["bs"][qrow].tolist(), cols["az"][qrow].tolist()
        else:
            bp = ap = bs = az = t
        syms, tapes, aggs = self._sym, self._tape, chunk.aggs
        out: list[bytes] = []
        append = out.append
        for code, row, ti, pi, si, xi, qi, bpi, api, bsi, azi in zip(
            codes.tolist(), rows.tolist(), t, p, s, x, seq, bp, ap, bs, az
        ):
            kind = code & 3
            if kind == _T:
                tk = code >> 2
                append(_T_FMT % (syms[tk], xi, qi, tapes[tk], pi, si, ti, qi))
            elif kind == _Q:
                tk = code >> 2
                append(_Q_FMT % (syms[tk], xi, bpi, bsi, (xi + 6) % 20 + 1, api, azi, ti, qi, tapes[tk]))
            else:
                append(aggs[row])
        return out

    # -- generation ------------------------------------------------------------------------------------
    async def _gen_loop(self) -> None:
        """Keep the streamed minute and the next one generated for every active ticker."""
        assert self._gen_wake is not None
        while True:
            work = self._next_work()
            if work is None:
                self._gen_wake.clear()
                try:
                    await asyncio.wait_for(self._gen_wake.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                started = time.monotonic()
                await self._fill(*work)
                log.debug(
                    "generated minute %d for %d tickers in %.2f s (cursor %.1f s into its minute)",
                    work[0], len(work[1]), time.monotonic() - started, self._cursor % MINUTE_MS / 1000,
                )  # fmt: skip
            except BrokenProcessPool:
                log.error("the generator process died; generating on the event loop from now on")
                self._pool = None
            except Exception:
                log.exception("generating simulated market data failed")
                await asyncio.sleep(0.5)
            first_kept = self._cursor // MINUTE_MS  # the pump never looks further back
            for minute in [m for m in self._chunks if m < first_kept]:
                del self._chunks[minute]

    def _next_work(self) -> tuple[int, list[int]] | None:
        """The most urgent (minute, missing tickers): the minute being streamed, then the next one."""
        active = self._active
        if not active:
            return None
        current = self._cursor // MINUTE_MS
        for minute in (current, current + 1):
            chunk = self._chunks.get(minute)
            missing = active - chunk.tickers if chunk is not None else active
            if missing:
                return minute, sorted(missing)
        return None

    async def _fill(self, minute: int, tidxs: list[int]) -> None:
        """Generate ``tidxs`` for ``minute`` and merge them into its chunk.

        While the minute is being streamed, what is ready is merged every ~0.2 s so subscribers see their
        tickers as soon as possible; a prefetch stops early (keeping what it made) when a subscription
        changes priorities.
        """
        version = self._active_version
        pending: list[_Part] = []
        last_merge = time.monotonic()

        def live() -> bool:
            return minute <= self._cursor // MINUTE_MS

        async def merge_pending() -> None:
            nonlocal pending, last_merge
            if pending:
                await self._merge_into(minute, pending)
                pending = []
                last_merge = time.monotonic()

        def merge_due() -> bool:
            # Re-merging the whole chunk costs O(its size): merge when the new parts add a quarter to it
            # (or after 2 s), so the total stays O(n log n).
            if not live() or time.monotonic() - last_merge < 0.2:
                return False
            chunk = self._chunks.get(minute)
            size = len(chunk.key) if chunk is not None else 0
            return sum(len(p.key) for p in pending) >= size // 4 or time.monotonic() - last_merge > 2.0

        def preempted() -> bool:
            return not live() and self._active_version != version

        if self._pool is None:
            # Inline: one (ticker, minute) at a time, letting the pump and the sockets run in between.
            for tidx in tidxs:
                pending.append(self._factory.generate(tidx, minute))
                await asyncio.sleep(0)
                if merge_due():
                    await merge_pending()
                if preempted():
                    break
        else:
            per_job = max(1, _EVENTS_PER_JOB // (self.trades_per_minute * (1 + self.quotes_per_trade)))
            jobs = [
                self._pool.submit(_worker_generate, tidxs[i : i + per_job], minute)
                for i in range(0, len(tidxs), per_job)
            ]
            try:
                for job in jobs:
                    if job.cancelled():
                        continue
                    pending.extend(await asyncio.wrap_future(job))
                    if merge_due():
                        await merge_pending()
                    if preempted():
                        for later in jobs:
                            later.cancel()  # jobs the worker already took still finish and are kept
            finally:
                for job in jobs:
                    job.cancel()
        await merge_pending()

    async def _merge_into(self, minute: int, parts: list[_Part]) -> None:
        old = self._chunks.get(minute)
        if sum(len(p.key) for p in parts) + (len(old.key) if old is not None else 0) > 200_000:
            chunk = await asyncio.to_thread(_merge, old, parts, minute)  # numpy releases the GIL here
        else:
            chunk = _merge(old, parts, minute)
        self._chunks[minute] = chunk  # only this task writes chunks, one merge at a time


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _bound_port(server: Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m standins.polygon_ws --port 8766``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--key", action="append", dest="keys", help="accepted API key (repeatable)")
    parser.add_argument("--tickers", default=",".join(DEFAULT_TICKERS), help="comma-separated universe")
    parser.add_argument("--rate", type=float, default=1000.0, help="target T+Q events per second")
    parser.add_argument("--quotes-per-trade", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-connections", type=int, default=None, help="per API key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    standin = PolygonStandIn(
        api_keys=args.keys or ("demo-key",),
        tickers=[t.strip().upper() for t in args.tickers.split(",") if t.strip()],
        seed=args.seed,
        events_per_second=args.rate,
        quotes_per_trade=args.quotes_per_trade,
        max_connections_per_key=args.max_connections,
        host=args.host,
        port=args.port,
    )

    async def serve() -> None:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await standin.serve_forever()
        except asyncio.CancelledError:
            log.info("Polygon stand-in stopped")

    asyncio.run(serve())


if __name__ == "__main__":
    main()
