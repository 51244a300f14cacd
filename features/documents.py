"""Document features: per-ticker embeddings of the latest filing and transcript that were public at ``t``.

The chunks are the ``doc:{DOC_ID}:chunk:{N}`` hashes indexed by ``idx:documents`` (fields ``doc_id``,
``ticker``, ``source``, ``public_ms``, ``embedding`` ...; see docs/redis-keys.md). For each ticker and source
(``sec`` or ``transcript``) the latest document with ``public_ms <= t`` is found, and the feature is the mean
of its chunk embeddings, L2-normalised (so cosine ``nearest`` queries compare directions). The value's
source time is the document's ``public_ms``: a filing accepted after ``t`` is never used.

Two pipelined round trips: one ``FT.SEARCH`` per (ticker, source) for the latest document, then one per
document for its chunks. Without the index (the document processor has not created it yet) these features
have no values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import redis
from redis.exceptions import ResponseError

from features import FeatureSpec, FeatureValue, search_results
from headwater.keys import Keys

MAX_CHUNKS = 10_000
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


def escape_tag(value: str) -> str:
    """Escape a value for a RediSearch TAG query (``BRK.B`` -> ``BRK\\.B``)."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def mean_embedding(vectors: np.ndarray) -> np.ndarray | None:
    """The L2-normalised mean of row vectors; None for no rows or a zero mean."""
    if vectors.size == 0:
        return None
    mean = vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return None
    return (mean / norm).astype(np.float32)


def _latest_document_query(index: str, ticker: str, source: str, t: int) -> tuple:
    query = f"@ticker:{{{escape_tag(ticker)}}} @source:{{{escape_tag(source)}}} @public_ms:[-inf {t}]"
    return ("FT.SEARCH", index, query, "SORTBY", "public_ms", "DESC", "LIMIT", 0, 1,
            "RETURN", 2, "doc_id", "public_ms", "DIALECT", 2)  # fmt: skip


def _chunks_query(index: str, doc_id: str, t: int) -> tuple:
    query = f"@doc_id:{{{escape_tag(doc_id)}}} @public_ms:[-inf {t}]"
    return ("FT.SEARCH", index, query, "LIMIT", 0, MAX_CHUNKS, "RETURN", 1, "embedding", "DIALECT", 2)


def compute(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int
) -> list[FeatureValue]:
    """Document embedding values of ``tickers`` at ``as_of_ms`` (None where no document was public)."""
    index = keys.documents_index
    plan = [(spec, ticker) for ticker in tickers for spec in specs]
    pipe = client.pipeline(transaction=False)
    for spec, ticker in plan:
        pipe.execute_command(*_latest_document_query(index, ticker, spec.properties["source"], as_of_ms))
    try:
        latest = pipe.execute()
    except ResponseError as exc:
        if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
            return [FeatureValue(spec, ticker, None, 0, as_of_ms) for spec, ticker in plan]
        raise
    found: list[tuple[FeatureSpec, str, str, int]] = []
    for (spec, ticker), reply in zip(plan, latest):
        docs = [fields for _, fields in search_results(reply)]
        if docs:
            found.append((spec, ticker, docs[0][b"doc_id"].decode(), int(float(docs[0][b"public_ms"]))))
    pipe = client.pipeline(transaction=False)
    for spec, _, doc_id, _ in found:
        pipe.execute_command(*_chunks_query(index, doc_id, as_of_ms))
    values = {(spec.ref, ticker): FeatureValue(spec, ticker, None, 0, as_of_ms) for spec, ticker in plan}
    for (spec, ticker, _, public_ms), reply in zip(found, pipe.execute() if found else []):
        rows = [np.frombuffer(f[b"embedding"], dtype="<f4") for _, f in search_results(reply) if b"embedding" in f]
        rows = [row for row in rows if row.size == spec.dims]
        vector = mean_embedding(np.vstack(rows)) if rows else None
        if vector is not None:
            values[(spec.ref, ticker)] = FeatureValue(spec, ticker, vector, public_ms, as_of_ms)
    return list(values.values())
