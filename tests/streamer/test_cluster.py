"""The real-time path on a 3-shard Redis Cluster started from the same Redis Stack binaries."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from pydantic import SecretStr
from redis.cluster import RedisCluster

import devstack
from headwater.keys import Keys
from headwater.settings import PolygonSettings, RedisSettings, Settings, StreamSettings
from headwater.storage.redis import connect
from standins.polygon_ws import PolygonStandIn
from streamer.app import Streamer
from streamer.processor import MarketProcessor

TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "JPM", "XOM"]
MINUTE = 60_000


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory):
    handle = devstack.start_redis_cluster(tmp_path_factory.mktemp("cluster"), shards=3)
    try:
        yield handle.url
    finally:
        handle.stop()


def test_keys_spread_over_shards_and_ticker_keys_share_a_slot(cluster_url):
    client = connect(url=cluster_url)
    assert isinstance(client, RedisCluster)
    keys = Keys("c0:")
    slots = {client.keyslot(keys.raw_market_data(p)) for p in range(4)}
    assert len(slots) == 4  # partitions are spread
    nodes = {client.get_node_from_key(keys.raw_market_data(p)).name for p in range(8)}
    assert len(nodes) >= 2
    for t in TICKERS:
        per_ticker = [keys.tick(t, "price"), keys.bar(t, "1h", "close"), keys.ticker_state(t), keys.news_index(t)]
        assert len({client.keyslot(k) for k in per_ticker}) == 1


@pytest.mark.slow
def test_real_time_path_on_a_cluster_is_exact(cluster_url):
    client = connect(url=cluster_url)
    keys = Keys("c1:")
    settings = Settings(
        polygon=PolygonSettings(api_key=SecretStr("demo-key"), channels=("T", "Q"), connections=2,
                                base_url="http://127.0.0.1:9"),
        streams=StreamSettings(partitions=4, batch_size=200, block_ms=50, lease_ms=2000),
        redis=RedisSettings(key_prefix=keys.prefix),
    )  # fmt: skip
    with PolygonStandIn(tickers=TICKERS, events_per_second=2000) as ws:
        settings = settings.model_copy(update={"polygon": settings.polygon.model_copy(update={"ws_url": ws.url})})
        streamer = Streamer(settings, TICKERS, redis_url=cluster_url)
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run(streamer, errors), daemon=True)
        thread.start()
        workers = [MarketProcessor(connect(url=cluster_url), keys, settings.streams, consumer=f"w{i}") for i in range(2)]
        started = time.monotonic()  # at least 6 s of feed, longer (up to 60 s) until every ticker has trades stored
        while time.monotonic() - started < 6 or (
            time.monotonic() - started < 60 and not all(client.exists(keys.tick(t, "volume")) for t in TICKERS)
        ):
            for w in workers:
                w.step()
        streamer.request_stop()
        thread.join(30)
        assert not errors, errors
        idle = 0
        while idle < 6:  # drain
            idle = idle + 1 if sum(w.step() for w in workers) == 0 else 0
        sim = ws.sim
    assert {p for w in workers for p in w.owned} == {0, 1, 2, 3} and all(w.owned for w in workers)
    assert sum(w.stats.trades for w in workers) > 1000 and sum(w.stats.dead_letters for w in workers) == 0
    for t in TICKERS:
        volumes = client.execute_command("TS.RANGE", keys.tick(t, "volume"), "-", "+")
        got = {int(ts): float(v) for ts, v in volumes}
        first, last = min(got), max(got)
        expected: dict[int, float] = {}
        for minute in range((first // MINUTE) * MINUTE, last + 1, MINUTE):
            for trade in sim.minute_trades(t, minute):
                if first <= trade.t_ms <= last:
                    expected[trade.t_ms] = expected.get(trade.t_ms, 0.0) + trade.size
        assert got == expected, f"{t}: series differs from the trades sent"
        assert client.execute_command("TS.GET", keys.tick(t, "bid"))
        assert client.hget(keys.ticker_state(t), "fence")  # committed through the fenced per-ticker script
    for p in range(4):
        assert client.xpending(keys.raw_market_data(p), keys.group)["pending"] == 0


def _run(streamer: Streamer, errors: list[BaseException]) -> None:
    try:
        asyncio.run(streamer.run(duration_s=60))
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)


def test_a_deposed_owner_and_a_stale_state_are_refused(cluster_url):
    """The per-ticker commit script: fenced by the lease epoch, compare-and-set on the high-water mark."""
    client = connect(url=cluster_url)
    keys = Keys("c2:")
    proc = MarketProcessor(client, keys, StreamSettings(partitions=4), consumer="x")
    proc.layout.ensure(["IBM"])
    state, price = keys.ticker_state("IBM"), keys.tick("IBM", "price")
    commit = proc._commit_ticker  # noqa: SLF001 - the script is the unit under test
    assert commit(keys=[state, price], args=[2, "*", "19000:5", "", 2, 1_700_000_000_000, 10.0]) == 0
    assert commit(keys=[state, price], args=[1, "*", "19000:9", "", 2, 1_700_000_000_001, 11.0]) == -1  # older epoch
    assert commit(keys=[state, price], args=[2, "19000:4", "19000:9", "", 2, 1_700_000_000_001, 11.0]) == -2  # stale mark
    assert commit(keys=[state, price], args=[3, "19000:5", "19000:9", "1700000000002:12.0:3.0", 2, 1_700_000_000_001, 11.0]) == 0
    assert client.hgetall(state) == {b"fence": b"3", b"hwm": b"19000:9", b"carry": b"1700000000002:12.0:3.0"}
    assert [(int(t), float(v)) for t, v in client.execute_command("TS.RANGE", price, "-", "+")] == [
        (1_700_000_000_000, 10.0), (1_700_000_000_001, 11.0)]


def test_a_refused_batch_writes_no_dead_letters_and_its_redelivery_writes_them_once(cluster_url):
    """A deposed owner's late commit is refused by the fence: its dead letters must be refused with it."""
    client = connect(url=cluster_url)
    keys = Keys("c3:")
    settings = StreamSettings(partitions=1, batch_size=100, block_ms=50, lease_ms=5000, claim_idle_ms=1000)
    old = MarketProcessor(connect(url=cluster_url), keys, settings, consumer="old")
    old.rebalance()
    assert old.owned == {0}
    stream = keys.raw_market_data(0)
    t0 = 1_732_478_400_000
    events = [{"ev": "T", "sym": "IBM", "p": 190.0, "s": 10, "t": t0 + 1, "q": 1},
              {"ev": "T", "sym": "IBM", "p": 190.5, "s": 20, "t": t0 + 2, "q": 2}]  # fmt: skip
    client.xadd(stream, {"d": orjson.dumps(events), "rt": str(t0)})
    client.xadd(stream, {"d": b'[{"ev":"T","sym":"IBM","p":-1,"s":1,"t":1732478400003,"q":3}]', "rt": str(t0)})
    reply = client.xreadgroup(keys.group, "old", {stream: ">"}, count=10)
    batch = {name if isinstance(name, bytes) else name.encode(): entries for name, entries in reply}
    # The old owner stalls (GC pause, network); its lease expires and a new owner takes the partition over,
    # reclaims the pending entries and commits them (IBM's fence moves to the new epoch).
    client.delete(keys.partition_lease(0))
    new = MarketProcessor(connect(url=cluster_url), keys, settings, consumer="new")
    new.rebalance()
    assert new.owned == {0} and new.stats.reclaimed == 2
    new.flush_carries()
    assert client.xlen(keys.dead_letter) == 1
    # The old owner wakes up and commits the batch it read: refused as a whole, dead letters included.
    old.process(batch)
    assert old.stats.aborted_batches == 1 and old.owned == set()
    assert client.xlen(keys.dead_letter) == 1, "the refused batch dead-lettered its bad entry a second time"
    (_, letter), = client.xrange(keys.dead_letter)
    assert letter[b"consumer"] == b"new" and b"greater than 0" in letter[b"reason"]
    got = [(int(t), float(v)) for t, v in client.execute_command("TS.RANGE", keys.tick("IBM", "volume"), "-", "+")]
    assert got == [(t0 + 1, 10.0), (t0 + 2, 20.0)]
    assert client.xpending(stream, keys.group)["pending"] == 0
