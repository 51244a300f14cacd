"""Market features: the pure computations on known arrays, and each feature computed from RedisTimeSeries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from feature_scenario import EXPECTED, EXPECTED_SOURCE_MS, SESSION_START, T, write_market

from features import compute_features, market


def test_simple_return():
    assert market.simple_return(110.0, 100.0) == pytest.approx(0.1)
    assert market.simple_return(110.0, 0.0) is None


def test_typical_price_vwap_weights_each_bucket_by_its_volume():
    high, low, close = np.array([11.0, 21.0]), np.array([9.0, 19.0]), np.array([10.0, 20.0])
    assert market.typical_price_vwap(high, low, close, np.array([1.0, 3.0])) == pytest.approx((10 + 3 * 20) / 4)
    assert market.typical_price_vwap(high, low, close, np.zeros(2)) is None


def test_realized_volatility_is_the_root_of_summed_squared_log_returns():
    expected = math.sqrt(math.log(1.01) ** 2 + math.log(100 / 101) ** 2)
    assert market.realized_volatility(np.array([100.0, 101.0, 100.0])) == pytest.approx(expected)
    assert market.realized_volatility(np.array([100.0])) is None


def test_volume_zscore_against_the_preceding_buckets():
    volumes = np.array([1.0, 2.0, 3.0, 10.0])
    assert market.volume_zscore(volumes) == pytest.approx((10 - 2) / 1.0)
    assert market.volume_zscore(np.array([5.0, 5.0, 5.0, 9.0])) is None  # no variation: undefined


def test_spread_bps():
    assert market.spread_bps(99.99, 100.01) == pytest.approx(2.0)
    assert market.spread_bps(0.0, 100.01) is None


def test_dense_buckets_fill_minutes_without_trades_with_zero():
    out = market.dense_buckets(np.array([1000, 4000]), np.array([5.0, 7.0]), 1000, 4, 1000)
    assert out.tolist() == [5.0, 0.0, 0.0, 7.0]


def test_session_starts_at_new_york_midnight_in_summer_and_winter():
    assert market.session_start_ms(T) == SESSION_START
    january = 1_704_205_800_000  # 2024-01-02T14:30:00Z
    assert market.session_start_ms(january) == 1_704_171_600_000  # 05:00Z (EST)


@pytest.mark.parametrize("name", [n for n in EXPECTED if n not in ("news_sentiment_1h", "news_sentiment_24h",
                                                                   "social_sentiment_1h", "mention_velocity_1h")])
def test_each_market_feature_on_known_ticks(store, catalog, name):
    write_market(store)
    (value,) = compute_features(store.r, store.keys, [catalog.resolve(name)], ["AAA"], T)
    assert value.value == pytest.approx(EXPECTED[name], rel=1e-12)
    assert value.source_ms == EXPECTED_SOURCE_MS[name] and value.as_of_ms == T


def test_market_features_without_data_are_missing(store, catalog):
    values = compute_features(store.r, store.keys, catalog.group("market"), ["NODATA"], T)
    assert {v.spec.name for v in values} == {s.name for s in catalog.group("market")}
    assert all(v.value is None for v in values)
