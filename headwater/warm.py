"""The warm tier's layout of market bars: where a bar's Parquet partition lives and what columns it has.

One definition for everything that writes or reads them -- the archive flow (Redis -> Blob), the historical
backfiller (history older than the hot window) and the restore flow (Blob -> Redis)::

    bars/{source}/{timeframe}/{TICKER}/{YYYY}/{MM}.parquet   columns ticker, timeframe, source, ts (epoch ms UTC),
                                                             open, high, low, close, volume, vwap (nullable)

The month is the New York session month for intraday bars (a bar at 23:30 New York on the 31st belongs to that
month even though it is the 1st in UTC) and the UTC month for daily bars, which are stamped at 00:00 UTC of the
session date.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from headwater.keys import AGG_FIELDS
from headwater.timeframes import NEW_YORK, NEW_YORK_TZ

BAR_VALUES = AGG_FIELDS  # the value columns: every field of a provider's bar
BAR_COLUMNS = ["ticker", "timeframe", "source", "ts", *BAR_VALUES]
BAR_SCHEMA = pa.schema([("ticker", pa.string()), ("timeframe", pa.string()), ("source", pa.string()),
                        ("ts", pa.int64())] + [(c, pa.float64()) for c in BAR_VALUES])  # fmt: skip


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
