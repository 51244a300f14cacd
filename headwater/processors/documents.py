"""document_processor: ``stream:raw_documents`` -> parse -> chunk -> embed -> ``idx:documents``.

    python -m headwater.processors.documents [--consumer NAME] [--once] [--batch-size 8] [--model NAME]

A ``StreamWorker`` in consumer group ``processing_group``. Each entry references a raw document in Blob
(``headwater.documents.DocumentRef``); per entry the worker

1. checks the blob's size against ``--max-document-bytes`` before downloading it,
2. parses it into sections (10-K items, 10-Q parts and items, transcript prepared remarks / Q&A),
3. cuts token-aware, overlapping chunks with the embedding model's tokenizer,
4. looks up the stored chunks' ``content_hash`` and embeds only chunks whose text is not stored yet (one
   batched encode for the whole batch of entries; a chunk moved by an edit earlier in the document keeps
   its vector), and
5. replaces the document's chunk hashes atomically (``doc:{DOC_ID}:chunk:{N}``, indexed by
   ``idx:documents``), each carrying ``public_ms`` for point-in-time retrieval and ``blob_url``/``section``
   for provenance.

A bad document (malformed entry, missing blob, over the size limit, truncated or unparseable) is
dead-lettered with a clear reason and the worker goes on with the next entry; infrastructure errors
(Redis, Blob) raise, so ``StreamWorker`` retries the entry and dead-letters it only after
``max_deliveries``. Writes are idempotent, so a redelivered entry changes nothing and embeds nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
from azure.core.exceptions import ResourceNotFoundError
from pydantic import ValidationError

from headwater.documents import DocumentRef
from headwater.documents.chunking import DEFAULT_OVERLAP_TOKENS, chunk_sections
from headwater.documents.embed import Embedder, get_embedder, to_bytes
from headwater.documents.index import ChunkRecord, ensure_documents_index, stored_chunks, stored_vectors, write_document
from headwater.documents.parse import MalformedDocument, ParsedDocument, parse_filing, parse_transcript_document
from headwater.keys import Keys
from headwater.providers.transcripts import TranscriptSelectors
from headwater.storage.blob import BlobStore
from headwater.streams import Entry, StreamWorker

log = logging.getLogger("headwater.processors.documents")

STAGE = "document_processor"
DEFAULT_MAX_DOCUMENT_BYTES = 50_000_000


class Rejected(Exception):
    """This entry can never be processed as it is: dead-letter it with the message as the reason."""


@dataclass
class ProcessorStats:
    entries: int = 0
    documents: int = 0
    rejected: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0

    def summary(self) -> str:
        return (f"{STAGE}: {self.entries} entries, {self.documents} documents indexed, {self.rejected} dead-lettered, "
                f"{self.chunks} chunks ({self.embedded} embedded, {self.unchanged} unchanged), "
                f"{self.removed} stale chunks removed")  # fmt: skip


@dataclass
class _Job:
    """One document's chunks and what is already stored: ``stored`` maps position -> content hash."""

    ref: DocumentRef
    records: list[ChunkRecord]
    stored: dict[int, str]
    vectors: dict[int, bytes] = field(default_factory=dict)  # to write, by position (new or moved)
    embedded: int = 0

    def plan(self) -> tuple[list[ChunkRecord], dict[int, int]]:
        """(chunks to embed, {new position: old position} of unchanged chunks that moved)."""
        where = {digest: n for n, digest in self.stored.items()}
        todo, moved = [], {}
        for record in self.records:
            if self.stored.get(record.position) == record.content_hash:
                continue  # unchanged in place: its vector stays
            if record.content_hash in where:
                moved[record.position] = where[record.content_hash]  # unchanged text at another position
            else:
                todo.append(record)
        return todo, moved


class DocumentProcessor:
    """The handler ``StreamWorker`` calls with batches of ``stream:raw_documents`` entries."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        blobs: BlobStore | None,
        embedder: Embedder,
        *,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    ) -> None:
        self.client = client
        self.keys = keys
        self.blobs = blobs
        self.embedder = embedder
        self.max_document_bytes = max_document_bytes
        self.overlap_tokens = overlap_tokens
        self.stats = ProcessorStats()

    def ensure_index(self) -> None:
        ensure_documents_index(self.client, self.keys, self.embedder.dims)

    def __call__(self, entries: list[Entry]) -> list[str | None]:
        """Process a batch; per entry None (done) or the reason it is dead-lettered."""
        outcomes: list[str | None] = []
        jobs: list[_Job] = []
        for _, fields in entries:
            self.stats.entries += 1
            try:
                jobs.append(self._chunk(*self._load(fields)))
                outcomes.append(None)
            except Rejected as exc:
                self.stats.rejected += 1
                outcomes.append(str(exc))
        self._embed_and_write(jobs)
        return outcomes

    def index_documents(self, documents: Sequence[tuple[DocumentRef, ParsedDocument]]) -> None:
        """Chunk, embed (new or changed chunks only) and write documents that are already parsed."""
        self._embed_and_write([self._chunk(ref, parsed) for ref, parsed in documents])

    def _load(self, fields: dict[bytes, bytes]) -> tuple[DocumentRef, ParsedDocument]:
        try:
            ref = DocumentRef.from_fields(fields)
        except ValueError as exc:
            raise Rejected(f"malformed stream entry: {exc}") from None
        where = f"{ref.doc_id} ({ref.container}/{ref.path})"
        raw = self._download(ref, where)
        try:
            return ref, self._parse(ref, raw)
        except MalformedDocument as exc:
            raise Rejected(f"malformed document {where}: {exc}") from None

    def _chunk(self, ref: DocumentRef, parsed: ParsedDocument) -> _Job:
        """Chunks of a parsed document and which of them are already stored with the same content."""
        chunks = chunk_sections(parsed.sections, self.embedder.tokenizer, max_tokens=self.embedder.chunk_tokens,
                                overlap_tokens=self.overlap_tokens)  # fmt: skip
        if not chunks:
            raise Rejected(f"malformed document {ref.doc_id} ({ref.container}/{ref.path}): no text to index")
        period = parsed.fiscal_period or ref.period
        stored_ms = int(time.time() * 1000)  # knowledge time: when the pipeline learned this version
        records = [
            ChunkRecord(ref.doc_id, c.position, ref.ticker, ref.form, ref.source, c.section, ref.public_ms, period, c.text,
                        ref.blob_url, c.content_hash, stored_ms=stored_ms)
            for c in chunks
        ]  # fmt: skip
        return _Job(ref, records, stored_chunks(self.client, self.keys, ref.doc_id, self.embedder.dims))

    def _embed_and_write(self, jobs: list[_Job]) -> None:
        """One batched encode for every new or changed chunk of the batch, then one atomic write per document.

        A chunk whose text is stored anywhere in the document (same content hash) keeps its vector, even if an
        edit earlier in the document moved it to another position.
        """
        todo: list[tuple[_Job, ChunkRecord]] = []
        for job in jobs:
            new, moved = job.plan()
            todo += [(job, record) for record in new]
            old = stored_vectors(self.client, self.keys, job.ref.doc_id, sorted(set(moved.values()))) if moved else {}
            job.vectors.update({position: old[was] for position, was in moved.items() if was in old})
        if todo:
            vectors = self.embedder.encode([record.text for _, record in todo])
            for (job, record), vector in zip(todo, vectors):
                job.vectors[record.position] = to_bytes(vector)
                job.embedded += 1
        for job in jobs:
            self.stats.removed += write_document(self.client, self.keys, job.records, job.vectors)
            self.stats.documents += 1
            self.stats.chunks += len(job.records)
            self.stats.embedded += job.embedded
            self.stats.unchanged += len(job.records) - job.embedded
            log.info("indexed %s (%s %s): %d chunks, %d embedded, %d unchanged", job.ref.doc_id, job.ref.ticker,
                     job.ref.form, len(job.records), job.embedded, len(job.records) - job.embedded)  # fmt: skip

    def _download(self, ref: DocumentRef, where: str) -> bytes:
        if self.blobs is None:
            raise RuntimeError("this DocumentProcessor has no BlobStore: it can only index parsed documents")
        blob = self.blobs.service.get_blob_client(ref.container, ref.path)
        try:
            size = blob.get_blob_properties().size
            if size > self.max_document_bytes:
                raise Rejected(f"document too large: {where} is {size:,} bytes, over the {self.max_document_bytes:,}-byte limit")
            return blob.download_blob().readall()
        except ResourceNotFoundError:
            raise Rejected(f"raw document not found in Blob: {where}") from None

    @staticmethod
    def _parse(ref: DocumentRef, raw: bytes) -> ParsedDocument:
        if ref.source == "sec":
            return parse_filing(raw, ref.form)
        if ref.period is None:
            raise MalformedDocument("a transcript entry needs its fiscal period (YYYYQ)")
        try:
            selectors = TranscriptSelectors.model_validate_json(ref.selectors) if ref.selectors else None
        except ValidationError as exc:
            raise MalformedDocument(f"unusable selectors in the entry: {exc.errors()[0]['msg']}") from None
        return parse_transcript_document(raw, ticker=ref.ticker, year=ref.period // 10, quarter=ref.period % 10,
                                         url=ref.url, selectors=selectors)  # fmt: skip


def build_worker(processor: DocumentProcessor, *, consumer: str | None = None, batch_size: int = 8,
                 block_ms: int = 1000, claim_idle_ms: int = 300_000, max_deliveries: int = 5) -> StreamWorker:  # fmt: skip
    """A consumer of ``stream:raw_documents`` running ``processor`` (claim idle long: a batch can take minutes)."""
    return StreamWorker(
        processor.client, processor.keys, processor.keys.raw_documents, processor,
        consumer=consumer or f"documents@{socket.gethostname()}-{os.getpid()}", stage=STAGE, batch_size=batch_size,
        block_ms=block_ms, claim_idle_ms=claim_idle_ms, max_deliveries=max_deliveries,
    )  # fmt: skip


def drain(processor: DocumentProcessor, *, idle_exit_s: float = 1.0, **worker_kwargs: object) -> ProcessorStats:
    """Process everything on the stream until it has been idle ``idle_exit_s`` (demos, tests, one-off catch-up)."""
    processor.ensure_index()
    build_worker(processor, **worker_kwargs).run(idle_exit_s=idle_exit_s)  # type: ignore[arg-type]
    return processor.stats


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging
    from headwater.settings import Settings
    from headwater.storage.redis import connect

    parser = argparse.ArgumentParser(prog="python -m headwater.processors.documents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumer", default=None, help="consumer name (default documents@<host>-<pid>)")
    parser.add_argument("--once", action="store_true", help="exit once the stream is drained instead of waiting")
    parser.add_argument("--idle-exit-s", type=float, default=1.0, help="with --once: idle time that counts as drained")
    parser.add_argument("--batch-size", type=int, default=8, help="entries per batch (embedded together)")
    parser.add_argument("--max-document-bytes", type=int, default=DEFAULT_MAX_DOCUMENT_BYTES)
    parser.add_argument("--model", default=None, help="embedding model (default HEADWATER_EMBEDDING_MODEL or all-MiniLM-L6-v2)")
    parser.add_argument("--json", action="store_true", help="print the run's counters as JSON at the end")
    args = parser.parse_args(argv)
    setup_logging()
    settings = Settings()
    client = connect(settings.redis)
    processor = DocumentProcessor(client, Keys(settings.redis.key_prefix), BlobStore(settings.blob), get_embedder(args.model),
                                  max_document_bytes=args.max_document_bytes)  # fmt: skip
    processor.ensure_index()
    worker = build_worker(processor, consumer=args.consumer, batch_size=args.batch_size,
                          block_ms=settings.streams.block_ms, max_deliveries=settings.streams.max_deliveries)  # fmt: skip
    try:
        worker.run(idle_exit_s=args.idle_exit_s if args.once else None)
    except KeyboardInterrupt:
        pass
    log.info("%s (%d dead letters written by the worker)", processor.stats.summary(), worker.stats.dead_letters)
    if args.json:
        print(json.dumps(processor.stats.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
