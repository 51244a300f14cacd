"""Stream processors against a real Redis Stack: writes, compactions, dead letters, exactly-once, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
import redis

from headwater.keys import Keys, partition_of
from headwater.settings import StreamSettings
from streamer.processor import MarketProcessor

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_732_478_400_000  # a whole hour (UTC), so 1m/5m/1h buckets start here


def trade(sym: str, t: int, p: float, s: float, q: int) -> dict:
    return {"ev": "T", "sym": sym, "p": p, "s": s, "t": t, "q": q, "x": 4, "i": str(q), "z": 3, "c": []}


def settings(**kw) -> StreamSettings:
    base = {"partitions": 1, "batch_size": 500, "block_ms": 50, "claim_idle_ms": 1000, "lease_ms": 1000}
    return StreamSettings(**{**base, **kw})


def push(r: redis.Redis, keys: Keys, events: list, partitions: int = 1, per_entry: int = 50) -> None:
    by_p = defaultdict(list)
    for e in events:
        by_p[partition_of(e["sym"], partitions) if isinstance(e, dict) and "sym" in e else 0].append(e)
    pipe = r.pipeline(transaction=False)
    for p, evs in by_p.items():
        for i in range(0, len(evs), per_entry):
            pipe.xadd(keys.raw_market_data(p), {"d": orjson.dumps(evs[i : i + per_entry]), "rt": str(T0)})
    pipe.execute()


def drain(proc: MarketProcessor, idle_steps: int = 3) -> None:
    idle = 0
    while idle < idle_steps:
        idle = idle + 1 if proc.step() == 0 else 0


def series(r: redis.Redis, key: str) -> list[tuple[int, float]]:
    return [(int(t), float(v)) for t, v in r.execute_command("TS.RANGE", key, "-", "+")]


def test_trades_and_quotes_land_in_their_series_with_labels(r, key_prefix):
    keys = Keys(key_prefix)
    push(r, keys, [trade("AAPL", T0 + 5, 190.0, 100, 1),
                   {"ev": "Q", "sym": "AAPL", "bp": 189.9, "bs": 3, "ap": 190.1, "as": 4, "t": T0 + 6, "q": 2}])
    proc = MarketProcessor(r, keys, settings(), consumer="c1")
    drain(proc)
    assert series(r, keys.tick("AAPL", "price")) == [(T0 + 5, 190.0)]
    assert series(r, keys.tick("AAPL", "volume")) == [(T0 + 5, 100.0)]
    assert series(r, keys.tick("AAPL", "bid")) == [(T0 + 6, 189.9)]
    assert series(r, keys.tick("AAPL", "ask_size")) == [(T0 + 6, 4.0)]
    info = r.execute_command("TS.INFO", keys.tick("AAPL", "price"))
    assert info[b"labels"] == {b"ticker": b"AAPL", b"field": b"price", b"kind": b"tick", b"timeframe": b"tick", b"source": b"polygon"}
    assert info[b"retentionTime"] == 7 * 86_400_000 and info[b"duplicatePolicy"] == b"last"
    assert r.execute_command("TS.INFO", keys.tick("AAPL", "volume"))[b"duplicatePolicy"] == b"sum"
    assert r.xpending(keys.raw_market_data(0), keys.group)["pending"] == 0


def test_compaction_rules_produce_correct_bars(r, key_prefix):
    keys = Keys(key_prefix)
    # minute 0: 10 -> 12 -> 9 -> 11 ; minute 1: 20, 21 ; minute 6 (next 5m bucket): 30
    ticks = [(0, 10.0, 1), (10_000, 12.0, 2), (20_000, 9.0, 3), (59_999, 11.0, 4),
             (60_000, 20.0, 5), (61_000, 21.0, 6), (360_000, 30.0, 7), (3_600_000, 40.0, 8)]
    push(r, keys, [trade("MSFT", T0 + dt, p, s, q) for q, (dt, p, s) in enumerate(ticks, 1)])
    drain(MarketProcessor(r, keys, settings(), consumer="c1"))
    bar = lambda tf, f: series(r, keys.bar("MSFT", tf, f))  # noqa: E731
    # a bucket is emitted when a later bucket starts, so the last (open) bucket is not there yet
    assert bar("1m", "open") == [(T0, 10.0), (T0 + 60_000, 20.0), (T0 + 360_000, 30.0)]
    assert bar("1m", "high") == [(T0, 12.0), (T0 + 60_000, 21.0), (T0 + 360_000, 30.0)]
    assert bar("1m", "low") == [(T0, 9.0), (T0 + 60_000, 20.0), (T0 + 360_000, 30.0)]
    assert bar("1m", "close") == [(T0, 11.0), (T0 + 60_000, 21.0), (T0 + 360_000, 30.0)]
    assert bar("1m", "volume") == [(T0, 1 + 2 + 3 + 4), (T0 + 60_000, 5 + 6), (T0 + 360_000, 7)]
    assert bar("5m", "open") == [(T0, 10.0), (T0 + 300_000, 30.0)]
    assert bar("5m", "high") == [(T0, 21.0), (T0 + 300_000, 30.0)]
    assert bar("5m", "volume") == [(T0, 21.0), (T0 + 300_000, 7.0)]
    assert bar("1h", "close") == [(T0, 30.0)]
    assert bar("1h", "low") == [(T0, 9.0)]


def test_two_prints_in_one_millisecond_add_volume_and_keep_last_price(r, key_prefix):
    keys = Keys(key_prefix)
    push(r, keys, [trade("NVDA", T0, 100.0, 10, 1), trade("NVDA", T0, 100.5, 5, 2)], per_entry=1)
    drain(MarketProcessor(r, keys, settings(), consumer="c1"))
    assert series(r, keys.tick("NVDA", "price")) == [(T0, 100.5)]
    assert series(r, keys.tick("NVDA", "volume")) == [(T0, 15.0)]


def test_replayed_entries_are_not_written_twice(r, key_prefix):
    keys = Keys(key_prefix)
    events = [trade("AMZN", T0 + i, 150.0 + i, 10, i + 1) for i in range(20)]
    push(r, keys, events)
    push(r, keys, events)  # e.g. a streamer pipeline retried after a connection error
    proc = MarketProcessor(r, keys, settings(), consumer="c1")
    drain(proc)
    assert sum(v for _, v in series(r, keys.tick("AMZN", "volume"))) == 200.0
    assert proc.stats.duplicates_skipped == 20


def test_malformed_payloads_and_events_go_to_dead_letters_and_the_worker_keeps_going(r, key_prefix):
    keys = Keys(key_prefix)
    stream = keys.raw_market_data(0)
    r.xadd(stream, {"d": b"[{\"ev\":\"T\",\"sym\":"})  # cut-off JSON
    r.xadd(stream, {"d": b"{\"ev\":\"T\"}"})  # not an array
    good, bad = trade("META", T0, 500.0, 1, 1), {**trade("META", T0 + 1, -5.0, 1, 2)}
    r.xadd(stream, {"d": orjson.dumps([good, bad, "junk"])})
    proc = MarketProcessor(r, keys, settings(), consumer="c1")
    drain(proc)
    letters = r.xrange(keys.dead_letter)
    reasons = [f[b"reason"].decode() for _, f in letters]
    assert len(letters) == 4
    assert reasons[0].startswith("malformed JSON") and letters[0][1][b"raw"] == b"[{\"ev\":\"T\",\"sym\":"
    assert reasons[1] == "payload is not a JSON array"
    assert "p: Input should be greater than 0" in reasons[2] and orjson.loads(letters[2][1][b"raw"])["p"] == -5.0
    assert reasons[3].startswith("invalid event")
    assert series(r, keys.tick("META", "price")) == [(T0, 500.0)]  # the good event of the frame is kept
    assert r.xpending(stream, keys.group)["pending"] == 0


def test_workers_share_partitions_and_take_over_a_dead_workers_share(r, key_prefix):
    keys = Keys(key_prefix)
    s = settings(partitions=4, lease_ms=600)
    a = MarketProcessor(r, keys, s, consumer="a")
    b = MarketProcessor(r, keys, s, consumer="b")
    a.rebalance()
    assert a.owned == {0, 1, 2, 3}  # alone: everything
    b.rebalance()
    a.rebalance()  # a sees two live workers and gives back its extras
    b.rebalance()
    assert a.owned | b.owned == {0, 1, 2, 3} and not a.owned & b.owned and len(a.owned) == len(b.owned) == 2
    time.sleep(0.7)  # 'a' stops renewing (as if killed): its leases expire
    r.zrem(keys.workers_alive, "a")
    b.rebalance()
    assert b.owned == {0, 1, 2, 3}


def _expected(events: list[dict]) -> tuple[dict[int, float], dict[int, float]]:
    price, volume = {}, defaultdict(float)
    for e in events:
        price[e["t"]] = e["p"]
        volume[e["t"]] += e["s"]
    return price, dict(volume)


@pytest.mark.slow
def test_worker_killed_mid_batch_loses_nothing_and_writes_nothing_twice(r, redis_url, key_prefix):
    keys = Keys(key_prefix)
    # 60,000 trades of one ticker (one partition, one series), several prints per millisecond
    events = [trade("TSLA", T0 + i // 3, 200.0 + (i % 97) / 100, 1 + i % 7, i + 1) for i in range(60_000)]
    push(r, keys, events, per_entry=20)
    env = {**os.environ, "HEADWATER_REDIS_URL": redis_url, "HEADWATER_REDIS_KEY_PREFIX": key_prefix,
           "HEADWATER_STREAM_PARTITIONS": "1", "HEADWATER_STREAM_BATCH_SIZE": "200", "HEADWATER_STREAM_LEASE_MS": "1500",
           "HEADWATER_STREAM_CLAIM_IDLE_MS": "1000"}
    victim = subprocess.Popen([sys.executable, "-c", "from streamer.workers import run_worker; run_worker(consumer='victim')"],
                              cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    stream = keys.raw_market_data(0)
    deadline = time.time() + 60
    killed_with_pending = 0
    while time.time() < deadline:
        try:
            pending = r.xpending(stream, keys.group)["pending"]
        except redis.ResponseError:
            pending = 0  # group not created yet
        if pending and r.xinfo_groups(stream)[0]["entries-read"] > 300:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_with_pending = r.xpending(stream, keys.group)["pending"]
            break
        time.sleep(0.001)
    assert killed_with_pending > 0, "the worker was not caught mid-batch"
    survivor = MarketProcessor(r, keys, settings(lease_ms=1500), consumer="survivor")
    deadline = time.time() + 60
    while time.time() < deadline and (r.xpending(stream, keys.group)["pending"] or r.xinfo_groups(stream)[0]["lag"]):
        survivor.step()
    drain(survivor)  # and the last held-back millisecond (written after ~10 ms without a newer one)
    assert survivor.stats.reclaimed >= killed_with_pending
    want_price, want_volume = _expected(events)
    assert dict(series(r, keys.tick("TSLA", "price"))) == want_price
    assert dict(series(r, keys.tick("TSLA", "volume"))) == want_volume
    assert r.xlen(keys.dead_letter) == 0


_MUTATIONS = [None, "1", True, False, -1, 0, 0.0, -0.5, float("nan"), float("inf"), 1.5, 2**62, [], {}]


def _corpus() -> list[dict]:
    base_t = {"ev": "T", "sym": "IBM", "p": 150.25, "s": 10, "t": T0 + 1, "q": 7}
    base_q = {"ev": "Q", "sym": "IBM", "bp": 150.2, "ap": 150.3, "bs": 1, "as": 2, "t": T0 + 2, "q": 8}
    corpus = [base_t, base_q]
    for base in (base_t, base_q):
        for field in [k for k in base if k != "ev"]:
            corpus.append({k: v for k, v in base.items() if k != field})  # missing
            for value in _MUTATIONS + ["ibm", "IBM ", "I" * 11, "BRK.B"]:
                if isinstance(value, float) and value != value:
                    continue  # NaN is not JSON; orjson writes null
                corpus.append({**base, field: value})
    return corpus


def test_stored_if_and_only_if_the_strict_model_accepts(r, key_prefix):
    """The inline checks of the hot path agree with the strict models on every stored field."""
    from headwater.models import MARKET_EVENT

    keys = Keys(key_prefix)
    corpus = _corpus()
    for i, event in enumerate(corpus):  # distinct times and sequence numbers, so no event shadows another
        if type(event.get("t")) is int and event["t"] in (T0 + 1, T0 + 2):
            event["t"] = T0 + 1000 * (i + 1)
        if type(event.get("q")) is int and event["q"] in (7, 8):
            event["q"] = 100 + i
    expected_ok = []
    for event in corpus:
        try:
            MARKET_EVENT.validate_json(orjson.dumps(event))
            expected_ok.append(True)
        except Exception:  # noqa: BLE001
            expected_ok.append(False)
    for event in corpus:
        r.xadd(keys.raw_market_data(0), {"d": orjson.dumps([event])})
    proc = MarketProcessor(r, keys, settings(), consumer="c1")
    drain(proc)
    assert proc.stats.events == sum(expected_ok)
    assert proc.stats.dead_letters == len(corpus) - sum(expected_ok)
    assert proc.stats.fast_path_refusals == 0
    assert sum(expected_ok) > 10 and len(corpus) - sum(expected_ok) > 100


def test_a_batch_whose_lease_moved_writes_nothing_and_stays_pending(r, key_prefix):
    keys = Keys(key_prefix)
    push(r, keys, [trade("ORCL", T0 + i, 100.0, 1, i + 1) for i in range(10)])
    proc = MarketProcessor(r, keys, settings(lease_ms=5000), consumer="old")
    proc.rebalance()
    reply = r.xreadgroup(keys.group, "old", {keys.raw_market_data(0): ">"}, count=100)
    r.set(keys.partition_lease(0), "new-owner")  # another worker took the partition meanwhile
    assert proc.process({name: entries for name, entries in reply}) == 1
    assert proc.stats.aborted_batches == 1 and 0 not in proc.owned
    assert not r.exists(keys.tick("ORCL", "volume")) or r.execute_command("TS.INFO", keys.tick("ORCL", "volume"))[b"totalSamples"] == 0
    assert r.xpending(keys.raw_market_data(0), keys.group)["pending"] == 1
    r.delete(keys.partition_lease(0))
    survivor = MarketProcessor(r, keys, settings(), consumer="new")
    drain(survivor)
    assert sum(v for _, v in series(r, keys.tick("ORCL", "volume"))) == 10.0
