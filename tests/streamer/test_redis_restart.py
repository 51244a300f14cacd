"""Redis is SIGKILLed and restarted on the same data dir and port while the real-time path runs.

The streamer (against the WebSocket stand-in) and a stream processor must ride it out by themselves: no
process exits, every entry Redis acknowledged before the kill is still there after it (AOF, ``appendfsync
everysec``: an acknowledged write is in the kernel before the reply, so a process kill loses none), and the
series end up exactly the trades the simulator sent -- none lost, none doubled.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time

import pytest
import redis

import devstack
from headwater.keys import Keys
from headwater.storage.redis import connect
from standins.polygon_ws import PolygonStandIn
from streamer.app import Streamer
from streamer.processor import MarketProcessor
from test_streamer import TICKERS, Background, make_settings, wait_for

MINUTE = 60_000


class RestartableRedis:
    """A Redis Stack of its own (AOF on, as ``devstack`` starts it) that can be SIGKILLed and restarted."""

    def __init__(self, data_dir) -> None:
        self.data_dir = data_dir
        self.password = secrets.token_urlsafe(16)
        self.handle = devstack.start_redis(data_dir, password=self.password)
        self.port, self.url = self.handle.port, self.handle.url

    def kill(self) -> None:
        os.kill(self.handle.pid, signal.SIGKILL)
        self.handle.process.wait(timeout=10)

    def restart(self) -> None:
        self.handle = devstack.start_redis(self.data_dir, port=self.port, password=self.password)
        assert self.handle.url == self.url

    def stop(self) -> None:
        if self.handle.process.poll() is None:
            self.handle.stop()


@pytest.fixture
def own_redis(tmp_path):
    server = RestartableRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def volumes(client: redis.Redis, keys: Keys, ticker: str) -> dict[int, float]:
    try:
        return {int(t): float(v) for t, v in client.execute_command("TS.RANGE", keys.tick(ticker, "volume"), "-", "+")}
    except redis.ResponseError:
        return {}


def test_streamer_and_processor_recover_from_a_redis_kill_and_lose_nothing_acknowledged(own_redis):
    keys = Keys("rr:")
    client = connect(url=own_redis.url)
    with PolygonStandIn(tickers=TICKERS, events_per_second=600) as ws:
        settings = make_settings(ws.url, "http://127.0.0.1:9", keys.prefix, channels=("T", "Q"))
        streamer = Streamer(settings, TICKERS, redis_url=own_redis.url)
        stream_run = Background(streamer, duration_s=180)
        proc = MarketProcessor(connect(url=own_redis.url), keys, settings.streams, consumer="w0")
        stop = threading.Event()
        proc_errors: list[BaseException] = []

        def work() -> None:
            try:
                proc.run(should_stop=stop.is_set)
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                proc_errors.append(exc)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        wait_for(lambda: proc.stats.trades > 500, timeout=60, what="trades stored")

        # What Redis has acknowledged: entries the streamer wrote, and samples the processor committed and acked.
        before_kill_entries = {p: client.xrange(keys.raw_market_data(p), count=10_000_000) for p in range(2)}
        committed = {t: volumes(client, keys, t) for t in TICKERS}
        acked_batches = proc.stats.batches
        own_redis.kill()
        # Redis stays down until both have given up on their client's own retries (up to ~2.5 s of jittered
        # backoff) and reported the outage; a fixed sleep raced those retries on a busy machine.
        wait_for(lambda: proc.stats.redis_outages >= 1 and streamer.totals()["redis_retries"] >= 1,
                 timeout=60, what="the processor and the streamer meeting the outage")  # fmt: skip
        assert worker.is_alive() and not proc_errors, proc_errors
        assert stream_run.thread.is_alive() and stream_run.error is None, stream_run.error
        own_redis.restart()

        wait_for(lambda: proc.stats.batches > acked_batches + 20, timeout=90, what="processor committing again")
        entries = streamer.totals()["entries"]
        wait_for(lambda: streamer.totals()["entries"] > entries + 20, timeout=60, what="streamer writing again")
        assert worker.is_alive() and not proc_errors, proc_errors
        stream_run.stop()
        stream_run.join(60)
        idle_since = time.monotonic()
        pending = lambda: sum(client.xpending(keys.raw_market_data(p), keys.group)["pending"] for p in range(2))  # noqa: E731
        lag = lambda: sum(int(client.xinfo_groups(keys.raw_market_data(p))[0]["lag"] or 0) for p in range(2))  # noqa: E731
        wait_for(lambda: pending() == 0 and lag() == 0 and time.monotonic() - idle_since > 1, timeout=90, what="drained")
        stop.set()
        worker.join(30)
        assert not proc_errors, proc_errors
        sim = ws.sim

    # Nothing acknowledged before the kill is gone.
    for p, entries_before in before_kill_entries.items():
        ids_after = {entry_id for entry_id, _ in client.xrange(keys.raw_market_data(p), count=10_000_000)}
        assert {entry_id for entry_id, _ in entries_before} <= ids_after, f"partition {p}: acknowledged entries lost"
    for t in TICKERS:
        got = volumes(client, keys, t)
        assert committed[t].items() <= got.items(), f"{t}: committed samples lost or changed"
        # ...and the whole series is exactly what the simulator traded between its first and last sample.
        first, last = min(got), max(got)
        expected: dict[int, float] = {}
        for minute in range((first // MINUTE) * MINUTE, last + 1, MINUTE):
            for trade in sim.minute_trades(t, minute):
                if first <= trade.t_ms <= last:
                    expected[trade.t_ms] = expected.get(trade.t_ms, 0.0) + trade.size
        assert got == expected, f"{t}: {len(set(expected) - set(got))} trade-ms lost, {len(set(got) - set(expected))} extra"
    assert proc.stats.redis_outages >= 1 and streamer.totals()["redis_retries"] >= 1


def test_a_batch_stream_worker_waits_out_a_redis_restart(own_redis):
    """The news/social/document processors' worker (headwater/streams.py) neither exits nor loses an entry when
    Redis is SIGKILLed and restarted; entries added before and after are each handled and acknowledged."""
    from headwater.streams import StreamWorker

    keys = Keys("sw:")
    client = connect(url=own_redis.url)
    stream = keys.raw_news
    seen: list[bytes] = []

    def handler(entries):
        seen.extend(fields[b"n"] for _, fields in entries)
        return [None] * len(entries)

    worker = StreamWorker(connect(url=own_redis.url), keys, stream, handler, consumer="news-w0", stage="news",
                          batch_size=20, block_ms=100, claim_idle_ms=1000, max_deliveries=5)  # fmt: skip
    worker.ensure_group()
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker.run(should_stop=stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    for n in range(50):
        client.xadd(stream, {"n": str(n)})
    wait_for(lambda: len(set(seen)) == 50, 30, "the first 50 entries handled")
    own_redis.kill()
    # Redis stays down until the worker is past its client's retries and backing off itself.
    wait_for(lambda: worker.stats.redis_outages >= 1, 60, "the worker meeting the outage")
    own_redis.restart()
    for n in range(50, 100):
        client.xadd(stream, {"n": str(n)})
    wait_for(lambda: len(set(seen)) == 100, 60, "every entry handled after the restart")
    stop.set()
    thread.join(15)
    assert not errors and not thread.is_alive()
    assert worker.stats.redis_outages >= 1
    assert {int(n) for n in seen} == set(range(100))
    assert client.xpending(stream, keys.group)["pending"] == 0
