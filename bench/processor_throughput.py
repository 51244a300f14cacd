"""Stream-processor throughput: project workers vs a bare loop, 1 and 2 processes, in one run.

    .venv/bin/python bench/processor_throughput.py --json [--events 400000] [--tickers 100]

Starts its own Redis Stack (random port, temp dir). Each run gets a fresh key prefix and the same
pre-filled partitioned stream: frames of 100 Polygon events (half trades, half quotes) over ``--tickers``
tickers, written by the streamer's own writer layout (``stream:raw_market_data:{p}``). Timing starts when
the first entry is read and stops when every partition's group lag and pending count are zero.

* project: ``streamer.processor.MarketProcessor`` (validation with pydantic, exactly-once commit with
  leases, high-water marks and carries, per-series compaction rules on the server).
* bare: XREADGROUP -> orjson.loads -> TS.MADD price/volume/bid/ask/sizes -> XACK, no project code,
  each process owning half the partitions, into the same series layout with the same compaction rules.

Prints one JSON object; ``ratio_*`` = project / bare. Targets (issue 3): >= 100,000 events/s and >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path


import orjson
import redis

import devstack
from headwater.keys import Keys, partition_of
from headwater.settings import StreamSettings
from headwater.storage.timeseries import TimeSeriesLayout

PARTITIONS = 4
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def make_frames(n_events: int, tickers: list[str], per_frame: int = 100) -> dict[int, list[bytes]]:
    """Frames per partition; per ticker one trade and one quote per millisecond (unique timestamps)."""
    by_p: dict[int, list[dict]] = {p: [] for p in range(PARTITIONS)}
    per_ticker = n_events // (2 * len(tickers))
    for i in range(per_ticker):
        for k, t in enumerate(tickers):
            ts = T0 + i
            price = 100.0 + k + (i % 100) / 100
            by_p[partition_of(t, PARTITIONS)].append(
                {"ev": "T", "sym": t, "x": 4, "i": str(i), "z": 3, "p": price, "s": 1 + i % 9, "c": [12], "t": ts, "q": 2 * i + 1}
            )
            by_p[partition_of(t, PARTITIONS)].append(
                {"ev": "Q", "sym": t, "bx": 1, "bp": price - 0.01, "bs": 2, "ax": 2, "ap": price + 0.01, "as": 3,
                 "c": [1], "t": ts, "q": 2 * i + 2, "z": 3}
            )
    return {p: [orjson.dumps(evs[i : i + per_frame]) for i in range(0, len(evs), per_frame)] for p, evs in by_p.items()}


def fill(client: redis.Redis, keys: Keys, frames: dict[int, list[bytes]]) -> None:
    for p, payloads in frames.items():
        stream = keys.raw_market_data(p)
        for i in range(0, len(payloads), 1000):
            pipe = client.pipeline(transaction=False)
            for payload in payloads[i : i + 1000]:
                pipe.xadd(stream, {"d": payload, "rt": "0", "c": "0", "src": "polygon", "o": "ws"})
            pipe.execute()


def bare_worker(url: str, prefix: str, partitions: list[int]) -> None:
    """The baseline: no project code in the loop (key strings are built inline)."""
    client = redis.Redis.from_url(url)
    streams = {f"{prefix}stream:raw_market_data:{{{p}}}": ">" for p in partitions}
    name = f"bare-{os.getpid()}"
    client.sadd(f"{prefix}bench:ready", name)
    while not client.exists(f"{prefix}bench:stop"):
        reply = client.xreadgroup("processing_group", name, streams, count=500, block=100)
        if not reply:
            continue
        args: list[object] = []
        acks = []
        for stream, entries in reply:
            for entry_id, fields in entries:
                for e in orjson.loads(fields[b"d"]):
                    tag = f"{prefix}ts:{{{e['sym']}}}:"
                    if e["ev"] == "T":
                        args += [tag + "price", e["t"], e["p"], tag + "volume", e["t"], e["s"]]
                    else:
                        args += [tag + "bid", e["t"], e["bp"], tag + "ask", e["t"], e["ap"],
                                 tag + "bid_size", e["t"], e["bs"], tag + "ask_size", e["t"], e["as"]]
            acks.append((stream, [i for i, _ in entries]))
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(args), 30_000):
            pipe.execute_command("TS.MADD", *args[i : i + 30_000])
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        for stream, ids in acks:
            pipe.xack(stream, "processing_group", *ids)
        pipe.execute()


def project_worker(url: str, prefix: str, name: str) -> None:
    os.environ.update({"HEADWATER_REDIS_KEY_PREFIX": prefix, "HEADWATER_STREAM_PARTITIONS": str(PARTITIONS),
                       "HEADWATER_STREAM_LEASE_MS": "3000", "HEADWATER_STREAM_BLOCK_MS": "200"})
    from streamer.workers import run_worker

    run_worker(redis_url=url, consumer=name, max_seconds=120)


def measure(client: redis.Redis, keys: Keys, procs: list[mp.Process], frames: dict[int, list[bytes]], n_events: int, kind: str) -> float:
    """Start the workers, wait until all are ready, fill the streams, time until everything is acked."""
    streams = keys.raw_market_data_all(PARTITIONS)
    for stream in streams:
        client.xgroup_create(stream, keys.group, id="0", mkstream=True)
    for proc in procs:
        proc.start()
    ready_deadline = time.monotonic() + 60
    while not _ready(client, keys, kind, len(procs)):
        if time.monotonic() > ready_deadline:
            raise RuntimeError(f"{kind} workers not ready in 60 s")
        time.sleep(0.01)
    fill(client, keys, frames)
    t0 = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        groups = [client.xinfo_groups(s)[0] for s in streams]
        read = sum(g["entries-read"] or 0 for g in groups)
        if t0 is None and read > 0:
            t0 = time.perf_counter()
        if t0 is not None and all(g["lag"] == 0 and g["pending"] == 0 for g in groups):
            elapsed = time.perf_counter() - t0
            break
        time.sleep(0.002)
    else:
        raise RuntimeError("benchmark run did not finish in 300 s")
    client.set(keys.prefix + "bench:stop", 1)
    for proc in procs:
        proc.terminate()
        proc.join(30)
    return n_events / elapsed


def _ready(client: redis.Redis, keys: Keys, kind: str, workers: int) -> bool:
    if kind == "bare":
        return client.scard(keys.prefix + "bench:ready") == workers
    owners = client.mget([keys.partition_lease(p) for p in range(PARTITIONS)])
    return None not in owners and len(set(owners)) == workers and client.zcard(keys.workers_alive) == workers


def run(kind: str, workers: int, url: str, frames: dict[int, list[bytes]], tickers: list[str], n_events: int) -> float:
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    TimeSeriesLayout(client, keys, StreamSettings(partitions=PARTITIONS)).ensure(tickers)
    ctx = mp.get_context("spawn")
    if kind == "bare":
        shares = [[p for p in range(PARTITIONS) if p % workers == w] for w in range(workers)]
        procs = [ctx.Process(target=bare_worker, args=(url, prefix, share)) for share in shares]
    else:
        procs = [ctx.Process(target=project_worker, args=(url, prefix, f"w{w}")) for w in range(workers)]
    rate = measure(client, keys, procs, frames, n_events, kind)
    written = client.execute_command("TS.INFO", keys.tick(tickers[0], "price"))[b"totalSamples"]
    client.flushdb()  # keep the server's memory flat between runs
    if written != n_events // (2 * len(tickers)):
        raise RuntimeError(f"{kind}: {written} price samples for {tickers[0]}, expected {n_events // (2 * len(tickers))}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--tickers", type=int, default=100)
    args = parser.parse_args()
    tickers = [f"T{i:03d}" for i in range(args.tickers)]
    n_events = (args.events // (2 * len(tickers))) * 2 * len(tickers)
    frames = make_frames(n_events, tickers)
    with tempfile.TemporaryDirectory() as tmp:
        handle = devstack.start_redis(Path(tmp), appendonly=True)
        try:
            results = {}
            for workers in (1, 2):
                # interleave so drift on a shared machine hits both sides alike
                results[f"bare_{workers}w"] = run("bare", workers, handle.url, frames, tickers, n_events)
                results[f"project_{workers}w"] = run("project", workers, handle.url, frames, tickers, n_events)
        finally:
            handle.stop()
    out = {
        "events": n_events,
        "tickers": len(tickers),
        "partitions": PARTITIONS,
        "events_per_s_1_worker": round(results["project_1w"]),
        "events_per_s_2_workers": round(results["project_2w"]),
        "baseline_events_per_s_1_worker": round(results["bare_1w"]),
        "baseline_events_per_s_2_workers": round(results["bare_2w"]),
        "ratio_1_worker": round(results["project_1w"] / results["bare_1w"], 3),
        "ratio_2_workers": round(results["project_2w"] / results["bare_2w"], 3),
        "target_events_per_s": 100_000,
        "target_ratio": 0.8,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
