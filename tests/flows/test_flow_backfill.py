"""historical_data_backfiller: hot window to RedisTimeSeries, older history to Parquet in Blob, resumable."""

from __future__ import annotations

import datetime as dt
import io
import json

import pandas as pd
from flow_support import new_york, samples, utc_ms

from flows.historical_data_backfiller import TickerOrder, Unit, historical_data_backfiller, months_back, plan
from headwater.settings import BlobSettings
from headwater.storage.blob import BlobStore

# The stand-in lives on Tuesday 2024-03-05 15:00 New York: March has three sessions so far (quick to generate).
STANDIN_NOW = new_york(2024, 3, 5, 15, 0)
END = dt.date(2024, 3, 5)
ARGS = {"years": 0.25, "intraday_months": 1, "end_date": END, "progress": False}


def warm_frames(blob_connection_string: str) -> dict[str, pd.DataFrame]:
    settings = BlobSettings()
    store = BlobStore(settings, connection_string=blob_connection_string)
    return {path: pd.read_parquet(io.BytesIO(store.get(settings.warm_container, path)))
            for path in store.list(settings.warm_container, "bars/")}  # fmt: skip


def test_months_back_crosses_the_year():
    assert months_back(dt.date(2024, 2, 10), 3) == ["2024-02", "2024-01", "2023-12"]


def test_the_plan_goes_oldest_month_first_round_robin_over_tickers():
    units = [str(u) for u in plan(["AAPL", "MSFT"], 2, dt.date(2024, 3, 5))]
    assert units == ["AAPL 1d", "AAPL 1m:2024-02", "MSFT 1d", "MSFT 1m:2024-02", "AAPL 1m:2024-03", "MSFT 1m:2024-03"]
    assert [str(u) for u in plan(["AAPL"], 0, dt.date(2024, 3, 5))] == ["AAPL 1d"]
    assert [str(u) for u in plan(["AAPL"], 1, dt.date(2024, 3, 5), daily=False)] == ["AAPL 1m:2024-03"]


def test_a_tickers_units_are_stored_one_at_a_time_in_plan_order():
    feb, mar, apr, msft = Unit("AAPL", "1m", "2024-02"), Unit("AAPL", "1m", "2024-03"), Unit("AAPL", "1m", "2024-04"), \
        Unit("MSFT", "1m", "2024-03")  # fmt: skip
    order = TickerOrder([feb, msft, mar, apr])
    order.hold(mar, ("march",))
    order.hold(msft, ("msft",))
    assert order.releasable() == [(msft, ("msft",))]  # AAPL waits for February, MSFT goes
    order.hold(feb, ("february",))
    assert order.releasable() == [(feb, ("february",))] and order.releasable() == []  # one store per ticker at once
    order.stored(feb)
    order.drop(apr)  # e.g. its fetch failed
    assert order.releasable() == [(mar, ("march",))] and order.held == 0


def test_history_inside_the_hot_window_goes_to_timeseries(hub_at, flow_env, r, retention_file, fast):
    retention_file(bars=3650)  # a ten-year hot window: all of it is "hot" (the default window is tested below)
    hub_at(STANDIN_NOW)
    summary = historical_data_backfiller(tickers=["AAPL"], data_sources=fast, **ARGS)
    counts = summary["counts"]
    assert counts["done"] == 2 and counts["quarantined"] == 0 and counts["warm"] == 0 and not summary["failed"]
    minute = samples(r, flow_env.provider_bar("AAPL", "alphavantage", "1m", "close"))
    assert len(minute) == 2580  # three sessions x 16 h (Tuesday until 15:00)
    assert minute[0][0] == utc_ms(2024, 3, 1, 9, 0)  # Friday 04:00 EST
    daily = samples(r, flow_env.provider_bar("AAPL", "alphavantage", "1d", "close"))
    assert daily[-2:] == [(utc_ms(2024, 3, 1), daily[-2][1]), (utc_ms(2024, 3, 4), daily[-1][1])]  # the 5th: not closed
    assert counts["hot"] == len(minute) + len(daily)
    record = json.loads(r.hget(flow_env.checkpoint("backfill", "AAPL"), "1m:2024-03"))
    assert record["hot"] == 2580 and record["warm"] == 0


def test_an_interrupted_backfill_resumes_where_it_stopped(hub_at, flow_env, r, blob_env, blob_connection_string, quotas):
    hub = hub_at(STANDIN_NOW)
    # Run 1 is interrupted twice over: the first unit's answers are all cut off (it fails, is not checkpointed),
    # and the daily budget runs out after three requests (the run stops cleanly, the rest is skipped).
    hub.inject("alphavantage", "malformed", count=4)  # = the first unit's four attempts (parallel=1: in order)
    tight = quotas(alphavantage={"per_second": 1000, "per_day": 5})
    first = historical_data_backfiller(tickers=["AAPL", "MSFT"], parallel=1, data_sources=tight, **ARGS,
                                       return_state=True)  # fmt: skip
    assert first.is_failed() and "AAPL 1d" in first.message and "stopped: quota exhausted" in first.message
    checkpoint = flow_env.checkpoint("backfill", "AAPL")
    assert r.hkeys(checkpoint) == [b"1m:2024-03"] and not r.exists(flow_env.checkpoint("backfill", "MSFT"))
    assert hub.request_counts()["alphavantage"] == 5

    # Run 2, with budget again: only the three unfinished units are fetched.
    roomy = quotas(alphavantage={"per_second": 1000, "per_day": 100})
    second = historical_data_backfiller(tickers=["AAPL", "MSFT"], parallel=2, data_sources=roomy, **ARGS)
    assert second["counts"]["already_done"] == 1 and second["counts"]["done"] == 3 and not second["failed"]
    assert hub.request_counts()["alphavantage"] == 5 + 3
    assert {k.decode() for k in r.hkeys(flow_env.checkpoint("backfill", "MSFT"))} == {"1d", "1m:2024-03"}

    # March 2024 is older than the default hot window (97 days): everything went to Parquet, nothing to Redis.
    assert second["counts"]["hot"] == 0 and not r.keys(f"{flow_env.prefix}ts:*")
    frames = warm_frames(blob_connection_string)
    assert sorted(p for p in frames if "/MSFT/" in p) == [
        *(f"bars/alphavantage/1d/MSFT/{m}.parquet" for m in ("2023/12", "2024/01", "2024/02", "2024/03")),
        "bars/alphavantage/1m/MSFT/2024/03.parquet"]  # fmt: skip
    minute = frames["bars/alphavantage/1m/MSFT/2024/03.parquet"]
    assert len(minute) == 2580 and minute["ts"].is_monotonic_increasing and minute["ts"].is_unique
    assert list(minute.columns) == ["ticker", "timeframe", "source", "ts", "open", "high", "low", "close", "volume", "vwap"]
    assert (minute["high"] >= minute[["open", "close"]].max(axis=1)).all() and minute["vwap"].isna().all()
    march = frames["bars/alphavantage/1d/MSFT/2024/03.parquet"]
    assert march["ts"].tolist() == [utc_ms(2024, 3, 1), utc_ms(2024, 3, 4)]  # the 5th has not closed yet

    # Run 3: everything is checkpointed; nothing is fetched again.
    third = historical_data_backfiller(tickers=["AAPL", "MSFT"], data_sources=roomy, **ARGS)
    assert third["counts"] == {"units": 4, "already_done": 4}
    assert hub.request_counts()["alphavantage"] == 8
