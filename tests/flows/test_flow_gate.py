"""The Great Expectations gate: suites per dataset, quarantine with the failed expectation, good rows stored."""

from __future__ import annotations

import json

import pandas as pd
from flow_support import counters, samples, utc_ms

from expectations import articles, bars, posts
from expectations.docs import build
from flows.gate import gate, gate_parts
from headwater.storage.timeseries import write_bars

PAIR = "expect_column_pair_values_a_to_be_greater_than_b"


def bar(ts: int, o: float = 10.0, h: float = 11.0, lo: float = 9.0, c: float = 10.5, v: float = 100.0,
        timeframe: str = "1m") -> dict:  # fmt: skip
    return {"ticker": "AAPL", "timeframe": timeframe, "source": "alphavantage", "ts": ts, "open": o, "high": h,
            "low": lo, "close": c, "volume": v}  # fmt: skip


MON_0930 = utc_ms(2024, 3, 11, 13, 30)  # 09:30 New York (EDT)
BATCH = pd.DataFrame([
    bar(MON_0930),                                   # 0 good
    bar(MON_0930 + 60_000, h=10.2),                  # 1 high below close
    bar(MON_0930 + 120_000, lo=10.8),                # 2 low above open and close
    bar(MON_0930 + 180_000, v=-5),                   # 3 negative volume
    bar(utc_ms(2024, 3, 11, 2, 0)),                  # 4 22:00 New York: outside the session
    bar(utc_ms(2024, 3, 9, 15, 0)),                  # 5 a Saturday
    bar(MON_0930 + 240_000), bar(MON_0930 + 240_000, c=10.6),  # 6, 7 two different bars for one minute
    bar(MON_0930 + 300_000, o=float("nan")),         # 8 a price that did not parse
    bar(utc_ms(2024, 3, 8), timeframe="1d"),         # 9 good daily bar (Friday)
])  # fmt: skip


def test_the_bars_suite_rejects_each_kind_of_bad_row_and_names_the_expectation():
    good, quarantined = bars.validate_batch(BATCH)
    assert good["ts"].tolist() == [MON_0930, utc_ms(2024, 3, 8)]
    failed = {q.row["ts"] if q.row["close"] != 10.6 else "dup": q.failed for q in quarantined}
    assert f"{PAIR}(high>=close)" in failed[MON_0930 + 60_000]
    assert {f"{PAIR}(open>=low)", f"{PAIR}(close>=low)"} <= set(failed[MON_0930 + 120_000])
    assert failed[MON_0930 + 180_000] == ("expect_column_values_to_be_between(volume)",)
    assert failed[utc_ms(2024, 3, 11, 2, 0)] == ("expect_column_values_to_be_in_set(in_session)",)
    assert failed[utc_ms(2024, 3, 9, 15, 0)] == ("expect_column_values_to_be_in_set(in_session)",)
    assert failed[MON_0930 + 240_000] == failed["dup"] == ("expect_compound_columns_to_be_unique(ticker,timeframe,ts)",)
    assert "expect_column_values_to_not_be_null(open)" in failed[MON_0930 + 300_000]
    assert len(quarantined) == 8


def test_quarantined_rows_land_in_the_stream_and_good_rows_are_stored(flow_env, flow_ctx, r):
    good, count = gate.fn(flow_ctx, dataset="bars", frame=BATCH, flow="test", source="alphavantage")
    written = write_bars(flow_ctx.layout, good)
    assert count == 8 and written.written == 2
    entries = r.xrange(flow_env.quarantine)
    assert len(entries) == 8
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    assert fields["dataset"] == "bars" and fields["flow"] == "test" and fields["source"] == "alphavantage"
    assert fields["expectation"] == f"{PAIR}(high>=close)" and json.loads(fields["row"])["high"] == 10.2
    close = samples(r, flow_env.provider_bar("AAPL", "alphavantage", "1m", "close"))
    assert close == [(MON_0930, 10.5)]
    assert samples(r, flow_env.provider_bar("AAPL", "alphavantage", "1d", "close")) == [(utc_ms(2024, 3, 8), 10.5)]
    # ... and the exporter's GX pass/fail counters saw it
    assert counters(r, flow_env) == {
        ("gx_validations", (("flow", "test"), ("outcome", "fail"), ("suite", "bars"))): 1.0,
        ("gx_rows", (("outcome", "accepted"), ("suite", "bars"))): 2.0,
        ("gx_rows", (("outcome", "quarantined"), ("suite", "bars"))): 8.0,
    }


def test_several_frames_are_validated_as_one_batch_and_split_back(flow_env, flow_ctx, r):
    first, second = BATCH.iloc[:5], BATCH.iloc[5:]
    empty = BATCH.iloc[:0]
    parts = gate_parts.fn(flow_ctx, dataset="bars", frames=[first, empty, second], flow="test", source="alphavantage")
    assert [len(good) for good, _ in parts] == [1, 0, 1] and [n for _, n in parts] == [4, 0, 4]
    assert parts[0][0]["ts"].tolist() == [MON_0930] and parts[2][0]["ts"].tolist() == [utc_ms(2024, 3, 8)]
    assert r.xlen(flow_env.quarantine) == 8
    assert counters(r, flow_env)[("gx_validations", (("flow", "test"), ("outcome", "fail"), ("suite", "bars")))] == 1


def test_articles_and_posts_suites():
    now = pd.Timestamp.now(tz="UTC").value // 1_000_000
    frame = pd.DataFrame([
        {"id": "a", "url": "https://example.com/a", "title": "Apple beats", "description": "", "content": "",
         "source": "X", "author": None, "published_ms": now - 60_000, "query": "AAPL"},
        {"id": "b", "url": "https://example.com/b", "title": "[Removed]", "description": "", "content": "",
         "source": "X", "author": None, "published_ms": now - 60_000, "query": "AAPL"},
        {"id": "c", "url": "javascript:alert(1)", "title": "Hi", "description": "", "content": "", "source": "X",
         "author": None, "published_ms": now + 86_400_000, "query": "AAPL"},
    ])  # fmt: skip
    good, quarantined = articles.validate_batch(frame)
    assert good["id"].tolist() == ["a"]
    assert quarantined[0].failed == ("expect_column_values_to_not_be_in_set(title)",)
    assert set(quarantined[1].failed) == {"expect_column_values_to_match_regex(url)",
                                          "expect_column_values_to_be_between(ahead_s)"}  # fmt: skip
    social = pd.DataFrame([
        {"id": "x:1", "platform": "x", "post_id": "1", "text": "$AAPL up", "author": "u", "created_ms": now,
         "url": "", "score": 1, "comments": 0, "query": "q"},
        {"id": "myspace:2", "platform": "myspace", "post_id": "2", "text": "hi", "author": "u", "created_ms": now,
         "url": "", "score": 1, "comments": -1, "query": "q"},
    ])  # fmt: skip
    good, quarantined = posts.validate_batch(social)
    assert good["id"].tolist() == ["x:1"]
    assert set(quarantined[0].failed) == {"expect_column_values_to_be_in_set(platform)",
                                          "expect_column_values_to_be_between(comments)"}  # fmt: skip


def test_a_batch_the_suite_cannot_check_is_quarantined_whole():
    good, quarantined = bars.validate_batch(BATCH.drop(columns=["volume"]))
    assert good.empty and len(quarantined) == len(BATCH)
    assert all(any("volume" in f for f in q.failed) for q in quarantined)


def test_data_docs_are_built_from_the_stored_validation_results(gx_home):
    bars.validate_batch(BATCH)
    index = build()
    assert index.is_file() and index.name == "index.html" and str(index).startswith(str(gx_home))
    pages = list((index.parent / "validations").rglob("*.html"))
    assert pages  # one page per validation run
