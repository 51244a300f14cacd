"""End to end: Polygon WebSocket stand-in -> streamer -> stream processors -> RedisTimeSeries.

    .venv/bin/python bench/end_to_end.py --json [--rates 10000,30000,60000] [--seconds 20]

Starts its own Redis Stack, runs the WebSocket stand-in in this process (100 tickers from
config/tickers.txt, trades + quotes), the streamer (2 connections, 4 partitions) and 2 processor processes
as real subprocesses, at each fixed rate for ``--seconds``. Per rate it reports:

* ``events_per_s``: events processed per second of streaming (sent, received and processed are counted);
* ``p50_ms`` / ``p99_ms``: tick-to-TimeSeries latency (event time -> committed in Redis), from the
  workers' histograms (per stream entry, weighted by its events; entries carry ~5 ms of events);
* ``lost`` = sent - processed, and ``duplicates``/``missing_trades`` from counting: for every ticker the
  price series must hold exactly the simulator's distinct trade milliseconds between its first and last
  sample, and the volume series exactly their summed sizes (a doubled or dropped trade changes both).

"max sustained" is the highest rate whose backlog drained within 2 s after the feed stopped and whose
p99 stayed under 1 s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import redis

import devstack
from headwater.config import load_tickers
from headwater.keys import Keys
from _soak.counting import TradeCount, count_trades
from standins.polygon_ws import PolygonStandIn

ROOT = Path(__file__).resolve().parent.parent

PARTITIONS = 4


def percentile(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return float(ms)
    return float(max(hist))


def check_trades(client: redis.Redis, keys: Keys, ws: PolygonStandIn, tickers: list[str]) -> dict[str, int]:
    """Compare every ticker's price/volume series with the simulator's trades over the same span."""
    total = TradeCount()
    for t in tickers:
        prices = client.execute_command("TS.RANGE", keys.tick(t, "price"), "-", "+")
        if prices:
            total.add(count_trades(client, keys, ws.sim, t, int(prices[0][0]), int(prices[-1][0])))
    return {"trade_ms_checked": total.checked, "missing_trades": total.missing, "duplicates": total.duplicates}


def run_rate(url: str, rate: float, seconds: float, tickers: list[str], tickers_file: Path) -> dict[str, object]:
    prefix = f"e{uuid.uuid4().hex[:6]}:"
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    ws = PolygonStandIn(tickers=tickers, events_per_second=rate, quotes_per_trade=1).start(prewarm=True)
    env = {**os.environ, "HEADWATER_REDIS_URL": url, "HEADWATER_REDIS_KEY_PREFIX": prefix,
           "HEADWATER_STREAM_PARTITIONS": str(PARTITIONS), "HEADWATER_POLYGON_WS_URL": ws.url,
           "HEADWATER_POLYGON_API_KEY": "demo-key", "HEADWATER_POLYGON_BASE_URL": "http://127.0.0.1:9",
           "HEADWATER_POLYGON_CHANNELS": '["T","Q"]', "HEADWATER_POLYGON_CONNECTIONS": "2",
           "HEADWATER_STREAM_BLOCK_MS": "100", "HEADWATER_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    workers = subprocess.Popen([sys.executable, "-m", "streamer", "process", "--workers", "2"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while client.zcard(keys.workers_alive) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    streamer = subprocess.Popen([sys.executable, "-m", "streamer", "stream", "--tickers-file", str(tickers_file),
                                 "--duration", str(seconds)], cwd=ROOT, env=env)  # fmt: skip
    streamer.wait(timeout=seconds + 60)
    stopped_at = time.monotonic()
    sent = ws.events_sent
    ws.stop()
    streams = keys.raw_market_data_all(PARTITIONS)
    drain_deadline = time.monotonic() + 120
    while time.monotonic() < drain_deadline:
        groups = [g for s in streams for g in client.xinfo_groups(s)]
        if groups and all(g["lag"] == 0 and g["pending"] == 0 for g in groups):
            break
        time.sleep(0.05)
    drain_s = time.monotonic() - stopped_at
    time.sleep(0.1)  # the last carried milliseconds (written after ~10 ms)
    workers.send_signal(signal.SIGTERM)
    workers.wait(timeout=60)
    received = sum(orjson.loads(client.get(keys.streamer_metrics(c)) or b"{}").get("events", 0) for c in range(2))
    hist: dict[int, int] = {}
    processed = 0
    for key in client.scan_iter(match=keys.glob_family("worker_metrics")):
        metrics = orjson.loads(client.get(key))
        processed += metrics["trades"] + metrics["quotes"]
        for ms, n in metrics["latency_ms_hist"].items():
            hist[int(ms)] = hist.get(int(ms), 0) + n
    counts = check_trades(client, keys, ws, tickers)
    for key in client.scan_iter(match=keys.glob(), count=5000):
        client.unlink(key)
    return {
        "target_events_per_s": rate,
        "events_per_s": round(processed / seconds),
        "sent": sent,
        "received": received,
        "processed": processed,
        "lost": sent - processed,
        "p50_ms": percentile(hist, 0.50),
        "p99_ms": percentile(hist, 0.99),
        "drain_after_stop_s": round(drain_s, 2),
        **counts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    parser.add_argument("--rates", default="10000,30000,60000,100000", help="comma-separated events/s to try")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    tickers = load_tickers()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tickers_file = Path(tmp) / "tickers.txt"
        tickers_file.write_text("\n".join(tickers) + "\n")
        handle = devstack.start_redis(Path(tmp) / "redis")
        try:
            runs = [run_rate(handle.url, rate, args.seconds, tickers, tickers_file) for rate in rates]
        finally:
            handle.stop()
    sustained = [r for r in runs if r["drain_after_stop_s"] <= 2.0 and (r["p99_ms"] or 1e9) < 1000 and r["lost"] == 0]
    at_10k = next((r for r in runs if r["target_events_per_s"] == 10_000), runs[0])
    out = {
        "events_per_s_at_10k": at_10k["events_per_s"],
        "p50_ms_at_10k": at_10k["p50_ms"],
        "p99_ms_at_10k": at_10k["p99_ms"],
        "lost_at_10k": at_10k["lost"],
        "duplicates_at_10k": at_10k["duplicates"],
        "max_sustained_events_per_s": max((r["events_per_s"] for r in sustained), default=0),
        "target_p99_ms": 50,
        "runs": runs,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
