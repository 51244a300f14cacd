"""Scheduled OHLCV bars (every minute): Alpha Vantage 1-minute bars -> GX ``bars`` gate -> RedisTimeSeries.

Per ticker one ``TIME_SERIES_INTRADAY`` call (``outputsize=compact``: the latest 100 bars, so a run that missed a
few minutes catches up). Bars are converted from US/Eastern to UTC (DST-aware, see
``headwater.providers.alphavantage``), gated by ``expectations/bars.py`` (bad rows to ``stream:quarantine``), and
written with TS.MADD to ``ts:{T}:agg:alphavantage:1m:{open,high,low,close,volume}`` (``DUPLICATE_POLICY LAST``,
retention: the "bars" kind of ``config/retention.yaml``). Bars skip the Redis Streams hop that news and posts take:
they are final aggregates keyed by (ticker, minute), so writing them is already idempotent -- a re-fetch
rewrites the same samples and never doubles them -- and there is nothing left for a processor to do.

CLI (the reference's ``--test --ticker``)::

    python -m flows.market_data_fetcher --ticker AAPL            # one ticker, prints the run summary as JSON
    python -m flows.market_data_fetcher --tickers-file config/tickers.txt
"""

from __future__ import annotations

import argparse
import json
import sys


import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows import common
from flows.context import FlowContext, flow_context
from flows.gate import gate
from flows.retry import io_task
from headwater.metrics import OUTCOME_HOOKS
from headwater.storage.timeseries import BarWrite, bars_to_rows, write_bars

FLOW = "market_data_fetcher"


@io_task()
def fetch_intraday(ctx: FlowContext, ticker: str, outputsize: str = "compact") -> pd.DataFrame:
    """Fetch one ticker's latest 1-minute bars from Alpha Vantage (UTC timestamps)."""
    return ctx.provider("alphavantage").intraday(ticker, outputsize=outputsize)


@io_task()
def store_bars(ctx: FlowContext, frame: pd.DataFrame) -> BarWrite:
    """Write validated bars to RedisTimeSeries (TS.MADD, LAST policy: re-fetches rewrite, never double)."""
    return write_bars(ctx.layout, frame)


@flow(name=FLOW, task_runner=ThreadPoolTaskRunner(max_workers=8), **OUTCOME_HOOKS)
def market_data_fetcher(
    tickers: list[str] | None = None,
    tickers_file: str | None = None,
    outputsize: str = "compact",
    data_sources: str | None = None,
) -> dict:
    """Fetch, validate and store the latest 1-minute bars of every ticker."""
    summary = common.RunSummary(FLOW)
    symbols = common.resolve_tickers(tickers, tickers_file)
    with flow_context(data_sources=data_sources) as ctx:
        futures = {t: fetch_intraday.submit(ctx, t, outputsize) for t in symbols}
        frames = [f for f in common.collect(futures, summary).values() if not f.empty]
        batch = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        fetched = len(batch)
        if fetched:
            batch = bars_to_rows(batch)
        good, quarantined = gate(ctx, dataset="bars", frame=batch, flow=FLOW, source="alphavantage")
        written = store_bars(ctx, good) if len(good) else BarWrite()
    summary.add(tickers=len(symbols), fetched=fetched, validated=len(good), quarantined=quarantined,
                stored=written.written, already_present=written.already_present)  # fmt: skip
    return common.finish(summary)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.market_data_fetcher", description=__doc__.splitlines()[0])
    parser.add_argument("--ticker", action="append", help="ticker(s) to fetch (repeatable); default: the tickers file")
    parser.add_argument("--tickers-file", default=None, help="one ticker per line (default config/tickers.txt)")
    parser.add_argument("--test", action="store_true", help="one quick run for AAPL (or --ticker) and print the summary")
    parser.add_argument("--outputsize", choices=("compact", "full"), default="compact")
    args = parser.parse_args(argv)
    setup_logging()
    tickers = args.ticker or (["AAPL"] if args.test else None)
    state = market_data_fetcher(tickers=tickers, tickers_file=args.tickers_file, outputsize=args.outputsize,
                                return_state=True)  # fmt: skip
    print(json.dumps(state.result(raise_on_failure=False) if state.is_completed() else {"error": state.message},
                     default=str))  # fmt: skip
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
