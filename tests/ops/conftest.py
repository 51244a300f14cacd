"""Fixtures of the operations tests: a Blob store with containers of its own, and an archive context."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from headwater.keys import Keys
from headwater.settings import BlobSettings
from headwater.storage.blob import BlobStore, PutResult


class CountingBlobStore(BlobStore):
    """A real BlobStore that counts the uploads that actually wrote something."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[str] = []

    def put(self, container: str, path: str, data: bytes, **kwargs: object) -> PutResult:  # type: ignore[override]
        result = super().put(container, path, data, **kwargs)  # type: ignore[arg-type]
        if result.written:
            self.writes.append(path)
        return result


@pytest.fixture
def blob_settings() -> BlobSettings:
    """Containers unique to this test (Azure container names: lower case, digits, '-')."""
    tag = uuid.uuid4().hex[:10]
    return BlobSettings(raw_container=f"raw-{tag}", warm_container=f"warm-{tag}", cold_container=f"cold-{tag}")


@pytest.fixture
def store(blob_connection_string: str, blob_settings: BlobSettings) -> Iterator[CountingBlobStore]:
    s = CountingBlobStore(blob_settings, connection_string=blob_connection_string)
    s.ensure_containers()
    try:
        yield s
    finally:
        for name in (blob_settings.raw_container, blob_settings.warm_container, blob_settings.cold_container):
            s.service.delete_container(name)


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def ops_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, blob_connection_string: str, key_prefix: str,
            blob_settings: BlobSettings, store: CountingBlobStore) -> None:  # fmt: skip
    """Point Settings() (the CLIs and flows) at the test's Redis namespace and containers; keep logging alone."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("HEADWATER_REDIS_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob_connection_string)
    monkeypatch.setenv("HEADWATER_BLOB_RAW_CONTAINER", blob_settings.raw_container)
    monkeypatch.setenv("HEADWATER_BLOB_WARM_CONTAINER", blob_settings.warm_container)
    monkeypatch.setenv("HEADWATER_BLOB_COLD_CONTAINER", blob_settings.cold_container)
    monkeypatch.setattr("headwater.log.setup_logging", lambda *a, **k: None)

