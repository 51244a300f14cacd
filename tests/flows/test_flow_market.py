"""market_data_fetcher end to end against the Alpha Vantage stand-in: storage, DST, retries, quotas, failures."""

from __future__ import annotations

import time

import pytest
from flow_support import counters, new_york, prefixed, samples, total_samples, utc_ms, wait_for

from flows.market_data_fetcher import market_data_fetcher
from headwater import retention

MONDAY_AFTER_DST = new_york(2024, 3, 11, 4, 30)  # the latest 100 bars span the spring DST change


def close_key(keys, ticker="AAPL"):  # noqa: ANN001, ANN201
    return keys.provider_bar(ticker, "alphavantage", "1m", "close")


def test_bars_land_in_timeseries_in_utc_and_a_refetch_doubles_nothing(hub_at, flow_env, r, fast):
    hub_at(MONDAY_AFTER_DST)
    first = market_data_fetcher(tickers=["AAPL"], data_sources=fast)
    assert first["counts"]["stored"] == 100 and first["counts"]["quarantined"] == 0
    assert prefixed(r, flow_env.prefix) == sorted(
        [*(flow_env.provider_bar("AAPL", "alphavantage", "1m", f) for f in ("close", "high", "low", "open", "volume")),
         flow_env.known_bar("AAPL", "alphavantage", "1m")])  # fmt: skip
    known = samples(r, flow_env.known_bar("AAPL", "alphavantage", "1m"))  # when the pipeline stored each bar
    stamps = [t for t, _ in samples(r, close_key(flow_env))]
    assert stamps[0] == utc_ms(2024, 3, 8, 23, 50) and stamps[-1] == utc_ms(2024, 3, 11, 8, 29)  # EST then EDT
    assert utc_ms(2024, 3, 9, 0, 59) in stamps and utc_ms(2024, 3, 11, 8, 0) in stamps
    info = r.execute_command("TS.INFO", close_key(flow_env))
    assert info[b"duplicatePolicy"] == b"last" and int(info[b"retentionTime"]) == retention.retention_ms("bars")

    second = market_data_fetcher(tickers=["AAPL"], data_sources=fast)
    assert second["counts"]["already_present"] == 100
    assert total_samples(r, close_key(flow_env)) == 100  # re-fetched, rewritten, not doubled
    assert len(known) == 100 and samples(r, flow_env.known_bar("AAPL", "alphavantage", "1m")) == known  # first stored
    seen = counters(r, flow_env)  # what the metrics endpoint exports: two completed runs, two passing GX batches
    assert seen[("flow_runs", (("flow", "market_data_fetcher"), ("state", "Completed")))] == 2
    assert seen[("gx_validations", (("flow", "market_data_fetcher"), ("outcome", "pass"), ("suite", "bars")))] == 2
    assert seen[("gx_rows", (("outcome", "accepted"), ("suite", "bars")))] == 200


def test_a_429_storm_is_retried_honouring_retry_after_then_succeeds(live_hub, flow_env, r, fast):
    live_hub.inject("alphavantage", "http429", count=3, retry_after=1)
    started = time.monotonic()
    summary = market_data_fetcher(tickers=["MSFT"], data_sources=fast)
    assert summary["counts"]["stored"] == 100 and not summary["failed"]
    log = live_hub.requests_log("alphavantage")
    assert [e["status"] for e in log] == [429, 429, 429, 200]
    gaps = [b["ts"] - a["ts"] for a, b in zip(log, log[1:])]
    assert min(gaps) >= 0.95  # never earlier than the server's Retry-After
    assert time.monotonic() - started >= 3


def test_a_timeout_is_retried(live_hub, flow_env, monkeypatch, fast):
    monkeypatch.setenv("HEADWATER_ALPHAVANTAGE_TIMEOUT_S", "0.5")
    live_hub.inject("alphavantage", "timeout", seconds=3)
    summary = market_data_fetcher(tickers=["AAPL"], data_sources=fast)
    assert summary["counts"]["stored"] == 100
    # The held request is logged when the stand-in lets go of it (after 3 s), the retry's answer before that.
    assert wait_for(lambda: len(live_hub.requests_log("alphavantage")) == 2)
    assert sorted(e["fault"] or "" for e in live_hub.requests_log("alphavantage")) == ["", "timeout"]


def test_malformed_bodies_fail_the_run_clearly_store_nothing_and_lose_nothing(hub_at, flow_env, r, fast):
    hub = hub_at(MONDAY_AFTER_DST)
    hub.inject("alphavantage", "malformed", count=4)  # the first try and all three retries
    state = market_data_fetcher(tickers=["AAPL"], data_sources=fast, return_state=True)
    assert state.is_failed()
    assert "failed=1" in state.message and "MalformedResponse" in state.message and "invalid JSON" in state.message
    assert prefixed(r, flow_env.prefix, "ts:*") == []  # nothing half-written
    assert counters(r, flow_env)[("flow_runs", (("flow", "market_data_fetcher"), ("state", "Failed")))] == 1
    again = market_data_fetcher(tickers=["AAPL"], data_sources=fast)  # the next run gets it all
    assert again["counts"]["stored"] == 100


def test_a_spent_daily_budget_stops_the_run_cleanly(hub_at, flow_env, r, quotas):
    hub_at(MONDAY_AFTER_DST)
    budget = quotas(alphavantage={"per_second": 1000, "per_day": 2})
    state = market_data_fetcher(tickers=["AAPL", "MSFT", "NVDA"], data_sources=budget, return_state=True)
    assert state.is_completed()  # a stop, not a crash
    summary = state.result()
    assert "daily budget of 2 requests used up" in summary["stopped_reason"]
    assert len(summary["skipped"]) == 1 and summary["counts"]["stored"] == 200 and not summary["failed"]
    stored = {t for t in ("AAPL", "MSFT", "NVDA") if r.exists(close_key(flow_env, t))}
    assert len(stored) == 2 and stored.isdisjoint(summary["skipped"])


def test_the_providers_own_daily_limit_also_stops_cleanly(hub_at, flow_env, r, fast):
    hub_at(MONDAY_AFTER_DST, quotas={"alphavantage": {"per_day": 1}})
    summary = market_data_fetcher(tickers=["AAPL", "MSFT"], data_sources=fast)
    assert "daily limit reached" in summary["stopped_reason"] or "used up" in summary["stopped_reason"]
    assert summary["counts"]["stored"] == 100 and len(summary["skipped"]) == 1
    assert r.keys(f"{flow_env.prefix}quota:*:blocked")  # every worker on this key now waits for the reset


@pytest.mark.parametrize("mode", ["http500", "http503"])
def test_server_errors_are_retried(hub_at, flow_env, fast, mode):
    hub = hub_at(MONDAY_AFTER_DST)
    hub.inject("alphavantage", mode, count=2)
    assert market_data_fetcher(tickers=["AAPL"], data_sources=fast)["counts"]["stored"] == 100
