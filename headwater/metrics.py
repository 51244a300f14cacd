"""Prometheus metrics for the whole pipeline on one endpoint: ``python -m headwater.metrics --port 9108``.

Nothing is kept in this process: a custom collector reads Redis at scrape time, so every process's numbers
(streamer, stream processors, flows, the serving API) show up here, and the exporter can restart or scale
freely.

What is read, and the metric families it becomes (all prefixed ``headwater_``):

* streams (``stream:raw_market_data:{P}`` per partition, ``raw_news``, ``raw_social``, ``raw_documents``,
  ``dead_letter``, ``quarantine``, ``audit:log``): ``stream_length``, ``stream_entries_added_total`` (events in),
  ``stream_entries_read_total`` (events out to ``processing_group``), ``stream_pending``, ``stream_lag``,
  ``stream_consumer_pending``; plus ``dead_letters``, ``quarantine_rows``, ``audit_buffer_entries``;
* stream processors (``worker:metrics:{CONSUMER}`` of the consumers in ``workers:alive``):
  ``worker_{events,trades,quotes,bars,dead_letters,...}_total``, ``worker_partitions_owned``,
  ``worker_heartbeat_age_seconds`` and the histogram ``worker_tick_to_store_latency_seconds``;
* streamer connections (``streamer:metrics:{C}``): ``streamer_{frames,events,entries,reconnects,
  backpressure_waits,...}_total``, ``streamer_last_frame_age_seconds``; ``streamer:last_event``:
  ``streamer_last_event_age_seconds``;
* quotas (``quota:{PROVIDER:KEYID}:day:{YYYYMMDD}`` of today, UTC): ``quota_used_today``,
  ``quota_daily_budget`` (config/data_sources.yaml), ``quota_blocked``;
* generic counters and histograms any process bumps with ``count()`` / ``observe()`` (Redis hashes
  ``metrics:counters`` and ``metrics:histograms``), e.g. ``flow_runs_total{flow,state}`` (the
  ``flow_outcome`` Prefect hook), ``gx_validations_total{suite,outcome}``,
  ``serving_request_duration_seconds{endpoint}``;
* ``redis_up``, ``redis_used_memory_bytes``, ``scrape_duration_seconds``.

``python -m headwater.metrics probe {streamer,worker} --max-age S`` is the exec probe the Kubernetes manifests
use: exit 0 when this pod's process published its metrics within ``S`` seconds.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from headwater.keys import Keys, quota_day_window

log = logging.getLogger("headwater.metrics")

NAMESPACE = "headwater"
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
#: Buckets (seconds) of histograms fed through ``observe``.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets (seconds) of the stream processors' tick-to-TimeSeries latency (their histogram is in whole ms, capped at 1 s).
WORKER_LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.999)
MAX_STREAMER_CONNECTIONS = 64  # PolygonSettings.connections is bounded by this


# ------------------------------------------------------------------------------------------------------------
# Generic counters/histograms: any process bumps them, the exporter exposes them
# ------------------------------------------------------------------------------------------------------------


def counters_key(keys: Keys) -> str:
    """Hash of generic counters: field ``["name", [[label, value], ...]]`` (JSON) -> value."""
    return keys.metrics_counters


def histograms_key(keys: Keys) -> str:
    """Hash of generic histograms: field ``["name", labels, le | "sum" | "count"]`` (JSON) -> value."""
    return keys.metrics_histograms


def _labels(labels: dict[str, Any]) -> list[list[str]]:
    for name in labels:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid label name {name!r}")
    return [[k, str(v)] for k, v in sorted(labels.items())]


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid metric name {name!r}: lower case, digits and '_'")
    return name


def count(client: redis.Redis | redis.client.Pipeline, keys: Keys, name: str, value: float = 1, **labels: Any) -> None:
    """Add ``value`` to the counter ``headwater_{name}_total{labels}`` (shared by every process)."""
    field = orjson.dumps([_check_name(name), _labels(labels)])
    client.hincrbyfloat(counters_key(keys), field, value)


def observe(client: redis.Redis, keys: Keys, name: str, seconds: float, **labels: Any) -> None:
    """Record one observation of the histogram ``headwater_{name}`` (e.g. a request duration), one round trip."""
    head = [_check_name(name), _labels(labels)]
    key = histograms_key(keys)
    pipe = client.pipeline(transaction=False)
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(key, orjson.dumps([*head, repr(bound)]), 1)
    pipe.hincrby(key, orjson.dumps([*head, "+Inf"]), 1)
    pipe.hincrby(key, orjson.dumps([*head, "count"]), 1)
    pipe.hincrbyfloat(key, orjson.dumps([*head, "sum"]), seconds)
    pipe.execute()


class HistogramBuffer:
    """``observe()`` without a Redis round trip: observations are added up in memory and a background thread
    writes the sums every ``interval_s`` in one pipeline (same hash and fields as ``observe``). For hot request
    paths such as the serving API; ``close()`` flushes what is left."""

    def __init__(self, client: redis.Redis, keys: Keys, *, interval_s: float = 1.0) -> None:
        self.client = client
        self.key = histograms_key(keys)
        self.interval_s = interval_s
        self._pending: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, name: str, seconds: float, **labels: Any) -> None:
        head = [_check_name(name), _labels(labels)]
        fields = [orjson.dumps([*head, repr(bound)]) for bound in LATENCY_BUCKETS if seconds <= bound]
        fields += [orjson.dumps([*head, "+Inf"]), orjson.dumps([*head, "count"])]
        total = orjson.dumps([*head, "sum"])
        with self._lock:
            for field in fields:
                self._pending[field] = self._pending.get(field, 0) + 1
            self._pending[total] = self._pending.get(total, 0.0) + seconds
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        """Write what was observed since the last flush (kept for the next try if Redis is unreachable)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        pipe = self.client.pipeline(transaction=False)
        for field, value in pending.items():
            if field.endswith(b'"sum"]'):
                pipe.hincrbyfloat(self.key, field, value)
            else:
                pipe.hincrby(self.key, field, int(value))
        try:
            pipe.execute()
        except redis.RedisError:
            log.warning("could not write %d buffered metric fields; keeping them for the next flush", len(pending))
            with self._lock:
                for field, value in pending.items():
                    self._pending[field] = self._pending.get(field, 0) + value

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def flow_outcome(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook for completed, failed and crashed runs (``OUTCOME_HOOKS`` wires all three).

    Counts ``headwater_flow_runs_total{flow, state}``; never raises (metrics must not fail a flow).
    """
    try:
        from headwater.settings import Settings
        from headwater.storage.redis import connect

        settings = Settings()
        client = connect(settings.redis)
        try:
            count(client, Keys(settings.redis.key_prefix), "flow_runs", flow=flow.name, state=state.name)
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - metrics are best effort here
        log.warning("could not count the outcome of flow %s", getattr(flow, "name", flow), exc_info=True)


#: ``@flow(name=..., **OUTCOME_HOOKS)``: every terminal state of the flow run is counted.
OUTCOME_HOOKS: dict[str, list[Any]] = {"on_completion": [flow_outcome], "on_failure": [flow_outcome], "on_crashed": [flow_outcome]}


# ------------------------------------------------------------------------------------------------------------
# The collector
# ------------------------------------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class RedisCollector(Collector):
    """Reads the pipeline's state from Redis on every scrape (a handful of pipelined round trips)."""

    QUOTA_SCAN_EVERY_S = 60.0

    def __init__(self, client: redis.Redis, keys: Keys, partitions: int, daily_budgets: dict[str, int] | None = None) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self.daily_budgets = daily_budgets or {}
        self._quota_keys: list[str] = []
        self._quota_scanned_at = -math.inf
        self._quota_day = ""

    # Prometheus calls describe() at registration; returning nothing keeps it from running collect() then.
    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(f"{NAMESPACE}_redis_up", "1 if Redis answered this scrape")
        try:
            families = list(self._streams()) + list(self._workers()) + list(self._streamer()) + list(self._quotas())
            families += list(self._generic()) + list(self._redis_info())
        except redis.RedisError as exc:
            log.warning("scrape: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily(f"{NAMESPACE}_scrape_duration_seconds", "time this exporter spent reading Redis")
        took.add_metric([], time.perf_counter() - started)
        yield took

    # -- streams ------------------------------------------------------------------------------------------
    def _stream_names(self) -> list[tuple[str, str, str]]:
        """(key, logical name, partition) of every stream of the schema."""
        from headwater.audit import audit_log_key  # not at import: the exec probes stay light

        k = self.keys
        out = [(k.raw_market_data(p), "raw_market_data", str(p)) for p in range(self.partitions)]
        singles = [(k.raw_news, "raw_news"), (k.raw_social, "raw_social"), (k.raw_documents, "raw_documents"),
                   (k.dead_letter, "dead_letter"), (k.quarantine, "quarantine"), (audit_log_key(k), "audit_log")]
        return out + [(key, name, "") for key, name in singles]

    def _streams(self) -> Iterator[Metric]:
        streams = self._stream_names()
        labels = ["stream", "partition"]
        length = GaugeMetricFamily(f"{NAMESPACE}_stream_length", "entries in the stream (XLEN)", labels=labels)
        added = CounterMetricFamily(f"{NAMESPACE}_stream_entries_added", "entries ever added (events in)", labels=labels)
        read = CounterMetricFamily(f"{NAMESPACE}_stream_entries_read", "entries delivered to processing_group (events out)",
                                   labels=labels)  # fmt: skip
        pending = GaugeMetricFamily(f"{NAMESPACE}_stream_pending", "delivered but not yet acknowledged", labels=labels)
        lag = GaugeMetricFamily(f"{NAMESPACE}_stream_lag", "entries not yet delivered to processing_group", labels=labels)
        per_consumer = GaugeMetricFamily(f"{NAMESPACE}_stream_consumer_pending", "pending entries per consumer",
                                         labels=[*labels, "consumer"])  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        for key, _, _ in streams:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
            pipe.xpending(key, self.keys.group)
        results = pipe.execute(raise_on_error=False)
        values: dict[str, float] = {}
        for i, (_, name, part) in enumerate(streams):
            info, groups, summary = results[3 * i : 3 * i + 3]
            if isinstance(info, redis.ConnectionError):
                raise info
            if isinstance(info, Exception):  # the stream does not exist (yet)
                length.add_metric([name, part], 0)
                values[name] = values.get(name, 0)
                continue
            length.add_metric([name, part], info["length"])
            values[name] = values.get(name, 0) + info["length"]
            if info.get("entries-added") is not None:
                added.add_metric([name, part], info["entries-added"])
            for group in groups if isinstance(groups, list) else []:
                if _s(group["name"]) != self.keys.group:
                    continue
                pending.add_metric([name, part], group["pending"])
                if group.get("lag") is not None:
                    lag.add_metric([name, part], group["lag"])
                if group.get("entries-read") is not None:
                    read.add_metric([name, part], group["entries-read"])
            if isinstance(summary, dict):
                for consumer in summary.get("consumers") or []:
                    per_consumer.add_metric([name, part, _s(consumer["name"])], int(consumer["pending"]))
        yield from (length, added, read, pending, lag, per_consumer)
        for metric, stream, help_text in (
            ("dead_letters", "dead_letter", "entries in stream:dead_letter (failed parsing/validation)"),
            ("quarantine_rows", "quarantine", "rows in stream:quarantine (rejected by a Great Expectations suite)"),
            ("audit_buffer_entries", "audit_log", "audit events not yet flushed to Blob"),
        ):
            g = GaugeMetricFamily(f"{NAMESPACE}_{metric}", help_text)
            g.add_metric([], values.get(stream, 0))
            yield g

    # -- stream processors --------------------------------------------------------------------------------
    def _workers(self) -> Iterator[Metric]:
        now_ms = time.time() * 1000
        alive = self.client.zrange(self.keys.workers_alive, 0, -1, withscores=True)
        registered = GaugeMetricFamily(f"{NAMESPACE}_workers_registered", "stream processors in workers:alive")
        registered.add_metric([], len(alive))
        yield registered
        heartbeat = GaugeMetricFamily(f"{NAMESPACE}_worker_heartbeat_age_seconds", "since the worker's last heartbeat",
                                      labels=["consumer"])  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        for name, score in alive:
            heartbeat.add_metric([_s(name)], max(0.0, (now_ms - score) / 1000))
            pipe.get(self.keys.worker_metrics(_s(name)))
        yield heartbeat
        snapshots = [(_s(name), orjson.loads(raw)) for (name, _), raw in zip(alive, pipe.execute()) if raw]
        counters: dict[str, CounterMetricFamily] = {}
        owned = GaugeMetricFamily(f"{NAMESPACE}_worker_partitions_owned", "market-data partitions leased", labels=["consumer"])
        latency = HistogramMetricFamily(f"{NAMESPACE}_worker_tick_to_store_latency_seconds",
                                        "event time to TimeSeries commit, per event (1 ms resolution, >= 1 s in +Inf)",
                                        labels=["consumer"])  # fmt: skip
        for consumer, data in snapshots:
            for field, value in data.items():
                if field in ("owned", "updated_ms", "latency_ms_hist") or _num(value) is None:
                    continue
                family = counters.get(field)
                if family is None:
                    family = counters[field] = CounterMetricFamily(f"{NAMESPACE}_worker_{field}", f"stream processor {field}",
                                                                   labels=["consumer"])  # fmt: skip
                family.add_metric([consumer], value)
            owned.add_metric([consumer], len(data.get("owned") or []))
            hist = {int(k): int(v) for k, v in (data.get("latency_ms_hist") or {}).items()}
            if hist:
                under_1s = [(ms, n) for ms, n in hist.items() if ms < 1000]
                buckets = [(repr(b), sum(n for ms, n in under_1s if ms <= b * 1000)) for b in WORKER_LATENCY_BUCKETS]
                total = sum(hist.values())
                buckets.append(("+Inf", total))
                latency.add_metric([consumer], buckets, sum(ms * n for ms, n in hist.items()) / 1000)
        yield from counters.values()
        yield owned
        yield latency

    # -- streamer -----------------------------------------------------------------------------------------
    def _streamer(self) -> Iterator[Metric]:
        now_ms = time.time() * 1000
        pipe = self.client.pipeline(transaction=False)
        for c in range(MAX_STREAMER_CONNECTIONS):
            pipe.get(self.keys.streamer_metrics(c))
        pipe.hvals(self.keys.last_event)
        *raw, last_events = pipe.execute()
        counters: dict[str, CounterMetricFamily] = {}
        age = GaugeMetricFamily(f"{NAMESPACE}_streamer_last_frame_age_seconds", "since the connection's last frame",
                                labels=["connection"])  # fmt: skip
        for c, blob in enumerate(raw):
            if not blob:
                continue
            data = orjson.loads(blob)
            for field, value in data.items():
                if field in ("updated_ms", "ws_last_frame_ms") or _num(value) is None:
                    continue
                name = field.removesuffix("_s") + "_seconds" if field.endswith("_s") else field
                family = counters.get(name)
                if family is None:
                    family = counters[name] = CounterMetricFamily(f"{NAMESPACE}_streamer_{name}", f"streamer {field}",
                                                                  labels=["connection"])  # fmt: skip
                family.add_metric([str(c)], value)
            if data.get("ws_last_frame_ms"):
                age.add_metric([str(c)], max(0.0, (now_ms - data["ws_last_frame_ms"]) / 1000))
        yield from counters.values()
        yield age
        if last_events:
            newest = GaugeMetricFamily(f"{NAMESPACE}_streamer_last_event_age_seconds",
                                       "since the newest market event the streamer saw (any ticker)")  # fmt: skip
            newest.add_metric([], max(0.0, (now_ms - max(int(v) for v in last_events)) / 1000))
            yield newest

    # -- quotas -------------------------------------------------------------------------------------------
    def _quotas(self) -> Iterator[Metric]:
        today = datetime.now(UTC).strftime("%Y%m%d")
        if today != self._quota_day or time.monotonic() - self._quota_scanned_at > self.QUOTA_SCAN_EVERY_S:
            pattern = self.keys.glob_family("quota", window=quota_day_window(today))
            self._quota_keys = sorted(_s(k) for k in self.client.scan_iter(match=pattern, count=1000))
            self._quota_scanned_at, self._quota_day = time.monotonic(), today
        parsed = []
        for key in self._quota_keys:
            quota = self.keys.parse(key)
            if quota is not None and quota.family == "quota" and quota.window == quota_day_window(today):
                parsed.append((key, str(quota.provider), str(quota.key_id)))
        pipe = self.client.pipeline(transaction=False)
        for key, provider, key_id in parsed:
            pipe.get(key)
            pipe.pttl(self.keys.quota(provider, key_id, "blocked"))
        results = pipe.execute()
        used = GaugeMetricFamily(f"{NAMESPACE}_quota_used_today", "requests spent today (UTC) per provider key",
                                 labels=["provider", "key_id"])  # fmt: skip
        blocked = GaugeMetricFamily(f"{NAMESPACE}_quota_blocked", "1 while every worker must pause (shared block)",
                                    labels=["provider", "key_id"])  # fmt: skip
        for i, (_, provider, key_id) in enumerate(parsed):
            value, pttl = results[2 * i], results[2 * i + 1]
            used.add_metric([provider, key_id], int(value or 0))
            blocked.add_metric([provider, key_id], 1 if pttl and pttl > 0 else 0)
        budget = GaugeMetricFamily(f"{NAMESPACE}_quota_daily_budget", "daily request budget (config/data_sources.yaml)",
                                   labels=["provider"])  # fmt: skip
        for provider, per_day in sorted(self.daily_budgets.items()):
            budget.add_metric([provider], per_day)
        yield from (used, blocked, budget)

    # -- generic counters/histograms ------------------------------------------------------------------------
    def _generic(self) -> Iterator[Metric]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(counters_key(self.keys))
        pipe.hgetall(histograms_key(self.keys))
        raw_counters, raw_hists = pipe.execute()
        counters: dict[str, list[tuple[dict[str, str], float]]] = {}
        for field, value in raw_counters.items():
            name, labels = orjson.loads(field)
            counters.setdefault(name, []).append((dict(labels), float(value)))
        for name, samples in sorted(counters.items()):
            label_names = sorted({k for labels, _ in samples for k in labels})
            family = CounterMetricFamily(f"{NAMESPACE}_{name}", f"{name} (counted by pipeline processes)", labels=label_names)
            for labels, value in samples:
                family.add_metric([labels.get(k, "") for k in label_names], value)
            yield family
        hists: dict[str, dict[tuple[tuple[str, str], ...], dict[str, float]]] = {}
        for field, value in raw_hists.items():
            name, labels, part = orjson.loads(field)
            hists.setdefault(name, {}).setdefault(tuple(tuple(x) for x in labels), {})[part] = float(value)
        for name, series in sorted(hists.items()):
            label_names = sorted({k for labels in series for k, _ in labels})
            family = HistogramMetricFamily(f"{NAMESPACE}_{name}", f"{name} (observed by pipeline processes)", labels=label_names)
            for labels, parts in series.items():
                as_dict = dict(labels)
                buckets = [(repr(b), parts.get(repr(b), 0.0)) for b in LATENCY_BUCKETS] + [("+Inf", parts.get("+Inf", 0.0))]
                family.add_metric([as_dict.get(k, "") for k in label_names], buckets, parts.get("sum", 0.0))
            yield family

    def _redis_info(self) -> Iterator[Metric]:
        info = self.client.info("memory")
        g = GaugeMetricFamily(f"{NAMESPACE}_redis_used_memory_bytes", "Redis used_memory (INFO memory)")
        g.add_metric([], info.get("used_memory", 0))
        yield g
        if info.get("maxmemory"):
            m = GaugeMetricFamily(f"{NAMESPACE}_redis_maxmemory_bytes", "Redis maxmemory")
            m.add_metric([], info["maxmemory"])
            yield m


def daily_budgets() -> dict[str, int]:
    """Provider -> per-day budget from config/data_sources.yaml (providers without one are left out)."""
    from headwater.config import load_data_sources

    return {name: int(spec["quota"]["per_day"]) for name, spec in load_data_sources().items()
            if (spec.get("quota") or {}).get("per_day")}  # fmt: skip


def build_registry(client: redis.Redis, keys: Keys, partitions: int, budgets: dict[str, int] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, keys, partitions, daily_budgets() if budgets is None else budgets))
    return registry


def serve(registry: CollectorRegistry, host: str, port: int) -> tuple[Any, threading.Thread]:
    """Start the HTTP endpoint (``/metrics``) in a background thread; returns ``(server, thread)``."""
    return start_http_server(port, addr=host, registry=registry)


# ------------------------------------------------------------------------------------------------------------
# Exec probes for the Kubernetes manifests
# ------------------------------------------------------------------------------------------------------------


def probe(client: redis.Redis, keys: Keys, what: str, max_age_s: float, host: str | None = None) -> tuple[bool, str]:
    """Is this pod's streamer/worker publishing? (metrics newer than ``max_age_s``)."""
    now_ms = time.time() * 1000
    if what == "streamer":
        pipe = client.pipeline(transaction=False)
        for c in range(MAX_STREAMER_CONNECTIONS):
            pipe.get(keys.streamer_metrics(c))
        ages = [(now_ms - orjson.loads(raw).get("updated_ms", 0)) / 1000 for raw in pipe.execute() if raw]
        if not ages:
            return False, "no streamer metrics in Redis"
        return min(ages) <= max_age_s, f"newest streamer metrics {min(ages):.1f}s old"
    host = host or os.environ.get("HOSTNAME") or socket.gethostname()
    mine = [(_s(n), s) for n, s in client.zrange(keys.workers_alive, 0, -1, withscores=True) if _s(n).startswith(f"{host}-")]
    if not mine:
        return False, f"no worker of {host} in workers:alive"
    age = (now_ms - max(s for _, s in mine)) / 1000
    return age <= max_age_s, f"newest heartbeat of {host} {age:.1f}s old"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=9108)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("probe", help="exec probe: exit 0 if this pod's streamer/worker published recently")
    p.add_argument("what", choices=("streamer", "worker"))
    p.add_argument("--max-age", type=float, default=60.0)
    args = parser.parse_args(argv)
    from headwater.log import redact, setup_logging
    from headwater.settings import Settings
    from headwater.storage.redis import connect

    setup_logging()
    settings = Settings()
    keys = Keys(settings.redis.key_prefix)
    try:
        client = connect(settings.redis)
        if args.command == "probe":
            ok, why = probe(client, keys, args.what, args.max_age)
            print(why)
            return 0 if ok else 1
    except redis.RedisError as exc:
        print(f"cannot reach Redis: {redact(str(exc))}", file=sys.stderr)
        return 1 if args.command == "probe" else 2
    server, _ = serve(build_registry(client, keys, settings.streams.partitions), args.host, args.port)
    log.info("serving Prometheus metrics on http://%s:%d/metrics", args.host, server.server_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    server.server_close()
    client.close()
    log.info("metrics exporter stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
