"""Fixtures for the ingestion flows: the environment a flow run reads, provider stand-ins (optionally on a pinned
clock), fast quotas, and the test's Azurite containers.

No ``__init__.py`` here on purpose: with one, pytest imports this folder as the package ``flows`` and it hides
the real ``flows`` package (test modules are prefixed ``test_flow_`` to keep their names unique instead).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from headwater.keys import Keys

if TYPE_CHECKING:
    from flows.context import FlowContext

# Shorter backoff between task retries (1-2-4 s in production): read when flows.retry is first imported. A
# provider's Retry-After is still honoured in full (see test_flow_market's 429 storm).
os.environ.setdefault("HEADWATER_FLOW_RETRY_BASE_S", "0.2")

PROVIDERS = ("alphavantage", "newsapi", "reddit", "x")
KEY_VARS = ("ALPHAVANTAGE_API_KEY", "ALPHA_VANTAGE_API_KEY", "HEADWATER_ALPHAVANTAGE_API_KEY", "NEWSAPI_API_KEY",
            "NEWS_API_KEY", "HEADWATER_NEWSAPI_API_KEY", "HEADWATER_REDDIT_API_KEY", "HEADWATER_X_API_KEY",
            "X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN")  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def gx_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """GX state (suites, results, Data Docs) in a temporary folder, never in the working tree."""
    path = tmp_path_factory.mktemp("gx")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADWATER_GX_HOME", str(path))
        yield path


@pytest.fixture
def flow_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str, prefect_api_url: str, r) -> Iterator[Keys]:
    """What a flow run reads: this test's Redis namespace, no provider keys (simulated mode), the Prefect server.

    Prefect reads its settings once, at import: the session's server is set with ``temporary_settings``.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("HEADWATER_REDIS_URL", redis_url)
    monkeypatch.setenv("HEADWATER_REDIS_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HEADWATER_STANDIN_DISCOVER", "false")
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}):
        yield Keys(key_prefix)
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)  # ship this test's run logs while the server is surely up


@pytest.fixture
def flow_ctx(flow_env: Keys, r) -> FlowContext:  # noqa: ANN001
    """A flow context on the test's Redis client and namespace (what ``flow_context()`` builds for a run)."""
    from flows.context import FlowContext

    return FlowContext(r, flow_env)


def point_providers(monkeypatch: pytest.MonkeyPatch, hub) -> None:  # noqa: ANN001
    for provider in PROVIDERS:
        monkeypatch.setenv(f"HEADWATER_{provider.upper()}_BASE_URL", hub.base_urls()[provider])


@pytest.fixture
def live_hub(standins, monkeypatch: pytest.MonkeyPatch, flow_env: Keys):  # noqa: ANN001, ANN201
    """The shared stand-in on the real clock, with every provider pointed at it."""
    point_providers(monkeypatch, standins)
    return standins


@pytest.fixture
def hub_at(monkeypatch: pytest.MonkeyPatch, flow_env: Keys) -> Iterator[Callable[..., object]]:
    """Factory: a stand-in whose clock is pinned at ``when`` (aware datetime), providers pointed at it."""
    from standins.http_server import ProviderStandIn

    started: list[ProviderStandIn] = []

    def start(when: dt.datetime, **kwargs: object) -> ProviderStandIn:
        epoch = when.timestamp()
        hub = ProviderStandIn(clock=lambda: epoch, **kwargs).start()  # type: ignore[arg-type]
        started.append(hub)
        point_providers(monkeypatch, hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


@pytest.fixture
def quotas(tmp_path: Path) -> Callable[..., str]:
    """Factory: a data_sources.yaml with the given quotas per provider (others effectively unlimited)."""

    def write(**overrides: dict[str, float]) -> str:
        providers = {p: {"kind": "rest", "quota": {"per_second": 1000}} for p in PROVIDERS}
        for provider, quota in overrides.items():
            providers[provider] = {"kind": "rest", "quota": quota}
        path = tmp_path / f"data_sources-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump({"providers": providers}))
        return str(path)

    return write


@pytest.fixture
def retention_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Factory: config/retention.yaml with some kinds' hot days changed, in force for the test."""
    from headwater.retention import RETENTION_FILE

    def write(**days: float) -> str:
        policy = yaml.safe_load(RETENTION_FILE.read_text())
        for kind, value in days.items():
            policy["hot"]["kinds"][kind]["days"] = value
        path = tmp_path / f"retention-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(policy))
        monkeypatch.setenv("HEADWATER_RETENTION_FILE", str(path))
        return str(path)

    return write


@pytest.fixture
def fast(quotas: Callable[..., str]) -> str:
    """Quotas that never slow a test down (the real file paces Alpha Vantage at 75/min)."""
    return quotas()


@pytest.fixture
def blob_env(monkeypatch: pytest.MonkeyPatch, blob_connection_string: str) -> Iterator[dict[str, str]]:
    """This test's own warm/raw/cold containers in Azurite; removed afterwards."""
    from azure.storage.blob import BlobServiceClient

    suffix = uuid.uuid4().hex[:8]
    names = {"warm": f"warm{suffix}", "raw": f"raw{suffix}", "cold": f"cold{suffix}"}
    monkeypatch.setenv("HEADWATER_BLOB_CONNECTION_STRING", blob_connection_string)
    for tier, name in names.items():
        monkeypatch.setenv(f"HEADWATER_BLOB_{tier.upper()}_CONTAINER", name)
    yield names
    service = BlobServiceClient.from_connection_string(blob_connection_string)
    for name in names.values():
        try:
            service.delete_container(name)
        except Exception:  # noqa: BLE001 - never created
            pass
