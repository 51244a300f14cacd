"""Retrieval latency over >= 50,000 indexed chunks: KNN-5 with a ticker filter, without and with embedding the query.

    .venv/bin/python bench/retrieval_latency.py --json [--chunks 50000] [--queries 1000] [--embedded-queries 100]

Starts its own Redis Stack (random port, temp dir; stopped at the end) and creates ``idx:documents`` as the
pipeline does (HNSW M=16, EF_CONSTRUCTION=200, 384-d, COSINE). Content:

* real chunks: stand-in 10-Q/10-K/transcript pages of a few tickers, parsed, chunked and embedded by the
  document processor's own code (``DocumentProcessor.index_documents``);
* synthetic chunks for the bulk: random unit vectors (float32) with a short random-word text, spread over 50
  tickers, the five forms and five years of ``public_ms`` -- embedding 50,000 chunks for real would take
  ~40 min on this machine; HNSW insertion cost does not depend on where a vector came from.

Timed, one client, sequential (perf_counter around each call):

* ``knn``: ``DocumentSearch.search(..., vector=q, ticker=T, hybrid=False, use_cache=False)`` -- KNN-5 under a
  ticker TAG filter, query vector precomputed (no embedding), through the project's search code;
* ``knn_raw``: the same FT.SEARCH issued directly (what Redis itself costs);
* ``hybrid``: the default hybrid search (KNN + BM25 in one round trip, fused), vector precomputed;
* ``embedded``: ``search_documents(query, ticker=T)`` end to end -- embedding the query, hybrid, no cache;
* ``cache_hit``: a repeated query answered by the semantic cache (vector precomputed).

Targets (issue 5): knn p99 < 10 ms without embedding. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path


import numpy as np
import redis

from headwater.processors.documents import DocumentProcessor
import devstack
from headwater.documents import DocumentRef
from headwater.documents.embed import get_embedder, to_bytes
from headwater.documents.index import ensure_documents_index
from headwater.documents.parse import parse_filing, parse_transcript_document
from headwater.documents.search import DocumentSearch, filter_clause, search_documents
from headwater.keys import Keys
from standins.corpus import company
from standins.rest_edgar import generated_filings, primary_document
from standins.rest_transcripts import transcript_html

SEED = 42
REAL_TICKERS = ("AAPL", "MSFT", "NVDA")
FORMS = ("10-K", "10-Q", "10-K/A", "10-Q/A", "transcript")
T0 = int(dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
FIVE_YEARS_MS = 5 * 365 * 86_400_000
WORDS = ("revenue margin supply chain risk demand growth cloud services tariffs guidance inventory customers "
         "competition regulation liquidity capital expenditures debt dividend buyback outlook pricing costs "
         "headcount research development semiconductor advertising subscription churn currency").split()
QUERIES = ("supply chain risks", "gross margin outlook", "revenue growth in services", "risk factors about competition",
           "liquidity and capital resources", "what did management say about demand", "share repurchases",
           "foreign currency exposure", "cybersecurity program", "legal proceedings")


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3)


def raw_knn_args(search: DocumentSearch, ticker: str, vector: np.ndarray) -> list:
    """The FT.SEARCH of ``DocumentSearch``'s KNN-5 query as raw arguments (to time what Redis itself costs)."""
    query = search.knn_query(filter_clause(ticker), vector, 5)
    params = [item for pair in query.params.items() for item in pair]
    return ["FT.SEARCH", search.keys.documents_index, *query.get_args(), "PARAMS", len(params), *params]


def index_real(client: redis.Redis, keys: Keys, embedder) -> int:
    """A few stand-in documents through the pipeline's own chunk/embed/write code."""
    year = dt.date.today().year
    docs = []
    for ticker in REAL_TICKERS:
        filings = generated_filings(SEED, ticker, year)
        for form in ("10-Q", "10-K"):
            f = next(x for x in reversed(filings) if x.form == form)
            docs.append((DocumentRef(f"sec:{f.accession}", "sec", ticker, form, int(f.acceptance.timestamp() * 1000), None,
                                     "raw", "bench", "http://bench/", "0"),
                         parse_filing(primary_document(SEED, company(ticker), f).encode(), form)))  # fmt: skip
        parsed = parse_transcript_document(transcript_html(SEED, ticker, year - 1, 3, "/t").encode(), ticker=ticker,
                                           year=year - 1, quarter=3, url="bench")  # fmt: skip
        docs.append((DocumentRef(f"transcript:{ticker}:{year - 1}Q3", "transcript", ticker, "transcript", T0, None,
                                 "raw", "bench", "http://bench/", "0"), parsed))  # fmt: skip
    processor = DocumentProcessor(client, keys, None, embedder)  # parsed documents only: no Blob
    processor.index_documents(docs)
    return processor.stats.chunks


def index_synthetic(client: redis.Redis, keys: Keys, n: int, dims: int, rng: np.random.Generator) -> float:
    """``n`` chunks with random unit vectors; returns the insert rate (chunks/s)."""
    tickers = [f"SYN{i:02d}" for i in range(47)] + list(REAL_TICKERS)
    words = random.Random(7)
    started = time.perf_counter()
    batch = 1000
    for start in range(0, n, batch):
        vectors = rng.standard_normal((min(batch, n - start), dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        pipe = client.pipeline(transaction=False)
        for j, vector in enumerate(vectors):
            i = start + j
            doc = f"syn:{i // 40}"
            pipe.hset(keys.chunk(doc, i % 40), mapping={
                "doc_id": doc, "ticker": tickers[(i // 40) % len(tickers)], "form": FORMS[(i // 40) % len(FORMS)],
                "source": "sec", "section": "Item 7", "position": i % 40, "public_ms": T0 + (i * 7919) % FIVE_YEARS_MS,
                "period": 20241, "text": " ".join(words.choices(WORDS, k=40)), "blob_url": "http://bench/",
                "content_hash": str(i), "embedding": to_bytes(vector),
            })  # fmt: skip
        pipe.execute()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    parser.add_argument("--chunks", type=int, default=50_000, help="total chunks in the index (real + synthetic)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--embedded-queries", type=int, default=100)
    args = parser.parse_args()

    embedder = get_embedder()
    embedder.model  # noqa: B018
    query_vectors = embedder.encode(list(QUERIES))
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory(prefix="hw-bench-retrieval-") as tmp:
        handle = devstack.start_redis(Path(tmp), appendonly=False)
        try:
            client = redis.Redis.from_url(handle.url)
            keys = Keys(f"bench{uuid.uuid4().hex[:8]}:")
            ensure_documents_index(client, keys, embedder.dims)
            real = index_real(client, keys, embedder)
            insert_rate = index_synthetic(client, keys, max(0, args.chunks - real), embedder.dims, rng)
            search = DocumentSearch(client, keys, embedder)
            info = client.execute_command("FT.INFO", keys.documents_index)
            indexed = int((info if isinstance(info, dict) else dict(zip(info[::2], info[1::2])))[b"num_docs"])

            tickers = [t for t in REAL_TICKERS] + [f"SYN{i:02d}" for i in range(0, 47, 5)]
            plan = [(QUERIES[i % len(QUERIES)], query_vectors[i % len(QUERIES)], tickers[i % len(tickers)])
                    for i in range(args.queries)]  # fmt: skip
            for query, vector, ticker in plan[:50]:  # warm-up
                search.search(query, ticker, vector=vector, hybrid=False, use_cache=False)

            knn, knn_raw, hybrid, hits_per_query = [], [], [], []
            for query, vector, ticker in plan:
                started = time.perf_counter()
                hits = search.search(query, ticker, vector=vector, hybrid=False, use_cache=False).hits
                knn.append(time.perf_counter() - started)
                hits_per_query.append(len(hits))
                args_raw = raw_knn_args(search, ticker, vector)
                started = time.perf_counter()
                client.execute_command(*args_raw)
                knn_raw.append(time.perf_counter() - started)
                started = time.perf_counter()
                search.search(query, ticker, vector=vector, use_cache=False)
                hybrid.append(time.perf_counter() - started)

            embedded = []
            for i in range(args.embedded_queries):
                query = f"{QUERIES[i % len(QUERIES)]} in {2021 + i % 5}"  # distinct texts: no shortcut anywhere
                started = time.perf_counter()
                search_documents(query, tickers[i % len(tickers)], client=client, keys=keys, embedder=embedder,
                                 use_cache=False)  # fmt: skip
                embedded.append(time.perf_counter() - started)

            cached = []
            repeated = plan[: min(args.queries, 200)]
            for query, vector, ticker in repeated:
                search.search(query, ticker, vector=vector)  # fills the cache
            for query, vector, ticker in repeated:
                started = time.perf_counter()
                response = search.search(query, ticker, vector=vector)
                cached.append(time.perf_counter() - started)
                assert response.cached
            client.close()
        finally:
            handle.stop()

    out = {
        "chunks_indexed": indexed,
        "real_chunks": real,
        "synthetic_chunks": indexed - real,
        "insert_chunks_per_s": round(insert_rate, 1),
        "tickers": 50,
        "queries": args.queries,
        "k": 5,
        "mean_hits": round(float(np.mean(hits_per_query)), 2),
    }
    for name, samples in (("knn", knn), ("knn_raw", knn_raw), ("hybrid", hybrid), ("embedded", embedded),
                          ("cache_hit", cached)):  # fmt: skip
        p50, p99 = percentiles(samples)
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = p50, p99
    out["embedded_queries"] = args.embedded_queries
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
