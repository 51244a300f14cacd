"""On-demand history load: daily and 1-minute bars from Alpha Vantage -> GX ``bars`` gate -> hot or warm storage.

    python flows/historical_data_backfiller.py --tickers-file config/tickers.txt --years 2 --parallel 10

**Units of work.** Per ticker one *daily* unit (``TIME_SERIES_DAILY``, full history cut to ``--years``) and one
*intraday* unit per New York calendar month (``TIME_SERIES_INTRADAY&interval=1min&month=YYYY-MM``), the current
month included (``--intraday-months``, default ``ceil(12 * years)``; ``--no-intraday`` / ``--no-daily`` skip a kind),
oldest month first, round-robin over the tickers. Up to ``--parallel`` units are fetched at a time (Prefect task
runner threads); every request still passes the shared Alpha Vantage quota (``config/data_sources.yaml``), so ten
workers on ten machines cannot exceed it together. A ticker's units are stored one at a time, in that order
(``TickerOrder``: RedisTimeSeries appends fast and inserts behind a series' newest sample slowly).

**Hot or warm.** A TimeSeries refuses samples older than its retention, so each validated unit is split at
``now - retention + 1 day`` (the "bars" kind of ``config/retention.yaml``: hot days + archive grace, 97 days by
default): newer bars go to ``ts:{T}:agg:alphavantage:{1m,1d}:{field}`` with TS.MADD (LAST policy: idempotent);
older ones -- and any sample Redis still refuses -- to Parquet in the warm container
(``HEADWATER_BLOB_WARM_CONTAINER``, default ``warm``), in the warm layout of bars (``headwater.warm``, which
the archive and restore flows use too)::

    bars/alphavantage/{1m|1d}/{TICKER}/{YYYY}/{MM}.parquet   columns ticker, timeframe, source, ts (epoch ms UTC),
                                                             open, high, low, close, volume, vwap (null here);
                                                             sorted by ts

(the month is the New York session month for intraday bars, the UTC month for daily bars, so one intraday unit
writes exactly one file). A partition is merged with what is already there (``headwater.warm.merge_partition``,
the archive flow's merge too: same ``ts`` -> the new values win) and uploaded only when its bytes change, so
re-runs are idempotent; ``python -m flows.restore`` can load it back.

``--end-date YYYY-MM-DD`` (default: today in New York) loads the history that ends that day instead.

**Resumable.** After a unit is stored its checkpoint is written (``checkpoint:backfill:{T}``, a hash: field ``1d``
or ``1m:YYYY-MM`` -> JSON counts). A re-run skips finished units: past months for good, the daily unit for the
rest of the (New York) day; the current month is always fetched again. An interrupted run (Ctrl-C, a crash, a
spent daily budget) therefore resumes where it stopped. A spent budget ends the run cleanly with
``stopped_reason``; units not started are reported as skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


import pandas as pd
from prefect import flow
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm import tqdm

from flows import common
from flows.context import FlowContext, flow_context
from flows.gate import gate_parts
from flows.retry import io_task
from headwater import warm
from headwater.metrics import OUTCOME_HOOKS
from headwater.storage.timeseries import bar_retention_ms, bars_to_rows, write_bars
from headwater.timeframes import DAY_MS, NEW_YORK

FLOW = "historical_data_backfiller"
JOB = "backfill"
HOT_MARGIN_MS = DAY_MS  # keep clear of the retention edge: Redis measures it from the series' newest sample


@dataclass(frozen=True)
class Unit:
    """One request's worth of history: a ticker's daily series, or one month of its 1-minute bars."""

    ticker: str
    timeframe: str  # "1d" or "1m"
    month: str | None = None  # YYYY-MM (New York) for intraday units

    @property
    def field(self) -> str:
        """The unit's field in ``checkpoint:backfill:{T}``."""
        return self.timeframe if self.month is None else f"{self.timeframe}:{self.month}"

    def __str__(self) -> str:
        return f"{self.ticker} {self.field}"


def today_new_york(now: float | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, NEW_YORK).date()


def months_back(today: dt.date, count: int) -> list[str]:
    """``count`` calendar months ending with ``today``'s, newest first (``YYYY-MM``)."""
    index = today.year * 12 + today.month - 1
    return [f"{(index - i) // 12:04d}-{(index - i) % 12 + 1:02d}" for i in range(count)]


def plan(tickers: list[str], intraday_months: int, today: dt.date, daily: bool = True) -> list[Unit]:
    """Every unit of the backfill: months oldest first, round-robin over the tickers (a ticker's daily unit goes
    with its first month) -- units fetched together are different tickers', and each ticker's come in time order."""
    months = months_back(today, intraday_months)[::-1]
    units: list[Unit] = [Unit(ticker, "1d") for ticker in tickers] if daily and not months else []
    for i, month in enumerate(months):
        for ticker in tickers:
            if i == 0 and daily:
                units.append(Unit(ticker, "1d"))
            units.append(Unit(ticker, "1m", month))
    return units


class TickerOrder:
    """Releases validated units for storing one ticker at a time, in plan order.

    RedisTimeSeries appends fast but inserts behind a series' newest sample slowly (the chunk is decompressed and
    rewritten): measured here, writing 8 tickers' February after their March took 33 s against 3 s in time order.
    So a ticker's units are stored in plan order (oldest first) and never two at once; different tickers' units
    are stored in parallel.
    """

    def __init__(self, units: list[Unit]) -> None:
        self._order: dict[str, deque[Unit]] = {}
        for unit in units:
            self._order.setdefault(unit.ticker, deque()).append(unit)
        self._held: dict[Unit, tuple[Any, ...]] = {}
        self._busy: set[str] = set()

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, unit: Unit, payload: tuple[Any, ...]) -> None:
        self._held[unit] = payload

    def drop(self, unit: Unit) -> None:
        """A unit that will not be stored (its fetch failed, or the run stopped before it)."""
        self._order[unit.ticker].remove(unit)

    def stored(self, unit: Unit) -> None:
        """The ticker's store in flight ended (either way): its next unit may go."""
        self._busy.discard(unit.ticker)
        self._order[unit.ticker].remove(unit)

    def releasable(self) -> list[tuple[Unit, tuple[Any, ...]]]:
        out = []
        for ticker, units in self._order.items():
            if ticker not in self._busy and units and units[0] in self._held:
                out.append((units[0], self._held.pop(units[0])))
                self._busy.add(ticker)
        return out


def is_done(unit: Unit, record: dict[str, Any] | None, today: dt.date) -> bool:
    """Whether a checkpoint record means the unit needs no fetch: past months always, daily for the day."""
    if not record:
        return False
    if unit.month is not None:
        return unit.month < today.strftime("%Y-%m")
    return record.get("as_of") == today.isoformat()


@io_task()
def pending_units(ctx: FlowContext, units: list[Unit], today: dt.date) -> tuple[list[Unit], int]:
    """Read the checkpoints: the units still to do, and how many are done already."""
    client, k = ctx.client, ctx.keys
    tickers = list(dict.fromkeys(u.ticker for u in units))
    pipe = client.pipeline(transaction=False)
    for ticker in tickers:
        pipe.hgetall(k.checkpoint(JOB, ticker))
    records = {t: {f.decode(): json.loads(v) for f, v in r.items()} for t, r in zip(tickers, pipe.execute())}
    todo = [u for u in units if not is_done(u, records[u.ticker].get(u.field), today)]
    return todo, len(units) - len(todo)


# -- tasks -----------------------------------------------------------------------------------------------------
@io_task()
def fetch_history(ctx: FlowContext, unit: Unit, since_ms: int, extended_hours: bool = True) -> pd.DataFrame:
    """Fetch one unit of history from Alpha Vantage (a ticker's daily series, or one month of 1-minute bars)."""
    client = ctx.provider("alphavantage")
    if unit.month is None:
        frame = client.daily(unit.ticker, outputsize="full")
        return frame[frame["ts"] >= since_ms].reset_index(drop=True)
    return client.intraday(unit.ticker, interval="1min", outputsize="full", month=unit.month,
                           extended_hours=extended_hours)  # fmt: skip


@io_task()
def commit_history(ctx: FlowContext, unit: Unit, good: pd.DataFrame, fetched: int, quarantined: int) -> dict[str, int]:
    """Store a validated unit (hot window -> RedisTimeSeries, older -> Parquet in Blob), then checkpoint it."""
    cutoff = int(time.time() * 1000) - bar_retention_ms(unit.timeframe) + HOT_MARGIN_MS
    hot, old = good[good["ts"] >= cutoff], good[good["ts"] < cutoff]
    started = time.perf_counter()
    written = write_bars(ctx.layout, hot)
    store_ms = int((time.perf_counter() - started) * 1000)
    if written.rejected is not None:
        old = pd.concat([old, written.rejected])
    if len(old):
        warm.write_bars(ctx.store, ctx.warm, old)
    counts = {"fetched": fetched, "validated": len(good), "quarantined": quarantined, "hot": written.written,
              "warm": len(old), "hot_write_ms": store_ms}  # fmt: skip
    record = {**counts, "as_of": today_new_york().isoformat(), "at": int(time.time())}
    ctx.client.hset(ctx.keys.checkpoint(JOB, unit.ticker), unit.field, json.dumps(record))
    return counts


# -- the flow --------------------------------------------------------------------------------------------------
def _finished(future: Any) -> bool:
    """Whether a task runner future is done, without asking the Prefect API."""
    wrapped = getattr(future, "wrapped_future", None)
    return bool(wrapped is not None and wrapped.done())


@flow(name=FLOW, task_runner=ThreadPoolTaskRunner(max_workers=16), **OUTCOME_HOOKS)
def historical_data_backfiller(
    tickers: list[str] | None = None,
    tickers_file: str | None = None,
    years: float = 2.0,
    parallel: int = 10,
    intraday_months: int | None = None,
    include_intraday: bool = True,
    include_daily: bool = True,
    extended_hours: bool = True,
    end_date: dt.date | None = None,
    progress: bool = True,
    data_sources: str | None = None,
) -> dict:
    """Backfill daily and 1-minute history for the tickers; resumable per unit."""
    summary = common.RunSummary(FLOW)
    symbols = common.resolve_tickers(tickers, tickers_file)
    with flow_context(data_sources=data_sources) as ctx:
        today = today_new_york()
        end = end_date or today
        months = intraday_months if intraday_months is not None else math.ceil(12 * years)
        months = months if include_intraday else 0
        todo, done_before = pending_units(ctx, plan(symbols, months, end, daily=include_daily), today)
        end_ms = int(dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC).timestamp() * 1000) + DAY_MS
        since_ms = end_ms - int(years * 365.25 * DAY_MS)
        summary.add(units=len(todo) + done_before, already_done=done_before)
        queue: deque[Unit] = deque(todo)
        fetching: dict[Any, Unit] = {}
        storing: dict[Any, Unit] = {}
        order = TickerOrder(todo)
        width = max(1, parallel)
        bar = tqdm(total=len(todo), desc="backfill", unit="unit", disable=not progress, file=sys.stderr)
        try:
            while queue or fetching or storing or order.held:
                # fetches run ahead of the writes: up to `parallel` units fetching, `parallel` validated units waiting
                while queue and not summary.stopped_reason and len(fetching) < width and len(storing) + order.held < width:
                    unit = queue.popleft()
                    fetching[fetch_history.submit(ctx, unit, since_ms, extended_hours)] = unit
                if summary.stopped_reason:
                    summary.skipped += [str(u) for u in queue]
                    for unit in queue:
                        order.drop(unit)
                    queue.clear()
                for unit, payload in order.releasable():
                    storing[commit_history.submit(ctx, unit, *payload)] = unit
                if not (fetching or storing):
                    if order.held:  # cannot happen: every unit is stored, dropped or still in flight
                        raise RuntimeError(f"backfill: {order.held} validated units could not be scheduled")
                    break
                future = next(as_completed(list(fetching) + list(storing)))
                if future in fetching:
                    # every fetch that is done by now is validated in one GX run (its cost is mostly per run)
                    fetched: list[tuple[Unit, pd.DataFrame]] = []
                    for done in [future, *(f for f in fetching if f is not future and _finished(f))]:
                        unit, result = fetching.pop(done), done.result(raise_on_failure=False)
                        if isinstance(result, BaseException):
                            summary.record_failure(str(unit), result)
                            order.drop(unit)
                            bar.update(1)
                        else:
                            fetched.append((unit, result))
                    frames = [bars_to_rows(result) if len(result) else result for _, result in fetched]
                    parts = gate_parts(ctx, "bars", frames, FLOW, "alphavantage") if fetched else []
                    for (unit, result), (good, quarantined) in zip(fetched, parts):
                        order.hold(unit, (good, len(result), quarantined))
                else:
                    result = future.result(raise_on_failure=False)
                    unit = storing.pop(future)
                    order.stored(unit)
                    bar.update(1)
                    if isinstance(result, BaseException):
                        summary.record_failure(str(unit), result)
                        continue
                    summary.add(done=1, **result)
                    bar.set_postfix(hot=summary.counts.get("hot", 0), warm=summary.counts.get("warm", 0), refresh=False)
        finally:
            bar.close()
    return common.finish(summary)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python flows/historical_data_backfiller.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tickers-file", default=None, help="one ticker per line (default config/tickers.txt)")
    parser.add_argument("--ticker", action="append", help="ticker(s) instead of the file (repeatable)")
    parser.add_argument("--years", type=float, default=2.0, help="history depth (default 2)")
    parser.add_argument("--parallel", type=int, default=10, help="units fetched at once (default 10)")
    parser.add_argument("--intraday-months", type=int, default=None, help="months of 1-minute bars (default 12 x years)")
    parser.add_argument("--no-intraday", action="store_true", help="daily bars only")
    parser.add_argument("--no-daily", action="store_true", help="intraday bars only")
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None, help="last day (default today)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    setup_logging()
    state = historical_data_backfiller(
        tickers=args.ticker, tickers_file=args.tickers_file, years=args.years, parallel=args.parallel,
        intraday_months=args.intraday_months, include_intraday=not args.no_intraday, include_daily=not args.no_daily,
        end_date=args.end_date,
        progress=not args.no_progress,
        return_state=True,
    )  # fmt: skip
    print(json.dumps(state.result(raise_on_failure=False) if state.is_completed() else {"error": state.message},
                     default=str))  # fmt: skip
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
