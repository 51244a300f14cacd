"""document_processor: stand-in -> Blob -> stream -> chunks in idx:documents; idempotency; dead letters."""

from __future__ import annotations

import pytest

from flows.earnings_transcripts_scraper import raw_document as transcript_document
from headwater.processors.documents import DocumentProcessor, drain
from headwater.documents import store_raw_document
from headwater.documents.search import DocumentSearch
from headwater.providers.transcripts import TranscriptScraper, TranscriptSelectors

from .support import ingest_filing


@pytest.fixture
def processor(r, keys, blobs, embedder) -> DocumentProcessor:
    return DocumentProcessor(r, keys, blobs, embedder, max_document_bytes=200_000)


def chunk_keys(r, keys, doc_id: str) -> list[bytes]:
    return sorted(r.scan_iter(match=f"{keys.chunk_prefix}{doc_id}:chunk:*", count=1000))


def test_a_filing_flows_from_edgar_to_blob_to_the_index(r, keys, blobs, edgar, processor, embedder):
    ref, doc, outcome = ingest_filing(edgar, blobs, r, keys, "AAPL", "10-Q")
    assert outcome.status == "new"
    assert doc.path == f"sec/AAPL/10-Q/{ref.filing.accession}/{ref.filing.primary_document}"
    meta = blobs.service.get_blob_client(blobs.settings.raw_container, doc.path).get_blob_properties().metadata
    assert meta["ticker"] == "AAPL" and meta["form"] == "10-Q" and meta["accession"] == ref.filing.accession
    assert meta["period"] == str(ref.period) and meta["content_sha256"] == outcome.content_sha256
    assert meta["accepted_at"].endswith("Z") and meta["public_ms"] == str(doc.public_ms)
    entry = r.xrange(keys.raw_documents)[0][1]
    assert entry[b"path"] == doc.path.encode() and b"<html" not in b"".join(entry.values())  # a reference only

    stats = drain(processor)
    assert stats.documents == 1 and stats.rejected == 0 and stats.embedded == stats.chunks > 3
    assert r.xpending(keys.raw_documents, keys.group)["pending"] == 0
    fields = r.hgetall(keys.chunk(doc.doc_id, 0))
    assert fields[b"ticker"] == b"AAPL" and fields[b"form"] == b"10-Q" and fields[b"source"] == b"sec"
    assert int(fields[b"public_ms"]) == doc.public_ms and fields[b"blob_url"] == outcome.blob_url.encode()
    assert len(fields[b"embedding"]) == 4 * embedder.dims and fields[b"period"] == str(ref.period).encode()
    sections = {r.hget(k, "section") for k in chunk_keys(r, keys, doc.doc_id)}
    assert {b"Part I Item 2", b"Part II Item 1A"} <= sections

    hits = DocumentSearch(r, keys, embedder).search("management discussion of net sales and gross margin",
                                                    ticker="AAPL", use_cache=False).hits  # fmt: skip
    assert hits and hits[0].doc_id == doc.doc_id and hits[0].blob_url == outcome.blob_url
    assert hits[0].section.startswith("Part I") and hits[0].form == "10-Q"


def test_reingesting_the_same_content_writes_and_embeds_nothing(r, keys, blobs, edgar, processor):
    _, doc, first = ingest_filing(edgar, blobs, r, keys, "MSFT", "10-Q")
    drain(processor)
    before = chunk_keys(r, keys, doc.doc_id)
    blob = blobs.service.get_blob_client(blobs.settings.raw_container, doc.path)
    etag = blob.get_blob_properties().etag

    _, _, again = ingest_filing(edgar, blobs, r, keys, "MSFT", "10-Q")
    assert (again.status, again.content_sha256) == ("unchanged", first.content_sha256)
    assert blob.get_blob_properties().etag == etag  # no new blob write
    assert r.xlen(keys.raw_documents) == 1  # nothing re-published

    r.xadd(keys.raw_documents, r.xrange(keys.raw_documents)[0][1])  # a redelivery / manual replay of the same entry
    stats = drain(processor)
    assert stats.documents == 2 and stats.embedded == len(before) and stats.unchanged == len(before)  # 2nd: 0 new
    assert chunk_keys(r, keys, doc.doc_id) == before


def test_bad_documents_are_dead_lettered_and_the_worker_goes_on(r, keys, blobs, edgar, processor, standins):
    # 1. truncated on the wire (the stand-in cuts the body in half), 2. over the size limit, 3. a broken entry
    ref = edgar.filings("AAPL", edgar.cik("AAPL"), ["10-Q"])[-1]
    standins.inject("sec", "malformed", path=ref.filing.primary_document)
    _, truncated, _ = ingest_filing(edgar, blobs, r, keys, "AAPL", "10-Q")
    _, oversized, _ = ingest_filing(edgar, blobs, r, keys, "AAPL", "10-K")  # ~47 KB
    processor.max_document_bytes = 30_000
    r.xadd(keys.raw_documents, {"doc_id": "sec:0000000000-24-000001", "source": "sec"})
    # 4. a good transcript after them
    site = TranscriptScraper(standins.base_urls()["transcripts"])
    transcript, page = site.fetch(site.list_transcripts("AAPL")[0])
    good = transcript_document(transcript, TranscriptSelectors())
    store_raw_document(blobs, r, keys, good, page)

    stats = drain(processor, batch_size=2)
    reasons = [fields[b"reason"].decode() for _, fields in r.xrange(keys.dead_letter)]
    assert len(reasons) == 3 and stats.rejected == 3
    assert "malformed document" in reasons[0] and "not well-formed XML" in reasons[0] and truncated.doc_id in reasons[0]
    assert "document too large" in reasons[1] and oversized.path in reasons[1]
    assert "malformed stream entry" in reasons[2] and "path" in reasons[2]
    assert {f[b"stage"] for _, f in r.xrange(keys.dead_letter)} == {b"document_processor"}
    assert r.xpending(keys.raw_documents, keys.group)["pending"] == 0
    assert not chunk_keys(r, keys, truncated.doc_id) and not chunk_keys(r, keys, oversized.doc_id)
    indexed = {r.hget(k, "section") for k in chunk_keys(r, keys, good.doc_id)}
    assert indexed == {b"prepared_remarks", b"qa"}
    assert int(r.hget(keys.chunk(good.doc_id, 0), "public_ms")) == int(transcript.call_at.timestamp() * 1000)


def test_an_edit_reembeds_only_the_changed_chunks_even_when_later_ones_move(r, keys, embedder):
    from headwater.documents import DocumentRef
    from headwater.documents.parse import ParsedDocument, Section

    processor = DocumentProcessor(r, keys, None, embedder)  # parsed documents only: no Blob needed
    processor.ensure_index()
    ref = DocumentRef("sec:0000000001-24-000001", "sec", "AAPL", "10-K/A", 1_700_000_000_000, 20244, "raw", "p", "u", "h")
    later = [Section(f"Item {n}", f"Item {n}. Heading {n}\n" + f"Paragraph about topic {n}. " * 30) for n in (7, 8)]
    processor.index_documents([(ref, ParsedDocument((Section("Item 1", "Item 1. Business\nShort."), *later)))])
    first = processor.stats.embedded
    vectors = {r.hget(keys.chunk(ref.doc_id, n), "content_hash"): r.hget(keys.chunk(ref.doc_id, n), "embedding")
               for n in range(first)}  # fmt: skip

    grown = Section("Item 1", "Item 1. Business\n" + "A much longer description of the business. " * 60)
    processor.index_documents([(ref, ParsedDocument((grown, *later)))])
    count = processor.stats.chunks - first
    added = processor.stats.embedded - first
    assert count > first and added == count - (first - 1)  # only Item 1's chunks were embedded
    for n in range(count):
        digest, vector = r.hget(keys.chunk(ref.doc_id, n), "content_hash"), r.hget(keys.chunk(ref.doc_id, n), "embedding")
        if digest in vectors:
            assert vector == vectors[digest]  # moved chunks kept their vectors
    assert not r.exists(keys.chunk(ref.doc_id, count))
