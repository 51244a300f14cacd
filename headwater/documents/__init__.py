"""Documents: SEC filings and earnings-call transcripts, from raw blob to searchable chunks.

    flows/sec_filings_fetcher.py, flows/earnings_transcripts_scraper.py   fetch -> Blob -> stream:raw_documents
    headwater/processors/documents.py   stream -> parse -> chunking -> embed -> index (doc:{DOC_ID}:chunk:{N})
    headwater.documents.search     search_documents(...) for agents, with a semantic cache

Modules: ``parse`` (HTML/iXBRL -> sections), ``chunking`` (token-aware, with overlap), ``embed``
(sentence-transformers, offline default model), ``index`` (``idx:documents`` and chunk writes), ``search``.

This module holds the contract between the fetch flows and the document processor: where a raw document
lives in Blob (path scheme documented in ``flows/sec_filings_fetcher.py``), its blob metadata, and the
``stream:raw_documents`` entry that references it. The stream never carries the document itself, only:

    doc_id, source (sec|transcript), ticker, form, period (YYYYQ or ""), public_ms, public_at (ISO, UTC),
    container, path, blob_url, content_sha256, size, url (where it was fetched), accession (filings),
    selectors (transcripts: JSON of the scraper's CSS selectors, so the processor parses the page the same way)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import redis

from headwater.keys import Keys
from headwater.storage.blob import BlobStore

Source = Literal["sec", "transcript"]
SEEN_DATASET = "raw_documents"  # seen:raw_documents holds "{doc_id}:{content_sha256}" of published documents
_ENTRY_FIELDS = ("doc_id", "source", "ticker", "form", "public_ms", "container", "path", "content_sha256")


def filing_blob_path(ticker: str, form: str, accession: str, primary_document: str) -> str:
    """``sec/{TICKER}/{FORM}/{ACCESSION}/{primaryDocument}`` (``10-K/A`` is written ``10-K_A``)."""
    return f"sec/{ticker}/{form.replace('/', '_')}/{accession}/{primary_document.lstrip('/')}"


def transcript_blob_path(ticker: str, year: int, quarter: int) -> str:
    """``transcripts/{TICKER}/{YEAR}Q{QUARTER}.html`` (fiscal year and quarter)."""
    return f"transcripts/{ticker}/{year}Q{quarter}.html"


def iso_utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RawDocument:
    """A fetched document and everything the processor needs to index it point-in-time."""

    doc_id: str
    source: Source
    ticker: str
    form: str  # 10-K, 10-Q, 10-K/A, 10-Q/A, transcript
    public_ms: int  # EDGAR acceptance time / call time, epoch ms UTC
    period: int | None  # fiscal YYYYQ
    path: str  # blob path in the raw container
    url: str  # where it was fetched
    accession: str = ""
    selectors: str = ""  # transcripts: JSON of TranscriptSelectors
    extra_metadata: dict[str, str] = field(default_factory=dict)

    def blob_metadata(self) -> dict[str, str]:
        """Blob metadata (``content_sha256`` is added by ``BlobStore.put``)."""
        meta = {"doc_id": self.doc_id, "source": self.source, "ticker": self.ticker, "form": self.form,
                "period": str(self.period or ""), "public_ms": str(self.public_ms), "url": self.url}  # fmt: skip
        if self.source == "sec":
            meta |= {"accession": self.accession, "accepted_at": iso_utc(self.public_ms)}
        else:
            meta["call_at"] = iso_utc(self.public_ms)
        return {k: _ascii(v) for k, v in (meta | self.extra_metadata).items()}

    def entry(self, container: str, blob_url: str, content_sha256: str, size: int) -> dict[str, str]:
        """The ``stream:raw_documents`` fields referencing this document's blob."""
        return {"doc_id": self.doc_id, "source": self.source, "ticker": self.ticker, "form": self.form,
                "period": str(self.period or ""), "public_ms": str(self.public_ms), "public_at": iso_utc(self.public_ms),
                "container": container, "path": self.path, "blob_url": blob_url, "content_sha256": content_sha256,
                "size": str(size), "url": self.url, "accession": self.accession, "selectors": self.selectors}  # fmt: skip


@dataclass(frozen=True)
class DocumentRef:
    """A ``stream:raw_documents`` entry, validated (``ValueError`` says what is wrong)."""

    doc_id: str
    source: Source
    ticker: str
    form: str
    public_ms: int
    period: int | None
    container: str
    path: str
    blob_url: str
    content_sha256: str
    url: str = ""
    selectors: str = ""

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> DocumentRef:
        text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        missing = [name for name in _ENTRY_FIELDS if not text.get(name)]
        if missing:
            raise ValueError(f"entry without {', '.join(missing)}")
        if text["source"] not in ("sec", "transcript"):
            raise ValueError(f"unknown source {text['source']!r}")
        try:
            public_ms = int(text["public_ms"])
            period = int(text["period"]) if text.get("period") else None
        except ValueError as exc:
            raise ValueError(f"non-numeric public_ms/period: {exc}") from None
        if public_ms <= 0:
            raise ValueError(f"public_ms {public_ms} is not a time")
        return cls(text["doc_id"], text["source"], text["ticker"], text["form"], public_ms, period,  # type: ignore[arg-type]
                   text["container"], text["path"], text.get("blob_url", ""), text["content_sha256"],
                   text.get("url", ""), text.get("selectors", ""))  # fmt: skip


@dataclass(frozen=True)
class StoreOutcome:
    status: Literal["new", "unchanged", "republished"]
    blob_url: str
    content_sha256: str


def store_raw_document(
    blobs: BlobStore, client: redis.Redis, keys: Keys, doc: RawDocument, data: bytes, *,
    container: str | None = None, content_type: str = "text/html; charset=utf-8", maxlen: int = 2_000_000,
) -> StoreOutcome:  # fmt: skip
    """Put the raw document in Blob (idempotent by content hash) and reference it on ``stream:raw_documents``.

    Same content as before -> no blob write and no stream entry ("unchanged"). A blob that was written but
    never published (a crash in between) is published now ("republished"). Publish and the ``seen:``
    marker commit together.
    """
    container = container or blobs.settings.raw_container
    put = blobs.put(container, doc.path, data, metadata=doc.blob_metadata(), content_type=content_type)
    marker = f"{doc.doc_id}:{put.content_hash}"
    if not put.written and client.sismember(keys.seen(SEEN_DATASET), marker):
        return StoreOutcome("unchanged", put.url, put.content_hash)
    pipe = client.pipeline(transaction=True)
    pipe.xadd(keys.raw_documents, doc.entry(container, put.url, put.content_hash, len(data)), maxlen=maxlen, approximate=True)
    pipe.sadd(keys.seen(SEEN_DATASET), marker)
    pipe.execute()
    return StoreOutcome("new" if put.written else "republished", put.url, put.content_hash)


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode().replace("\n", " ")
