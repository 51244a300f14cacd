"""Polygon.io / Massive stocks clients: the real-time WebSocket and the REST aggregates (for gap fill).

The WebSocket client is deliberately thin: it authenticates, subscribes, hands every raw frame (bytes, not
decoded) to a callback and reconnects with exponential backoff and jitter, re-subscribing each time.
``auth_failed`` is fatal (no reconnect loop) and exhausting the reconnect budget raises ``PolygonGaveUp``:
both are errors a person sees, never a silent stop.

The reconnect budget (``max_reconnects``) counts *consecutive* failed reconnects. A session is healthy --
and the count starts again after it -- once it is authenticated and subscribed and then either delivered a
market-data frame or stayed up ``healthy_after_s`` (a quiet feed after hours sends nothing for long
stretches). A server that accepts, authenticates and drops before either keeps counting, so a flapping
endpoint still ends in ``PolygonGaveUp`` instead of a reconnect storm.

``max_connections`` (the account's connection limit: another streamer on the same key) raises
``PolygonMaxConnections`` whether it arrives during the handshake or in the middle of a session, and is
never retried: reconnecting would evict the other connection, which would reconnect and evict this one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson
import websockets
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from headwater.models import Bar
from headwater.providers.http import HttpClient

log = logging.getLogger("headwater.providers.polygon")

FrameHandler = Callable[[bytes, int], Awaitable[None]]
ReconnectHandler = Callable[[int], Awaitable[None]]


class PolygonAuthError(RuntimeError):
    """The server answered ``auth_failed``: a wrong key is not fixed by reconnecting."""


class PolygonGaveUp(RuntimeError):
    """Reconnecting failed ``max_reconnects`` times in a row."""


class PolygonProtocolError(RuntimeError):
    """The server answered something the protocol does not allow (an ``error`` status in the handshake)."""


class PolygonMaxConnections(PolygonProtocolError):
    """The server sent ``max_connections``: the key's connection limit is taken (e.g. by a second streamer)."""


def subscription_params(tickers: Sequence[str], channels: Sequence[str], wildcard: bool = False) -> list[str]:
    """``["T.AAPL", "Q.AAPL", ...]`` or ``["T.*", ...]`` for a wildcard subscription."""
    if wildcard:
        return [f"{ch}.*" for ch in channels]
    return [f"{ch}.{t}" for t in tickers for ch in channels]


@dataclass
class ConnectionStats:
    """Counters of one WebSocket connection (exported by the streamer)."""

    frames: int = 0
    bytes: int = 0
    connects: int = 0
    reconnects: int = 0
    max_connections: int = 0  # max_connections statuses received (each one is fatal)
    last_frame_ms: int = 0
    statuses: list[str] = field(default_factory=list)


class PolygonStream:
    """One authenticated, subscribed WebSocket connection that survives routine disconnects."""

    def __init__(
        self,
        url: str,
        api_key: SecretStr,
        subscriptions: Sequence[str],
        on_frame: FrameHandler,
        *,
        on_reconnect: ReconnectHandler | None = None,
        max_reconnects: int = 10,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        name: str = "polygon-0",
        subscribe_chunk: int = 500,
        healthy_after_s: float = 30.0,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self.subscriptions = list(subscriptions)
        self.on_frame = on_frame
        self.on_reconnect = on_reconnect
        self.max_reconnects = max_reconnects
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.name = name
        self.subscribe_chunk = subscribe_chunk
        self.healthy_after_s = healthy_after_s
        self.stats = ConnectionStats()
        self._healthy = False  # the current session delivered market data (see the module docstring)
        self._subscribed_at: float | None = None  # monotonic time the current session was subscribed
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None

    def backoff_delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)]."""
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt)) + 0.05

    async def run(self) -> None:
        """Connect, stream and reconnect until ``stop()``; raises on auth failure, max_connections or giving up."""
        failures = 0  # consecutive reconnects that did not lead to a healthy session
        while not self._stop.is_set():
            self._healthy, self._subscribed_at = False, None
            try:
                await self._session()
                return  # only a stop() ends a session without an exception
            except PolygonMaxConnections as exc:
                self.stats.max_connections += 1
                log.error("%s — not reconnecting: that would evict the other connection on this key", exc)
                raise
            except (PolygonAuthError, PolygonProtocolError):
                raise
            except (OSError, ConnectionClosed, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
                if self._stop.is_set():
                    return
                failures = 1 if self._session_was_healthy() else failures + 1
                if failures > self.max_reconnects:
                    raise PolygonGaveUp(
                        f"{self.name}: gave up after {self.max_reconnects} failed reconnects in a row to {self.url}: {exc!r}"
                    ) from exc
                delay = self.backoff_delay(failures - 1)
                log.warning(
                    "%s: connection lost (%s); reconnect %d/%d in %.2fs",
                    self.name, exc.__class__.__name__, failures, self.max_reconnects, delay,
                )  # fmt: skip
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                    return
                except asyncio.TimeoutError:
                    pass

    def _session_was_healthy(self) -> bool:
        """Authenticated and subscribed, then data arrived or the connection stayed up ``healthy_after_s``."""
        if self._subscribed_at is None:
            return False
        return self._healthy or time.monotonic() - self._subscribed_at >= self.healthy_after_s

    async def stop(self) -> None:
        """Close cleanly: the run loop returns instead of reconnecting."""
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()

    async def _session(self) -> None:
        async with connect(self.url, max_size=2**24, open_timeout=10, ping_interval=20, ping_timeout=20) as ws:
            self._ws = ws
            if self._stop.is_set():  # stop() came while connecting: it had no socket to close
                return
            await self._handshake(ws)
            reconnected = self.stats.connects > 0
            self.stats.connects += 1
            if reconnected:
                self.stats.reconnects += 1
                if self.on_reconnect is not None:
                    await self.on_reconnect(self.stats.reconnects)
            self._subscribed_at = time.monotonic()
            try:
                while True:
                    frame = await ws.recv(decode=False)
                    now_ms = int(time.time() * 1000)
                    self.stats.frames += 1
                    self.stats.bytes += len(frame)
                    self.stats.last_frame_ms = now_ms
                    await self.on_frame(frame, now_ms)
                    if b'"status"' in frame:  # rare: parse it (data frames never carry the word)
                        self._check_statuses(frame)
                    elif not self._healthy:
                        self._healthy = True
            except ConnectionClosedOK:
                if not self._stop.is_set():
                    raise
            finally:
                self._ws = None

    async def _handshake(self, ws: ClientConnection) -> None:
        await self._expect_status(ws, {"connected"})
        await ws.send(orjson.dumps({"action": "auth", "params": self._api_key.get_secret_value()}).decode())
        await self._expect_status(ws, {"auth_success"})
        for i in range(0, len(self.subscriptions), self.subscribe_chunk):
            params = ",".join(self.subscriptions[i : i + self.subscribe_chunk])
            await ws.send(orjson.dumps({"action": "subscribe", "params": params}).decode())
        log.info("%s: authenticated, subscribed %d channels on %s", self.name, len(self.subscriptions), self.url)

    def _check_statuses(self, frame: bytes) -> None:
        """Status events inside a session: ``max_connections`` is fatal, the rest are logged."""
        try:
            events = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return  # the stream writer dead-letters it
        for event in events if isinstance(events, list) else ():
            if not isinstance(event, dict) or event.get("ev") != "status":
                continue
            status = event.get("status")
            if status == "success":  # one per subscription param ("subscribed to: T.AAPL")
                log.debug("%s: %s", self.name, event.get("message", ""))
                continue
            self.stats.statuses.append(str(status))
            if status == "max_connections":
                raise PolygonMaxConnections(f"{self.name}: max_connections: {event.get('message', '')}")
            log.warning("%s: provider status %s: %s", self.name, status, event.get("message", ""))

    async def _expect_status(self, ws: ClientConnection, wanted: set[str]) -> None:
        while True:
            raw = await asyncio.wait_for(ws.recv(decode=False), timeout=10)
            for event in orjson.loads(raw):
                if event.get("ev") != "status":
                    continue
                status = event.get("status")
                self.stats.statuses.append(status)
                if status in wanted:
                    return
                if status == "auth_failed":
                    raise PolygonAuthError(f"{self.name}: Polygon rejected the API key: {event.get('message', '')}")
                if status == "max_connections":
                    raise PolygonMaxConnections(f"{self.name}: max_connections: {event.get('message', '')}")
                if status == "error":
                    raise PolygonProtocolError(f"{self.name}: {status}: {event.get('message', '')}")


class PolygonRest(HttpClient):
    """Polygon REST: minute/second aggregates used to fill gaps after a reconnect."""

    provider = "polygon"

    def aggregates(
        self, ticker: str, start_ms: int, end_ms: int, *, multiplier: int = 1, timespan: str = "minute", limit: int = 50_000
    ) -> list[Bar]:
        """All bars with start in [start_ms, end_ms], following ``next_url`` pages."""
        path = f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start_ms}/{end_ms}"
        params: dict[str, object] | None = {"adjusted": "true", "sort": "asc", "limit": limit}
        timeframe = {"second": "1s", "minute": "1m", "hour": "1h", "day": "1d"}[timespan]
        bars: list[Bar] = []
        url: str | None = path
        while url:
            body = self.get_json(url, params=params)
            if body.get("status") not in {"OK", "DELAYED"}:
                raise self.malformed(f"aggregates status {body.get('status')!r}: {body.get('error') or body}")
            for row in body.get("results") or []:
                bars.append(
                    Bar(
                        ticker=ticker, start=row["t"], open=row["o"], high=row["h"], low=row["l"], close=row["c"],
                        volume=row["v"], vwap=row.get("vw"), timeframe=timeframe, source="polygon_rest",
                    )  # fmt: skip
                )
            url, params = body.get("next_url"), None
        return bars

    def auth_params(self) -> dict[str, str]:
        return {"apiKey": self.api_key.get_secret_value()} if self.api_key else {}
