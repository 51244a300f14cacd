"""Helpers shared by the document tests (fixtures are in conftest.py)."""

from __future__ import annotations

import time

import redis

from headwater.documents import RawDocument, StoreOutcome, store_raw_document
from headwater.keys import Keys
from headwater.providers.edgar import EdgarClient, FilingRef
from headwater.settings import EdgarSettings
from headwater.storage.blob import BlobStore

USER_AGENT = "Headwater Tests tests@headwater.dev"


def edgar_settings(base_url: str, **overrides: object) -> EdgarSettings:
    """EDGAR settings for a stand-in at ``base_url`` (``.../sec``), with a declared User-Agent."""
    return EdgarSettings(**{"user_agent": USER_AGENT, "base_url": base_url, **overrides})


def edgar_client(r: redis.Redis, keys: Keys, base_url: str, **kwargs: object) -> EdgarClient:
    """A client sharing the fair-access limiter in ``r``; settings fields and limiter kwargs both accepted."""
    fields = {k: kwargs.pop(k) for k in ("block_cooloff_s", "max_requests_per_s", "user_agent") if k in kwargs}
    return EdgarClient.from_settings(edgar_settings(base_url, **fields), r, keys, **kwargs)


def ingest_filing(edgar: EdgarClient, blobs: BlobStore, r: redis.Redis, keys: Keys, ticker: str,
                  form: str) -> tuple[FilingRef, RawDocument, StoreOutcome]:  # fmt: skip
    """What one sec_filings_fetcher iteration does for the ticker's newest filing of ``form``."""
    from flows.sec_filings_fetcher import raw_document

    ref = edgar.filings(ticker, edgar.cik(ticker), [form])[-1]
    doc = raw_document(ref, edgar.acceptance_time(ref))
    return ref, doc, store_raw_document(blobs, r, keys, doc, edgar.download(ref.url))


def logged_requests(hub, count: int, providers: tuple[str, ...] = ("sec", "sec_data"), timeout_s: float = 5.0) -> list[dict]:
    """The stand-in's log for ``providers`` once it holds ``count`` entries (it records a request after answering)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = [e for e in hub.requests_log() if e["provider"] in providers]
        if len(log) >= count or time.monotonic() > deadline:
            return log
        time.sleep(0.01)
