"""The feature engineer: writes every registered feature in Featureform's layout, and never looks ahead."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from feature_scenario import DAY, EXPECTED, EXPECTED_FILING, EXPECTED_SOURCE_MS, HOUR, MIN, T, sub_store, write_scenario

from features import compute_features
from features.engineer import GROUPS, run_engineer, run_every, select_specs


def test_select_specs_covers_every_stored_feature(catalog):
    specs = select_specs(catalog)
    assert {s.ref for s in specs} == {s.ref for s in catalog.stored}
    assert {s.group for s in select_specs(catalog, ["market"])} == {"market"}
    with pytest.raises(ValueError, match="unknown feature group"):
        select_specs(catalog, ["astrology"])
    assert set(GROUPS) == {s.group for s in catalog.stored}


def test_engineer_writes_every_feature_with_its_source_time(store, catalog):
    write_scenario(store)
    counts = run_engineer(store.r, store.keys, select_specs(catalog), ["AAA", "BRK.B", "CCC"], T)
    assert counts["tickers"] == 3 and counts["values"] == len(EXPECTED) + 2 + 2  # AAA all; BRK.B, CCC filings
    layout = store.layout
    for name, expected in EXPECTED.items():
        stored = store.r.hget(layout.table(name, "v1"), "AAA")
        assert float(stored) == pytest.approx(expected, rel=1e-12), name
        stamp = store.r.hget(layout.timestamps, f"{name}:v1:AAA").decode()
        assert stamp == f"{EXPECTED_SOURCE_MS[name]}:{T}", name
    for ticker, expected in EXPECTED_FILING.items():
        raw = store.r.hget(layout.vector("filing_embedding", "v1", ticker), layout.vector_field("filing_embedding", "v1"))
        np.testing.assert_allclose(np.frombuffer(raw, "<f4"), expected, atol=1e-6)
    assert store.r.hget(layout.timestamps, "filing_embedding:v1:AAA") == f"{T - DAY}:{T}".encode()
    assert set(store.r.hkeys(layout.entities("ticker"))) == {b"AAA", b"BRK.B", b"CCC"}


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.allclose(a, b)
    return a == b or (a is not None and b is not None and a == pytest.approx(b, rel=1e-12))


def test_no_feature_is_computed_from_data_after_its_time(store, catalog):
    """At several points in time t: the values computed with all data (including the traps after T) equal
    the values computed from a copy holding only the data up to t, and every source time is <= t."""
    write_scenario(store)
    specs = select_specs(catalog)
    tickers = ["AAA", "BRK.B"]
    for i, t in enumerate((T + 2 * MIN, T + HOUR + 1, T, T - 1_001, T - 30 * MIN, T - DAY + 1)):
        cut = sub_store(store, f"cut{i}")
        write_scenario(cut, until=t)
        full = compute_features(store.r, store.keys, specs, tickers, t)
        truncated = compute_features(cut.r, cut.keys, specs, tickers, t)
        for a, b in zip(full, truncated, strict=True):
            assert _same(a.value, b.value), (t, a.spec.name, a.entity, a.value, b.value)
            assert a.source_ms <= t and a.as_of_ms == t
    assert any(v.value is not None for v in full)


def test_real_time_worker_recomputes_until_stopped(store, catalog):
    write_scenario(store)
    stop = threading.Event()
    done = run_every(store.r, store.keys, select_specs(catalog, ["market"]), ["AAA"], 0.0, stop, iterations=2)
    assert done == 2
    assert store.r.hget(store.layout.table("last_price", "v1"), "AAA") == b"1"  # now: the after-T trade at T+1m
    stop.set()
    assert run_every(store.r, store.keys, select_specs(catalog, ["market"]), ["AAA"], 0.0, stop) == 0
