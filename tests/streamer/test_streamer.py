"""The streamer against the real Polygon WebSocket stand-in, the REST stand-in and Redis Stack.

The stand-ins run on a simulated clock 60x faster than real time (a simulated minute per real second), so
outages that span several minute bars take seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import SecretStr

from headwater.keys import Keys
from headwater.providers.polygon import PolygonAuthError, PolygonGaveUp
from headwater.settings import PolygonSettings, RedisSettings, Settings, StreamSettings
from standins.http_server import ProviderStandIn
from standins.polygon_ws import PolygonStandIn
from streamer.app import Streamer, shard_tickers
from streamer.processor import MarketProcessor

TICKERS = ["AAPL", "MSFT", "NVDA"]
MINUTE = 60_000


class FastClock:
    """Simulated epoch ms running ``speed`` times faster than real time, starting 55 s before a minute ends."""

    def __init__(self, speed: float = 60.0) -> None:
        now = time.time() * 1000
        self.start_sim = (now // MINUTE) * MINUTE + 5_000
        self.start_real = now
        self.speed = speed

    def ms(self) -> float:
        return self.start_sim + (time.time() * 1000 - self.start_real) * self.speed

    def seconds(self) -> float:
        return self.ms() / 1000


def make_settings(ws_url: str, rest_url: str, prefix: str, **polygon: object) -> Settings:
    base = {"api_key": SecretStr("demo-key"), "ws_url": ws_url, "base_url": rest_url, "channels": ("T", "Q", "AM"),
            "reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "max_reconnects": 50}
    return Settings(
        polygon=PolygonSettings(**{**base, **polygon}),
        streams=StreamSettings(partitions=2, batch_size=500, block_ms=50, lease_ms=2000),
        redis=RedisSettings(key_prefix=prefix),
    )


class Background:
    """Runs ``Streamer.run`` on its own thread and event loop."""

    def __init__(self, streamer: Streamer, duration_s: float) -> None:
        self.streamer = streamer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(duration_s,), daemon=True)
        self.thread.start()

    def _run(self, duration_s: float) -> None:
        try:
            asyncio.run(self.streamer.run(duration_s=duration_s))
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.error = exc

    def stop(self) -> None:
        self.streamer.request_stop()

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "streamer did not stop"
        if self.error:
            raise self.error


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def drain_all(r, keys: Keys, settings: Settings) -> MarketProcessor:
    proc = MarketProcessor(r, keys, settings.streams, consumer="drain")
    idle = 0
    while idle < 5:
        idle = idle + 1 if proc.step() == 0 else 0
    return proc


def test_shards_follow_partitions():
    shards = shard_tickers(["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"], partitions=4, connections=2)
    assert sorted(sum(shards, [])) == sorted(["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"])
    from headwater.keys import partition_of

    for c, shard in enumerate(shards):
        assert all(partition_of(t, 4) % 2 == c for t in shard)


def test_auth_failure_is_fatal_and_not_retried(redis_url, key_prefix, r):
    with PolygonStandIn(api_keys={"right-key"}, tickers=TICKERS, events_per_second=100) as ws:
        settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix, api_key=SecretStr("wrong-key"))
        started = time.monotonic()
        with pytest.raises(PolygonAuthError, match="rejected the API key"):
            asyncio.run(Streamer(settings, TICKERS, redis_url=redis_url).run(duration_s=10))
        assert time.monotonic() - started < 5
        assert ws.auth_failures == 1


def test_frames_reach_partitioned_streams_and_subscriptions_survive_reconnects(redis_url, key_prefix, r):
    keys = Keys(key_prefix)
    with PolygonStandIn(tickers=TICKERS, events_per_second=600) as ws:
        settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix, connections=2)
        streamer = Streamer(settings, TICKERS, redis_url=redis_url)
        run = Background(streamer, duration_s=60)
        wait_for(lambda: sum(r.xlen(s) for s in keys.raw_market_data_all(2)) > 20, what="frames in Redis")
        before = sorted(sorted(s) for s in ws.subscriptions)
        assert sorted(sum(before, [])) == sorted(f"{ch}.{t}" for t in TICKERS for ch in ("T", "Q", "AM"))
        assert ws.drop_connections(code=1011) == 2
        wait_for(lambda: sum(s.stats.reconnects for s in streamer.streams) >= 2, what="reconnects")
        wait_for(lambda: ws.connections == 2, what="two connections again")
        assert sorted(sorted(s) for s in ws.subscriptions) == before
        run.stop()
        run.join()
    # every entry of a partition only holds tickers of that partition
    from headwater.keys import partition_of
    import orjson

    for p in range(2):
        for _, fields in r.xrange(keys.raw_market_data(p), count=200):
            assert {e["sym"] for e in orjson.loads(fields[b"d"])} <= {t for t in TICKERS if partition_of(t, 2) == p}
    proc = drain_all(r, keys, settings)
    assert proc.stats.trades > 0 and proc.stats.quotes > 0 and proc.stats.dead_letters == 0
    for t in TICKERS:
        assert r.execute_command("TS.INFO", keys.tick(t, "price"))[b"totalSamples"] > 0


@pytest.mark.parametrize("fault", [
    {"mode": "http429", "count": 1, "retry_after": 0.2},  # the gap fill must ride out a 429
    # a slow first answer (2 s = 2 simulated minutes): live bars arrive on the new socket meanwhile, and must not
    # hide the other tickers' gaps
    {"mode": "slow", "count": 1, "seconds": 2},
], ids=["429", "slow"])  # fmt: skip
def test_outage_is_filled_from_rest_with_no_missing_and_no_doubled_bars(redis_url, key_prefix, r, fault):
    keys = Keys(key_prefix)
    clock = FastClock()
    ws = PolygonStandIn(tickers=TICKERS, events_per_second=150, clock=clock.ms).start()
    port = ws.port
    with ProviderStandIn(tickers=TICKERS, market=ws.sim, clock=clock.seconds) as rest:
        rest.inject("polygon", **fault)
        settings = make_settings(ws.url, rest.base_urls()["polygon"], key_prefix, channels=("T", "AM"))
        streamer = Streamer(settings, TICKERS, redis_url=redis_url, clock_ms=clock.ms)
        run = Background(streamer, duration_s=60)
        writer_last = lambda: min(streamer.writers[0].last_event.get(f"AM.{t}", 0) for t in TICKERS) if streamer.writers else 0  # noqa: E731
        wait_for(lambda: writer_last() > 0, what="first minute bars over the socket")
        first_am = writer_last()
        ws.stop()  # the provider goes away for ~4 simulated minutes
        time.sleep(4)
        ws = PolygonStandIn(tickers=TICKERS, events_per_second=150, clock=clock.ms, port=port).start()
        wait_for(lambda: streamer.gap_filled_bars >= 3 * len(TICKERS), timeout=90, what="gap fill")
        wait_for(lambda: writer_last() >= first_am + 6 * MINUTE, timeout=90, what="bars after the outage")
        run.stop()
        run.join()
        ws.stop()
        retried = 1 if fault["mode"] == "http429" else 0  # the 429 costs one more request; the slow answer does not
        assert rest.request_counts().get("polygon", 0) >= len(TICKERS) + retried
    drain_all(r, keys, settings)
    for t in TICKERS:
        closes = r.execute_command("TS.RANGE", keys.provider_bar(t, "polygon", "1m", "close"), "-", "+")
        volumes = dict(r.execute_command("TS.RANGE", keys.provider_bar(t, "polygon", "1m", "volume"), "-", "+"))
        starts = [int(ts) for ts, _ in closes]
        assert starts == list(range(starts[0], starts[-1] + MINUTE, MINUTE)), f"{t}: a minute is missing"
        assert len(starts) >= 6
        for ts, close in closes:
            bar = ws.sim.minute_bar(t, int(ts))
            assert float(close) == pytest.approx(bar.close) and float(volumes[ts]) == bar.volume  # not doubled
        known = r.execute_command("TS.RANGE", keys.known_bar(t, "polygon", "1m"), "-", "+")
        assert [int(ts) for ts, _ in known] == starts, f"{t}: every minute bar, live or gap-filled, has its knowledge time"


def test_malformed_frames_are_dead_lettered_with_the_reason(redis_url, key_prefix, r):
    keys = Keys(key_prefix)
    with PolygonStandIn(tickers=TICKERS, events_per_second=200) as ws:
        settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix)
        streamer = Streamer(settings, TICKERS, redis_url=redis_url)
        run = Background(streamer, duration_s=60)
        wait_for(lambda: ws.connections == 1 and sum(r.xlen(s) for s in keys.raw_market_data_all(2)) > 0, what="streaming")
        ws.inject_raw('[{"ev":"T","sym":"AAPL","p":')  # cut off
        ws.inject_raw('[{"ev":"T","sym":"AAPL","p":-3,"s":1,"t":1732480000000,"q":1}]')  # invalid price
        wait_for(lambda: r.xlen(keys.dead_letter) >= 1, what="the malformed frame's dead letter")
        wait_for(lambda: sum(r.xlen(s) for s in keys.raw_market_data_all(2)) > 50, what="more frames")
        run.stop()
        run.join()
    letters = r.xrange(keys.dead_letter)
    assert any(f[b"reason"].startswith(b"malformed frame") and f[b"raw"] == b'[{"ev":"T","sym":"AAPL","p":' for _, f in letters)
    proc = drain_all(r, keys, settings)
    letters = r.xrange(keys.dead_letter)
    assert any(f[b"stage"] == b"market_processor" and b"greater than 0" in f[b"reason"] for _, f in letters)
    assert proc.stats.trades > 0  # the worker kept going


def test_giving_up_after_the_reconnect_budget_is_an_error(redis_url, key_prefix, r):
    ws = PolygonStandIn(tickers=TICKERS, events_per_second=100).start()
    settings = make_settings(ws.url, "http://127.0.0.1:9", key_prefix, max_reconnects=2)
    streamer = Streamer(settings, TICKERS, redis_url=redis_url)
    run = Background(streamer, duration_s=30)
    wait_for(lambda: ws.connections == 1, what="connected")
    ws.stop()
    with pytest.raises(PolygonGaveUp, match="gave up after 2 failed reconnects"):
        run.join()
