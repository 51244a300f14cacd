"""Embedding throughput of the document pipeline vs a bare ``model.encode`` of the same chunks, in one run.

    .venv/bin/python bench/embedding_throughput.py --json [--chunks 160] [--rounds 2]

Starts its own Redis Stack (random port, temp dir; stopped at the end). The corpus is the provider stand-in's
10-Q, 10-K and earnings-call pages of several tickers, parsed once outside the timing, until at least
``--chunks`` chunks.

* pipeline: ``DocumentProcessor.index_documents`` -- the document processor's own code after parsing:
  token-aware chunking with the model's tokenizer, the stored-hash lookup, one batched encode of every
  new chunk of a batch of 4 documents (the worker does 8), the atomic chunk writes into ``idx:documents``
  (HNSW). Every round writes under a fresh key prefix, so every chunk is embedded.
* bare: ``SentenceTransformer.encode`` of the same chunk texts (batch size 32, normalised), nothing else.

The two are timed back to back per batch of documents, alternating which goes first, so the load of a shared
machine falls on both alike; rates are total chunks / total wall time (``*_per_cpu_s``: per CPU second of this
process, less sensitive to other processes). ``ratio`` = pipeline / bare (target >= 0.9).
``reindex_unchanged_s``: the pipeline on the same documents again (nothing to embed: unchanged chunks are never
re-embedded). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
import uuid
from pathlib import Path


import redis

from headwater.processors.documents import DocumentProcessor
import devstack
from headwater.documents import DocumentRef
from headwater.documents.chunking import chunk_sections
from headwater.documents.embed import get_embedder
from headwater.documents.index import ensure_documents_index
from headwater.documents.parse import ParsedDocument, parse_filing, parse_transcript_document
from headwater.keys import Keys
from standins.corpus import DEFAULT_TICKERS, company
from standins.rest_edgar import generated_filings, primary_document
from standins.rest_transcripts import transcript_html

SEED = 42
BATCH_DOCUMENTS = 4  # small batches: finer pairing of the bare and pipeline timings


def corpus(min_chunks: int, embedder) -> list[tuple[DocumentRef, ParsedDocument]]:
    """Parsed stand-in documents (10-Q, 10-K, transcript per ticker) until ``min_chunks`` chunks."""
    year = dt.date.today().year
    docs: list[tuple[DocumentRef, ParsedDocument]] = []
    total = 0
    for ticker in (t for t in DEFAULT_TICKERS if company(t).kind == "stock"):
        filings = generated_filings(SEED, ticker, year)
        for form in ("10-Q", "10-K", "transcript"):
            if form == "transcript":
                fy, q = year - 1, 3
                parsed = parse_transcript_document(transcript_html(SEED, ticker, fy, q, "/transcripts").encode(),
                                                   ticker=ticker, year=fy, quarter=q, url="bench")  # fmt: skip
                doc_id, public_ms = f"transcript:{ticker}:{fy}Q{q}", 1_700_000_000_000
            else:
                filing = next(f for f in reversed(filings) if f.form == form)
                parsed = parse_filing(primary_document(SEED, company(ticker), filing).encode(), form)
                doc_id, public_ms = f"sec:{filing.accession}", int(filing.acceptance.timestamp() * 1000)
            ref = DocumentRef(doc_id, "transcript" if form == "transcript" else "sec", ticker, form, public_ms, None,
                              "raw", f"bench/{doc_id}", f"http://bench/{doc_id}", "0")  # fmt: skip
            docs.append((ref, parsed))
            total += len(chunk_sections(parsed.sections, embedder.tokenizer, max_tokens=embedder.chunk_tokens))
            if total >= min_chunks:
                return docs
    return docs


def num_docs(client: redis.Redis, index: str) -> int:
    info = client.execute_command("FT.INFO", index)
    pairs = info if isinstance(info, dict) else dict(zip(info[::2], info[1::2]))
    return int(pairs[b"num_docs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    parser.add_argument("--chunks", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    embedder = get_embedder()
    load_started = time.perf_counter()
    embedder.model  # noqa: B018 - load outside the timing
    load_s = time.perf_counter() - load_started
    docs = corpus(args.chunks, embedder)
    texts = [c.text for _, parsed in docs
             for c in chunk_sections(parsed.sections, embedder.tokenizer, max_tokens=embedder.chunk_tokens)]  # fmt: skip
    embedder.encode(texts[:16])  # warm-up

    batches = [docs[i : i + BATCH_DOCUMENTS] for i in range(0, len(docs), BATCH_DOCUMENTS)]
    batch_texts = [[c.text for _, parsed in batch
                    for c in chunk_sections(parsed.sections, embedder.tokenizer, max_tokens=embedder.chunk_tokens)]
                   for batch in batches]  # fmt: skip
    timings = {"bare": [0.0, 0.0], "pipeline": [0.0, 0.0]}  # wall s, CPU s

    def timed(kind: str, fn) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        timings[kind][0] += time.perf_counter() - wall
        timings[kind][1] += time.process_time() - cpu

    with tempfile.TemporaryDirectory(prefix="hw-bench-embed-") as tmp:
        handle = devstack.start_redis(Path(tmp), appendonly=False)
        try:
            client = redis.Redis.from_url(handle.url)
            reindex_s = 0.0
            for round_no in range(args.rounds):
                keys = Keys(f"bench{uuid.uuid4().hex[:8]}:")
                ensure_documents_index(client, keys, embedder.dims)
                processor = DocumentProcessor(client, keys, None, embedder)  # parsed documents only: no Blob
                for i, (batch, texts_of_batch) in enumerate(zip(batches, batch_texts)):
                    def bare(texts_of_batch=texts_of_batch) -> None:
                        embedder.model.encode(texts_of_batch, batch_size=embedder.batch_size, show_progress_bar=False,
                                              convert_to_numpy=True, normalize_embeddings=True)  # fmt: skip

                    def pipeline(batch=batch) -> None:
                        processor.index_documents(batch)

                    pair = [("bare", bare), ("pipeline", pipeline)]
                    for kind, fn in pair if (round_no + i) % 2 == 0 else reversed(pair):  # alternate the order
                        timed(kind, fn)
                assert processor.stats.embedded == len(texts), (processor.stats, len(texts))
                assert num_docs(client, keys.documents_index) == len(texts)

                started = time.perf_counter()
                for batch in batches:
                    processor.index_documents(batch)
                reindex_s = time.perf_counter() - started
                assert processor.stats.embedded == len(texts)  # nothing re-embedded
            client.close()
        finally:
            handle.stop()

    (bare_s, bare_cpu), (pipeline_s, pipeline_cpu) = timings["bare"], timings["pipeline"]
    n = len(texts) * args.rounds
    import torch

    out = {
        "model": embedder.name,
        "documents": len(docs),
        "chunks": len(texts),
        "rounds": args.rounds,
        "chunk_tokens": embedder.chunk_tokens,
        "pipeline_chunks_per_s": round(n / pipeline_s, 2),
        "bare_chunks_per_s": round(n / bare_s, 2),
        "ratio": round(bare_s / pipeline_s, 3),
        "pipeline_chunks_per_cpu_s": round(n / pipeline_cpu, 2),
        "bare_chunks_per_cpu_s": round(n / bare_cpu, 2),
        "ratio_cpu": round(bare_cpu / pipeline_cpu, 3),
        "pipeline_s": round(pipeline_s, 2),
        "bare_s": round(bare_s, 2),
        "reindex_unchanged_s": round(reindex_s, 3),
        "model_load_s": round(load_s, 1),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
