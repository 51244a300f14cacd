"""The Prometheus endpoint serves what Redis holds: streams, workers, streamer, quotas, generic counters."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devstack import free_port
from headwater import audit, metrics
from headwater.keys import Keys


def seed(r: redis.Redis, k: Keys) -> None:
    for p, n in ((0, 5), (1, 3)):
        for i in range(n):
            r.xadd(k.raw_market_data(p), {"d": f"[{i}]"})
        r.xgroup_create(k.raw_market_data(p), k.group, id="0")
    r.xreadgroup(k.group, "host-1-42", {k.raw_market_data(0): ">"}, count=2)  # 2 pending, 3 lag
    for i in range(3):
        r.xadd(k.dead_letter, {"reason": f"bad {i}"})
    r.xadd(k.raw_news, {"d": "{}"})
    audit.record(r, k, "ingested", actor="flow:news", dataset="news", count=1)
    now_ms = int(time.time() * 1000)
    worker = {"batches": 4, "entries": 9, "events": 1200, "trades": 700, "quotes": 480, "bars": 20, "dead_letters": 1,
              "duplicates_skipped": 0, "rejected_samples": 0, "reclaimed": 0, "aborted_batches": 0,
              "fast_path_refusals": 0, "latency_ms_hist": {3: 1000, 12: 150, 250: 49, 1000: 1}, "owned": [0, 1],
              "updated_ms": now_ms}  # fmt: skip
    r.set(k.worker_metrics("host-1-42"), orjson.dumps(worker, option=orjson.OPT_NON_STR_KEYS))
    r.zadd(k.workers_alive, {"host-1-42": now_ms - 500})
    streamer = {"frames": 50, "events": 1300, "entries": 50, "dead_letters": 0, "flushes": 10, "backpressure_waits": 2,
                "backpressure_s": 0.5, "redis_retries": 0, "ws_frames": 50, "ws_bytes": 9000, "ws_connects": 1,
                "ws_reconnects": 3, "ws_last_frame_ms": now_ms - 2000, "updated_ms": now_ms}  # fmt: skip
    r.set(k.streamer_metrics(0), orjson.dumps(streamer))
    r.hset(k.last_event, mapping={"T.AAPL": now_ms - 1500, "T.MSFT": now_ms - 9000})
    today = time.strftime("%Y%m%d", time.gmtime())
    r.set(k.quota("newsapi", "abc123def456", f"day:{today}"), 42)
    r.set(k.quota("newsapi", "abc123def456", "day:20200101"), 999)  # not today: not exported
    r.set(k.quota("newsapi", "abc123def456", "blocked"), "cool-off", px=60_000)
    metrics.count(r, k, "flow_runs", flow="archive", state="Completed")
    metrics.count(r, k, "flow_runs", flow="archive", state="Completed")
    metrics.count(r, k, "gx_validations", suite="bars", outcome="failed")
    metrics.observe(r, k, "serving_request_duration_seconds", 0.003, endpoint="/features")
    metrics.observe(r, k, "serving_request_duration_seconds", 0.2, endpoint="/features")


@pytest.fixture
def endpoint(redis_url: str, keys: Keys) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    registry = metrics.build_registry(client, keys, partitions=2, budgets={"newsapi": 1000})
    server, thread = metrics.serve(registry, "127.0.0.1", free_port())
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        client.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_endpoint_serves_pipeline_metrics_from_redis(r: redis.Redis, keys: Keys, endpoint: str) -> None:
    seed(r, keys)
    m = scrape(endpoint)

    def v(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    assert v("headwater_redis_up") == 1
    p0 = {"stream": "raw_market_data", "partition": "0"}
    assert v("headwater_stream_length", **p0) == 5 and v("headwater_stream_length", stream="raw_market_data", partition="1") == 3
    assert v("headwater_stream_entries_added_total", **p0) == 5
    assert v("headwater_stream_entries_read_total", **p0) == 2
    assert v("headwater_stream_pending", **p0) == 2 and v("headwater_stream_lag", **p0) == 3
    assert v("headwater_stream_consumer_pending", consumer="host-1-42", **p0) == 2
    assert v("headwater_stream_length", stream="raw_news", partition="") == 1
    assert v("headwater_stream_length", stream="raw_social", partition="") == 0
    assert v("headwater_dead_letters") == 3 and v("headwater_audit_buffer_entries") == 1
    assert v("headwater_worker_events_total", consumer="host-1-42") == 1200
    assert v("headwater_worker_trades_total", consumer="host-1-42") == 700
    assert v("headwater_worker_dead_letters_total", consumer="host-1-42") == 1
    assert v("headwater_worker_partitions_owned", consumer="host-1-42") == 2
    assert v("headwater_worker_tick_to_store_latency_seconds_bucket", consumer="host-1-42", le="0.005") == 1000
    assert v("headwater_worker_tick_to_store_latency_seconds_bucket", consumer="host-1-42", le="0.5") == 1199
    assert v("headwater_worker_tick_to_store_latency_seconds_count", consumer="host-1-42") == 1200
    assert 0.4 <= v("headwater_worker_heartbeat_age_seconds", consumer="host-1-42") < 30
    assert v("headwater_streamer_frames_total", connection="0") == 50
    assert v("headwater_streamer_ws_reconnects_total", connection="0") == 3
    assert v("headwater_streamer_backpressure_seconds_total", connection="0") == 0.5
    assert 1 <= v("headwater_streamer_last_frame_age_seconds", connection="0") < 30
    assert 1 <= v("headwater_streamer_last_event_age_seconds") < 30
    assert v("headwater_quota_used_today", provider="newsapi", key_id="abc123def456") == 42
    assert v("headwater_quota_blocked", provider="newsapi", key_id="abc123def456") == 1
    assert v("headwater_quota_daily_budget", provider="newsapi") == 1000
    assert len([k for k in m if k[0] == "headwater_quota_used_today"]) == 1
    assert v("headwater_flow_runs_total", flow="archive", state="Completed") == 2
    assert v("headwater_gx_validations_total", suite="bars", outcome="failed") == 1
    assert v("headwater_serving_request_duration_seconds_bucket", endpoint="/features", le="0.005") == 1
    assert v("headwater_serving_request_duration_seconds_bucket", endpoint="/features", le="+Inf") == 2
    assert v("headwater_serving_request_duration_seconds_sum", endpoint="/features") == pytest.approx(0.203)
    assert v("headwater_redis_used_memory_bytes") > 0
    # counters move between scrapes
    r.xadd(keys.raw_market_data(0), {"d": "[9]"})
    metrics.count(r, keys, "flow_runs", flow="archive", state="Failed")
    m = scrape(endpoint)
    assert v("headwater_stream_entries_added_total", **p0) == 6 and v("headwater_stream_lag", **p0) == 4
    assert v("headwater_flow_runs_total", flow="archive", state="Failed") == 1


def test_redis_down_is_reported_not_crashed(keys: Keys) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    registry = metrics.build_registry(client, keys, partitions=1, budgets={})
    server, thread = metrics.serve(registry, "127.0.0.1", free_port())
    try:
        m = scrape(f"http://127.0.0.1:{server.server_port}/metrics")
        assert m[("headwater_redis_up", ())] == 0
    finally:
        server.shutdown()
        server.server_close()


def test_counter_names_and_labels_are_checked(r: redis.Redis, keys: Keys) -> None:
    with pytest.raises(ValueError):
        metrics.count(r, keys, "Bad-Name")
    with pytest.raises(ValueError):
        metrics.count(r, keys, "ok", **{"bad-label": "x"})


def test_probes(r: redis.Redis, keys: Keys) -> None:
    assert metrics.probe(r, keys, "worker", 30, host="host-1")[0] is False
    seed(r, keys)
    assert metrics.probe(r, keys, "worker", 30, host="host-1")[0] is True
    assert metrics.probe(r, keys, "worker", 30, host="other")[0] is False
    assert metrics.probe(r, keys, "streamer", 30)[0] is True
    assert metrics.probe(r, keys, "streamer", 0.000001)[0] is False
