"""The warm tier's columnar layout: where a Parquet partition lives, what columns it has, how rows merge into it.

One definition for everything that writes or reads them -- the archive flow (Redis -> Blob), the historical
backfiller (history older than the hot window) and the restore flow (Blob -> Redis)::

    bars/{source}/{timeframe}/{TICKER}/{YYYY}/{MM}.parquet   columns ticker, timeframe, source, ts (epoch ms UTC),
                                                             open, high, low, close, volume, vwap (nullable)
    signals/{TICKER}/{YYYY}/{MM}.parquet                     columns ticker, signal, source, ts, value

The month of a bar is the New York session month for intraday bars (a bar at 23:30 New York on the 31st belongs
to that month even though it is the 1st in UTC) and the UTC month for daily bars, which are stamped at 00:00 UTC
of the session date.

Every write goes through ``merge_partition``: the partition's stored rows are kept, a row given again (same
identity: ``source, ts`` for bars, ``signal, source, ts`` for signals) takes the new non-null values, rows are
sorted by identity, and the blob is uploaded only when its bytes change -- so a re-run, or the archive flow
passing over what the backfiller wrote, writes nothing new.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import ResourceNotFoundError

from headwater.keys import AGG_FIELDS
from headwater.storage.blob import BlobStore
from headwater.timeframes import NEW_YORK, NEW_YORK_TZ

BAR_VALUES = AGG_FIELDS  # the value columns: every field of a provider's bar
BAR_COLUMNS = ["ticker", "timeframe", "source", "ts", *BAR_VALUES]
BAR_SCHEMA = pa.schema([("ticker", pa.string()), ("timeframe", pa.string()), ("source", pa.string()),
                        ("ts", pa.int64())] + [(c, pa.float64()) for c in BAR_VALUES])  # fmt: skip
SIGNAL_SCHEMA = pa.schema([("ticker", pa.string()), ("signal", pa.string()), ("source", pa.string()),
                           ("ts", pa.int64()), ("value", pa.float64())])  # fmt: skip
#: Per columnar dataset: its schema and the identity of a row within a partition.
TABLES: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "bars": (BAR_SCHEMA, ("source", "ts")),
    "signals": (SIGNAL_SCHEMA, ("signal", "source", "ts")),
}
PARQUET = "application/vnd.apache.parquet"


def is_daily(timeframe: str) -> bool:
    return timeframe.endswith("d")


def bars_path(source: str, timeframe: str, ticker: str, month: str) -> str:
    """The partition of ``month`` (``YYYY/MM``)."""
    return f"bars/{source}/{timeframe}/{ticker}/{month}.parquet"


def bars_partition(source: str, timeframe: str, ticker: str, ts_ms: int) -> str:
    """The partition holding the bar that starts at ``ts_ms``."""
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    if not is_daily(timeframe):
        moment = moment.astimezone(NEW_YORK)
    return bars_path(source, timeframe, ticker, f"{moment:%Y/%m}")


def session_months(frame: pd.DataFrame) -> pd.Series:
    """``YYYY/MM`` of each bar of a frame (columns ``ts``, ``timeframe``), as ``bars_partition`` files it."""
    utc = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    local = utc.dt.tz_convert(NEW_YORK_TZ)  # the tz name: pandas' fast path
    labels = frame["timeframe"].astype(str)
    daily = labels.isin([tf for tf in labels.unique() if is_daily(tf)])
    return local.dt.strftime("%Y/%m").where(~daily, utc.dt.strftime("%Y/%m"))


# -- merge and write ---------------------------------------------------------------------------------------------
def merged_parquet(dataset: str, existing: bytes | None, rows: pd.DataFrame) -> tuple[bytes, int]:
    """The partition's new bytes and row count: ``existing`` with ``rows`` merged in (see the module doc)."""
    schema, ids = TABLES[dataset]
    names, by = list(schema.names), list(ids)
    merged = rows.reindex(columns=names).drop_duplicates(subset=by, keep="last")
    if existing:
        stored = pq.read_table(io.BytesIO(existing)).to_pandas().reindex(columns=names)
        merged = merged.set_index(by).combine_first(stored.set_index(by)).reset_index()
    merged = merged.sort_values(by, kind="stable").reindex(columns=names).reset_index(drop=True)
    table = pa.Table.from_pandas(merged, schema=schema, preserve_index=False).replace_schema_metadata(None)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue(), len(merged)


def merge_partition(store: BlobStore, container: str, path: str, dataset: str,
                    rows: pd.DataFrame | Iterable[Mapping[str, Any]], *, dry_run: bool = False) -> bool:  # fmt: skip
    """Merge ``rows`` into the Parquet partition ``path``; upload only if its bytes change. Returns whether they do
    (with ``dry_run`` nothing is uploaded)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    data, count = merged_parquet(dataset, _read_or_none(store, container, path), frame)
    digest = hashlib.sha256(data).hexdigest()
    if dry_run:
        return _stored_hash(store, container, path) != digest
    metadata = {"dataset": dataset, "rows": str(count)}
    for column in ("ticker", "timeframe", "source"):
        if column in frame.columns and frame[column].nunique() == 1:
            metadata[column] = str(frame[column].iloc[0])
    return store.put(container, path, data, content_type=PARQUET, metadata=metadata).written


def write_bars(store: BlobStore, container: str, frame: pd.DataFrame, *, dry_run: bool = False) -> dict[str, bool]:
    """Merge bars (``BAR_COLUMNS``, any tickers/timeframes/months) into their monthly partitions; per path,
    whether it was (or with ``dry_run`` would be) written."""
    if frame.empty:
        return {}
    frame = frame.reindex(columns=BAR_COLUMNS).assign(_month=session_months(frame))
    out = {}
    for (source, timeframe, ticker, month), part in frame.groupby(["source", "timeframe", "ticker", "_month"]):
        path = bars_path(source, timeframe, ticker, month)
        out[path] = merge_partition(store, container, path, "bars", part[BAR_COLUMNS], dry_run=dry_run)
    return out


def _read_or_none(store: BlobStore, container: str, path: str) -> bytes | None:
    try:
        return store.get(container, path)
    except ResourceNotFoundError:
        return None


def _stored_hash(store: BlobStore, container: str, path: str) -> str | None:
    try:
        return store.service.get_blob_client(container, path).get_blob_properties().metadata.get("content_sha256")
    except ResourceNotFoundError:
        return None
