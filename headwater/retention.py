"""Hot/warm/cold retention per data kind, read from ``config/retention.yaml`` (the one place the numbers live).

    ttl_seconds("news")    -> key TTL a writer sets on ``news:{ID}`` (hot days + archive grace)
    retention_ms("bars")   -> TimeSeries RETENTION of ``ts:{T}:bar:*`` / ``agg`` / ``sentiment`` / ``mentions``
    cutoff_ms("bars", now) -> the hot-window boundary: the archive flow moves samples older than this

**Writers must re-apply the TTL on every rewrite.** ``HSET`` keeps an existing TTL, but ``DEL`` + ``HSET``,
``SET`` without ``KEEPTTL``, a ``RENAME`` target or a freshly created key have none, and a key without a TTL
lives forever. Queue the expiry in the same pipeline/transaction as the write::

    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.article(article_id), mapping=fields)
    pipe.zadd(keys.news_index(ticker), {article_id: published_ms})
    retention.expire(pipe, "news", keys.article(article_id), keys.news_index(ticker))
    pipe.execute()

Time series get their RETENTION when created (``retention_ms(kind)``); ``alter_retention`` re-applies it to
existing series. ``kind_of(key)`` says which kind (if any) a key of the schema belongs to. Sweeping the
keyspace to fix keys whose TTL/RETENTION disagrees with the file (keys written before a change, or by a writer
that forgot) is a maintenance command on the scheduled side: ``python -m flows.retention --apply``.

This module is policy only: it reads a file and queues commands on a client or pipeline it is given; it
imports no Redis connection code (``headwater.storage.redis`` imports it, not the other way round).

Redis expiry of an *archived* kind is ``days + grace_days``: the archive flow (daily) copies everything older
than ``days`` to Blob and deletes it, so Redis only drops data the archive flow had ``grace_days`` to copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from headwater.keys import Keys
from headwater.timeframes import DAY_MS, DAY_S

if TYPE_CHECKING:
    import redis

RETENTION_FILE = Path(__file__).resolve().parent.parent / "config" / "retention.yaml"

#: The kinds every writer can ask for; ``config/retention.yaml`` must define each of them.
KINDS = ("ticks", "bars", "news", "social", "documents")

#: The data kind of each key family of ``headwater.keys`` that holds data; other families (streams, indexes,
#: operational state) have no retention of their own.
KIND_OF_FAMILY: dict[str, str] = {
    "tick": "ticks",
    **dict.fromkeys(("bar", "provider_bar", "sentiment", "mentions", "known_bar", "known"), "bars"),
    "article": "news", "news_index": "news",
    "post": "social", "social_index": "social",
    "chunk": "documents",
}  # fmt: skip


@dataclass(frozen=True)
class HotRetention:
    kind: str
    days: float
    archived: bool
    keys: str = ""


@dataclass(frozen=True)
class RetentionPolicy:
    hot: dict[str, HotRetention]
    grace_days: float
    warm_days: float
    cold_archive_tier_after_days: float
    cold_min_retention_years: float
    cold_prefixes: tuple[str, ...]

    def kind(self, kind: str) -> HotRetention:
        try:
            return self.hot[kind]
        except KeyError:
            raise KeyError(f"unknown data kind {kind!r}; config/retention.yaml defines {sorted(self.hot)}") from None

    def expiry_days(self, kind: str) -> float:
        """How long Redis keeps a kind: hot days, plus the archive grace for archived kinds."""
        hot = self.kind(kind)
        return hot.days + (self.grace_days if hot.archived else 0.0)


def _positive(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: expected a positive number of days, got {value!r}")
    return float(value)


def parse_policy(data: dict[str, Any], source: str = "retention.yaml") -> RetentionPolicy:
    """Validate the YAML document and build the policy (every kind of ``KINDS`` must be there)."""
    hot_section = data.get("hot") or {}
    kinds = hot_section.get("kinds") or {}
    missing = [k for k in KINDS if k not in kinds]
    if missing:
        raise ValueError(f"{source}: hot.kinds lacks {', '.join(missing)}")
    hot = {
        name: HotRetention(name, _positive(spec.get("days"), f"{source}: hot.kinds.{name}.days"),
                           bool(spec.get("archived", False)), str(spec.get("keys", "")))
        for name, spec in kinds.items()
    }  # fmt: skip
    grace = hot_section.get("grace_days", 0)
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"{source}: hot.grace_days must be >= 0")
    warm, cold = data.get("warm") or {}, data.get("cold") or {}
    years = _positive(cold.get("min_retention_years"), f"{source}: cold.min_retention_years")
    if years < 7:
        raise ValueError(f"{source}: cold.min_retention_years must be at least 7 (compliance), got {years}")
    return RetentionPolicy(
        hot=hot,
        grace_days=float(grace),
        warm_days=_positive(warm.get("days"), f"{source}: warm.days"),
        cold_archive_tier_after_days=_positive(cold.get("archive_tier_after_days"), f"{source}: cold.archive_tier_after_days"),
        cold_min_retention_years=years,
        cold_prefixes=tuple(cold.get("prefixes") or ("audit/", "compliance/")),
    )


@lru_cache(maxsize=4)
def _load(path: str) -> RetentionPolicy:
    return parse_policy(yaml.safe_load(Path(path).read_text()), path)


def load_policy(path: str | Path | None = None) -> RetentionPolicy:
    """The policy from ``path``, ``$HEADWATER_RETENTION_FILE`` or ``config/retention.yaml`` (cached per path)."""
    return _load(str(path or os.environ.get("HEADWATER_RETENTION_FILE") or RETENTION_FILE))


def hot_days(kind: str) -> float:
    """Days a kind stays in hot storage before the archive flow moves it out."""
    return load_policy().kind(kind).days


def ttl_seconds(kind: str) -> int:
    """Key TTL for a kind's hashes/sorted sets (hot days + archive grace for archived kinds)."""
    return int(load_policy().expiry_days(kind) * DAY_S)


def retention_ms(kind: str) -> int:
    """TimeSeries RETENTION for a kind's series (same horizon as ``ttl_seconds``, in milliseconds)."""
    return int(load_policy().expiry_days(kind) * DAY_MS)


def cutoff_ms(kind: str, now_ms: int, older_than_days: float | None = None) -> int:
    """Start of the UTC day ``older_than_days`` (default: the kind's hot days) before ``now_ms``.

    Everything strictly older is outside the hot window. Aligning to a day boundary means the archive flow
    only ever moves whole days, so a daily partition is complete when it is written.
    """
    days = hot_days(kind) if older_than_days is None else older_than_days
    boundary = now_ms - int(days * DAY_MS)
    return boundary - boundary % DAY_MS


def kind_of(key: str | bytes, prefix: str = "") -> str | None:
    """The data kind of a key of the schema (``None`` for operational keys, streams, indexes ...)."""
    parsed = Keys(prefix).parse(key)
    return None if parsed is None else KIND_OF_FAMILY.get(parsed.family)


def expire(pipe: redis.Redis | redis.client.Pipeline, kind: str, *keys: str) -> None:
    """Queue ``EXPIRE key ttl_seconds(kind)`` for each key (hashes, sets, sorted sets of that kind)."""
    ttl = ttl_seconds(kind)
    for key in keys:
        pipe.expire(key, ttl)


def alter_retention(pipe: redis.Redis | redis.client.Pipeline, kind: str, *series: str) -> None:
    """Queue ``TS.ALTER key RETENTION retention_ms(kind)`` for each series of that kind."""
    ms = retention_ms(kind)
    for key in series:
        pipe.execute_command("TS.ALTER", key, "RETENTION", ms)


if __name__ == "__main__":
    raise SystemExit("the retention command moved: python -m flows.retention [--apply [--dry-run]]")
