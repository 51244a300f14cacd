"""The Polygon stocks WebSocket stand-in, driven by a real ``websockets`` client (no mocks).

Every streamed trade, quote and bar is checked against ``MarketSim`` itself, so these tests also pin the
promise the gap-fill tests rely on: a minute bar equals the aggregate of the trades streamed in that minute.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from standins.market import MINUTE_MS, MarketSim, SimTrade
from standins.polygon_ws import PolygonStandIn

pytestmark = pytest.mark.timeout(60)

KEY = "demo-key"
THREE = ("AAPL", "MSFT", "NVDA")


@pytest.fixture
def make_standin() -> Iterator[Callable[..., PolygonStandIn]]:
    """Start stand-ins with the given options; all are stopped after the test."""
    started: list[PolygonStandIn] = []

    def make(prewarm: bool = False, **kwargs: Any) -> PolygonStandIn:
        standin = PolygonStandIn(**kwargs).start(prewarm=prewarm)
        started.append(standin)
        return standin

    yield make
    for standin in started:
        standin.stop()


async def recv_json(ws: ClientConnection, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next frame, decoded (a generous timeout: a busy machine may take seconds to generate a minute)."""
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def open_session(url: str, key: str = KEY, subscribe: str | None = None) -> ClientConnection:
    """Connect, authenticate and (optionally) subscribe, consuming the status replies."""
    ws = await connect(url, max_size=2**24)
    assert (await recv_json(ws))[0]["status"] == "connected"
    await ws.send(orjson.dumps({"action": "auth", "params": key}).decode())
    assert (await recv_json(ws))[0]["status"] == "auth_success"
    if subscribe:
        await ws.send(orjson.dumps({"action": "subscribe", "params": subscribe}).decode())
        for _ in subscribe.split(","):
            assert (await recv_json(ws))[0]["status"] == "success"
    return ws


async def collect(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every event received during ``seconds``."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            events.extend(await recv_json(ws, timeout=left))
        except asyncio.TimeoutError:
            break
    return events


async def collect_until(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Events received until ``done(events)`` holds (a generous timeout: CI machines can be busy)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(events):
        left = deadline - time.monotonic()
        assert left > 0, f"condition not met in {timeout} s; got {len(events)} events"
        events.extend(await recv_json(ws, timeout=left))
    return events


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def sim_trade(standin: PolygonStandIn, event: dict[str, Any]) -> SimTrade:
    """The simulator's trade with the event's ticker, minute and sequence number."""
    return _sim_trades(standin.sim, event["sym"], event["t"] // MINUTE_MS * MINUTE_MS)[event["q"]]


@functools.lru_cache(maxsize=64)
def _sim_trades(sim: MarketSim, ticker: str, minute_start: int) -> dict[int, SimTrade]:
    return {t.seq: t for t in sim.minute_trades(ticker, minute_start)}


def test_handshake_auth_and_subscribe_statuses(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin()

    async def run() -> None:
        async with connect(standin.url) as ws:
            assert await recv_json(ws) == [
                {"ev": "status", "status": "connected", "message": "Connected Successfully"}
            ]
            await ws.send('{"action":"auth","params":"demo-key"}')
            assert await recv_json(ws) == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
            await ws.send('{"action":"subscribe","params":"T.AAPL,Q.AAPL,AM.AAPL"}')
            for param in ("T.AAPL", "Q.AAPL", "AM.AAPL"):
                assert await recv_json(ws) == [
                    {"ev": "status", "status": "success", "message": f"subscribed to: {param}"}
                ]
            assert standin.connections == 1
            assert standin.subscriptions == [["AM.AAPL", "Q.AAPL", "T.AAPL"]]

    asyncio.run(run())
    wait_until(lambda: standin.connections == 0)
    assert standin.subscriptions == []


def test_auth_failed_closes_the_connection(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin()

    async def run() -> None:
        async with connect(standin.url) as ws:
            await recv_json(ws)
            await ws.send('{"action":"auth","params":"wrong-key"}')
            assert await recv_json(ws) == [
                {"ev": "status", "status": "auth_failed", "message": "authentication failed"}
            ]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1008

    asyncio.run(run())
    assert standin.auth_failures == 1
    wait_until(lambda: standin.connections == 0)


def test_actions_before_auth_and_unknown_channels_are_status_errors(
    make_standin: Callable[..., PolygonStandIn],
) -> None:
    standin = make_standin(tickers=THREE)

    async def run() -> None:
        async with connect(standin.url) as ws:
            await recv_json(ws)
            await ws.send('{"action":"subscribe","params":"T.AAPL"}')
            [reply] = await recv_json(ws)
            assert (reply["ev"], reply["status"]) == ("status", "error")
            await ws.send("not json")
            assert (await recv_json(ws))[0]["status"] == "error"
            # the connection survives both and can still authenticate
            await ws.send('{"action":"auth","params":"demo-key"}')
            assert (await recv_json(ws))[0]["status"] == "auth_success"
            await ws.send('{"action":"subscribe","params":"LULD.AAPL,T,T.MSFT"}')
            replies = [(await recv_json(ws))[0] for _ in range(3)]
            assert [r["status"] for r in replies] == ["error", "error", "success"]
            assert "LULD.AAPL" in replies[0]["message"]
            assert standin.subscriptions == [["T.MSFT"]]

    asyncio.run(run())


def test_wildcard_trades_cover_the_universe_and_match_the_simulator(
    make_standin: Callable[..., PolygonStandIn],
) -> None:
    standin = make_standin(tickers=THREE, events_per_second=600)

    def enough(events: list[dict[str, Any]]) -> bool:
        return all(sum(e.get("sym") == ticker for e in events) >= 50 for ticker in THREE)

    async def run() -> list[dict[str, Any]]:
        ws = await open_session(standin.url, subscribe="T.*")
        try:
            return await collect_until(ws, enough)
        finally:
            await ws.close()

    events = asyncio.run(run())
    assert {e["ev"] for e in events} == {"T"}
    by_ticker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_ticker[e["sym"]].append(e)
    assert set(by_ticker) == set(THREE)
    for trades in by_ticker.values():
        seqs, times = [e["q"] for e in trades], [e["t"] for e in trades]
        assert all(b > a for a, b in zip(seqs, seqs[1:])), "sequence numbers must increase strictly"
        assert all(b >= a for a, b in zip(times, times[1:])), "timestamps must not go back"
        assert all(b == a + 1 for a, b in zip(seqs, seqs[1:])), "no trade may be skipped"
        assert trades[-1]["t"] <= time.time() * 1000  # nothing from the future
    for e in events[::10]:
        trade = sim_trade(standin, e)
        assert (e["p"], e["s"], e["t"], e["x"]) == (trade.price, trade.size, trade.t_ms, trade.exchange)
        assert set(e) >= {"ev", "sym", "x", "i", "z", "p", "s", "c", "t", "q"}


def test_worker_process_generator_streams_the_same_market(make_standin: Callable[..., PolygonStandIn]) -> None:
    # The mode used from 10,000 events/s up, forced here at a low rate.
    standin = make_standin(tickers=THREE, events_per_second=600, generator="process")

    async def run() -> list[dict[str, Any]]:
        ws = await open_session(standin.url, subscribe="T.NVDA,Q.NVDA")
        try:  # the first events wait for the worker process to start
            return await collect_until(ws, lambda events: sum(e["ev"] == "T" for e in events) >= 20, 30)
        finally:
            await ws.close()

    events = asyncio.run(run())
    trades = [e for e in events if e["ev"] == "T"]
    assert {e["ev"] for e in events} == {"T", "Q"}
    for e in trades:
        trade = sim_trade(standin, e)
        assert (e["sym"], e["p"], e["s"], e["t"]) == ("NVDA", trade.price, trade.size, trade.t_ms)


def test_quotes_come_from_quote_around(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE, events_per_second=600)

    async def run() -> list[dict[str, Any]]:
        ws = await open_session(standin.url, subscribe="Q.MSFT")
        try:
            return await collect_until(ws, lambda events: len(events) >= 30)
        finally:
            await ws.close()

    quotes = asyncio.run(run())
    assert {(q["ev"], q["sym"]) for q in quotes} == {("Q", "MSFT")}
    for q in quotes:
        bid, ask, bid_size, ask_size = standin.sim.quote_around(sim_trade(standin, q))
        assert (q["bp"], q["ap"], q["bs"], q["as"]) == (bid, ask, bid_size, ask_size)
        assert q["bp"] < q["ap"]
        assert set(q) >= {"ev", "sym", "bx", "bp", "bs", "ax", "ap", "as", "c", "t", "q", "z"}


def test_minute_bar_equals_the_streamed_trades_of_that_minute(
    make_standin: Callable[..., PolygonStandIn],
) -> None:
    # Simulated time runs 60x faster and starts 20 s (1/3 s real) before a minute boundary.
    speed = 60.0
    base = (time.time() * 1000 // MINUTE_MS + 1) * MINUTE_MS - 20_000
    t0 = time.monotonic()

    def clock() -> float:
        return base + (time.monotonic() - t0) * 1000.0 * speed

    # max_catchup_ms: a busy machine may stall the loop for a second (= a simulated minute here); the
    # stand-in must then catch up rather than skip ahead.
    standin = make_standin(tickers=("AAPL", "MSFT"), events_per_second=20, clock=clock, max_catchup_ms=3_600_000)
    assert standin.trades_per_minute == 300

    async def run() -> tuple[int, list[dict[str, Any]]]:
        ws = await open_session(standin.url, subscribe="T.AAPL,A.AAPL,AM.AAPL")
        minute = int(clock()) // MINUTE_MS + 1  # the first minute that starts after the subscription
        events: list[dict[str, Any]] = []
        try:
            while True:
                frame = await recv_json(ws, timeout=15)
                events.extend(frame)
                if any(e["ev"] == "AM" and e["s"] == minute * MINUTE_MS for e in frame):
                    return minute, events
        finally:
            await ws.close()

    minute, events = asyncio.run(run())
    start = minute * MINUTE_MS
    trades = [e for e in events if e["ev"] == "T" and start <= e["t"] < start + MINUTE_MS]
    [bar] = [e for e in events if e["ev"] == "AM" and e["s"] == start]
    assert len(trades) == standin.trades_per_minute  # the whole minute arrived
    volume = sum(e["s"] for e in trades)
    assert bar["e"] == start + MINUTE_MS
    assert bar["sym"] == "AAPL"
    assert bar["o"] == trades[0]["p"] and bar["c"] == trades[-1]["p"]
    assert bar["h"] == max(e["p"] for e in trades) and bar["l"] == min(e["p"] for e in trades)
    assert bar["v"] == volume
    assert bar["vw"] == round(sum(e["p"] * e["s"] for e in trades) / volume, 4)
    sim_bar = standin.sim.minute_bar("AAPL", start)  # what the REST stand-in serves for gap fill
    assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["vw"]) == (
        sim_bar.open, sim_bar.high, sim_bar.low, sim_bar.close, sim_bar.volume, sim_bar.vwap,
    )  # fmt: skip
    # The bar arrives after every trade of its minute.
    assert events.index(bar) > max(events.index(e) for e in trades)

    # Per-second aggregates: one per second that had trades, each the aggregate of that second's trades.
    seconds = [e for e in events if e["ev"] == "A" and start <= e["s"] < start + MINUTE_MS]
    by_second: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in trades:
        by_second[e["t"] // 1000 * 1000].append(e)
    assert sorted(a["s"] for a in seconds) == sorted(by_second)
    for agg in seconds:
        window = by_second[agg["s"]]
        assert agg["e"] == agg["s"] + 1000
        assert (agg["o"], agg["c"], agg["v"]) == (window[0]["p"], window[-1]["p"], sum(e["s"] for e in window))
        assert (agg["h"], agg["l"]) == (max(e["p"] for e in window), min(e["p"] for e in window))
    assert sum(a["v"] for a in seconds) == bar["v"]


def test_drop_connections_with_a_code_and_abruptly(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE, events_per_second=300)

    async def dropped(code: int | None) -> ConnectionClosed:
        ws = await open_session(standin.url, subscribe="T.*")
        await recv_json(ws)  # streaming
        assert await asyncio.to_thread(standin.drop_connections, code) == 1
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        return info.value

    closed = asyncio.run(dropped(1011))
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is not None and closed.rcvd.code == 1011
    closed = asyncio.run(dropped(None))
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None  # no close frame: the TCP connection just ended
    wait_until(lambda: standin.connections == 0)


def test_deliveries_span_exactly_the_trades_a_dropped_client_received(
    make_standin: Callable[..., PolygonStandIn],
) -> None:
    standin = make_standin(tickers=THREE, events_per_second=600)

    async def session() -> list[int]:
        ws = await open_session(standin.url, subscribe="T.AAPL,T.MSFT")
        times: list[int] = []
        while len(times) < 20:
            times += [e["t"] for e in await recv_json(ws) if e.get("ev") == "T"]
        await asyncio.to_thread(standin.drop_connections, 1011)
        try:
            while True:
                times += [e["t"] for e in orjson.loads(await asyncio.wait_for(ws.recv(), 5)) if e.get("ev") == "T"]
        except ConnectionClosed:
            return times

    received = asyncio.run(session())
    wait_until(lambda: standin.connections == 0)
    [conn] = standin.deliveries()
    assert conn["tickers"] == ["AAPL", "MSFT"] and conn["closed_at"] is not None
    # every trade of the two tickers inside the span was received, and nothing outside it
    expected = sorted(tr.t_ms for t in ("AAPL", "MSFT")
                      for m in range(conn["first_ms"] // MINUTE_MS * MINUTE_MS, conn["last_ms"] + 1, MINUTE_MS)
                      for tr in standin.sim.minute_trades(t, m) if conn["first_ms"] <= tr.t_ms <= conn["last_ms"])  # fmt: skip
    assert sorted(received) == expected


def test_disconnect_after_events_sends_exactly_n_more(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE, events_per_second=600)

    async def run() -> tuple[int, ConnectionClosed]:
        ws = await open_session(standin.url)
        assert await asyncio.to_thread(standin.disconnect_after_events, 250) == 1
        await ws.send('{"action":"subscribe","params":"T.*,Q.*"}')
        received = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                for event in await recv_json(ws):
                    received += event["ev"] != "status"
        return received, info.value

    received, closed = asyncio.run(run())
    assert received == 250
    assert closed.rcvd is not None and closed.rcvd.code == 1011
    assert standin.events_sent == 250


def test_inject_raw_reaches_every_authenticated_client(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE)
    malformed = '[{"ev":"T","sym":"AAPL","p":"not-a-number"},{"ev":"Q"'

    async def run() -> None:
        first, second = await open_session(standin.url), await open_session(standin.url)
        async with connect(standin.url) as unauthenticated:
            await recv_json(unauthenticated)
            assert await asyncio.to_thread(standin.inject_raw, malformed) == 2
            for ws in (first, second):
                assert await asyncio.wait_for(ws.recv(), 5) == malformed
        await first.close()
        await second.close()

    asyncio.run(run())


def test_max_connections_per_key(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE, events_per_second=300, max_connections_per_key=1)

    async def run() -> None:
        first = await open_session(standin.url, subscribe="T.AAPL")
        async with connect(standin.url) as second:
            await recv_json(second)
            await second.send('{"action":"auth","params":"demo-key"}')
            [status] = await recv_json(second)
            assert status["status"] == "max_connections"
            assert status["message"].startswith("Maximum number of websocket connections exceeded.")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(second.recv(), 5)
            assert second.close_code == 1008
        # the first connection is untouched and keeps streaming
        assert {e["ev"] for e in await collect_until(first, lambda events: len(events) >= 5)} == {"T"}
        await first.close()

    asyncio.run(run())


def test_evict_oldest_policy_kicks_the_older_connection(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(
        tickers=THREE, events_per_second=300, max_connections_per_key=1, max_connections_policy="evict_oldest"
    )

    async def run() -> None:
        first = await open_session(standin.url, subscribe="T.AAPL")
        second = await open_session(standin.url, subscribe="T.MSFT")
        statuses = []
        with pytest.raises(ConnectionClosed):
            while True:
                statuses += [e["status"] for e in await recv_json(first) if e["ev"] == "status"]
        assert statuses == ["max_connections"]
        assert first.close_code == 1008
        assert {e["sym"] for e in await collect_until(second, lambda events: len(events) >= 5)} == {"MSFT"}
        await second.close()

    asyncio.run(run())


def test_unsubscribe_stops_that_channel_only(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin(tickers=THREE, events_per_second=900)  # 150 AAPL trades/s

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await open_session(standin.url, subscribe="T.AAPL,Q.AAPL")
        before: list[dict[str, Any]] = []
        while {"T", "Q"} - {e["ev"] for e in before}:
            before.extend(await recv_json(ws))
        await ws.send('{"action":"unsubscribe","params":"Q.AAPL"}')
        while True:  # events queued before the unsubscribe still arrive, then its status
            frame = await recv_json(ws)
            if frame[0]["ev"] == "status":
                assert frame == [{"ev": "status", "status": "success", "message": "unsubscribed to: Q.AAPL"}]
                break
        assert standin.subscriptions == [["T.AAPL"]]
        after = await collect_until(ws, lambda events: len(events) >= 50)  # ~0.3 s of AAPL trades
        await ws.close()
        return before, after

    _, after = asyncio.run(run())
    assert {(e["ev"], e["sym"]) for e in after} == {("T", "AAPL")}


def test_pause_stalls_the_stream_then_delivers_the_backlog(make_standin: Callable[..., PolygonStandIn]) -> None:
    # 100 AAPL trades/s; a tiny per-tick budget makes the backlog drain over many ticks.
    standin = make_standin(tickers=THREE, events_per_second=600, max_events_per_tick=7)

    async def run() -> tuple[float, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await open_session(standin.url, subscribe="T.AAPL")
        before = await collect_until(ws, lambda events: len(events) >= 5)
        await asyncio.to_thread(standin.pause, 0.8)
        paused_ms = time.time() * 1000
        during = await collect(ws, 0.6)
        after = await collect_until(ws, lambda events: any(e["t"] > paused_ms + 900 for e in events))
        await ws.close()
        return paused_ms, before, during, after

    paused_ms, before, during, after = asyncio.run(run())
    # While paused, only trades emitted before the pause may still arrive (they were in flight).
    assert all(e["t"] <= paused_ms for e in during)
    # Afterwards the trades of the paused 0.8 s arrive too: the sequence has no gap.
    seqs = [e["q"] for e in before + during + after]
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:]))
    assert sum(paused_ms < e["t"] <= paused_ms + 800 for e in after) >= 40


def test_event_rate_roughly_matches_the_target(make_standin: Callable[..., PolygonStandIn]) -> None:
    target = 3000  # a full minute is generated up front: 90,000 trades at ~12 us each in market.py
    # Real-time clock shifted to 2 s into a minute, so the test never waits on two minutes' generation;
    # prewarm: the current minute is generated for all 10 tickers before the first subscriber comes.
    offset = 2_000 - time.time() * 1000 % MINUTE_MS

    def clock() -> float:
        return time.time() * 1000 + offset

    standin = make_standin(events_per_second=target, clock=clock, prewarm=True)

    async def run() -> tuple[list[dict[str, Any]], float]:
        ws = await open_session(standin.url, subscribe="T.*,Q.*")
        events = await recv_json(ws)
        started = time.monotonic()
        events += await collect(ws, 1.5)
        elapsed = time.monotonic() - started
        await ws.close()
        return events, elapsed

    events, elapsed = asyncio.run(run())
    assert {e["ev"] for e in events} == {"T", "Q"}
    assert len({e["sym"] for e in events}) == 10
    # Density in simulated time (events arrive in time order, so everything before the last one is here).
    first_ms, last_ms = events[0]["t"] + 200, events[-1]["t"] - 100
    assert last_ms - first_ms >= 500
    in_window = sum(first_ms <= e["t"] < last_ms for e in events)
    assert 0.85 * target <= in_window / ((last_ms - first_ms) / 1000) <= 1.15 * target
    # Delivery in real time (loose: a busy CI machine may delay generation).
    assert len(events) / elapsed >= 0.4 * target


def test_unknown_path_is_refused(make_standin: Callable[..., PolygonStandIn]) -> None:
    standin = make_standin()

    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(standin.url.replace("/stocks", "/crypto")):
                pass
        assert info.value.response.status_code == 404

    asyncio.run(run())
