"""The agents' HTTP interface: API keys (401/403/429 with clear bodies, hashed storage, the CLI), ownership,
the /bars /news /social /search routes, knowledge-time as_of, and a schemathesis fuzz run over the OpenAPI spec
(hostile ids, huge strings, NaN/Infinity: 4xx, never a 500)."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from feature_scenario import HashEmbedder, T, write_scenario
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from features.agent_state import Portfolio
from features.api import create_app
from features.auth import SCOPES, ApiKeyStore
from features.engineer import run_engineer, select_specs
from headwater.documents.index import ChunkRecord, ensure_documents_index, write_document
from headwater.documents.search import DocumentSearch

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000


@pytest.fixture
def agents(store, catalog, serving):
    """The scenario, keys for alice (all scopes), bob (all scopes) and a features-only reader, two portfolios."""
    write_scenario(store)
    run_engineer(store.r, store.keys, select_specs(catalog), ["AAA", "BRK.B", "CCC"], T)
    auth = ApiKeyStore(store.r, store.keys)
    tokens = {"alice": auth.issue("alice", SCOPES), "bob": auth.issue("bob", SCOPES),
              "fuzz": auth.issue("alice", SCOPES, rate_per_s=1e6, burst=10**6),
              "reader": auth.issue("carol", ["features:read"], rate_per_s=1, burst=3)}  # fmt: skip
    serving.state.create_portfolio(Portfolio(portfolio_id="pa", owner="alice", cash=1000))
    serving.state.create_portfolio(Portfolio(portfolio_id="pb", owner="bob", cash=5000))
    app = create_app(serving, metrics_interval_s=3600, documents=DocumentSearch(store.r, store.keys, HashEmbedder()))
    with TestClient(app) as client:
        yield client, tokens, auth, store


def _h(issued) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.token}"}


def test_keys_are_stored_hashed_and_bad_keys_are_401(agents):
    http, tokens, auth, store = agents
    record = {k.decode(): v.decode() for k, v in store.r.hgetall(store.keys.api_key(tokens["alice"].key_id)).items()}
    secret = tokens["alice"].token.split("_", 2)[2]  # hw_<key id>_<secret>; the secret may hold "_"
    assert record["sha256"] == hashlib.sha256(secret.encode()).hexdigest() and secret not in json.dumps(record)
    assert record["owner"] == "alice" and set(record["scopes"].split(",")) == set(SCOPES)

    missing = http.get("/catalog")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthenticated"
    assert "Bearer" in missing.headers["www-authenticate"] and "features.auth issue" in missing.json()["detail"]
    forged = http.get("/catalog", headers={"Authorization": tokens["alice"].token[:-4] + "abcd"})
    assert forged.status_code == 401  # not a Bearer header
    forged = http.get("/catalog", headers={"Authorization": "Bearer " + tokens["alice"].token[:-4] + "abcd"})
    assert forged.status_code == 401 and forged.json()["detail"] == "unknown API key"
    assert http.get("/health").status_code == 200  # liveness needs no key

    assert auth.revoke(tokens["bob"].key_id)
    fresh = ApiKeyStore(store.r, store.keys)  # another replica: no cache
    with pytest.raises(Exception, match="revoked"):
        fresh.verify(tokens["bob"].token)


def test_scopes_and_ownership_are_403(agents):
    http, tokens, _, _ = agents
    reader = http.get("/portfolios/pa", headers=_h(tokens["reader"]))
    assert reader.status_code == 403 and reader.json()["error"] == "forbidden" and "state:read" in reader.json()["detail"]
    assert http.get("/search", params={"q": "margins"}, headers=_h(tokens["reader"])).status_code == 403
    other = http.post("/portfolios/pb/cash", json={"delta": -100}, headers=_h(tokens["alice"]))
    assert other.status_code == 403 and "pb" in other.json()["detail"]
    steal = http.put("/portfolios/px", json={"portfolio_id": "px", "owner": "bob"}, headers=_h(tokens["alice"]))
    assert steal.status_code == 403
    takeover = http.put("/portfolios/pb", params={"replace": True}, json={"portfolio_id": "pb", "owner": "alice"},
                        headers=_h(tokens["alice"]))  # fmt: skip
    assert takeover.status_code == 403
    assert http.post("/portfolios/pa/cash", json={"delta": 5}, headers=_h(tokens["alice"])).json() == {"cash": 1005}
    assert http.get("/portfolios/pb", headers=_h(tokens["bob"])).json()["cash"] == 5000
    on_demand = http.get("/features", params={"feature": "news_sentiment_exposure:v1", "ticker": "AAA", "portfolio_id": "pb"},
                         headers=_h(tokens["alice"]))  # fmt: skip
    assert on_demand.status_code == 403


def test_feature_reads_count_against_the_rate_in_their_own_pipeline(agents):
    """/features sends the key's rate check with its read: a caller over its rate gets 429 and no values, and a
    request refused before its read (a malformed one) still counts."""
    http, tokens, auth, store = agents
    key = auth.issue("dave", ["features:read"], rate_per_s=0.5, burst=3)
    body = {"features": ["last_price:v1"], "entities": {"ticker": "AAA"}}
    store.r.script_flush()  # as after a Redis restart: the queued EVALSHA meets NOSCRIPT and is made again
    first = http.post("/features", json=body, headers=_h(key))
    assert first.status_code == 200 and first.json()["rows"][0]["values"][0] is not None
    assert http.post("/features", json={**body, "entities": {"user": "x"}}, headers=_h(key)).status_code == 404
    assert http.get("/features", params={"feature": "last_price:v1", "ticker": "AAA"}, headers=_h(key)).status_code == 200
    limited = http.post("/features", json=body, headers=_h(key))
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited" and "rows" not in limited.json()
    assert int(limited.headers["retry-after"]) >= 1
    gcra = store.keys.quota("api", key.key_id, "gcra")
    assert store.r.exists(gcra), "the shared limiter's state is in Redis (every replica agrees)"


def test_per_key_rate_limit_is_429_with_retry_after(agents):
    http, tokens, _, _ = agents
    codes = [http.get("/catalog", headers=_h(tokens["reader"])).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    limited = http.get("/catalog", headers=_h(tokens["reader"]))
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    assert http.get("/catalog", headers=_h(tokens["alice"])).status_code == 200  # other keys are not affected


def test_bars_news_social_routes(agents):
    http, tokens, _, store = agents
    k = store.keys
    for field, value in zip(("open", "high", "low", "close", "volume"), (10.0, 12.0, 9.0, 11.0, 500.0)):
        store.r.execute_command("TS.ADD", k.provider_bar("AAA", "alphavantage", "1m", field), T - MIN, value)
        store.r.execute_command("TS.ADD", k.provider_bar("AAA", "alphavantage", "1m", field), T, value + 1)
    bars = http.get("/bars", params={"ticker": "AAA", "source": "alphavantage", "to": T - 1}, headers=_h(tokens["alice"])).json()
    assert bars["columns"] == ["t_ms", "open", "high", "low", "close", "volume"]
    assert bars["bars"] == [[T - MIN, 10.0, 12.0, 9.0, 11.0, 500.0]]
    assert http.get("/bars", params={"ticker": "ZZZ"}, headers=_h(tokens["alice"])).json()["bars"] == []
    assert http.get("/bars", params={"ticker": "aaa*"}, headers=_h(tokens["alice"])).status_code in (400, 422)

    t = T - 30 * MIN
    store.r.hset(k.article("n1"), mapping={"title": "On time", "published_ms": t - MIN, "stored_ms": t - MIN + 500, "sentiment": 0.2})
    store.r.hset(k.article("n2"), mapping={"title": "Delayed feed", "published_ms": t, "stored_ms": t + 5 * MIN, "sentiment": -0.4})
    store.r.zadd(k.news_index("AAA"), {"n1": t - MIN, "n2": t})
    known = http.get("/news", params={"ticker": "AAA", "as_of": t + MIN}, headers=_h(tokens["alice"])).json()
    assert [a["id"] for a in known] == ["n1"]
    happened = http.get("/news", params={"ticker": "AAA", "as_of": t + MIN, "time_basis": "event"}, headers=_h(tokens["alice"])).json()
    assert [a["id"] for a in happened] == ["n2", "n1"] and happened[0]["sentiment"] == -0.4
    now = http.get("/news", params={"ticker": "AAA"}, headers=_h(tokens["alice"])).json()
    assert [a["id"] for a in now][:2] == ["n2", "n1"] and now[0]["stored_ms"] == t + 5 * MIN

    store.r.hset(k.post("s1"), mapping={"platform": "reddit", "text": "AAA to the moon", "created_ms": t, "stored_ms": t + 1000,
                                        "score": 12, "sentiment": 0.7})  # fmt: skip
    store.r.zadd(k.social_index("AAA"), {"s1": t})
    posts = http.get("/social", params={"ticker": "AAA"}, headers=_h(tokens["alice"])).json()
    assert posts[0]["id"] == "s1" and posts[0]["platform"] == "reddit" and posts[0]["score"] == 12.0


def test_search_route_filters_by_what_was_known(agents):
    http, tokens, _, store = agents
    ensure_documents_index(store.r, store.keys)
    vector = HashEmbedder().encode_one("gross margin outlook")
    public = T - 86_400_000
    record = ChunkRecord("sec:AAA-1", 0, "AAA", "10-K", "sec", "Item 7", public, None, "gross margin outlook improved",
                         "raw/sec/AAA-1.htm", "h1", stored_ms=public + 3_600_000)  # fmt: skip
    write_document(store.r, store.keys, [record], {0: vector.tobytes()})
    h = _h(tokens["alice"])
    now = http.get("/search", params={"q": "gross margin outlook", "ticker": "AAA", "k": 10}, headers=h).json()
    hit = next(hit for hit in now["hits"] if hit["doc_id"] == "sec:AAA-1")
    assert hit["blob_url"] == "raw/sec/AAA-1.htm" and hit["form"] == "10-K" and hit["public_ms"] == public

    def ids(params: dict) -> set[str]:
        resp = http.get("/search", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return {hit["doc_id"] for hit in resp.json()["hits"]}

    early = {"q": "gross margin outlook", "ticker": "AAA", "as_of": public + 60_000, "k": 10}
    assert "sec:AAA-1" not in ids(early)  # public, but the pipeline stored it an hour later
    assert "sec:AAA-1" in ids(early | {"time_basis": "event"})
    assert "sec:AAA-1" in ids(early | {"as_of": public + 3_600_000})
    assert http.get("/search", params={"q": "x", "form": "8-K"}, headers=h).status_code == 422


def test_sentiment_features_as_of_use_what_was_known(agents):
    """A news score published at t but stored at t + 5 min does not move news_sentiment_1h at t + 1 min."""
    http, tokens, _, store = agents
    k = store.keys
    t = T + 10 * MIN
    series, known = k.sentiment("AAA", "news"), k.known("AAA", "sentiment", "news")
    store.r.execute_command("TS.ADD", series, t, -1.0)
    store.r.execute_command("TS.ADD", known, t, t + 5 * MIN)

    def value(basis: str, at: int) -> float | None:
        resp = http.get("/features", params={"feature": "news_sentiment_1h:v1", "ticker": "AAA", "as_of": at, "time_basis": basis},
                        headers=_h(tokens["alice"]))  # fmt: skip
        assert resp.status_code == 200, resp.text
        return resp.json()["rows"][0]["values"][0]

    before = value("knowledge", t - 1)
    assert value("knowledge", t + MIN) == pytest.approx(before)  # not known yet
    assert value("event", t + MIN) != pytest.approx(before)  # but it had happened
    assert value("knowledge", t + 6 * MIN) == pytest.approx(value("event", t + 6 * MIN))


def test_hostile_ids_and_numbers_are_4xx(agents):
    http, tokens, _, store = agents
    h = _h(tokens["alice"])
    for hostile in ("*", "$..", "{", "}", "pa}", "a b", "x" * 65, "..", "pa;DROP"):
        for method, path in (("get", f"/portfolios/{hostile}"), ("post", f"/portfolios/{hostile}/cash"),
                             ("get", f"/users/{hostile}"), ("put", f"/portfolios/pa/watchlist/{hostile}")):  # fmt: skip
            resp = getattr(http, method)(path, headers=h, **({"json": {"delta": 1}} if method == "post" else {}))
            assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text)
    huge = "A" * 1_000_000
    assert 400 <= http.get("/news", params={"ticker": huge[:5000]}, headers=h).status_code < 500
    assert 400 <= http.post("/portfolios/pa/fills", json={"ticker": huge, "quantity": 1, "price": 1}, headers=h).status_code < 500
    assert 400 <= http.post("/search", json={}, headers=h).status_code < 500
    for bad in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = '{"ticker": "AAA", "quantity": %s, "price": 10}' % bad
        resp = http.post("/portfolios/pa/fills", content=body, headers=h | {"Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500, (bad, resp.status_code, resp.text)
        resp = http.post("/portfolios/pa/cash", content='{"delta": %s}' % bad, headers=h | {"Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500
    cash = json.loads(store.r.execute_command("JSON.GET", store.keys.portfolio("pa"), "$.cash"))[0]
    assert math.isfinite(cash) and cash == 1000


@pytest.fixture
def api_schema(agents):
    http, _, _, _ = agents
    schema = schemathesis.openapi.from_asgi("/openapi.json", http.app)
    return schema


fuzz_schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@fuzz_schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_openapi_never_500(case, agents):
    """Schema-driven (and schema-violating) inputs on every operation: never a 5xx, never an unhandled error."""
    _, tokens, _, _ = agents
    response = case.call(headers={"Authorization": f"Bearer {tokens['fuzz'].token}"})
    assert response.status_code < 500, (case.method, case.formatted_path, case.path_parameters, case.query,
                                        case.body, response.status_code, response.text[:500])  # fmt: skip


def test_cli_issues_lists_and_revokes(redis_url, key_prefix, r):
    env = {"HEADWATER_REDIS_URL": redis_url, "HEADWATER_REDIS_KEY_PREFIX": key_prefix, "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "features.auth", *args], cwd=ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)  # fmt: skip
    issued = run("issue", "--owner", "dave", "--scope", "features:read", "--scope", "state:write", "--label", "bot")
    assert issued.returncode == 0, issued.stderr
    body = json.loads(issued.stdout)
    assert body["api_key"].startswith(f"hw_{body['key_id']}_") and "not shown again" in issued.stderr
    listed = json.loads(run("list", "--owner", "dave").stdout)
    assert [k["key_id"] for k in listed] == [body["key_id"]] and "sha256" not in listed[0] and listed[0]["label"] == "bot"
    assert run("revoke", body["key_id"]).returncode == 0
    assert run("revoke", body["key_id"]).returncode == 1
    assert run("issue", "--owner", "dave", "--scope", "admin").returncode == 2  # argparse: unknown scope
