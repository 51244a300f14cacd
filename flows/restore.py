"""Reload a date range from warm storage (the archive flow's Parquet/JSON lines) into Redis, for replay.

    python -m flows.restore --dataset bars --ticker AAPL --from 2024-01-01 --to 2024-03-31 [--timeframe 1d]
                            [--into replay|live] [--ttl-days 7] [--json]

``--from``/``--to`` are inclusive UTC dates. Datasets: ``bars`` (every timeframe unless ``--timeframe``),
``signals``, ``news``, ``social`` -- the layouts are in ``flows/archive.py``.

Where it goes. By default into a separate **replay namespace**: the same key schema under the extra prefix
``replay:`` (after ``HEADWATER_REDIS_KEY_PREFIX``), e.g. ``replay:ts:{AAPL}:bar:1d:close``,
``replay:news:{ID}``. Read it with ``Keys(prefix + "replay:")``, or run any process with
``HEADWATER_REDIS_KEY_PREFIX=<prefix>replay:`` to point it at the replayed data (e.g. a backtest of the
feature engineer). Why not the live keys:

* a TimeSeries RETENTION is measured from the series' **newest** sample: a live series holding today's bars
  rejects anything older than its retention (97 days for bars), so most historical ranges would not load;
* replayed history must not mix with live data that features and agents read as "now" (last values,
  compactions), and it must be removable without touching live keys.

Replay series are created with RETENTION 0 (keep everything; the range is what you asked for), the LAST
duplicate policy, the live labels plus ``replay=1`` (live label queries add ``replay=`` to exclude them) and a
key TTL of ``--ttl-days`` (default 7), so replays clean themselves up. ``--into live`` writes into the live keys
instead (only sensible within the live retention, e.g. after an accidental deletion): samples TimeSeries
rejects are counted and make the command exit 1.

Idempotent: series use the LAST policy and hashes are replaced whole (DEL + HSET), so running it twice gives
the same Redis contents. Each run appends a ``restored`` event to the audit log.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow.parquet as pq
import redis
from azure.core.exceptions import HttpResponseError

from flows.archive import COMPACTED_SOURCE, record_to_hash
from headwater import audit, retention
from headwater.keys import Keys, check_ticker
from headwater.storage.blob import BlobStore
from headwater.storage.timeseries import ensure_series
from headwater.timeframes import DAY_S, TIMEFRAMES
from headwater.warm import BAR_VALUES

DATASETS = ("bars", "signals", "news", "social")
MADD_CHUNK = 5_000


class RestoreError(RuntimeError):
    pass


@dataclass
class RestoreReport:
    dataset: str
    ticker: str
    start: str
    end: str
    into: str
    blobs: list[str] = field(default_factory=list)
    rows: int = 0  # samples (bars/signals) or records (news/social) written
    keys: int = 0
    rejected: int = 0
    verified: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_keys(live: Keys, into: str) -> Keys:
    """The namespace a restore writes into: ``replay:`` under the live prefix, or the live one."""
    if into == "live":
        return live
    if into == "replay":
        return live.replay()
    raise ValueError(f"--into must be 'replay' or 'live', not {into!r}")


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def _months(start: date, end: date) -> set[tuple[int, int]]:
    out, y, m = set(), start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.add((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _read(store: BlobStore, container: str, path: str) -> bytes:
    try:
        return store.get(container, path)
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) == "BlobArchived":
            raise RestoreError(f"{container}/{path} is in the Archive tier; rehydrate it first: "
                               f"python -m flows.cold_storage rehydrate --container {container} {path}") from exc  # fmt: skip
        raise


def _series_key(keys: Keys, dataset: str, ticker: str, row: dict[str, Any], column: str, timeframe: str = "") -> str:
    if dataset == "signals":
        builder = keys.sentiment if row["signal"] == "sentiment" else keys.mentions
        return builder(ticker, row["source"])
    if row["source"] == COMPACTED_SOURCE:
        return keys.bar(ticker, timeframe, column)
    return keys.provider_bar(ticker, row["source"], timeframe, column)


def _restore_columnar(client: redis.Redis, target: Keys, store: BlobStore, report: RestoreReport, timeframe: str | None,
                      replay: bool, ttl_s: int) -> None:  # fmt: skip
    container = store.settings.warm_container
    start, end = date.fromisoformat(report.start), date.fromisoformat(report.end)
    start_ms, end_ms = _ms(start), _ms(end + timedelta(days=1))
    # Intraday partitions are New York session months: read the neighbouring months too, filter on ts below.
    months = _months(start - timedelta(days=1), end + timedelta(days=1))
    if report.dataset == "bars":
        sources = [p.name.split("/")[1] for p in store.service.get_container_client(container).walk_blobs("bars/", delimiter="/")]
        prefixes = [(tf, f"bars/{src}/{tf}/{report.ticker}/") for src in sorted(sources)
                    for tf in ([timeframe] if timeframe else TIMEFRAMES)]  # fmt: skip
    else:
        prefixes = [("", f"signals/{report.ticker}/")]
    samples: dict[str, list[tuple[int, float]]] = defaultdict(list)
    labels: dict[str, dict[str, str]] = {}
    for tf, prefix in prefixes:
        for path in sorted(store.list(container, prefix)):
            parts = path[len(prefix) :].removesuffix(".parquet").split("/")
            if len(parts) != 2 or (int(parts[0]), int(parts[1])) not in months:
                continue
            report.blobs.append(path)
            for row in pq.read_table(io.BytesIO(_read(store, container, path))).to_pylist():
                if not start_ms <= row["ts"] < end_ms:
                    continue
                for column in BAR_VALUES if report.dataset == "bars" else ("value",):
                    if row.get(column) is None:
                        continue
                    key = _series_key(target, report.dataset, report.ticker, row, column, tf)
                    samples[key].append((row["ts"], row[column]))
                    if key not in labels:
                        labels[key] = {"ticker": report.ticker, "source": row["source"]}
                        if report.dataset == "bars":
                            labels[key].update(field=column, kind="bar", timeframe=tf)
                        else:
                            labels[key].update(field=row["signal"], kind="signal")
    kind = "bars"
    for key, label_set in labels.items():
        if replay:
            ensure_series(client, key, 0, {**label_set, "replay": "1"})
        else:
            ensure_series(client, key, retention.retention_ms(kind), label_set)
    flat = [(key, t, v) for key, points in samples.items() for t, v in points]
    for i in range(0, len(flat), MADD_CHUNK):
        args: list[Any] = ["TS.MADD"]
        for key, t, v in flat[i : i + MADD_CHUNK]:
            args += [key, t, v]
        for reply in client.execute_command(*args):
            if not isinstance(reply, int):
                report.rejected += 1
                if len(report.errors) < 5:
                    report.errors.append(str(reply))
    report.rows, report.keys = len(flat) - report.rejected, len(samples)
    pipe = client.pipeline(transaction=False)
    for key, points in samples.items():
        if replay:
            pipe.expire(key, ttl_s)
        pipe.execute_command("TS.RANGE", key, start_ms, end_ms - 1)
    results = [r for r in pipe.execute() if isinstance(r, list)]
    for (key, points), stored in zip(samples.items(), results):
        wanted = dict(points)
        report.verified += sum(1 for t, v in stored if wanted.get(int(t)) == float(v))


def _restore_posts(client: redis.Redis, target: Keys, store: BlobStore, report: RestoreReport, replay: bool, ttl_s: int) -> None:
    container = store.settings.warm_container
    start, end = date.fromisoformat(report.start), date.fromisoformat(report.end)
    prefix = f"{report.dataset}/{report.ticker}/"
    hash_key = target.article if report.dataset == "news" else target.post
    index = target.news_index(report.ticker) if report.dataset == "news" else target.social_index(report.ticker)
    ttl = ttl_s if replay else retention.ttl_seconds(report.dataset)
    written: dict[str, dict[bytes, bytes]] = {}
    for path in sorted(store.list(container, prefix)):
        try:
            day = date.fromisoformat(path[len(prefix) :].removesuffix(".jsonl"))
        except ValueError:
            continue
        if not start <= day <= end:
            continue
        report.blobs.append(path)
        pipe = client.pipeline(transaction=False)  # article keys live on many cluster slots
        for line in _read(store, container, path).splitlines():
            if not line.strip():
                continue
            rec = orjson.loads(line)
            fields = record_to_hash(rec)
            key = hash_key(rec["id"])
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, ttl)
            pipe.zadd(index, {rec["id"]: rec["ts_ms"]})
            written[key] = fields
        pipe.expire(index, ttl)
        pipe.execute()
    report.rows = report.keys = len(written)
    pipe = client.pipeline(transaction=False)
    for key in written:
        pipe.hgetall(key)
    report.verified = sum(1 for (key, fields), stored in zip(written.items(), pipe.execute()) if stored == fields)


def restore(client: redis.Redis, live: Keys, store: BlobStore, dataset: str, ticker: str, start: date, end: date, *,
            timeframe: str | None = None, into: str = "replay", ttl_days: float = 7.0,
            actor: str = "cli:restore") -> RestoreReport:  # fmt: skip
    """Reload ``dataset`` of ``ticker`` for the UTC days ``start``..``end`` (inclusive) into ``into``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    check_ticker(ticker)
    target = target_keys(live, into)
    report = RestoreReport(dataset, ticker, start.isoformat(), end.isoformat(), target.prefix or "(live)")
    replay, ttl_s = into == "replay", int(ttl_days * DAY_S)
    if dataset in ("bars", "signals"):
        _restore_columnar(client, target, store, report, timeframe, replay, ttl_s)
    else:
        _restore_posts(client, target, store, report, replay, ttl_s)
    if report.verified != report.rows:
        report.errors.append(f"verified {report.verified} of {report.rows} written")
    audit.record(client, live, "restored", actor=actor, dataset=dataset, count=report.rows,
                 detail={"ticker": ticker, "from": report.start, "to": report.end, "into": report.into,
                         "blobs": len(report.blobs), "rejected": report.rejected})  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--ticker", required=True, type=str.upper)
    parser.add_argument("--from", dest="start", required=True, type=date.fromisoformat, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", required=True, type=date.fromisoformat, help="last UTC day (inclusive)")
    parser.add_argument("--timeframe", choices=tuple(TIMEFRAMES), help="bars only (default: every timeframe archived)")
    parser.add_argument("--into", choices=("replay", "live"), default="replay",
                        help="replay namespace (default) or the live keys (see the module doc)")  # fmt: skip
    parser.add_argument("--ttl-days", type=float, default=7.0, help="TTL of replayed keys")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from headwater.log import setup_logging
    from headwater.settings import Settings
    from headwater.storage.redis import connect

    setup_logging()
    settings = Settings()
    try:
        report = restore(connect(settings.redis), Keys(settings.redis.key_prefix), BlobStore(settings.blob), args.dataset,
                         args.ticker, args.start, args.end, timeframe=args.timeframe, into=args.into,
                         ttl_days=args.ttl_days)  # fmt: skip
    except RestoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(report.as_dict()).decode())
    else:
        print(f"{report.dataset} {report.ticker} {report.start}..{report.end} -> {report.into}: {report.rows} rows into "
              f"{report.keys} keys from {len(report.blobs)} blobs, {report.verified} verified, {report.rejected} rejected"
              + (f"; {report.errors}" if report.errors else ""))  # fmt: skip
    return 1 if report.errors or report.rejected else 0


if __name__ == "__main__":
    sys.exit(main())
