"""``idx:documents`` (RediSearch over the ``doc:{DOC_ID}:chunk:{N}`` hashes) and the chunk writes.

Schema (docs/redis-keys.md), declared as a redisvl ``IndexSchema``: TAG ``doc_id ticker form source
section``, NUMERIC ``position``, ``public_ms`` (SORTABLE), ``stored_ms`` (knowledge time), ``period``, TEXT ``text``, VECTOR ``embedding``
HNSW FLOAT32 COSINE with the model's dimensions. ``blob_url`` and ``content_hash`` are stored, not indexed.
The index name and the PREFIX come from ``Keys``, so a namespaced pipeline (or test) has its own index over
its own chunks.

A document's chunks are replaced in one MULTI/EXEC: the new chunk hashes, then the removal of chunks past
the new end (a shorter re-filing), so a reader never sees a mix of two versions. (redisvl's ``load`` writes
records one by one and cannot remove the stale ones, so the writes stay here.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from redisvl.exceptions import RedisSearchError
from redisvl.index import SearchIndex
from redisvl.schema import IndexSchema

from headwater.keys import Keys

DEFAULT_DIMS = 384
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
TAGS = ("doc_id", "ticker", "form", "source", "section")
_PROBE = 64


@lru_cache(maxsize=64)
def documents_schema(keys: Keys, dims: int = DEFAULT_DIMS, *, m: int = HNSW_M,
                     ef_construction: int = HNSW_EF_CONSTRUCTION) -> IndexSchema:  # fmt: skip
    """The schema of ``idx:documents`` (built once per prefix and dimensions; do not mutate it)."""
    return IndexSchema.from_dict({
        "index": {"name": keys.documents_index, "prefix": keys.chunk_prefix, "storage_type": "hash"},
        "fields": [
            *({"name": name, "type": "tag"} for name in TAGS),
            {"name": "position", "type": "numeric"},
            {"name": "public_ms", "type": "numeric", "attrs": {"sortable": True}},
            {"name": "stored_ms", "type": "numeric"},
            {"name": "period", "type": "numeric"},
            {"name": "text", "type": "text"},
            {"name": "embedding", "type": "vector", "attrs": {
                "algorithm": "hnsw", "datatype": "float32", "distance_metric": "cosine", "dims": dims,
                "m": m, "ef_construction": ef_construction}},
        ],
    })  # fmt: skip


def documents_index(client: redis.Redis, keys: Keys, dims: int = DEFAULT_DIMS, **hnsw: int) -> SearchIndex:
    """A redisvl handle on ``idx:documents`` (it does not create the index)."""
    return SearchIndex(documents_schema(keys, dims, **hnsw), redis_client=client)


def ensure_documents_index(client: redis.Redis, keys: Keys, dims: int = DEFAULT_DIMS, **hnsw: int) -> bool:
    """Create ``idx:documents`` if missing (True if created); refuse an existing one of other dimensions."""
    existing = ensure_index(documents_index(client, keys, dims, **hnsw))
    if existing is None:
        return True
    if "stored_ms" not in existing.fields:  # an index from before knowledge time: add the field in place
        client.execute_command("FT.ALTER", keys.documents_index, "SCHEMA", "ADD", "stored_ms", "NUMERIC")
    field = existing.fields.get("embedding")
    existing_dims = getattr(field.attrs, "dims", None) if field is not None else None
    if existing_dims is not None and existing_dims != dims:
        raise RuntimeError(
            f"{keys.documents_index} holds {existing_dims}-dimensional vectors but the embedding model makes {dims}: "
            "re-index with the new model under another key prefix, or keep the model"
        )
    return False


def ensure_index(index: SearchIndex) -> IndexSchema | None:
    """Create ``index`` if missing (None), else the schema the existing index has (race-safe)."""
    if not index.exists():
        try:
            index.create()
            return None
        except RedisSearchError as exc:  # another process created it in between
            if "already exists" not in str(exc).lower():
                raise
    return SearchIndex.from_existing(index.name, redis_client=index.client).schema


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk hash as stored (the vector travels separately: it may not need recomputing)."""

    doc_id: str
    position: int
    ticker: str
    form: str
    source: str
    section: str
    public_ms: int
    period: int | None
    text: str
    blob_url: str
    content_hash: str
    stored_ms: int | None = None  # when the pipeline stored it (knowledge time); None: known at public_ms

    def mapping(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "doc_id": self.doc_id, "ticker": self.ticker, "form": self.form, "source": self.source,
            "section": self.section, "position": self.position, "public_ms": self.public_ms, "text": self.text,
            "blob_url": self.blob_url, "content_hash": self.content_hash,
            "stored_ms": self.public_ms if self.stored_ms is None else self.stored_ms,
        }  # fmt: skip
        if self.period is not None:
            fields["period"] = self.period
        return fields


def stored_chunks(client: redis.Redis, keys: Keys, doc_id: str, dims: int) -> dict[int, str]:
    """Position -> ``content_hash`` of the document's stored chunks that have a full vector."""
    found: dict[int, str] = {}
    start = 0
    while True:
        pipe = client.pipeline(transaction=False)
        for n in range(start, start + _PROBE):
            pipe.hget(keys.chunk(doc_id, n), "content_hash")
            pipe.hstrlen(keys.chunk(doc_id, n), "embedding")
        replies = pipe.execute()
        for offset in range(_PROBE):
            digest, length = replies[2 * offset], replies[2 * offset + 1]
            if digest is None and length == 0:
                return found  # chunk positions are contiguous from 0
            if digest is not None and length == dims * 4:
                found[start + offset] = digest.decode()
        start += _PROBE


def stored_vectors(client: redis.Redis, keys: Keys, doc_id: str, positions: Sequence[int]) -> dict[int, bytes]:
    """The stored embedding bytes of some of a document's chunks, by position."""
    pipe = client.pipeline(transaction=False)
    for n in positions:
        pipe.hget(keys.chunk(doc_id, n), "embedding")
    return {n: v for n, v in zip(positions, pipe.execute()) if v is not None}


def write_document(client: redis.Redis, keys: Keys, records: Sequence[ChunkRecord], vectors: dict[int, bytes]) -> int:
    """Replace a document's chunks atomically; ``vectors`` holds new embeddings by position. Returns chunks removed."""
    if not records:
        raise ValueError("a document without chunks")
    doc_id = records[0].doc_id
    stale = _stale_positions(client, keys, doc_id, len(records))
    pipe = client.pipeline(transaction=True)
    for record in records:
        mapping = record.mapping()
        if record.position in vectors:
            mapping["embedding"] = vectors[record.position]
        pipe.hset(keys.chunk(doc_id, record.position), mapping=mapping)
        if record.period is None:
            pipe.hdel(keys.chunk(doc_id, record.position), "period")
    if stale:
        pipe.delete(*(keys.chunk(doc_id, n) for n in stale))
    pipe.execute()
    return len(stale)


def _stale_positions(client: redis.Redis, keys: Keys, doc_id: str, start: int) -> list[int]:
    """Chunk positions from ``start`` on that still exist (chunk positions are contiguous from 0)."""
    stale: list[int] = []
    while True:
        pipe = client.pipeline(transaction=False)
        for n in range(start, start + _PROBE):
            pipe.exists(keys.chunk(doc_id, n))
        found = pipe.execute()
        for offset, exists in enumerate(found):
            if not exists:
                return stale
            stale.append(start + offset)
        start += _PROBE
