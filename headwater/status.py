"""``python -m headwater.status``: the pipeline at a glance (the reference's XLEN / XPENDING / TS.INFO checks).

Stream lengths, pending entries per consumer, consumer-group lag, dead letters, last tick age per ticker,
workers and their events/s, flow-run outcomes per flow, and the audit backlog. ``--json`` prints one JSON object for scripts and dashboards.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
import redis

from headwater.config import load_tickers
from headwater.keys import Keys
from headwater.log import redact, setup_logging
from headwater.settings import Settings
from headwater.storage.redis import connect


def _stream_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    info: dict[str, Any] = {"stream": stream, "length": client.xlen(stream)}
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # stream does not exist yet
        return info
    for g in groups:
        if g["name"].decode() != group:
            continue
        info["pending"] = g["pending"]
        info["lag"] = g.get("lag")
        summary = client.xpending(stream, group)
        info["pending_per_consumer"] = {c["name"].decode(): int(c["pending"]) for c in summary.get("consumers") or []}
    return info


def collect(client: redis.Redis, keys: Keys, partitions: int, tickers: list[str], sample_s: float = 1.0) -> dict[str, Any]:
    """Everything the status command shows, as a dict."""
    now_ms = int(time.time() * 1000)
    market = [_stream_info(client, s, keys.group) for s in keys.raw_market_data_all(partitions)]
    others = [_stream_info(client, s, keys.group) for s in (keys.raw_news, keys.raw_social, keys.raw_documents)]
    pipe = client.pipeline(transaction=False)
    for t in tickers:
        pipe.execute_command("TS.GET", keys.tick(t, "price"))
    last_ticks = {}
    for t, res in zip(tickers, pipe.execute(raise_on_error=False)):
        if isinstance(res, list) and res:
            last_ticks[t] = round((now_ms - int(res[0])) / 1000, 1)
    workers = _workers(client, keys)
    if sample_s > 0 and workers:
        before = sum(w.get("events", 0) for w in workers.values())
        time.sleep(sample_s)
        workers = _workers(client, keys)
        events_per_s = (sum(w.get("events", 0) for w in workers.values()) - before) / sample_s
    else:
        events_per_s = None
    ages = sorted(last_ticks.values())
    flows: dict[str, dict[str, float]] = {}
    for field, value in client.hgetall(keys.metrics_counters).items():
        name, labels = orjson.loads(field)
        if name == "flow_runs":
            label = dict(map(tuple, labels))
            flows.setdefault(label.get("flow", "?"), {})[label.get("state", "?")] = float(value)
    return {
        "flows": flows,
        "audit_backlog": client.xlen(keys.audit_log),
        "market_streams": market,
        "market_totals": {
            "length": sum(s["length"] for s in market),
            "pending": sum(s.get("pending", 0) for s in market),
            "lag": sum(s.get("lag") or 0 for s in market),
        },
        "streams": others,
        "dead_letters": client.xlen(keys.dead_letter),
        "quarantine": client.xlen(keys.quarantine),
        "workers": workers,
        "events_per_s": events_per_s,
        "last_tick_age_s": {"tickers_with_ticks": len(last_ticks), "of": len(tickers),
                             "min": ages[0] if ages else None, "max": ages[-1] if ages else None,
                             "per_ticker": last_ticks},
    }  # fmt: skip


def _workers(client: redis.Redis, keys: Keys) -> dict[str, dict[str, Any]]:
    alive = client.zrange(keys.workers_alive, 0, -1)
    out = {}
    for name in alive:
        raw = client.get(keys.worker_metrics(name.decode()))
        if raw:
            out[name.decode()] = orjson.loads(raw)
    return out


def render(status: dict[str, Any]) -> str:
    lines = ["streams (length / pending / lag):"]
    for s in status["market_streams"] + status["streams"]:
        lines.append(f"  {s['stream']:<40} {s['length']:>10} {s.get('pending', '-'):>8} {str(s.get('lag', '-')):>8}")
        for consumer, n in (s.get("pending_per_consumer") or {}).items():
            lines.append(f"      pending at {consumer}: {n}")
    t = status["market_totals"]
    lines.append(f"  market data total: length {t['length']}, pending {t['pending']}, lag {t['lag']}")
    lines.append(f"dead letters: {status['dead_letters']}   quarantined rows: {status['quarantine']}")
    lines.append(f"workers alive: {len(status['workers'])}" + (
        f"   throughput: {status['events_per_s']:.0f} events/s" if status["events_per_s"] is not None else ""))
    for name, w in status["workers"].items():
        lines.append(f"  {name}: partitions {w.get('owned')}, events {w.get('events')}, dead {w.get('dead_letters')}")
    if status["flows"]:
        lines.append("flow runs (since the counters were created):")
        for flow, states in sorted(status["flows"].items()):
            lines.append(f"  {flow:<32} " + ", ".join(f"{state} {n:.0f}" for state, n in sorted(states.items())))
    else:
        lines.append("flow runs: none recorded yet")
    lines.append(f"audit events waiting to be flushed to cold storage: {status['audit_backlog']}")
    age = status["last_tick_age_s"]
    lines.append(f"last tick age: {age['tickers_with_ticks']}/{age['of']} tickers have ticks; "
                 f"newest {age['min']} s, oldest {age['max']} s ago")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--tickers-file", default=None, help="ticker universe (default config/tickers.txt)")
    parser.add_argument("--sample-seconds", type=float, default=1.0, help="window for events/s (0 = skip)")
    args = parser.parse_args(argv)
    setup_logging()
    settings = Settings()
    client = connect(settings.redis)
    try:
        status = collect(client, Keys(settings.redis.key_prefix), settings.streams.partitions,
                         load_tickers(args.tickers_file), args.sample_seconds)
    except redis.ConnectionError as exc:
        print(f"cannot reach Redis: {redact(str(exc))}", file=sys.stderr)
        return 2
    print(orjson.dumps(status).decode() if args.json else render(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
