"""What the document flows share: fetch -> raw Blob + ``stream:raw_documents`` -> checkpoint -> (process).

``flows/sec_filings_fetcher.py`` and ``flows/earnings_transcripts_scraper.py`` differ in how they find and fetch
a document; storing it, remembering it and optionally running the document processor
(``headwater.processors.documents``) are the same. Their run's context is a ``DocumentContext``: the flow's
``FlowContext`` plus the job that names its checkpoint hashes (and, in the subclasses, the site's client).
Retries are the flows' one policy (``flows.retry``): a fair-access block or a page that does not parse is never
retried, a retryable provider error or a Redis/Blob hiccup is.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.context import FlowContext
from flows.retry import io_task
from headwater.documents import RawDocument, StoreOutcome, store_raw_document
from headwater.keys import Keys
from headwater.storage.blob import BlobStore


@dataclass
class DocumentContext:
    """A document flow's view of its run's ``FlowContext``; ``job`` names its checkpoint hashes."""

    flow: FlowContext
    job: str

    @property
    def client(self) -> redis.Redis:
        return self.flow.client

    @property
    def keys(self) -> Keys:
        return self.flow.keys

    @property
    def blobs(self) -> BlobStore:
        return self.flow.store

    @property
    def maxlen(self) -> int:
        """The stream horizon of ``stream:raw_documents``."""
        return self.flow.settings.streams.maxlen

    def checkpoint(self, ticker: str) -> str:
        """``checkpoint:{job}:{TICKER}``: document id (accession, ``YYYYQn``) -> content SHA-256."""
        return self.keys.checkpoint(self.job, ticker)

    def stored_ids(self, ticker: str) -> set[str]:
        return {d.decode() for d in self.client.hkeys(self.checkpoint(ticker))}


@io_task(retry_delay_seconds=[2, 5, 15])
def store_document(ctx: DocumentContext, doc: RawDocument, data: bytes) -> StoreOutcome:
    """Write the raw document to Blob (idempotent by content hash) and reference it on stream:raw_documents."""
    return store_raw_document(ctx.blobs, ctx.client, ctx.keys, doc, data, maxlen=ctx.maxlen)


@io_task(retry_delay_seconds=[2, 5, 15])
def record_checkpoint(ctx: DocumentContext, ticker: str, doc_key: str, content_sha256: str) -> None:
    """Remember that a document is stored, so later runs skip it."""
    ctx.client.hset(ctx.checkpoint(ticker), doc_key, content_sha256)


@task(cache_policy=NO_CACHE)
def process_documents(ctx: DocumentContext) -> dict[str, int]:
    """Drain stream:raw_documents through the document processor (one-shot runs without a standing processor)."""
    from headwater.documents.embed import get_embedder
    from headwater.processors.documents import DocumentProcessor, drain

    return drain(DocumentProcessor(ctx.client, ctx.keys, ctx.blobs, get_embedder())).__dict__
