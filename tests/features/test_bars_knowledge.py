"""Bars point in time: a provider's bars carry when the pipeline first stored them (``ts:{T}:known:agg:...``),
so an ``as_of`` read never sees a backfill run later, or a bar before it closed. Real Redis, the real writer
(``write_bars``, as the market and backfill flows call it) and the real reader (``AgentAccess.bars``, behind
``GET /bars`` and the MCP ``get_bars`` tool)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.access import AgentAccess
from features.auth import SCOPES, Principal
from headwater.storage.timeseries import TimeSeriesLayout, write_bars
from headwater.timeframes import DAY_MS, MINUTE_MS

D0 = 1_577_836_800_000  # 2020-01-01T00:00Z: a daily bar's timestamp is its day's start
DAYS = [D0 + i * DAY_MS for i in range(10)]
BACKFILLED_AT = DAYS[-1] + 30 * DAY_MS  # the history was loaded a month after its last day
ME = Principal("k1", "alice", frozenset(SCOPES), 1e6, 10**6)


def daily(days: list[int], close: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame([{"ticker": "KT", "timeframe": "1d", "source": "alphavantage", "ts": d, "open": close - 1,
                          "high": close + 1, "low": close - 2, "close": close + i, "volume": 1000.0 + i}
                         for i, d in enumerate(days)])  # fmt: skip


@pytest.fixture
def access(store, serving):
    return AgentAccess(serving)


@pytest.fixture
def layout(store):
    return TimeSeriesLayout(store.r, store.keys)


def stamps(reply: dict) -> list[int]:
    return [row[0] for row in reply["bars"]]


def test_a_backfill_run_later_is_invisible_to_an_earlier_as_of(access, layout, store):
    assert write_bars(layout, daily(DAYS), now_ms=BACKFILLED_AT).written == 10
    after_day_5 = DAYS[5] + DAY_MS  # day 5 has closed; the backfill is weeks away

    known = access.bars(ME, "KT", "1d", source="alphavantage", as_of=after_day_5)
    assert known["bars"] == [] and known["time_basis"] == "knowledge"
    happened = access.bars(ME, "KT", "1d", source="alphavantage", as_of=after_day_5, time_basis="event")
    assert stamps(happened) == DAYS[:6], "event time: every bar closed by then, however late it was stored"
    assert stamps(access.bars(ME, "KT", "1d", source="alphavantage", as_of=BACKFILLED_AT)) == DAYS
    assert stamps(access.bars(ME, "KT", "1d", source="alphavantage")) == DAYS  # no as_of: everything stored

    # The knowledge series: at each bar's timestamp, when it was stored.
    known_series = store.r.execute_command("TS.RANGE", store.keys.known_bar("KT", "alphavantage", "1d"), "-", "+")
    assert [(int(t), int(float(v))) for t, v in known_series] == [(d, BACKFILLED_AT) for d in DAYS]


def test_a_refetch_keeps_the_first_time_a_bar_was_known(access, layout, store):
    write_bars(layout, daily(DAYS[:5]), now_ms=DAYS[4] + DAY_MS + MINUTE_MS)  # the daily fetch after day 4 closed
    write_bars(layout, daily(DAYS[:6]), now_ms=DAYS[5] + DAY_MS + MINUTE_MS)  # the next day re-fetches them all
    as_of = DAYS[4] + DAY_MS + 2 * MINUTE_MS
    assert stamps(access.bars(ME, "KT", "1d", source="alphavantage", as_of=as_of)) == DAYS[:5]
    later = access.bars(ME, "KT", "1d", source="alphavantage", as_of=DAYS[5] + DAY_MS + 2 * MINUTE_MS, limit=3)
    assert stamps(later) == DAYS[3:6], "the newest `limit` bars known by then"
    assert later["bars"][-1][1:] == [9.0, 11.0, 8.0, 15.0, 1005.0]


def test_an_open_bar_is_not_known_until_a_fetch_after_it_closes(access, layout, store):
    today = DAYS[3]
    write_bars(layout, daily([today], close=50.0), now_ms=today + 10 * 3_600_000)  # the in-progress daily bar
    assert store.r.exists(store.keys.known_bar("KT", "alphavantage", "1d"))
    assert store.r.execute_command("TS.RANGE", store.keys.known_bar("KT", "alphavantage", "1d"), "-", "+") == []
    closed = today + DAY_MS
    assert access.bars(ME, "KT", "1d", source="alphavantage", as_of=closed + MINUTE_MS)["bars"] == []
    write_bars(layout, daily([today], close=51.0), now_ms=closed + 5 * MINUTE_MS)  # the final values
    assert access.bars(ME, "KT", "1d", source="alphavantage", as_of=closed + 4 * MINUTE_MS)["bars"] == []
    (bar,) = access.bars(ME, "KT", "1d", source="alphavantage", as_of=closed + 6 * MINUTE_MS)["bars"]
    assert bar[0] == today and bar[4] == 51.0
    # Before it closed, neither basis shows it: an open bar holds trades after as_of.
    assert access.bars(ME, "KT", "1d", source="alphavantage", as_of=closed - 1, time_basis="event")["bars"] == []


def test_bars_compacted_from_trades_are_known_as_they_close(access, store):
    key = {f: store.keys.bar("KT", "1m", f) for f in ("open", "high", "low", "close", "volume")}
    t0 = D0 + 9 * 3_600_000
    for i in range(3):
        for f, k in key.items():
            store.r.execute_command("TS.ADD", k, t0 + i * MINUTE_MS, 1.0 + i)
    assert stamps(access.bars(ME, "KT", "1m", as_of=t0 + 2 * MINUTE_MS)) == [t0, t0 + MINUTE_MS]
    assert stamps(access.bars(ME, "KT", "1m", as_of=t0 + 3 * MINUTE_MS)) == [t0 + i * MINUTE_MS for i in range(3)]
    with pytest.raises(ValueError, match="time_basis"):
        access.bars(ME, "KT", "1m", as_of=t0, time_basis="tomorrow")
