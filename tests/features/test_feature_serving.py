"""The serving client: online reads in Featureform's shape, point-in-time reads, on-demand features, nearest,
and clear errors for unknown features and entities."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from feature_scenario import DAY, EXPECTED, EXPECTED_FILING, EXPECTED_SOURCE_MS, MIN, T, unit, write_scenario

from features import FeatureValue, UnknownEntityError, UnknownFeatureError
from features.agent_state import Portfolio, Position
from features.engineer import run_engineer, select_specs
from features.online_store import OnlineStoreWriter

SCALARS = [(name, "v1") for name in EXPECTED]


@pytest.fixture
def served(store, catalog, serving):
    """The scenario, computed and written online by the engineer as of T."""
    write_scenario(store)
    run_engineer(store.r, store.keys, select_specs(catalog), ["AAA", "BRK.B", "CCC"], T)
    return serving


def test_features_for_one_ticker_are_a_flat_list_in_request_order(served):
    values = served.features(SCALARS, {"ticker": "AAA"})
    assert values == pytest.approx([EXPECTED[name] for name, _ in SCALARS], rel=1e-12)
    reordered = served.features([("vwap", "v1"), "last_price"], {"ticker": "AAA"})
    assert reordered == pytest.approx([EXPECTED["vwap"], 101.0])


def test_features_for_many_tickers_are_one_list_per_ticker(served):
    rows = served.features([("last_price", "v1"), ("filing_embedding", "v1")], {"ticker": ["AAA", "BRK.B"]})
    assert rows[0][0] == 101.0 and rows[1][0] is None  # BRK.B has no ticks in the scenario
    np.testing.assert_allclose(rows[0][1], EXPECTED_FILING["AAA"], atol=1e-6)
    np.testing.assert_allclose(rows[1][1], EXPECTED_FILING["BRK.B"], atol=1e-6)


def test_rows_carry_the_source_time_of_each_value(served):
    (row,) = served.rows(SCALARS + [("filing_embedding", "v1"), ("price_vs_vwap", "v1")], {"ticker": "AAA"},
                         include_timestamps=True)  # fmt: skip
    assert row.source_ms[: len(SCALARS)] == [EXPECTED_SOURCE_MS[name] for name, _ in SCALARS]
    assert row.source_ms[-2:] == [T - DAY, None]  # an on-demand feature has no stored source time


def test_as_of_reads_compute_from_the_series_as_they_were(served, store, catalog):
    run_engineer(store.r, store.keys, select_specs(catalog), ["AAA"], T + 2 * MIN)  # online values: "now"
    assert served.features([("last_price", "v1")], {"ticker": "AAA"}) == [1.0]  # the trade at T + 1 min
    for as_of in (T, datetime.fromtimestamp(T / 1000, UTC), "2024-05-01T15:30:00Z"):
        assert served.features(SCALARS, {"ticker": "AAA"}, as_of=as_of) == pytest.approx(
            [EXPECTED[name] for name, _ in SCALARS], rel=1e-12)  # fmt: skip
    (row,) = served.rows([("last_price", "v1"), ("return_5m", "v1")], {"ticker": "AAA"}, as_of=T - 2 * MIN,
                         include_timestamps=True)  # fmt: skip
    assert row.values == pytest.approx([98.0, 98 / 95 - 1]) and row.source_ms == [T - 5 * MIN - 1_000] * 2


def test_on_demand_features_run_the_registered_code(served, store):
    assert served.features([("price_vs_vwap", "v1")], {"ticker": "AAA"}) == pytest.approx([101 / EXPECTED["vwap"] - 1])
    served.state.create_portfolio(Portfolio(portfolio_id="p1", owner="u1", cash=990.0,
                                            positions={"AAA": Position(quantity=10, avg_cost=90)}))  # fmt: skip
    exposure = served.features([("news_sentiment_exposure", "v1")], {"ticker": "AAA"}, params={"portfolio_id": "p1"})
    assert exposure == pytest.approx([10 * 101 / 2000 * EXPECTED["news_sentiment_24h"]])
    assert served.features([("news_sentiment_exposure", "v1")], {"ticker": "BRK.B"}, params={"portfolio_id": "p1"}) == [None]
    with pytest.raises(ValueError, match="portfolio_id"):
        served.features([("news_sentiment_exposure", "v1")], {"ticker": "AAA"})
    # point in time: the on-demand feature sees the as-of values of its inputs
    assert served.features([("price_vs_vwap", "v1")], {"ticker": "AAA"}, as_of=T) == pytest.approx([101 / EXPECTED["vwap"] - 1])


@pytest.mark.parametrize("ref", [("nope", "v1"), ("last_price", "v9"), "nope", ("last_price",), 42])
def test_unknown_features_fail_clearly(served, ref):
    with pytest.raises(UnknownFeatureError, match="feature"):
        served.features([ref], {"ticker": "AAA"})


@pytest.mark.parametrize(("entities", "match"), [
    ({"user": "u1"}, "unknown entity 'user'"),
    ({"ticker": "aapl"}, "invalid ticker"),
    ({"ticker": ["AAA", "ZZZZ"]}, r"unknown ticker \['ZZZZ'\]"),
    ({}, "entities must be one"),
    ({"ticker": []}, "no ticker"),
])  # fmt: skip
def test_unknown_entities_fail_clearly(served, entities, match):
    with pytest.raises(UnknownEntityError, match=match):
        served.features([("last_price", "v1")], entities)
    with pytest.raises(UnknownEntityError):
        served.features([("last_price", "v1")], entities, as_of=T)


def test_nearest_by_vector_and_by_text(served):
    assert served.nearest(("filing_embedding", "v1"), unit(2), 3) == ["BRK.B", "AAA", "CCC"]
    hits = served.nearest(("filing_embedding", "v1"), unit(2, 3), 2, with_scores=True)
    assert [e for e, _ in hits] == ["AAA", "BRK.B"] and hits[0][1] == pytest.approx(0.0, abs=1e-6)
    assert served.nearest("filing_embedding", "insurance float", 1) == ["BRK.B"]
    assert served.nearest(("transcript_embedding", "v1"), unit(4), 5) == ["AAA"]


def test_nearest_returns_more_than_ten_and_validates_input(store, served, catalog):
    filing = catalog.resolve("filing_embedding")
    rng = np.random.default_rng(7)
    OnlineStoreWriter(store.r, store.layout).write(
        [FeatureValue(filing, f"T{i:02d}", rng.normal(size=384).astype(np.float32), 1, 2) for i in range(12)])  # fmt: skip
    assert len(served.nearest(filing.ref, unit(2), 15)) == 15  # Featureform's server would stop at 10
    with pytest.raises(UnknownFeatureError, match="not an embedding"):
        served.nearest(("last_price", "v1"), unit(2), 3)
    with pytest.raises(ValueError, match="384-d"):
        served.nearest(filing.ref, [1.0, 2.0], 3)
    with pytest.raises(ValueError, match="positive"):
        served.nearest(filing.ref, unit(2), 0)


def test_nearest_before_any_embedding_was_written_is_empty(serving):
    assert serving.nearest(("filing_embedding", "v1"), unit(2), 3) == []


def test_position_weights(served):
    served.state.create_portfolio(Portfolio(portfolio_id="p2", owner="u1", cash=1000.0, positions={
        "AAA": Position(quantity=10, avg_cost=90), "ZZZ": Position(quantity=5, avg_cost=200)}))  # fmt: skip
    weights = served.position_weights("p2")  # ZZZ has no price: its average cost stands in
    assert weights == pytest.approx({"AAA": 1010 / 3010, "ZZZ": 1000 / 3010})
    assert served.position_weights("p2", as_of=T - 2 * MIN)["AAA"] == pytest.approx(980 / 2980)
