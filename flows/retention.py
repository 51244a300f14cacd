"""Re-apply the retention policy to the keyspace: ``python -m flows.retention [--apply [--dry-run]]``.

The policy lives in ``config/retention.yaml`` and is read by ``headwater.retention``; this maintenance command
shows it and, with ``--apply``, sweeps every key of the namespace and fixes each key of a data kind whose TTL or
TimeSeries RETENTION disagrees with it (keys written before the file changed, or by a writer that forgot).
Run it after shortening a kind's window; the archive flow moves what left the hot window first.
"""

from __future__ import annotations

import argparse
import sys

import redis

from headwater import retention
from headwater.keys import Keys


def reapply(client: redis.Redis, keys: Keys, *, dry_run: bool = False, batch: int = 500) -> dict[str, dict[str, int]]:
    """Sweep every key of the namespace; fix TTLs/RETENTIONs that disagree with the policy.

    Hashes/sorted sets with no TTL get ``ttl_seconds(kind)``; a TTL *longer* than the policy is shortened
    (a shorter one is left alone: it expires sooner than the policy asks). Series whose RETENTION differs
    are altered. Returns ``{kind: {"seen": n, "fixed": m}}``.
    """
    policy = retention.load_policy()
    report = {kind: {"seen": 0, "fixed": 0} for kind in policy.hot}
    pending: list[tuple[str, str, bool]] = []  # (key, kind, is a time series)

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key, _, series in pending:
            if series:
                pipe.execute_command("TS.INFO", key)
            else:
                pipe.ttl(key)
        fix = client.pipeline(transaction=False)
        for (key, kind, series), current in zip(pending, pipe.execute(raise_on_error=False)):
            report[kind]["seen"] += 1
            if isinstance(current, Exception):
                continue
            if series:
                wanted = retention.retention_ms(kind)
                have = current.get(b"retentionTime", current.get("retentionTime")) if isinstance(current, dict) else None
                if have != wanted:
                    report[kind]["fixed"] += 1
                    retention.alter_retention(fix, kind, key)
            else:
                wanted_s = retention.ttl_seconds(kind)
                if current == -1 or current > wanted_s:
                    report[kind]["fixed"] += 1
                    retention.expire(fix, kind, key)
        if not dry_run:
            fix.execute()
        pending.clear()

    for raw in client.scan_iter(match=keys.glob(), count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        parsed = keys.parse(key)
        if parsed is None or parsed.family not in retention.KIND_OF_FAMILY:
            continue
        pending.append((key, retention.KIND_OF_FAMILY[parsed.family], parsed.is_series))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.retention",
                                     description="Show the retention policy; --apply fixes TTLs/RETENTIONs in Redis.")  # fmt: skip
    parser.add_argument("--apply", action="store_true", help="sweep the keyspace and re-apply TTLs / RETENTION")
    parser.add_argument("--dry-run", action="store_true", help="with --apply: count, change nothing")
    args = parser.parse_args(argv)
    policy = retention.load_policy()
    for kind, hot in policy.hot.items():
        print(f"{kind:<10} hot {hot.days:g} d, Redis expiry {policy.expiry_days(kind):g} d"
              f"{' (archived to warm)' if hot.archived else ''}  {hot.keys}")  # fmt: skip
    print(f"warm: {policy.warm_days:g} d; cold: Archive tier after {policy.cold_archive_tier_after_days:g} d, "
          f"kept >= {policy.cold_min_retention_years:g} years ({', '.join(policy.cold_prefixes)})")  # fmt: skip
    if args.apply:
        from headwater.log import setup_logging
        from headwater.settings import Settings
        from headwater.storage.redis import connect

        setup_logging()
        settings = Settings()
        report = reapply(connect(settings.redis), Keys(settings.redis.key_prefix), dry_run=args.dry_run)
        for kind, counts in report.items():
            print(f"{kind:<10} {counts['seen']} keys, {counts['fixed']} {'to fix' if args.dry_run else 'fixed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
