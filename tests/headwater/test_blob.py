"""Blob storage against a real Azurite: containers, idempotent puts, the Archive tier."""

import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import StandardBlobTier

from headwater.settings import BlobSettings
from headwater.storage.blob import BlobStore


@pytest.fixture
def store(blob_connection_string):
    suffix = uuid.uuid4().hex[:8]
    settings = BlobSettings(raw_container=f"raw{suffix}", warm_container=f"warm{suffix}", cold_container=f"cold{suffix}")
    s = BlobStore(settings, connection_string=blob_connection_string)
    s.ensure_containers()
    s.ensure_containers()  # idempotent
    return s


def test_put_is_idempotent_by_content(store):
    c = store.settings.raw_container
    first = store.put(c, "sec/AAPL/a.htm", b"<html>10-K</html>", metadata={"ticker": "AAPL"})
    again = store.put(c, "sec/AAPL/a.htm", b"<html>10-K</html>", metadata={"ticker": "AAPL"})
    changed = store.put(c, "sec/AAPL/a.htm", b"<html>10-K/A</html>")
    assert first.written and not again.written and changed.written
    assert store.get(c, "sec/AAPL/a.htm") == b"<html>10-K/A</html>"
    assert store.list(c, "sec/") == ["sec/AAPL/a.htm"]


def test_archived_blob_is_unreadable(store):
    c = store.settings.cold_container
    store.put(c, "audit/2019/log.jsonl", b'{"event":"ingested"}\n')
    store.set_tier(c, "audit/2019/log.jsonl", StandardBlobTier.ARCHIVE)
    with pytest.raises(HttpResponseError, match="archived"):
        store.get(c, "audit/2019/log.jsonl")
