"""The HTTP endpoint over the serving client (FastAPI's TestClient, the same app uvicorn serves)."""

from __future__ import annotations

import pytest
from feature_scenario import EXPECTED, EXPECTED_SOURCE_MS, T, unit, write_scenario
from fastapi.testclient import TestClient

from features.api import create_app, parse_ref
from features.auth import SCOPES, ApiKeyStore
from features.engineer import run_engineer, select_specs


@pytest.fixture
def http(store, catalog, serving):
    """A client with a key of owner ``u1`` carrying every scope."""
    write_scenario(store)
    run_engineer(store.r, store.keys, select_specs(catalog), ["AAA", "BRK.B", "CCC"], T)
    issued = ApiKeyStore(store.r, store.keys).issue("u1", SCOPES)
    with TestClient(create_app(serving, metrics_interval_s=3600), headers={"Authorization": f"Bearer {issued.token}"}) as client:
        yield client


def test_parse_ref():
    assert parse_ref("last_price:v1") == ("last_price", "v1")
    assert parse_ref("last_price") == "last_price"
    assert parse_ref(("a", "b")) == ("a", "b")


def test_openapi_and_catalog(http, catalog):
    spec = http.get("/openapi.json").json()
    assert {"/features", "/nearest", "/catalog", "/portfolios/{portfolio_id}/fills"} <= set(spec["paths"])
    body = http.get("/catalog").json()
    assert body["entities"] == ["ticker"]
    assert {f"{f['name']}:{f['variant']}" for f in body["features"]} == set(catalog.names())
    assert http.get("/health").json() == {"status": "ok"}


def test_post_features_for_many_tickers_with_timestamps(http):
    resp = http.post("/features", json={"features": ["last_price:v1", ["vwap", "v1"], "filing_embedding"],
                                        "entities": {"ticker": ["AAA", "BRK.B"]}, "include_timestamps": True})  # fmt: skip
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["entity"] == "ticker"
    assert body["features"] == [["last_price", "v1"], ["vwap", "v1"], ["filing_embedding", "v1"]]
    aaa, brk = body["rows"]
    assert aaa["entity"] == "AAA" and aaa["values"][:2] == pytest.approx([101.0, EXPECTED["vwap"]])
    assert len(aaa["values"][2]) == 384 and brk["values"][:2] == [None, None]
    assert aaa["source_ms"][0] == EXPECTED_SOURCE_MS["last_price"]


def test_get_features_as_of_and_on_demand(http):
    resp = http.get("/features", params=[("feature", "last_price:v1"), ("feature", "price_vs_vwap:v1"),
                                         ("ticker", "AAA"), ("as_of", "2024-05-01T15:28:00Z")])  # fmt: skip
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["rows"]
    assert row["values"][0] == 98.0


def test_unknown_feature_and_entity_are_404_with_a_reason(http):
    resp = http.post("/features", json={"features": ["nope:v1"], "entities": {"ticker": "AAA"}})
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_feature" and "nope" in resp.json()["detail"]
    resp = http.post("/features", json={"features": ["last_price:v1"], "entities": {"user": "u1"}})
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_entity"
    resp = http.get("/features", params={"feature": "last_price:v1", "ticker": "ZZZZ"})
    assert resp.status_code == 404 and "ZZZZ" in resp.json()["detail"]
    empty = http.post("/features", json={"features": [], "entities": {"ticker": "AAA"}})
    assert empty.status_code == 422 and empty.json()["error"] == "invalid_request"
    assert empty.json()["detail"].startswith("body.features:"), "located as FastAPI locates body errors"
    for raw in (b"", b"{not json", b"[]", b'{"features": ["last_price:v1"]}', b'{"features": "x", "entities": 1}'):
        resp = http.post("/features", content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 422 and resp.json()["error"] == "invalid_request", (raw, resp.text)


def test_nearest(http):
    resp = http.post("/nearest", json={"feature": "filing_embedding:v1", "vector": unit(2).tolist(), "k": 2})
    assert [n["entity"] for n in resp.json()["neighbours"]] == ["BRK.B", "AAA"]
    resp = http.post("/nearest", json={"feature": "filing_embedding", "text": "iphone supply chain", "k": 1})
    assert resp.json() == {"feature": ["filing_embedding", "v1"], "neighbours": [{"entity": "AAA", "distance": pytest.approx(0.0, abs=1e-6)}]}
    assert http.post("/nearest", json={"feature": "filing_embedding:v1", "k": 1}).status_code == 400
    assert http.post("/nearest", json={"feature": "last_price:v1", "vector": [1.0], "k": 1}).status_code == 404


def test_agent_state_endpoints(http):
    profile = {"user_id": "u1", "display_name": "Ada", "portfolio_ids": ["p1"]}
    assert http.put("/users/u1", json=profile).status_code == 201
    assert http.put("/users/u1", json=profile).status_code == 409
    assert http.patch("/users/u1", json={"risk_tolerance": "conservative"}).json()["risk_tolerance"] == "conservative"
    assert http.patch("/users/u1", json={"risk_tolerance": "yolo"}).status_code == 400
    assert http.get("/users/nobody").status_code == 403  # not the key's owner
    assert http.put("/portfolios/p1", json={"portfolio_id": "p1", "owner": "u1", "cash": 2000}).status_code == 201
    assert http.post("/portfolios/p1/fills", json={"ticker": "AAA", "quantity": 10, "price": 100}).json() == {"quantity": 10}
    assert http.post("/portfolios/p1/cash", json={"delta": -50}).json() == {"cash": 950}
    assert http.put("/portfolios/p1/watchlist/MSFT").json() == {"added": True}
    assert http.delete("/portfolios/p1/watchlist/MSFT").json() == {"removed": True}
    assert http.patch("/portfolios/p1/risk_limits", json={"min_cash": 100}).json()["risk_limits"]["min_cash"] == 100
    portfolio = http.get("/portfolios/p1").json()
    assert portfolio["positions"]["AAA"]["quantity"] == 10 and portfolio["version"] == 5
    assert http.get("/portfolios/p1/weights").json() == {"AAA": pytest.approx(1010 / 1960)}
    resp = http.get("/features", params={"feature": "news_sentiment_exposure:v1", "ticker": "AAA", "portfolio_id": "p1"})
    assert resp.json()["rows"][0]["values"] == [pytest.approx(1010 / 1960 * EXPECTED["news_sentiment_24h"])]


def test_requests_are_timed_for_the_metrics_exporter(http, store):
    """Every request records headwater_serving_request_duration_seconds{endpoint, status}."""
    import orjson

    http.get("/health")
    http.get("/catalog")
    assert not store.r.exists(store.keys.metrics_histograms)  # buffered: nothing written on the request path
    http.app.state.metrics.flush()
    fields = [orjson.loads(f) for f in store.r.hgetall(store.keys.metrics_histograms)]
    counted = {dict(map(tuple, f[1]))["endpoint"] for f in fields if f[0] == "serving_request_duration_seconds" and f[2] == "count"}
    assert {"/health", "/catalog"} <= counted
