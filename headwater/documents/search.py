"""Document retrieval for agents: ``search_documents(query, ticker=None, forms=None, as_of=None, k=5)``.

Hybrid search over ``idx:documents`` in one round trip: a KNN query on the query's embedding and a BM25
full-text query on its words, both under the same TAG/NUMERIC filter, fused by reciprocal rank
(``1/(60 + rank)`` summed over the two lists). Each hit carries its fused ``score``, its cosine
``similarity`` to the query, its ``text_score`` (BM25, when the words matched) and its provenance: the
raw document's ``blob_url``, ``doc_id``, ``section`` and ``position``, and ``public_ms``.

Point in time: ``as_of`` (a timezone-aware datetime, an ISO string, epoch ms, or a date = the end of that
New York day) adds ``@public_ms:[-inf as_of]`` to both queries: a filing accepted, or a call held, after
``as_of`` is never returned. Naive datetimes are refused (their time zone would be a guess).

Escaping: user text never reaches a query string unescaped. The vector part carries no user text at all
(the vector is a query parameter); the text part keeps only the query's ASCII words, each escaped, OR-ed
inside ``@text:(...)``; ``ticker``, ``forms`` and ``sources`` are validated and TAG-escaped. A query made of
RediSearch syntax (``@ticker:{AAPL} | -foo* {bar}``) is searched as the words ``ticker AAPL foo bar``.

Semantic cache: ``idx:semantic_cache`` (a FLAT vector index -- exact, and small thanks to the TTL) over
``cache:query:{HASH}`` hashes holding a past query's vector, its filter scope and its answer. A new query
whose vector is within ``cache_threshold`` cosine similarity of a cached one with the *same* scope
(ticker, forms, sources, as_of, k, mode, model) gets that answer. Entries expire after ``cache_ttl_s``
(default 900 s): queries without ``as_of`` ("now") may miss documents indexed within that window.

CLI: ``python -m headwater.documents.search "query" --ticker AAPL --as-of 2024-06-30 [--form 10-K] [--k 5]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import redis
from redis.exceptions import ResponseError

from headwater.documents.embed import Embedder, get_embedder, to_bytes
from headwater.keys import Keys, check_ticker
from headwater.timeframes import NEW_YORK

log = logging.getLogger("headwater.documents.search")

FORMS = ("10-K", "10-Q", "10-K/A", "10-Q/A", "transcript")
SOURCES = ("sec", "transcript")
RRF_K = 60
DEFAULT_CACHE_TTL_S = 900
DEFAULT_CACHE_THRESHOLD = 0.95
MAX_TERMS = 32
MAX_K = 100
_RETURN = ("doc_id", "ticker", "form", "source", "section", "position", "public_ms", "period", "text", "blob_url")
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")
_WORD = re.compile(r"[A-Za-z0-9]+")


# -- query building --------------------------------------------------------------------------------------
def escape_tag(value: str) -> str:
    """Escape a value for a TAG query: every character but letters, digits and ``_`` (``10-K/A`` -> ``10\\-K\\/A``)."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def text_terms(query: str) -> list[str]:
    """The query's ASCII words, de-duplicated, at most ``MAX_TERMS`` (punctuation and syntax are separators)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query):
        seen.setdefault(word.lower()[:64], None)
    return list(seen)[:MAX_TERMS]


def text_clause(query: str) -> str | None:
    """``@text:(w1|w2|...)`` with every word escaped, or None if the query has no words."""
    terms = text_terms(query)
    if not terms:
        return None
    return "@text:(" + "|".join(escape_tag(t) for t in terms) + ")"


def to_epoch_ms(as_of: dt.datetime | dt.date | str | int | float | None) -> int | None:
    """``as_of`` as epoch ms: aware datetimes as they are, a date as the end of that New York day."""
    if as_of is None:
        return None
    if isinstance(as_of, bool):
        raise TypeError("as_of must be a datetime, date, ISO string or epoch ms")
    if isinstance(as_of, (int, float)):
        return int(as_of)
    if isinstance(as_of, str):
        text = as_of.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            as_of = dt.date.fromisoformat(text)
        else:
            try:
                as_of = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"as_of {text!r}: expected YYYY-MM-DD or an ISO datetime with an offset") from None
    if isinstance(as_of, dt.datetime):
        if as_of.tzinfo is None:
            raise ValueError("as_of needs a time zone (a naive datetime would be a guess); use e.g. ...+00:00")
        return int(as_of.timestamp() * 1000)
    if isinstance(as_of, dt.date):
        end = dt.datetime.combine(as_of, dt.time(23, 59, 59, 999_000), NEW_YORK)
        return int(end.timestamp() * 1000)
    raise TypeError(f"as_of of type {type(as_of).__name__}")


def filter_clause(
    ticker: str | None = None, forms: Iterable[str] | None = None, sources: Iterable[str] | None = None,
    as_of_ms: int | None = None,
) -> str:  # fmt: skip
    """The TAG/NUMERIC pre-filter shared by the vector and text queries (``*`` for none)."""
    parts: list[str] = []
    if ticker is not None:
        parts.append(f"@ticker:{{{escape_tag(check_ticker(ticker))}}}")
    if forms is not None:
        forms = list(forms)
        unknown = [f for f in forms if f not in FORMS]
        if unknown or not forms:
            raise ValueError(f"forms must be among {FORMS}, got {forms}")
        parts.append("@form:{" + "|".join(escape_tag(f) for f in forms) + "}")
    if sources is not None:
        sources = list(sources)
        if not sources or any(s not in SOURCES for s in sources):
            raise ValueError(f"sources must be among {SOURCES}, got {sources}")
        parts.append("@source:{" + "|".join(sources) + "}")
    if as_of_ms is not None:
        parts.append(f"@public_ms:[-inf {int(as_of_ms)}]")
    return " ".join(parts) if parts else "*"


# -- results ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DocumentHit:
    """One retrieved chunk with its scores and provenance."""

    key: str
    doc_id: str
    ticker: str
    form: str
    source: str
    section: str
    position: int
    public_ms: int
    period: int | None
    text: str
    blob_url: str
    score: float  # fused rank score (higher is better)
    similarity: float  # cosine similarity of the chunk to the query
    text_score: float | None = None  # BM25, when the query's words matched

    @property
    def public_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.public_ms / 1000, dt.timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"public_at": self.public_at.isoformat()}


@dataclass
class SearchResponse:
    hits: list[DocumentHit]
    cached: bool = False
    took_ms: float = 0.0
    filters: dict[str, Any] = field(default_factory=dict)


def _rows(reply: Any, with_scores: bool = False) -> list[tuple[str, float | None, dict[str, bytes]]]:
    """(key, score, fields) of an FT.SEARCH reply, RESP2 or RESP3."""
    if isinstance(reply, dict):
        return [(_s(doc[b"id"]), doc.get(b"score"), doc.get(b"extra_attributes") or {}) for doc in reply.get(b"results", [])]
    step = 3 if with_scores else 2
    out = []
    for i in range(1, len(reply), step):
        score = float(reply[i + 1]) if with_scores else None
        fields = reply[i + step - 1]
        out.append((_s(reply[i]), score, dict(zip(fields[::2], fields[1::2]))))
    return out


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hit(key: str, fields: dict[bytes, bytes], score: float, similarity: float, text_score: float | None) -> DocumentHit:
    period = fields.get(b"period")
    return DocumentHit(
        key=key, doc_id=_s(fields.get(b"doc_id", b"")), ticker=_s(fields.get(b"ticker", b"")),
        form=_s(fields.get(b"form", b"")), source=_s(fields.get(b"source", b"")), section=_s(fields.get(b"section", b"")),
        position=int(float(fields.get(b"position", 0))), public_ms=int(float(fields.get(b"public_ms", 0))),
        period=int(float(period)) if period else None, text=_s(fields.get(b"text", b"")),
        blob_url=_s(fields.get(b"blob_url", b"")), score=score, similarity=similarity, text_score=text_score,
    )  # fmt: skip


# -- the semantic cache ----------------------------------------------------------------------------------
class SemanticCache:
    """Past answers by query vector (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_s: float = DEFAULT_CACHE_TTL_S,
                 threshold: float = DEFAULT_CACHE_THRESHOLD) -> None:  # fmt: skip
        if not 0 < threshold <= 1:
            raise ValueError("cache threshold is a cosine similarity in (0, 1]")
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.threshold = threshold
        self._ready_dims: int | None = None

    def _ensure(self, dims: int) -> None:
        if self._ready_dims == dims:
            return
        try:
            self.client.execute_command(
                "FT.CREATE", self.keys.semantic_cache_index, "ON", "HASH", "PREFIX", 1, self.keys.semantic_cache_entry(""),
                "SCHEMA", "scope", "TAG", "expires_ms", "NUMERIC",
                "embedding", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", dims, "DISTANCE_METRIC", "COSINE",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self._ready_dims = dims

    def lookup(self, scope: str, vector: np.ndarray) -> list[dict[str, Any]] | None:
        """The answer of the nearest cached query in ``scope`` if it is similar enough and fresh, else None."""
        self._ensure(len(vector))
        now = int(time.time() * 1000)
        reply = self.client.execute_command(
            "FT.SEARCH", self.keys.semantic_cache_index,
            f"(@scope:{{{scope}}} @expires_ms:[({now} +inf])=>[KNN 1 @embedding $vec AS distance]",
            "PARAMS", 2, "vec", to_bytes(vector), "SORTBY", "distance", "ASC", "LIMIT", 0, 1,
            "RETURN", 2, "answer", "distance", "DIALECT", 2,
        )  # fmt: skip
        rows = _rows(reply)
        if not rows:
            return None
        fields = rows[0][2]
        if 1.0 - float(fields[b"distance"]) < self.threshold:
            return None
        return json.loads(fields[b"answer"])

    def store(self, scope: str, query: str, vector: np.ndarray, answer: list[dict[str, Any]]) -> None:
        self._ensure(len(vector))
        key = self.keys.semantic_cache_entry(hashlib.sha256(f"{scope}\n{query.strip().lower()}".encode()).hexdigest()[:32])
        expires = int((time.time() + self.ttl_s) * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"scope": scope, "query": query[:2000], "embedding": to_bytes(vector),
                                "answer": json.dumps(answer), "expires_ms": expires})  # fmt: skip
        pipe.pexpire(key, max(1, int(self.ttl_s * 1000)))
        pipe.execute()


# -- search ----------------------------------------------------------------------------------------------
class DocumentSearch:
    """Hybrid, point-in-time retrieval over ``idx:documents`` with a semantic cache in front."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        embedder: Embedder | None = None,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
        candidates: int = 20,
    ) -> None:
        self.client = client
        self.keys = keys
        self._embedder = embedder
        self.cache = SemanticCache(client, keys, ttl_s=cache_ttl_s, threshold=cache_threshold)
        self.candidates = candidates

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def search(
        self,
        query: str,
        ticker: str | None = None,
        forms: Sequence[str] | str | None = None,
        as_of: dt.datetime | dt.date | str | int | None = None,
        k: int = 5,
        *,
        sources: Sequence[str] | str | None = None,
        vector: np.ndarray | None = None,
        hybrid: bool = True,
        use_cache: bool = True,
    ) -> SearchResponse:
        """The ``k`` best chunks for ``query`` (see the module docstring); ``vector`` skips embedding it."""
        started = time.perf_counter()
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be non-empty text")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be in [1, {MAX_K}]")
        forms = [forms] if isinstance(forms, str) else forms
        sources = [sources] if isinstance(sources, str) else sources
        as_of_ms = to_epoch_ms(as_of)
        where = filter_clause(ticker, forms, sources, as_of_ms)
        filters = {"ticker": ticker, "forms": sorted(forms) if forms else None, "sources": sorted(sources) if sources else None,
                   "as_of_ms": as_of_ms, "k": k, "hybrid": hybrid}  # fmt: skip
        if vector is None:
            vector = self.embedder.encode_one(query)
        vector = np.asarray(vector, dtype=np.float32)
        scope = ""
        if use_cache:
            model = self._embedder.name if self._embedder is not None else "vector"
            scope = hashlib.sha256(json.dumps(filters | {"model": model}, sort_keys=True).encode()).hexdigest()[:32]
            cached = self.cache.lookup(scope, vector)
            if cached is not None:
                hits = [DocumentHit(**{k2: v for k2, v in h.items() if k2 != "public_at"}) for h in cached]
                return SearchResponse(hits, True, (time.perf_counter() - started) * 1000, filters)
        hits = self._search(query, where, vector, k, hybrid)
        if use_cache:
            self.cache.store(scope, query, vector, [h.to_dict() for h in hits])
        return SearchResponse(hits, False, (time.perf_counter() - started) * 1000, filters)

    def _search(self, query: str, where: str, vector: np.ndarray, k: int, hybrid: bool) -> list[DocumentHit]:
        n = max(k, self.candidates) if hybrid else k
        clause = text_clause(query) if hybrid else None
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*self.knn_args(where, vector, n))
        if clause is not None:
            text_query = clause if where == "*" else f"{where} {clause}"
            pipe.execute_command(
                "FT.SEARCH", self.keys.documents_index, text_query, "SCORER", "BM25", "WITHSCORES",
                "LIMIT", 0, n, "RETURN", len(_RETURN) + 1, *_RETURN, "embedding", "DIALECT", 2,
            )  # fmt: skip
        try:
            replies = pipe.execute()
        except ResponseError as exc:
            if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
                log.warning("%s does not exist yet: no documents have been processed", self.keys.documents_index)
                return []
            raise
        fused: dict[str, list[Any]] = {}  # key -> [rrf, similarity, text_score, fields]
        for rank, (key, _, fields) in enumerate(_rows(replies[0]), 1):
            similarity = 1.0 - float(fields.pop(b"vector_distance"))
            fused[key] = [1.0 / (RRF_K + rank), similarity, None, fields]
        if clause is not None:
            for rank, (key, score, fields) in enumerate(_rows(replies[1], with_scores=True), 1):
                stored = np.frombuffer(fields.pop(b"embedding", b""), dtype="<f4")
                entry = fused.setdefault(key, [0.0, float(stored @ vector) if stored.size == vector.size else 0.0, None, fields])
                entry[0] += 1.0 / (RRF_K + rank)
                entry[2] = score
        ranked = sorted(fused.items(), key=lambda item: (-item[1][0], -item[1][1]))[:k]
        return [_hit(key, fields, rrf, sim, text_score) for key, (rrf, sim, text_score, fields) in ranked]

    def knn_args(self, where: str, vector: np.ndarray, n: int) -> list[Any]:
        """FT.SEARCH arguments of the filtered KNN query (the user's text is not in them)."""
        return [
            "FT.SEARCH", self.keys.documents_index,
            f"({where})=>[KNN $n @embedding $vec EF_RUNTIME $ef AS vector_distance]" if where != "*"
            else "*=>[KNN $n @embedding $vec EF_RUNTIME $ef AS vector_distance]",
            "PARAMS", 6, "vec", to_bytes(vector), "n", n, "ef", max(n, 20),
            "SORTBY", "vector_distance", "ASC", "LIMIT", 0, n,
            "RETURN", len(_RETURN) + 1, *_RETURN, "vector_distance", "DIALECT", 2,
        ]  # fmt: skip


@lru_cache(maxsize=1)
def _default_search() -> DocumentSearch:
    from headwater.settings import RedisSettings
    from headwater.storage.redis import connect

    settings = RedisSettings()
    return DocumentSearch(connect(settings), Keys(settings.key_prefix))


def search_documents(
    query: str,
    ticker: str | None = None,
    forms: Sequence[str] | str | None = None,
    as_of: dt.datetime | dt.date | str | int | None = None,
    k: int = 5,
    *,
    sources: Sequence[str] | str | None = None,
    client: redis.Redis | None = None,
    keys: Keys | None = None,
    embedder: Embedder | None = None,
    use_cache: bool = True,
) -> list[DocumentHit]:
    """The ``k`` chunks that best answer ``query`` and were public at ``as_of``, with scores and provenance.

    ``ticker`` (e.g. ``AAPL``), ``forms`` (``10-K``, ``10-Q``, ``10-K/A``, ``10-Q/A``, ``transcript``) and
    ``sources`` (``sec``, ``transcript``) filter; ``as_of`` is a timezone-aware datetime, an ISO string,
    epoch ms, or a date (the end of that New York day). Without ``client`` the configured Redis and key prefix
    are used.
    """
    if client is None and keys is None and embedder is None:
        searcher = _default_search()
    else:
        from headwater.settings import RedisSettings
        from headwater.storage.redis import connect

        searcher = DocumentSearch(client or connect(), keys or Keys(RedisSettings().key_prefix), embedder)
    return searcher.search(query, ticker, forms, as_of, k, sources=sources, use_cache=use_cache).hits


# -- CLI -------------------------------------------------------------------------------------------------
def format_hits(response: SearchResponse) -> str:
    lines = [f"{len(response.hits)} result(s){' (semantic cache)' if response.cached else ''} in {response.took_ms:.0f} ms"]
    for i, hit in enumerate(response.hits, 1):
        snippet = re.sub(r"\s+", " ", hit.text)[:300]
        lines += [
            f"{i}. {hit.ticker} {hit.form} {hit.section!r} (chunk {hit.position}) public {hit.public_at:%Y-%m-%d %H:%M} UTC"
            f"  score {hit.score:.4f}  similarity {hit.similarity:.3f}",
            f"   {hit.doc_id}  {hit.blob_url}",
            f"   {snippet}",
        ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m headwater.documents.search", description="Search filings and transcripts.")
    parser.add_argument("query")
    parser.add_argument("--ticker", default=None)
    parser.add_argument("--form", action="append", dest="forms", choices=FORMS, help="repeatable")
    parser.add_argument("--source", action="append", dest="sources", choices=SOURCES, help="repeatable")
    parser.add_argument("--as-of", default=None, help="YYYY-MM-DD (end of that New York day) or ISO datetime with offset")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--no-cache", action="store_true", help="bypass the semantic cache")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    searcher = _default_search()
    searcher.embedder.model  # noqa: B018 - load the model before the query is timed
    try:
        response = searcher.search(args.query, args.ticker, args.forms, args.as_of, args.k, sources=args.sources,
                                            use_cache=not args.no_cache)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"cached": response.cached, "took_ms": round(response.took_ms, 2),
                          "hits": [h.to_dict() for h in response.hits]}))  # fmt: skip
    else:
        print(format_hits(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
