"""The offline demo behind `make demo`: the whole pipeline once, end to end, on the provider stand-ins.

1. start the embedded services (Redis Stack, Azurite, Prefect server, provider stand-ins) if not running;
2. real time: the streamer reads the Polygon WebSocket stand-in for ``--seconds`` while two stream
   processors write RedisTimeSeries (ticks, server-side 1m/5m/1h bars);
3. batch, documents and features stages (see README);
4. print what was stored, and the Prometheus metrics the exporter serves meanwhile.

Services keep running afterwards (inspect with `make status`, stop with `make down`); ``--down`` stops them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

import devstack
from headwater.config import load_tickers
from headwater.keys import Keys
from headwater.log import setup_logging
from headwater.settings import Settings, headwater_home
from headwater.storage.blob import BlobStore

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("headwater.demo")


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 74 - len(text)), flush=True)


def run_realtime(settings: Settings, keys: Keys, client: redis.Redis, seconds: float, metrics_url: str) -> None:
    """Streamer + 2 processors as real processes; wait until every entry is processed; scrape the metrics."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HEADWATER_LOG_LEVEL": os.environ.get("HEADWATER_LOG_LEVEL", "WARNING")}
    workers = subprocess.Popen([sys.executable, "-m", "streamer", "process", "--workers", "2"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while client.zcard(keys.workers_alive) < 2:
            if time.monotonic() > deadline or workers.poll() is not None:
                raise RuntimeError("stream processors did not start; see the log above")
            time.sleep(0.1)
        print(f"streaming the Polygon WebSocket stand-in for {seconds:.0f} s (2 connections, 2 processors)...", flush=True)
        subprocess.run([sys.executable, "-m", "streamer", "stream", "--connections", "2", "--duration", str(seconds)],
                       cwd=ROOT, env=env, check=True)  # fmt: skip
        streams = keys.raw_market_data_all(settings.streams.partitions)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = [g for s in streams for g in client.xinfo_groups(s)]
            if all(g["lag"] == 0 and g["pending"] == 0 for g in groups):
                break
            time.sleep(0.1)
        time.sleep(1.2)  # workers publish their counters every second
        report_realtime(client, keys, settings.streams.partitions, load_tickers())
        banner("metrics: Prometheus exporter (python -m headwater.metrics), while the processors run")
        report_metrics(metrics_url)
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(timeout=60)


def report_realtime(client: redis.Redis, keys: Keys, partitions: int, tickers: list[str]) -> None:
    stream_len = sum(client.xlen(s) for s in keys.raw_market_data_all(partitions))
    series = client.execute_command("TS.QUERYINDEX", "kind=tick", "field=price")
    ours = [s for s in series if s.decode().startswith(keys.prefix + "ts:")]
    samples = sum(client.execute_command("TS.INFO", s)[b"totalSamples"] for s in ours)
    print(f"stream:raw_market_data:{{0..{partitions - 1}}} entries : {stream_len}")
    print(f"tick price series                  : {len(ours)} tickers, {samples} trade samples")
    print(f"dead letters                       : {client.xlen(keys.dead_letter)}")
    for ticker in tickers[:3]:
        last = client.execute_command("TS.GET", keys.tick(ticker, "price"))
        bid = client.execute_command("TS.GET", keys.tick(ticker, "bid"))
        bars = client.execute_command("TS.RANGE", keys.bar(ticker, "1m", "close"), "-", "+")
        if last:
            print(f"  {ticker:<6} last {float(last[1]):>9.2f}  bid {float(bid[1]) if bid else float('nan'):>9.2f}"
                  f"  1m bars so far: {len(bars)}")  # fmt: skip


DEMO_TICKERS = ("AAPL", "MSFT", "NVDA")


def run_module(*args: str) -> None:
    """Run one of the project's CLIs as a user would (python -m ...); stop the demo if it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"$ python -m {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, check=True)


def run_batch(client: redis.Redis, keys: Keys) -> None:
    """Alpha Vantage bars, NewsAPI articles, Reddit/X posts through the Prefect flows (GX gate included)."""
    ticker_args = [a for t in DEMO_TICKERS for a in ("--ticker", t)]
    run_module("flows.market_data_fetcher", *ticker_args)
    run_module("flows.news_scraper", *ticker_args)
    run_module("flows.social_media_collector", *ticker_args)
    for t in DEMO_TICKERS:
        bars = client.execute_command("TS.RANGE", keys.provider_bar(t, "alphavantage", "1m", "close"), "-", "+")
        sentiment = client.execute_command("TS.RANGE", keys.sentiment(t, "news"), "-", "+") if client.exists(keys.sentiment(t, "news")) else []
        print(f"  {t:<6} alphavantage 1m bars {len(bars):>4}   articles {client.zcard(keys.news_index(t)):>3}"
              f"   posts {client.zcard(keys.social_index(t)):>3}   news sentiment samples {len(sentiment):>3}")  # fmt: skip
    print(f"  quarantined rows (GX): {client.xlen(keys.quarantine)}   dead letters: {client.xlen(keys.dead_letter)}")


def run_documents(client: redis.Redis, keys: Keys) -> None:
    """One 10-Q and one earnings call: EDGAR/transcript stand-ins -> Blob -> chunks -> embeddings -> RediSearch."""
    os.environ.setdefault("HEADWATER_EDGAR_USER_AGENT", "Headwater demo demo@example.com")
    run_module("flows.sec_filings_fetcher", "--ticker", "AAPL", "--form", "10-Q", "--max-filings", "1", "--process")
    run_module("flows.earnings_transcripts_scraper", "--ticker", "AAPL", "--max-per-ticker", "1", "--process")
    from headwater.documents.search import search_documents

    question = "what did management say about margins"
    print(f'search_documents("{question}", ticker="AAPL", k=3):')
    for hit in search_documents(question, ticker="AAPL", k=3, client=client, keys=keys):
        print(f"  {hit.score:.3f}  {hit.form:<10} {hit.section:<18} {hit.blob_url}")
        print(f"         {hit.text[:110]!r}")


def run_features(client: redis.Redis, keys: Keys, tmp: Path) -> None:
    """Compute the Featureform features into Redis, then serve a vector and a nearest-documents answer."""
    tickers_file = tmp / "demo_tickers.txt"
    tickers_file.write_text("\n".join(DEMO_TICKERS) + "\n")
    run_module("features.engineer", "--tickers-file", str(tickers_file))
    from features.serving import ServingClient

    serving = ServingClient(client, key_prefix=keys.prefix)
    names = ["last_price", "return_1m", "return_5m", "vwap", "realized_vol_1h", "bid_ask_spread_bps",
             "news_sentiment_24h", "social_sentiment_1h", "mention_velocity_1h"]  # fmt: skip
    values = serving.features([(n, "v1") for n in names], {"ticker": "AAPL"})
    print("features for AAPL (served from Redis, Featureform layout):")
    for name, value in zip(names, values):
        print(f"  {name:<22} {value}")
    print('nearest("filing_embedding", "iPhone demand and services revenue", k=3):')
    for ticker, score in serving.nearest(("filing_embedding", "v1"), "iPhone demand and services revenue", 3, with_scores=True):
        print(f"  {ticker:<6} {score:.3f}")


def start_metrics_exporter() -> tuple[subprocess.Popen[bytes], str]:
    """The Prometheus exporter on a free loopback port, for the length of the demo."""
    port = devstack.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "headwater.metrics", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return proc, f"http://127.0.0.1:{port}/metrics"


def report_metrics(url: str) -> None:
    """Scrape the exporter once and show the pipeline's headline series."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                print(f"metrics endpoint {url} did not answer")
                return
            time.sleep(0.3)
    families = ("headwater_stream_length{", "headwater_stream_entries_added", "headwater_stream_lag{",
                "headwater_dead_letters", "headwater_streamer_", "headwater_worker_", "headwater_redis_used_memory")
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    print(f"{url}: {len(samples)} samples, e.g.")
    for family in families:
        for line in [x for x in samples if x.startswith(family)][:2]:
            print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to stream real-time data (default 15)")
    parser.add_argument("--no-prefect", action="store_true", help="do not start a Prefect server (flows use a temporary one)")
    parser.add_argument("--down", action="store_true", help="stop the embedded services at the end")
    args = parser.parse_args()
    setup_logging(os.environ.get("HEADWATER_LOG_LEVEL", "INFO"))
    banner("1. embedded services")
    endpoints = devstack.up(prefect=not args.no_prefect)
    for name, info in devstack.status().items():
        print(f"{name:<9} {info['state']:<8} {info.get('url', '')}")
    if endpoints.prefect_api_url:
        os.environ.setdefault("PREFECT_API_URL", endpoints.prefect_api_url)
        print(f"Prefect UI: {endpoints.prefect_api_url.removesuffix('/api')}")
    settings = Settings()
    keys = Keys(settings.redis.key_prefix)
    client = redis.Redis.from_url(endpoints.redis_url)
    BlobStore(settings.blob, connection_string=endpoints.blob_connection_string).ensure_containers()
    exporter, metrics_url = start_metrics_exporter()
    try:
        banner("2. real time: Polygon WebSocket -> Redis Streams -> processors -> RedisTimeSeries")
        run_realtime(settings, keys, client, args.seconds, metrics_url)
        banner("3. batch: Prefect flows -> GX -> Redis Streams -> processors -> hashes, TimeSeries")
        run_batch(client, keys)
        banner("4. documents: SEC EDGAR + transcripts -> Azure Blob -> chunks -> embeddings -> RediSearch")
        run_documents(client, keys)
        banner("5. features for agents")
        run_features(client, keys, headwater_home())
        banner("done")
        print("services keep running: `make status` to inspect, `make down` to stop")
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
        if args.down:
            devstack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
