"""Helpers shared by the flow tests (imported as ``flow_support``; pytest puts this folder on sys.path)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import redis

from headwater.timeframes import NEW_YORK


def new_york(*args: int) -> dt.datetime:
    """An aware New York wall-clock time, e.g. ``new_york(2024, 3, 11, 4, 30)``."""
    return dt.datetime(*args, tzinfo=NEW_YORK)  # type: ignore[misc]


def utc_ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)  # type: ignore[misc]


def samples(r: redis.Redis, key: str) -> list[tuple[int, float]]:
    return [(int(t), float(v)) for t, v in r.execute_command("TS.RANGE", key, "-", "+")]


def total_samples(r: redis.Redis, key: str) -> int:
    info: Any = r.execute_command("TS.INFO", key)
    if isinstance(info, dict):
        return int(info.get(b"totalSamples", info.get("totalSamples")))
    fields = dict(zip(info[::2], info[1::2]))
    return int(fields.get(b"totalSamples", fields.get("totalSamples")))


def prefixed(r: redis.Redis, prefix: str, pattern: str = "*") -> list[str]:
    """The test's data keys (the shared metrics hashes every flow bumps are left out)."""
    keys = (k.decode() for k in r.scan_iter(match=f"{prefix}{pattern}", count=1000))
    return sorted(k for k in keys if not k.startswith(f"{prefix}metrics:"))


def counters(r: redis.Redis, keys: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The generic metrics counters (``headwater.metrics.count``) as ``{(name, labels): value}``."""
    out = {}
    for field, value in r.hgetall(keys.metrics_counters).items():
        name, labels = json.loads(field)
        out[(name, tuple(tuple(pair) for pair in labels))] = float(value)
    return out


def wait_for(predicate, timeout: float = 10.0) -> bool:  # noqa: ANN001
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
