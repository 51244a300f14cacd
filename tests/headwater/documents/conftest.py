"""Fixtures of the document tests: one embedding model per session, a Blob container per test, an EDGAR client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from headwater.documents.embed import Embedder, get_embedder
from headwater.keys import Keys
from headwater.providers.edgar import EdgarClient
from headwater.settings import BlobSettings
from headwater.storage.blob import BlobStore

from .support import edgar_client


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The process-wide default model, loaded once (10-30 s on a busy 2-core machine)."""
    model = get_embedder()
    model.model  # noqa: B018 - load now, not inside the first test that embeds
    return model


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
def blobs(blob_connection_string: str) -> Iterator[BlobStore]:
    """A BlobStore whose raw container is unique to the test (deleted afterwards)."""
    name = f"raw-{uuid.uuid4().hex[:12]}"
    store = BlobStore(BlobSettings(raw_container=name), connection_string=blob_connection_string)
    store.service.create_container(name)
    try:
        yield store
    finally:
        store.service.delete_container(name)


@pytest.fixture
def edgar(r: redis.Redis, keys: Keys, standins) -> EdgarClient:
    """An EDGAR client for the test's stand-in, sharing the fair-access limiter under the test's prefix."""
    return edgar_client(r, keys, standins.base_urls()["sec"])
