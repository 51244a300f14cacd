"""``python -m headwater.memory [--json]``: Redis memory per key family -- the project's ``redis-cli --bigkeys``.

SCANs the namespace (never ``KEYS``), sorts every key into a family of the key schema (docs/redis-keys.md)
and measures ``MEMORY USAGE`` (pipelined). Up to ``--max-keys`` keys are measured exactly; past that, each
family is sampled (reservoir of ``--sample`` keys) and its total extrapolated (marked ``estimated``). For each
family: keys, bytes, average, share of ``used_memory``, the hot retention that applies (config/retention.yaml)
and its biggest keys. RediSearch indexes are reported separately (their memory is not in any key).

Reading it: a family far above the others is where to act -- shorten its retention in
config/retention.yaml and run ``python -m flows.retention --apply`` (TTL/RETENTION re-applied), run the
archive flow, or trim a stream's MAXLEN. In a Redis Cluster run it per node.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from headwater.keys import Keys
from headwater.retention import kind_of, load_policy

#: (family, key pattern as documented, the ``headwater.keys`` families it groups, first segments of keys of no
#: known family that still belong to it). A key of none of them is "other".
FAMILIES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("ts ticks", "ts:{T}:price|volume|bid|ask|bid_size|ask_size", ("tick",), ()),
    ("ts bars", "ts:{T}:bar:{TF}:{FIELD}", ("bar",), ()),
    ("ts agg", "ts:{T}:agg:{SOURCE}:{TF}:{FIELD}", ("provider_bar",), ()),
    ("ts known", "ts:{T}:known:...", ("known_bar", "known"), ()),
    ("ts signals", "ts:{T}:sentiment|mentions:{SOURCE}", ("sentiment", "mentions"), ()),
    ("ts other", "ts:*", (), ("ts",)),
    ("streams", "stream:*", ("raw_market_data", "raw_news", "raw_social", "raw_documents", "dead_letter", "quarantine"),
     ("stream",)),
    ("news index", "news:idx:{T}", ("news_index",), ()),
    ("news articles", "news:{ID}", ("article",), ("news",)),
    ("social index", "social:idx:{T}", ("social_index",), ()),
    ("social posts", "social:{PLATFORM}:{ID}", ("post",), ("social",)),
    ("doc chunks", "doc:{DOC_ID}:chunk:{N}", ("chunk",), ()),
    ("semantic cache", "cache:query:{HASH}", ("semantic_cache_entry",), ()),
    ("dedup sets", "seen:{DATASET}", ("seen",), ("seen",)),
    ("quota", "quota:{PROVIDER:KEYID}:*", ("quota",), ("quota",)),
    ("audit buffer", "audit:log", ("audit_log",), ("audit",)),
    ("metrics", "metrics:*, worker:metrics:*, streamer:metrics:*",
     ("metrics_counters", "metrics_histograms", "worker_metrics", "streamer_metrics"), ("metrics",)),
    ("coordination", "lease:*, state:{T}:market, tickers:*, workers:alive, streamer:last_event, checkpoint:*",
     ("partition_lease", "partition_epoch", "partition_tickers", "ticker_state", "workers_alive", "last_event",
      "checkpoint"), ("lease", "hwm", "carry", "checkpoint")),
    ("agent state", "json:user:*, json:portfolio:*", ("user", "portfolio"), ("json",)),
    ("featureform", "Featureform_table__*", (), ()),
    ("replay", "replay:* (python -m flows.restore)", ("replay",), ()),
    ("other", "*", (), ()),
)  # fmt: skip
_BY_KEY_FAMILY = {family: name for name, _, families, _ in FAMILIES for family in families}
_BY_ROOT = {root: name for name, _, _, roots in FAMILIES for root in roots}


def family_of(key: str, prefix: str = "") -> str:
    """The family of a key (``key`` includes the namespace prefix, if any)."""
    keys = Keys(prefix)
    parsed = keys.parse(key)
    if parsed is not None:
        return _BY_KEY_FAMILY.get(parsed.family, "other")
    root = keys.root(key) or ""
    return "featureform" if root.startswith("Featureform_") else _BY_ROOT.get(root, "other")


@dataclass
class Family:
    name: str
    pattern: str
    keys: int = 0
    measured: int = 0
    measured_bytes: int = 0
    sample: list[str] = field(default_factory=list)
    biggest: list[tuple[int, str]] = field(default_factory=list)
    retention: str = ""

    @property
    def estimated(self) -> bool:
        return self.measured < self.keys

    @property
    def bytes(self) -> int:
        if not self.measured:
            return 0
        return self.measured_bytes if not self.estimated else int(self.measured_bytes / self.measured * self.keys)


def _retention_note(family: Family, prefix: str) -> str:
    if not family.sample and not family.biggest:
        return ""
    example = (family.biggest[0][1] if family.biggest else family.sample[0])
    kind = kind_of(example, prefix)
    if kind is None:
        return ""
    policy = load_policy()
    return f"{kind}: hot {policy.kind(kind).days:g} d, expires {policy.expiry_days(kind):g} d"


def report(
    client: redis.Redis,
    prefix: str = "",
    *,
    top: int = 5,
    max_keys: int = 200_000,
    sample: int = 2_000,
    samples_per_key: int = 5,
    seed: int | None = None,
) -> dict[str, Any]:
    """Memory per family as a dict (what ``--json`` prints)."""
    rng = random.Random(seed)
    families = {name: Family(name, shown) for name, shown, _, _ in FAMILIES}
    scanned: list[str] = []
    for raw in client.scan_iter(match=Keys(prefix).glob(), count=1000):
        key = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        fam = families[family_of(key, prefix)]
        fam.keys += 1
        # Reservoir sample per family (used only when the keyspace is larger than max_keys).
        if len(fam.sample) < sample:
            fam.sample.append(key)
        else:
            j = rng.randrange(fam.keys)
            if j < sample:
                fam.sample[j] = key
        if len(scanned) <= max_keys:
            scanned.append(key)
    exact = len(scanned) <= max_keys
    to_measure = scanned if exact else [k for f in families.values() for k in f.sample]
    for start in range(0, len(to_measure), 500):
        chunk = to_measure[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", samples_per_key)
        for key, size in zip(chunk, pipe.execute(raise_on_error=False)):
            if not isinstance(size, int):  # expired between SCAN and MEMORY USAGE
                continue
            fam = families[family_of(key, prefix)]
            fam.measured += 1
            fam.measured_bytes += size
            fam.biggest.append((size, key))
            if len(fam.biggest) > 4 * top:
                fam.biggest = sorted(fam.biggest, reverse=True)[:top]
    info = client.info("memory")
    used = int(info.get("used_memory", 0))
    rows = []
    for fam in families.values():
        fam.biggest = sorted(fam.biggest, reverse=True)[:top]
        if fam.keys:
            fam.retention = _retention_note(fam, prefix)
            rows.append(fam)
    shown = [key for fam in rows for _, key in fam.biggest]
    pipe = client.pipeline(transaction=False)
    for key in shown:
        pipe.type(key)
    types = dict(zip(shown, pipe.execute(raise_on_error=False)))
    out_families = []
    for fam in sorted(rows, key=lambda f: f.bytes, reverse=True):
        biggest = [{"key": key, "bytes": size, "type": _s(types[key])} for size, key in fam.biggest]
        out_families.append({
            "family": fam.name, "pattern": fam.pattern, "keys": fam.keys, "bytes": fam.bytes,
            "avg_bytes": fam.bytes // fam.keys if fam.keys else 0,
            "share_of_used_memory": round(fam.bytes / used, 6) if used else None,
            "estimated": fam.estimated, "retention": fam.retention, "biggest": biggest,
        })  # fmt: skip
    return {
        "prefix": prefix,
        "used_memory": used,
        "used_memory_human": _s(info.get("used_memory_human", "")),
        "maxmemory": int(info.get("maxmemory", 0)),
        "keys": sum(f["keys"] for f in out_families),
        "measured_exactly": exact,
        "families": out_families,
        "search_indexes": _search_indexes(client, prefix),
    }


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _search_indexes(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    try:
        names = [_s(n) for n in client.execute_command("FT._LIST")]
    except redis.ResponseError:  # no search module
        return []
    out = []
    for name in sorted(n for n in names if n.startswith(prefix)):
        info = client.ft(name).info()
        out.append({
            "index": name, "docs": int(info.get("num_docs", 0)),
            "bytes": int(float(info.get("total_index_memory_sz_mb", 0)) * 1024 * 1024),
            "vector_bytes": int(float(info.get("vector_index_sz_mb", 0)) * 1024 * 1024),
        })  # fmt: skip
    return out


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def render(data: dict[str, Any]) -> str:
    lines = [f"used_memory {data['used_memory_human']} ({data['used_memory']} B), {data['keys']} keys"
             + (f" under prefix {data['prefix']!r}" if data["prefix"] else "")
             + ("" if data["measured_exactly"] else " (sampled: totals marked ~ are estimates)")]  # fmt: skip
    lines.append(f"{'family':<16} {'keys':>9} {'memory':>10} {'avg':>9} {'share':>6}  retention / pattern")
    for f in data["families"]:
        share = f"{f['share_of_used_memory'] * 100:.1f}%" if f["share_of_used_memory"] is not None else "-"
        mem = ("~" if f["estimated"] else "") + _human(f["bytes"])
        lines.append(f"{f['family']:<16} {f['keys']:>9} {mem:>10} {_human(f['avg_bytes']):>9} {share:>6}  "
                     f"{f['retention'] or '-'}  [{f['pattern']}]")  # fmt: skip
        for b in f["biggest"]:
            lines.append(f"    {_human(b['bytes']):>10}  {b['type']:<10} {b['key']}")
    for idx in data["search_indexes"]:
        lines.append(f"search index {idx['index']}: {idx['docs']} docs, {_human(idx['bytes'])} "
                     f"(vectors {_human(idx['vector_bytes'])})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m headwater.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--top", type=int, default=5, help="biggest keys shown per family")
    parser.add_argument("--max-keys", type=int, default=200_000, help="measure every key up to this many, else sample")
    parser.add_argument("--sample", type=int, default=2_000, help="keys measured per family when sampling")
    parser.add_argument("--exact", action="store_true", help="MEMORY USAGE ... SAMPLES 0 (every element; slower)")
    args = parser.parse_args(argv)
    from headwater.log import redact, setup_logging
    from headwater.settings import Settings
    from headwater.storage.redis import connect

    setup_logging()
    settings = Settings()
    try:
        client = connect(settings.redis)
        data = report(client, Keys(settings.redis.key_prefix).prefix, top=args.top, max_keys=args.max_keys,
                      sample=args.sample, samples_per_key=0 if args.exact else 5)  # fmt: skip
    except redis.ConnectionError as exc:
        print(f"cannot reach Redis: {redact(str(exc))}", file=sys.stderr)
        return 2
    print(orjson.dumps(data).decode() if args.json else render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
