"""The feature API while Redis is SIGKILLed and restarted on the same port and data dir: 503 with a clear body
while it is down, the same values again once it is back -- with no restart of the API."""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest
from fastapi.testclient import TestClient
from feature_scenario import T, Store, write_market

from features.api import create_app
from features.auth import ApiKeyStore
from features.engineer import run_engineer, select_specs
from features.online_store import OnlineLayout
from features.serving import ServingClient
import devstack
from headwater.keys import Keys
from headwater.storage.redis import connect


@pytest.fixture
def restartable(tmp_path):
    password = secrets.token_urlsafe(16)
    state = {"handle": devstack.start_redis(tmp_path / "redis", password=password)}

    def kill() -> None:
        os.kill(state["handle"].pid, signal.SIGKILL)
        state["handle"].process.wait(timeout=10)

    def restart() -> None:
        state["handle"] = devstack.start_redis(tmp_path / "redis", port=state["handle"].port, password=password)

    try:
        yield state["handle"].url, kill, restart
    finally:
        if state["handle"].process.poll() is None:
            state["handle"].stop()


def test_feature_api_answers_503_while_redis_is_down_and_200_after(restartable, catalog):
    url, kill, restart = restartable
    prefix = "api:"
    client = connect(url=url)
    store = Store(client, Keys(prefix), OnlineLayout.for_namespace(prefix))
    write_market(store)
    run_engineer(client, store.keys, select_specs(catalog), ["AAA"], T)
    serving = ServingClient(client, key_prefix=prefix, catalog=catalog)
    request = {"features": ["last_price:v1"], "entities": {"ticker": ["AAA"]}}
    token = ApiKeyStore(client, store.keys).issue("u1", ["features:read"]).token
    with TestClient(create_app(serving), headers={"Authorization": f"Bearer {token}"}) as http:
        ok = http.post("/features", json=request)
        assert ok.status_code == 200, ok.text
        assert http.get("/health").json() == {"status": "ok"}

        kill()
        started = time.monotonic()
        down = http.post("/features", json=request)
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["error"] == "redis_unavailable" and "Redis" in body["detail"]
        assert down.headers["retry-after"] == "1"
        assert time.monotonic() - started < 10  # the client's bounded retries, not a hang
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["error"] == "redis_unavailable"

        restart()
        again = http.post("/features", json=request)
        assert again.status_code == 200, again.text
        assert again.json()["rows"] == ok.json()["rows"]  # the AOF brought every value back
        assert http.get("/health").json() == {"status": "ok"}
