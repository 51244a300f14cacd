"""What the document flows share: fetch -> raw Blob + ``stream:raw_documents`` -> checkpoint -> (process).

``flows/sec_filings_fetcher.py`` and ``flows/earnings_transcripts_scraper.py`` differ in how they find and fetch
a document; storing it, remembering it and optionally running the document processor are the same, and so is
the retry rule: a provider error is retried only when it is retryable (``ProviderError.retryable``), plus the
errors a flow names as permanent (a fair-access block, a page that does not parse) are never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from prefect import task
from prefect.cache_policies import NO_CACHE

from headwater.documents import RawDocument, StoreOutcome, store_raw_document
from headwater.keys import Keys
from headwater.providers.http import ProviderError
from headwater.settings import Settings
from headwater.storage.blob import BlobStore
from headwater.storage.redis import connect


def retry_unless(*permanent: type[BaseException]) -> Callable[[Any, Any, Any], bool]:
    """A Prefect retry condition: retry I/O errors and retryable provider errors, never ``permanent`` ones."""

    def transient(task: Any, task_run: Any, state: Any) -> bool:
        exc = state.data if isinstance(state.data, BaseException) else None
        if exc is None:
            try:
                state.result()
            except BaseException as raised:  # noqa: BLE001 - we only classify it
                exc = raised
        if permanent and isinstance(exc, permanent):
            return False
        return not isinstance(exc, ProviderError) or exc.retryable

    return transient


def io_task(delays_s: list[float], *permanent: type[BaseException]) -> dict[str, Any]:
    """``@task(**io_task([2, 5, 15], Blocked))``: three retries with those delays (50 % jitter)."""
    return dict(retries=len(delays_s), retry_delay_seconds=delays_s, retry_jitter_factor=0.5,
                retry_condition_fn=retry_unless(*permanent), cache_policy=NO_CACHE)  # fmt: skip


STORE_TASK = io_task([2, 5, 15])


@dataclass
class DocumentContext:
    """The clients one run of a document flow shares; ``job`` names its checkpoint hashes."""

    job: str
    client: redis.Redis
    keys: Keys
    blobs: BlobStore
    maxlen: int

    def checkpoint(self, ticker: str) -> str:
        """``checkpoint:{job}:{TICKER}``: document id (accession, ``YYYYQn``) -> content SHA-256."""
        return self.keys.checkpoint(self.job, ticker)

    def stored_ids(self, ticker: str) -> set[str]:
        return {d.decode() for d in self.client.hkeys(self.checkpoint(ticker))}


def document_clients(settings: Settings) -> tuple[redis.Redis, Keys, BlobStore, int]:
    """Redis, the key schema, Blob (containers ensured) and the stream horizon a document flow run uses."""
    client = connect(settings.redis)
    blobs = BlobStore(settings.blob)
    blobs.ensure_containers()
    return client, Keys(settings.redis.key_prefix), blobs, settings.streams.maxlen


@task(**STORE_TASK)
def store_document(ctx: DocumentContext, doc: RawDocument, data: bytes) -> StoreOutcome:
    """Write the raw document to Blob (idempotent by content hash) and reference it on stream:raw_documents."""
    return store_raw_document(ctx.blobs, ctx.client, ctx.keys, doc, data, maxlen=ctx.maxlen)


@task(**STORE_TASK)
def record_checkpoint(ctx: DocumentContext, ticker: str, doc_key: str, content_sha256: str) -> None:
    """Remember that a document is stored, so later runs skip it."""
    ctx.client.hset(ctx.checkpoint(ticker), doc_key, content_sha256)


@task(cache_policy=NO_CACHE)
def process_documents(ctx: DocumentContext) -> dict[str, int]:
    """Drain stream:raw_documents through the document processor (one-shot runs without a standing processor)."""
    from headwater.processors.documents import DocumentProcessor, drain
    from headwater.documents.embed import get_embedder

    return drain(DocumentProcessor(ctx.client, ctx.keys, ctx.blobs, get_embedder())).__dict__
