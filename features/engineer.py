"""The feature engineer: computes the registered features and writes them online in Featureform's layout.

For each ticker it computes every stored feature of ``features/definitions.py`` (market and sentiment from
RedisTimeSeries, document embeddings from ``idx:documents``) as of one point in time -- reads end there, so no
value uses later data -- and writes value, source time and as-of time in one transaction per batch
(``features.online_store``). A Featureform server reading the same Redis serves the same values; none is needed.

Two ways to run it:

* the Prefect flow ``engineer_features`` (scheduled, all groups):
  ``python -m features.engineer --tickers-file config/tickers.txt [--as-of 2024-05-01T15:30:00Z]``;
  ``--as-of`` recomputes the online values as of a past time (a replay: it overwrites newer values);
* the real-time worker for the streaming features: ``--every 1`` recomputes (by default the market group)
  every second until stopped, without Prefect bookkeeping per iteration.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime

import redis
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from features import Catalog, FeatureSpec, FeatureValue, compute_features, load_catalog, to_ms
from features.online_store import OnlineLayout, OnlineStoreWriter
from headwater.config import load_tickers
from headwater.keys import Keys
from headwater.log import setup_logging
from headwater.metrics import OUTCOME_HOOKS
from headwater.settings import Settings
from headwater.storage.redis import connect

log = logging.getLogger("features.engineer")
GROUPS = ("market", "sentiment", "documents")


def select_specs(catalog: Catalog, groups: Sequence[str] | None = None) -> list[FeatureSpec]:
    """The stored features of the chosen groups (all groups by default)."""
    chosen = list(groups or GROUPS)
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature group(s) {sorted(unknown)}; known: {list(GROUPS)}")
    specs = [spec for spec in catalog.stored if spec.group in chosen]
    orphans = [spec.name for spec in catalog.stored if spec.group not in GROUPS]
    if orphans:
        raise ValueError(f"registered features without a computation group: {orphans}")
    return specs


def engineer_batch(
    client: redis.Redis, keys: Keys, writer: OnlineStoreWriter, specs: Sequence[FeatureSpec], tickers: Sequence[str],
    as_of_ms: int,
) -> list[FeatureValue]:  # fmt: skip
    """Compute and write one batch of tickers; returns the values written (None = deleted)."""
    values = compute_features(client, keys, specs, tickers, as_of_ms)
    writer.write(values)
    return values


def run_engineer(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int,
    batch_size: int = 100,
) -> dict[str, int]:  # fmt: skip
    """Register the tables, then compute and write every batch; returns counts (without Prefect)."""
    writer = OnlineStoreWriter(client, OnlineLayout.for_namespace(keys.prefix))
    writer.register(specs)
    return _engineer_all(client, keys, writer, specs, tickers, as_of_ms, batch_size)


def _engineer_all(
    client: redis.Redis, keys: Keys, writer: OnlineStoreWriter, specs: Sequence[FeatureSpec], tickers: Sequence[str],
    as_of_ms: int, batch_size: int = 100,
) -> dict[str, int]:  # fmt: skip
    """Compute and write every batch of tickers with a registered writer; returns counts."""
    counts = {"tickers": len(tickers), "values": 0, "missing": 0}
    for start in range(0, len(tickers), batch_size):
        _count(counts, engineer_batch(client, keys, writer, specs, tickers[start : start + batch_size], as_of_ms))
    return counts


def _count(counts: dict[str, int], values: Sequence[FeatureValue]) -> None:
    missing = sum(1 for v in values if v.value is None)
    counts["values"] += len(values) - missing
    counts["missing"] += missing


# -- Prefect ---------------------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE)
def register_tables(client: redis.Redis, key_prefix: str, specs: list[FeatureSpec]) -> None:
    """Add missing Featureform table entries and vector indexes."""
    OnlineStoreWriter(client, OnlineLayout.for_namespace(key_prefix)).register(specs)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5)
def engineer_batch_task(
    client: redis.Redis, key_prefix: str, specs: list[FeatureSpec], tickers: list[str], as_of_ms: int
) -> dict[str, int]:
    """Compute and write the features of one batch of tickers (idempotent: safe to retry)."""
    writer = OnlineStoreWriter(client, OnlineLayout.for_namespace(key_prefix))
    counts = {"tickers": len(tickers), "values": 0, "missing": 0}
    _count(counts, engineer_batch(client, Keys(key_prefix), writer, specs, tickers, as_of_ms))
    return counts


@flow(name="feature-engineer", log_prints=False, **OUTCOME_HOOKS)
def engineer_features(
    tickers: list[str], as_of: datetime | None = None, groups: list[str] | None = None, batch_size: int = 100
) -> dict[str, int]:
    """Compute the registered features of ``tickers`` as of ``as_of`` (default: now) and write them online."""
    settings = Settings()
    client = connect(settings.redis)
    try:
        specs = select_specs(load_catalog(), groups)
        as_of_ms = to_ms(as_of) if as_of is not None else int(time.time() * 1000)
        prefix = settings.redis.key_prefix
        register_tables(client, prefix, specs)
        totals = {"tickers": 0, "values": 0, "missing": 0}
        for start in range(0, len(tickers), batch_size):
            counts = engineer_batch_task(client, prefix, specs, tickers[start : start + batch_size], as_of_ms)
            totals = {k: totals[k] + counts[k] for k in totals}
        return totals | {"as_of_ms": as_of_ms}
    finally:
        client.close()


# -- real-time worker ----------------------------------------------------------------------------------
def run_every(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], interval_s: float,
    stop: threading.Event, iterations: int | None = None,
) -> int:  # fmt: skip
    """Recompute ``specs`` as of now every ``interval_s`` until ``stop`` is set; returns the iterations run."""
    writer = OnlineStoreWriter(client, OnlineLayout.for_namespace(keys.prefix))
    writer.register(specs)
    done = 0
    while not stop.is_set() and (iterations is None or done < iterations):
        started = time.monotonic()
        counts = _engineer_all(client, keys, writer, specs, tickers, int(time.time() * 1000))
        done += 1
        log.debug("iteration %d: %s in %.3fs", done, counts, time.monotonic() - started)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    return done


# -- CLI -------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m features.engineer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers-file", default=None, help="one ticker per line (default config/tickers.txt)")
    parser.add_argument("--as-of", default=None, help="ISO 8601 time with zone (default: now)")
    parser.add_argument("--groups", default=None, help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                        help="real-time worker: recompute every SECONDS until stopped (default group: market)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=100)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a JSON summary and returns the exit code."""
    args = _parser().parse_args(argv)
    setup_logging()
    tickers = load_tickers(args.tickers_file)
    groups = args.groups.split(",") if args.groups else None
    if args.every is None:
        as_of = datetime.fromisoformat(args.as_of.replace("Z", "+00:00")) if args.as_of else None
        print(json.dumps(engineer_features(tickers, as_of, groups, args.batch_size)))
        return 0
    if args.as_of:
        raise SystemExit("--as-of and --every exclude each other (the worker computes as of now)")
    settings = Settings()
    client = connect(settings.redis)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        specs = select_specs(load_catalog(), groups or ["market"])
        iterations = run_every(client, Keys(settings.redis.key_prefix), specs, tickers, args.every, stop)
    finally:
        client.close()
    print(json.dumps({"stopped": True, "iterations": iterations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
