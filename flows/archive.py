"""Daily: data past its hot window leaves Redis for warm Azure Blob -- copied, verified, only then deleted.

    python -m flows.archive [--older-than-days N] [--dataset bars ...] [--dry-run] [--json] [--no-prefect]

Datasets and where they go (container ``warm``, ``HEADWATER_BLOB_WARM_CONTAINER``), partitioned by
dataset/ticker/date with deterministic paths:

    bars      ts:{T}:agg:{SOURCE}:{TF}:{FIELD} and ts:{T}:bar:{TF}:{FIELD} (SOURCE "ticks": compacted by Redis
              from the tick series)                     -> bars/{SOURCE}/{TF}/{T}/{YYYY}/{MM}.parquet
              columns ticker, timeframe, source, ts (epoch ms UTC), open, high, low, close, volume, vwap --
              the layout the historical backfiller writes too (one warm layout for bars); the month is the New
              York session month for intraday bars, the UTC month for daily bars
    signals   ts:{T}:sentiment:{SOURCE}, ts:{T}:mentions:{SOURCE}
                                                        -> signals/{T}/{YYYY}/{MM}.parquet
              columns ticker, signal, source, ts, value
    news      news:idx:{T} + news:{ID}                  -> news/{T}/{YYYY-MM-DD}.jsonl
    social    social:idx:{T} + social:{PLATFORM}:{ID}   -> social/{T}/{YYYY-MM-DD}.jsonl
              one JSON object per line: id, ticker, ts_ms, fields (the hash; fields_b64 for non-UTF-8 values)
    documents raw filings/transcripts (container ``raw``) older than the window move to the Cool tier;
              their chunks (doc:...) expire by TTL and can be rebuilt from the raw document

"Older than the window" means: before the start of the UTC day ``--older-than-days`` (default: the kind's
hot days in config/retention.yaml) ago -- whole days only.

Per dataset, in this order:
1. read everything older than the cutoff from Redis (TS.RANGE; ZRANGEBYSCORE + HGETALL);
2. merge it into the partition blobs (an existing blob's rows are kept; a re-read row replaces its copy -- for
   Parquet ``headwater.warm.merge_partition``, the backfiller's merge too) and upload with a content-hash check
   (``BlobStore.put(if_changed=True)``): identical content is not rewritten, so a re-run -- or a run after a
   crash between upload and delete -- writes nothing new;
3. download every partition again and check that each sample/record read in step 1 is there, equal;
   if a single one is missing, **nothing** of that dataset is deleted and the run fails;
4. delete exactly what was verified, key by key with WATCH: a key that changed since step 1 is left alone
   (the next run archives the change);
5. append ``archived`` / ``deleted`` events to the audit log and bump ``headwater_archive_rows_total``.

Reading it back into Redis for replay: ``python -m flows.restore`` (see there).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow.parquet as pq
import redis
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import StandardBlobTier
from prefect import flow, get_run_logger

from flows.context import FlowContext, flow_context
from flows.retry import io_task
from headwater import audit, retention
from headwater.keys import Keys
from headwater.metrics import OUTCOME_HOOKS, count
from headwater.storage.blob import BlobStore
from headwater.warm import BAR_VALUES, bars_partition, merge_partition

log = logging.getLogger("headwater.flows.archive")

DATASETS = ("bars", "signals", "news", "social", "documents")
#: The retention kind (config/retention.yaml) whose hot window applies to each dataset.
KIND_OF_DATASET = {"bars": "bars", "signals": "bars", "news": "news", "social": "social", "documents": "documents"}
COMPACTED_SOURCE = "ticks"  # source name of the bars Redis compacts from the tick series (ts:{T}:bar:...)

#: Row identity within a partition (besides ``ts``), per columnar dataset (``headwater.warm.TABLES``).
ROW_ID = {"bars": ("source",), "signals": ("signal", "source")}

#: The key family (``headwater.keys``) of each posts dataset's per-ticker index.
INDEX_FAMILY = {"news": "news_index", "social": "social_index"}


class ArchiveVerificationError(RuntimeError):
    """What was read from Redis is not all in Blob: nothing of the dataset was deleted."""

    def __init__(self, report: DatasetReport) -> None:
        self.report = report
        super().__init__(f"{report.dataset}: verification failed, nothing deleted: {'; '.join(report.errors[:5])}")


@dataclass
class DatasetReport:
    dataset: str
    cutoff: str = ""
    dry_run: bool = False
    read: int = 0  # samples (bars/signals) or records (news/social) or blobs (documents) older than the cutoff
    partitions: int = 0
    blobs_written: int = 0
    blobs_unchanged: int = 0
    verified: int = 0
    deleted: int = 0
    skipped_changed: int = 0  # keys that changed between read and delete (left for the next run)
    missing: int = 0  # index entries whose hash had already expired
    paths: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wall_clock_ms() -> int:
    """The clock every run measures "older than" against (one seam, so a test can pin the day)."""
    return int(time.time() * 1000)


def build_context(actor: str = "flow:archive") -> FlowContext:
    """The run's ``FlowContext`` (Redis, keys, Blob from the environment's settings) on this module's clock."""
    return flow_context(actor=actor, now_ms=lambda: wall_clock_ms())


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _day(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


# ------------------------------------------------------------------------------------------------------------
# Blob helpers
# ------------------------------------------------------------------------------------------------------------


def _get_or_none(store: BlobStore, container: str, path: str) -> bytes | None:
    try:
        return store.get(container, path)
    except ResourceNotFoundError:
        return None


def _would_change(store: BlobStore, container: str, path: str, data: bytes) -> bool:
    try:
        props = store.service.get_blob_client(container, path).get_blob_properties()
    except ResourceNotFoundError:
        return True
    return props.metadata.get("content_sha256") != hashlib.sha256(data).hexdigest()


def _upload(ctx: FlowContext, report: DatasetReport, path: str, data: bytes, content_type: str, dry_run: bool) -> None:
    report.paths.append(path)
    if dry_run:
        if _would_change(ctx.store, ctx.warm, path, data):
            report.blobs_written += 1
        else:
            report.blobs_unchanged += 1
        return
    result = ctx.store.put(ctx.warm, path, data, content_type=content_type, metadata={"dataset": report.dataset})
    if result.written:
        report.blobs_written += 1
    else:
        report.blobs_unchanged += 1


def _delete_if_unchanged(client: redis.Redis, key: str, read: Callable[[Any], Any], expected: Any,
                         delete: Callable[[Any], None]) -> bool:  # fmt: skip
    """WATCH ``key``; if ``read`` still returns ``expected``, run ``delete`` in MULTI/EXEC. False if it changed."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if read(pipe) != expected:
                pipe.unwatch()
                return False
            pipe.multi()
            delete(pipe)
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def _audit(ctx: FlowContext, report: DatasetReport, cutoff_ms: int) -> None:
    detail = {"cutoff_ms": cutoff_ms, "container": ctx.warm, "partitions": report.partitions,
              "blobs_written": report.blobs_written, "skipped_changed": report.skipped_changed}  # fmt: skip
    pipe = ctx.client.pipeline(transaction=False)
    audit.record(pipe, ctx.keys, "archived", actor=ctx.actor, dataset=report.dataset, count=report.verified, detail=detail)
    count(pipe, ctx.keys, "archive_rows", report.verified, dataset=report.dataset, action="archived")
    if report.deleted:
        audit.record(pipe, ctx.keys, "deleted", actor=ctx.actor, dataset=report.dataset, count=report.deleted,
                     detail={"cutoff_ms": cutoff_ms, "from": "redis"})  # fmt: skip
        count(pipe, ctx.keys, "archive_rows", report.deleted, dataset=report.dataset, action="deleted")
    pipe.execute()


# ------------------------------------------------------------------------------------------------------------
# bars and signals (TimeSeries -> Parquet)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One time series of the columnar datasets and where its samples land."""

    key: str
    dataset: str
    ticker: str
    ident: tuple[str, ...]  # row identity besides ts: (source,) or (signal, source)
    column: str  # the column its values fill
    consts: tuple[tuple[str, str], ...]  # constant columns of its partition (ticker, timeframe)

    def partition(self, ts_ms: int) -> str:
        if self.dataset == "bars":
            return bars_partition(self.ident[0], dict(self.consts)["timeframe"], self.ticker, ts_ms)
        d = _day(ts_ms)
        return f"signals/{self.ticker}/{d:%Y}/{d:%m}.parquet"


def parse_series(key: str, prefix: str) -> Series | None:
    """The columnar-dataset series a TimeSeries key belongs to (None for ticks and unknown keys)."""
    parsed = Keys(prefix).parse(key)
    if parsed is None or parsed.ticker is None:
        return None
    ticker = parsed.ticker
    if parsed.family in ("bar", "provider_bar") and parsed.field in BAR_VALUES:
        source = parsed.source or COMPACTED_SOURCE
        return Series(key, "bars", ticker, (source,), parsed.field, (("ticker", ticker), ("timeframe", str(parsed.timeframe))))
    if parsed.family in ("sentiment", "mentions"):
        return Series(key, "signals", ticker, (parsed.family, str(parsed.source)), "value", (("ticker", ticker),))
    return None


def discover_series(client: redis.Redis, keys: Keys, dataset: str) -> list[Series]:
    found = []
    for raw in client.scan_iter(match=keys.glob_ts(), count=1000, _type="TSDB-TYPE"):
        series = parse_series(_s(raw), keys.prefix)
        if series is not None and series.dataset == dataset:
            found.append(series)
    return sorted(found, key=lambda s: s.key)


def _rows_from_parquet(data: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _row_id(dataset: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return (*(row[c] for c in ROW_ID[dataset]), row["ts"])


def archive_columnar(ctx: FlowContext, dataset: str, cutoff_ms: int, dry_run: bool = False) -> DatasetReport:
    """bars/signals: TS.RANGE older than ``cutoff_ms`` -> Parquet partitions -> verify -> TS.DEL."""
    report = DatasetReport(dataset, _day(cutoff_ms).isoformat(), dry_run)
    series = discover_series(ctx.client, ctx.keys, dataset)
    samples: dict[str, list[list[Any]]] = {}
    for start in range(0, len(series), 200):
        chunk = series[start : start + 200]
        pipe = ctx.client.pipeline(transaction=False)
        for s in chunk:
            pipe.execute_command("TS.RANGE", s.key, "-", cutoff_ms - 1)
        for s, result in zip(chunk, pipe.execute()):
            if result:
                samples[s.key] = [[int(t), float(v)] for t, v in result]
    by_key = {s.key: s for s in series}
    new_rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for key, points in samples.items():
        s = by_key[key]
        report.read += len(points)
        for t, v in points:
            rows = new_rows.setdefault(s.partition(t), {})
            row_id = (*s.ident, t)
            row = rows.get(row_id)
            if row is None:
                row = rows[row_id] = {**dict(s.consts), **dict(zip(ROW_ID[dataset], s.ident)), "ts": t}
            row[s.column] = v
    report.partitions = len(new_rows)
    for path, rows in sorted(new_rows.items()):  # the warm tier's one merge (the backfiller's too)
        report.paths.append(path)
        written = merge_partition(ctx.store, ctx.warm, path, dataset, rows.values(), dry_run=dry_run)
        report.blobs_written += written
        report.blobs_unchanged += not written
    if dry_run or not samples:
        return report
    # Verify: every sample read is in its partition, with the same value.
    stored: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for path in new_rows:
        data = _get_or_none(ctx.store, ctx.warm, path)
        stored[path] = {_row_id(dataset, r): r for r in _rows_from_parquet(data)} if data else {}
    for key, points in samples.items():
        s = by_key[key]
        for t, v in points:
            row = stored[s.partition(t)].get((*s.ident, t))
            if row is None or row.get(s.column) != v:
                found = "missing" if row is None else f"{row.get(s.column)!r} != {v!r}"
                report.errors.append(f"{key} @ {t}: {found} in {s.partition(t)}")
            else:
                report.verified += 1
    if report.errors or report.verified != report.read:
        raise ArchiveVerificationError(report)
    for key, points in samples.items():
        first, last = points[0][0], points[-1][0]
        ok = _delete_if_unchanged(
            ctx.client, key,
            read=lambda p, k=key, a=first, b=last: [[int(t), float(v)] for t, v in p.execute_command("TS.RANGE", k, a, b)],
            expected=points,
            delete=lambda p, k=key, a=first, b=last: p.execute_command("TS.DEL", k, a, b),
        )  # fmt: skip
        if ok:
            report.deleted += len(points)
        else:
            report.skipped_changed += 1
    _audit(ctx, report, cutoff_ms)
    return report


# ------------------------------------------------------------------------------------------------------------
# news and social (hashes + per-ticker index -> JSON lines)
# ------------------------------------------------------------------------------------------------------------


def _record(member: str, ticker: str, ts_ms: int, raw: dict[bytes, bytes]) -> dict[str, Any]:
    fields: dict[str, str] = {}
    binary: dict[str, str] = {}
    for k, v in raw.items():
        try:
            fields[k.decode()] = v.decode()
        except UnicodeDecodeError:
            binary[k.decode(errors="replace")] = base64.b64encode(v).decode()
    rec: dict[str, Any] = {"id": member, "ticker": ticker, "ts_ms": ts_ms, "fields": fields}
    if binary:
        rec["fields_b64"] = binary
    return rec


def record_to_hash(rec: dict[str, Any]) -> dict[bytes, bytes]:
    """The Redis hash a JSON-lines record was made from (inverse of the archive encoding)."""
    out = {k.encode(): v.encode() for k, v in rec["fields"].items()}
    out.update({k.encode(): base64.b64decode(v) for k, v in (rec.get("fields_b64") or {}).items()})
    return out


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)


def _records_from_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def posts_partition(dataset: str, ticker: str, ts_ms: int) -> str:
    return f"{dataset}/{ticker}/{_day(ts_ms):%Y-%m-%d}.jsonl"


def archive_posts(ctx: FlowContext, dataset: str, cutoff_ms: int, dry_run: bool = False) -> DatasetReport:
    """news/social: index entries older than ``cutoff_ms`` and their hashes -> JSON lines -> verify -> delete."""
    report = DatasetReport(dataset, _day(cutoff_ms).isoformat(), dry_run)
    hash_key = ctx.keys.article if dataset == "news" else ctx.keys.post
    indexes: list[tuple[str, str]] = []
    family = INDEX_FAMILY[dataset]
    for raw in ctx.client.scan_iter(match=ctx.keys.glob_family(family), count=1000):
        key = _s(raw)
        parsed = ctx.keys.parse(key)
        if parsed is not None and parsed.family == family and parsed.ticker is not None:
            indexes.append((key, parsed.ticker))
    entries: list[tuple[str, str, str, int]] = []  # (index key, ticker, member, score)
    for index, ticker in sorted(indexes):
        for member, score in ctx.client.zrangebyscore(index, "-inf", f"({cutoff_ms}", withscores=True):
            entries.append((index, ticker, _s(member), int(score)))
    hashes: dict[str, dict[bytes, bytes]] = {}
    members = sorted({m for _, _, m, _ in entries})
    for start in range(0, len(members), 500):
        pipe = ctx.client.pipeline(transaction=False)
        for m in members[start : start + 500]:
            pipe.hgetall(hash_key(m))
        for m, fields in zip(members[start : start + 500], pipe.execute()):
            if fields:
                hashes[m] = fields
    new_records: dict[str, dict[str, dict[str, Any]]] = {}
    for _, ticker, member, score in entries:
        if member not in hashes:
            report.missing += 1
            continue
        report.read += 1
        new_records.setdefault(posts_partition(dataset, ticker, score), {})[member] = _record(member, ticker, score, hashes[member])
    report.partitions = len(new_records)
    for path, records in sorted(new_records.items()):
        existing = _get_or_none(ctx.store, ctx.warm, path)
        merged = {r["id"]: r for r in (_records_from_jsonl(existing) if existing else [])}
        merged.update(records)
        ordered = sorted(merged.values(), key=lambda r: (r["ts_ms"], r["id"]))
        _upload(ctx, report, path, _jsonl(ordered), "application/x-ndjson", dry_run)
    if dry_run or not entries:
        return report
    for path, records in new_records.items():
        data = _get_or_none(ctx.store, ctx.warm, path)
        stored = {r["id"]: r for r in _records_from_jsonl(data)} if data else {}
        for member, rec in records.items():
            if stored.get(member) != rec:
                report.errors.append(f"{member}: {'missing' if member not in stored else 'differs'} in {path}")
            else:
                report.verified += 1
    if report.errors or report.verified != report.read:
        raise ArchiveVerificationError(report)
    deleted_hashes: set[str] = set()
    changed: set[str] = set()
    for member, fields in hashes.items():
        key = hash_key(member)
        if _delete_if_unchanged(ctx.client, key, read=lambda p, k=key: p.hgetall(k), expected=fields,
                                delete=lambda p, k=key: p.delete(k)):  # fmt: skip
            deleted_hashes.add(member)
        else:
            changed.add(member)
    report.skipped_changed = len(changed)
    pipe = ctx.client.pipeline(transaction=False)
    for index, _, member, _ in entries:
        if member not in changed:  # archived and deleted, or its hash had already expired
            pipe.zrem(index, member)
    pipe.execute()
    report.deleted = sum(1 for _, _, m, _ in entries if m in deleted_hashes)
    _audit(ctx, report, cutoff_ms)
    return report


# ------------------------------------------------------------------------------------------------------------
# raw documents (Blob Hot -> Cool)
# ------------------------------------------------------------------------------------------------------------


def archive_documents(ctx: FlowContext, cutoff_ms: int, dry_run: bool = False) -> DatasetReport:
    """Raw filings/transcripts last written before ``cutoff_ms`` move from the Hot to the Cool tier."""
    report = DatasetReport("documents", _day(cutoff_ms).isoformat(), dry_run)
    container = ctx.store.settings.raw_container
    cutoff = _day(cutoff_ms)
    try:
        blobs = list(ctx.store.service.get_container_client(container).list_blobs())
    except ResourceNotFoundError:
        return report
    for blob in blobs:
        if blob.last_modified >= cutoff:
            continue
        report.read += 1
        if (blob.blob_tier or "Hot") != "Hot":
            report.blobs_unchanged += 1
            continue
        report.paths.append(blob.name)
        if not dry_run:
            ctx.store.set_tier(container, blob.name, StandardBlobTier.COOL)
        report.blobs_written += 1
    report.verified = report.blobs_written
    if report.blobs_written and not dry_run:
        audit.record(ctx.client, ctx.keys, "archived", actor=ctx.actor, dataset="documents", count=report.blobs_written,
                     detail={"container": container, "tier": "Cool", "cutoff_ms": cutoff_ms})  # fmt: skip
    return report


def archive_dataset(ctx: FlowContext, dataset: str, older_than_days: float | None = None, dry_run: bool = False) -> DatasetReport:
    """Archive one dataset (see the module doc); raises ``ArchiveVerificationError`` when nothing may be deleted."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    kind = KIND_OF_DATASET[dataset]
    if older_than_days is not None and older_than_days < retention.hot_days(kind):
        log.warning("%s: archiving inside the hot window (%g d < %g d)", dataset, older_than_days, retention.hot_days(kind))
    cutoff_ms = retention.cutoff_ms(kind, ctx.now_ms(), older_than_days)
    if dataset in ("bars", "signals"):
        return archive_columnar(ctx, dataset, cutoff_ms, dry_run)
    if dataset in ("news", "social"):
        return archive_posts(ctx, dataset, cutoff_ms, dry_run)
    return archive_documents(ctx, cutoff_ms, dry_run)


# ------------------------------------------------------------------------------------------------------------
# Prefect
# ------------------------------------------------------------------------------------------------------------


@io_task(retry_delay_seconds=[10, 60])  # Redis/Blob hiccups; never a failed verification (it would fail again)
def archive_dataset_task(ctx: FlowContext, dataset: str, older_than_days: float | None, dry_run: bool) -> dict[str, Any]:
    """Archive one dataset (idempotent: a retry re-verifies and writes nothing twice)."""
    return archive_dataset(ctx, dataset, older_than_days, dry_run).as_dict()


@flow(name="archive", **OUTCOME_HOOKS)
def archive(older_than_days: float | None = None, datasets: list[str] | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Move data past its hot window from Redis to warm Blob; every dataset runs even if another one fails."""
    logger = get_run_logger()
    results: dict[str, Any] = {}
    failed = []
    with build_context() as ctx:
        for dataset in datasets or list(DATASETS):
            state = archive_dataset_task(ctx, dataset, older_than_days, dry_run, return_state=True)
            if state.is_completed():
                results[dataset] = state.result()
                r = results[dataset]
                logger.info("%s: %d read, %d partitions (%d written, %d unchanged), %d verified, %d deleted, "
                            "%d changed meanwhile", dataset, r["read"], r["partitions"], r["blobs_written"],
                            r["blobs_unchanged"], r["verified"], r["deleted"], r["skipped_changed"])  # fmt: skip
            else:
                failed.append(dataset)
                results[dataset] = {"error": state.message}
    if failed:
        raise RuntimeError(f"archive failed for {', '.join(failed)}: {results}")
    return results


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than-days", type=float, default=None,
                        help="archive data older than this (default: each kind's hot days, config/retention.yaml)")  # fmt: skip
    parser.add_argument("--dataset", action="append", dest="datasets", choices=DATASETS, help="repeatable (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="read and report; write and delete nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-prefect", action="store_true", help="run without the Prefect flow (no API needed)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.no_prefect:
        ctx = build_context("cli:archive")
        results: dict[str, Any] = {}
        status = 0
        for dataset in args.datasets or DATASETS:
            try:
                results[dataset] = archive_dataset(ctx, dataset, args.older_than_days, args.dry_run).as_dict()
            except ArchiveVerificationError as exc:
                results[dataset] = exc.report.as_dict()
                status = 1
    else:
        try:
            results, status = archive(args.older_than_days, args.datasets, args.dry_run), 0
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(orjson.dumps(results).decode())
    else:
        for dataset, r in results.items():
            if "read" not in r:
                print(f"{dataset}: {r}")
                continue
            print(f"{dataset:<9} {'(dry run) ' if r['dry_run'] else ''}before {r['cutoff'][:10]}: {r['read']} read, "
                  f"{r['partitions']} partitions ({r['blobs_written']} {'to write' if r['dry_run'] else 'written'}, "
                  f"{r['blobs_unchanged']} unchanged), {r['verified']} verified, {r['deleted']} deleted"
                  + (f", {r['skipped_changed']} changed meanwhile" if r["skipped_changed"] else "")
                  + (f"; ERRORS: {r['errors'][:3]}" if r["errors"] else ""))  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
