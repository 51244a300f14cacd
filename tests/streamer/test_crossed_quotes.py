"""Crossed quotes (bid > ask): kept raw in their own series, counted, and kept out of the spread feature.

A locked quote (bid == ask) is a valid quote with a zero spread; a quote with one side missing (0) is not
crossed either.
"""

from __future__ import annotations

import orjson
import pytest
from test_processor import T0, drain, push, series, settings

from features import compute_features, load_catalog
from headwater.keys import Keys
from streamer.processor import MarketProcessor


def quote(sym: str, t: int, bid: float, ask: float, q: int, bs: float = 3, asz: float = 4) -> dict:
    return {"ev": "Q", "sym": sym, "bp": bid, "bs": bs, "ap": ask, "as": asz, "t": t, "q": q}


def test_a_crossed_quote_is_kept_flagged_counted_and_out_of_the_spread(r, key_prefix):
    keys = Keys(key_prefix)
    push(r, keys, [
        quote("AAPL", T0 + 1, 100.00, 100.02, 1),
        quote("AAPL", T0 + 2, 100.05, 100.01, 2, bs=7, asz=9),  # crossed
        quote("AAPL", T0 + 3, 100.03, 100.03, 3),  # locked: valid, spread 0
        quote("AAPL", T0 + 4, 0.0, 100.04, 4),  # no bid: not crossed
        quote("AAPL", T0 + 5, 100.09, 100.06, 5),  # crossed again
    ])  # fmt: skip
    proc = MarketProcessor(r, keys, settings(), consumer="c1")
    drain(proc)
    assert proc.stats.quotes == 5 and proc.stats.crossed_quotes == 2 and proc.stats.dead_letters == 0
    # the valid top of book only
    assert series(r, keys.tick("AAPL", "bid")) == [(T0 + 1, 100.00), (T0 + 3, 100.03), (T0 + 4, 0.0)]
    assert series(r, keys.tick("AAPL", "ask")) == [(T0 + 1, 100.02), (T0 + 3, 100.03), (T0 + 4, 100.04)]
    # the raw crossed quotes, every field, in their own series labelled as crossed
    assert series(r, keys.tick("AAPL", "crossed_bid")) == [(T0 + 2, 100.05), (T0 + 5, 100.09)]
    assert series(r, keys.tick("AAPL", "crossed_ask")) == [(T0 + 2, 100.01), (T0 + 5, 100.06)]
    assert series(r, keys.tick("AAPL", "crossed_bid_size")) == [(T0 + 2, 7.0), (T0 + 5, 3.0)]
    assert series(r, keys.tick("AAPL", "crossed_ask_size")) == [(T0 + 2, 9.0), (T0 + 5, 4.0)]
    labels = dict(r.execute_command("TS.INFO", keys.tick("AAPL", "crossed_bid"))[b"labels"])
    assert labels[b"field"] == b"crossed_bid" and labels[b"quality"] == b"crossed" and labels[b"ticker"] == b"AAPL"
    found = r.execute_command("TS.QUERYINDEX", "quality=crossed", "ticker=AAPL")
    assert {k.decode() for k in found} >= {keys.tick("AAPL", f"crossed_{f}") for f in ("bid", "ask", "bid_size", "ask_size")}
    proc.publish_metrics()
    assert orjson.loads(r.get(keys.worker_metrics("c1")))["crossed_quotes"] == 2

    spread = load_catalog().resolve("bid_ask_spread_bps")

    def spread_at(t: int) -> tuple[float | None, int | None]:
        (value,) = compute_features(r, keys, [spread], ["AAPL"], t)
        return value.value, value.source_ms

    assert spread_at(T0 + 1) == (pytest.approx(0.02 / 100.01 * 10_000), T0 + 1)
    assert spread_at(T0 + 2) == (pytest.approx(0.02 / 100.01 * 10_000), T0 + 1)  # the crossed quote is skipped
    assert spread_at(T0 + 3) == (0.0, T0 + 3)  # locked
    v, _ = spread_at(T0 + 5)  # one side missing at T0 + 4; the crossed quote at T0 + 5 does not count
    assert v is None


def test_spread_bps_refuses_a_crossed_pair():
    from features.market import spread_bps

    assert spread_bps(100.05, 100.01) is None
    assert spread_bps(100.0, 100.0) == 0.0
