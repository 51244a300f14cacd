"""Sentiment and document features on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from feature_scenario import (
    DAY,
    EXPECTED,
    EXPECTED_FILING,
    EXPECTED_SOURCE_MS,
    EXPECTED_TRANSCRIPT,
    HOUR,
    T,
    create_documents_index,
    write_scenario,
    write_sentiment,
)

from features import compute_features, documents, sentiment


def test_window_mean_excludes_the_window_start_and_includes_its_end():
    ts, vals = np.array([100, 150, 200, 201]), np.array([1.0, 2.0, 3.0, 99.0])
    assert sentiment.window_mean(ts, vals, 100, 200) == pytest.approx(2.5)
    assert sentiment.window_mean(ts, vals, 300, 400) is None


def test_mention_velocity_is_recent_count_over_baseline_rate():
    ts = np.array([0, 10, 20, 95, 99])
    counts = np.array([1.0, 1.0, 1.0, 3.0, 2.0])
    # baseline (0, 100] holds 7 mentions (the one at 0 is out): 0.7 per 10; the last 10 hold 5
    assert sentiment.mention_velocity(ts, counts, 100, 10, 100) == pytest.approx(5 / 0.7)
    assert sentiment.mention_velocity(np.array([]), np.array([]), 100, 10, 100) is None


@pytest.mark.parametrize("name", ["news_sentiment_1h", "news_sentiment_24h", "social_sentiment_1h", "mention_velocity_1h"])
def test_each_sentiment_feature_on_known_scores(store, catalog, name):
    write_sentiment(store)
    (value,) = compute_features(store.r, store.keys, [catalog.resolve(name)], ["AAA"], T)
    assert value.value == pytest.approx(EXPECTED[name], rel=1e-12)
    assert value.source_ms == EXPECTED_SOURCE_MS[name]


def test_sentiment_without_articles_in_the_window_is_missing(store, catalog):
    write_sentiment(store)
    (value,) = compute_features(store.r, store.keys, [catalog.resolve("news_sentiment_1h")], ["AAA"], T - 3 * HOUR)
    assert value.value is None


def test_escape_tag():
    assert documents.escape_tag("BRK.B") == "BRK\\.B"
    assert documents.escape_tag("sec:0000000001-24-000002") == "sec\\:0000000001\\-24\\-000002"


def test_mean_embedding_is_normalised():
    out = documents.mean_embedding(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert out.tolist() == pytest.approx([2**-0.5, 2**-0.5])
    assert documents.mean_embedding(np.zeros((0, 2))) is None


def test_document_embeddings_use_the_latest_document_public_at_t(store, catalog):
    write_scenario(store)
    specs = [catalog.resolve("filing_embedding"), catalog.resolve("transcript_embedding")]
    values = {(v.spec.name, v.entity): v for v in compute_features(store.r, store.keys, specs, ["AAA", "BRK.B", "ZZZ"], T)}
    for ticker, expected in EXPECTED_FILING.items():
        if ticker in ("AAA", "BRK.B"):
            np.testing.assert_allclose(values[("filing_embedding", ticker)].value, expected, atol=1e-6)
    np.testing.assert_allclose(values[("transcript_embedding", "AAA")].value, EXPECTED_TRANSCRIPT["AAA"], atol=1e-6)
    assert values[("filing_embedding", "AAA")].source_ms == T - DAY
    assert values[("transcript_embedding", "BRK.B")].value is None
    assert values[("filing_embedding", "ZZZ")].value is None
    # ten days ago only the older filing was public
    (old,) = [v for v in compute_features(store.r, store.keys, specs[:1], ["AAA"], T - 9 * DAY)]
    np.testing.assert_allclose(old.value, np.array([1, 1] + [0] * 382) / np.sqrt(2), atol=1e-6)


def test_document_features_without_the_index_are_missing(store, catalog):
    values = compute_features(store.r, store.keys, [catalog.resolve("filing_embedding")], ["AAA"], T)
    assert [v.value for v in values] == [None]
    create_documents_index(store)  # an empty index: still nothing
    assert [v.value for v in compute_features(store.r, store.keys, [catalog.resolve("filing_embedding")], ["AAA"], T)] == [None]
