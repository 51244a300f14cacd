"""Document features: per-ticker embeddings of the latest filing and transcript that were public at ``t``.

The chunks are the ``doc:{DOC_ID}:chunk:{N}`` hashes indexed by ``idx:documents`` (fields ``doc_id``,
``ticker``, ``source``, ``public_ms``, ``embedding`` ...; see docs/redis-keys.md). For each ticker and source
(``sec`` or ``transcript``) the latest document with ``public_ms <= t`` is found, and the feature is the mean
of its chunk embeddings, L2-normalised (so cosine ``nearest`` queries compare directions). The value's
source time is the document's ``public_ms``: a filing accepted after ``t`` is never used.

Two pipelined round trips (redisvl ``FilterQuery`` batches over ``headwater.documents.index``'s schema, values
escaped by redisvl's ``Tag`` filter): one query per (ticker, source) for the latest document, then one per
document for its chunks. Without the index (the document processor has not created it yet) these features
have no values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import redis
from redis.exceptions import ResponseError
from redisvl.exceptions import RedisSearchError
from redisvl.query import FilterQuery
from redisvl.query.filter import Num, Tag

from features import FeatureSpec, FeatureValue
from headwater.documents.index import documents_index
from headwater.keys import Keys

MAX_CHUNKS = 10_000


def escape_tag(value: str) -> str:
    """Escape a value for a RediSearch TAG query as redisvl's ``Tag`` filter does (``BRK.B`` -> ``BRK\\.B``)."""
    return Tag.escaper.escape(value)


def mean_embedding(vectors: np.ndarray) -> np.ndarray | None:
    """The L2-normalised mean of row vectors; None for no rows or a zero mean."""
    if vectors.size == 0:
        return None
    mean = vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return None
    return (mean / norm).astype(np.float32)


def _known(t: int, knowledge: bool) -> Any:
    """Public by ``t`` and, on the knowledge basis, also stored by then."""
    public = Num("public_ms") <= t
    return public & (Num("stored_ms") <= t) if knowledge else public


def _latest_document_query(ticker: str, source: str, t: int, knowledge: bool = True) -> FilterQuery:
    where = (Tag("ticker") == ticker) & (Tag("source") == source) & _known(t, knowledge)
    return FilterQuery(where, return_fields=["doc_id", "public_ms"], num_results=1, sort_by=("public_ms", "DESC"))


def _chunks_query(doc_id: str, t: int, knowledge: bool = True) -> FilterQuery:
    query = FilterQuery((Tag("doc_id") == doc_id) & _known(t, knowledge), num_results=MAX_CHUNKS)
    return query.return_fields("embedding", skip_decode=["embedding"])


def compute(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int,
    *, time_basis: str = "knowledge",
) -> list[FeatureValue]:
    """Document embedding values of ``tickers`` at ``as_of_ms`` (None where no document was public)."""
    plan = [(spec, ticker) for ticker in tickers for spec in specs]
    values = {(spec.ref, ticker): FeatureValue(spec, ticker, None, 0, as_of_ms) for spec, ticker in plan}
    if not plan:
        return []
    index = documents_index(client, keys, specs[0].dims)
    knowledge = time_basis == "knowledge"
    queries = [_latest_document_query(ticker, spec.properties["source"], as_of_ms, knowledge) for spec, ticker in plan]
    try:
        latest = index.batch_query(queries, batch_size=len(queries))
    except (ResponseError, RedisSearchError) as exc:
        if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
            return list(values.values())
        raise
    found = [(spec, ticker, docs[0]["doc_id"], int(float(docs[0]["public_ms"])))
             for (spec, ticker), docs in zip(plan, latest) if docs]  # fmt: skip
    chunks = index.batch_query([_chunks_query(doc_id, as_of_ms, knowledge) for _, _, doc_id, _ in found],
                               batch_size=max(1, len(found))) if found else []  # fmt: skip
    for (spec, ticker, _, public_ms), rows in zip(found, chunks):
        vectors = [np.frombuffer(row["embedding"], dtype="<f4") for row in rows if row.get("embedding")]
        vectors = [v for v in vectors if v.size == spec.dims]
        vector = mean_embedding(np.vstack(vectors)) if vectors else None
        if vector is not None:
            values[(spec.ref, ticker)] = FeatureValue(spec, ticker, vector, public_ms, as_of_ms)
    return list(values.values())
