"""Session fixtures: real Redis Stack and Azurite on random ports, started once per test session.

Set REDIS_URL (or HEADWATER_REDIS_URL) / AZURE_STORAGE_CONNECTION_STRING (or HEADWATER_BLOB_CONNECTION_STRING)
to run the tests against external servers instead -- the same rule as the product. Every test writes only
under its own ``key_prefix``, so tests can run in parallel against one server.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator

import pytest
import redis

import devstack
from headwater.storage.redis import check_redis_modules

# Prefect's ephemeral API (flows run without PREFECT_API_URL) must start within 20 s by default; a shared,
# busy CI machine can need longer. Subprocesses inherit this.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _external(name: str) -> str | None:
    return next((os.environ[v] for v in devstack.EXTERNAL_ENV[name] if os.environ.get(v)), None)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL (with a per-session random password) of a Redis with the Stack modules."""
    external = _external("redis")
    if external:
        check_redis_modules(external)
        yield external
        return
    handle = devstack.start_redis(tmp_path_factory.mktemp("redis"), password=secrets.token_urlsafe(24))
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """One client shared by the whole session."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def key_prefix() -> str:
    """A namespace unique to this test, e.g. ``t1a2b3c4d:``; write keys (and index names) only under it."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def r(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A fresh client for one test; afterwards deletes the test's keys and search indexes (by prefix)."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        for index in client.execute_command("FT._LIST"):
            name = index.decode() if isinstance(index, bytes) else str(index)
            if name.startswith(key_prefix):
                client.ft(name).dropindex(delete_documents=False)
        batch = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
        for start in range(0, len(batch), 500):
            client.unlink(*batch[start : start + 500])
        client.close()


@pytest.fixture(scope="session")
def blob_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Connection string of an Azure Blob endpoint (Azurite unless configured externally)."""
    external = _external("azurite")
    if external:
        yield external
        return
    handle = devstack.start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server (started once per session, ~15 s) unless PREFECT_API_URL is set.

    Sets PREFECT_API_URL for the session so flows and ``prefect`` clients in this process use it.
    """
    external = os.environ.get("PREFECT_API_URL")
    if external:
        yield external
        return
    handle = devstack.start_prefect(tmp_path_factory.mktemp("prefect"))
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = handle.url
    try:
        yield handle.url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        handle.stop()


@pytest.fixture
def standins():
    """The REST provider stand-in (every provider) on a free port; ``standins.base_urls()`` for clients."""
    from standins.http_server import ProviderStandIn

    with ProviderStandIn() as server:
        yield server
