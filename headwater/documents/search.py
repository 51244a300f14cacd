"""Document retrieval for agents: ``search_documents(query, ticker=None, forms=None, as_of=None, k=5)``.

Hybrid search over ``idx:documents`` in one round trip: a redisvl ``VectorQuery`` (KNN on the query's
embedding) and a BM25 full-text ``FilterQuery`` on its words, both under the same TAG/NUMERIC filter
(redisvl ``Tag``/``Num``/``Text`` filters), pipelined and fused here by reciprocal rank (``1/(60 + rank)``
summed over the two lists). The fusion is the one hand-written step: Redis Stack 7.4 (search 2.10) has no
server-side fusion (``FT.HYBRID``, redisvl's ``HybridQuery``, needs Redis 8.4). Each hit carries its fused
``score``, its cosine ``similarity`` to the query, its ``text_score`` (BM25, when the words matched) and its
provenance: the raw document's ``blob_url``, ``doc_id``, ``section`` and ``position``, and ``public_ms``.

Point in time: ``as_of`` (a timezone-aware datetime, an ISO string, epoch ms, or a date = the end of that
New York day) adds ``@public_ms:[-inf as_of]`` to both queries: a filing accepted, or a call held, after
``as_of`` is never returned. Naive datetimes are refused (their time zone would be a guess).

Escaping: user text never reaches a query string unescaped. The vector part carries no user text at all
(the vector is a query parameter); the text part keeps only the query's ASCII words (letters and digits, so
nothing is left to escape), OR-ed inside ``@text:(...)``; ``ticker``, ``forms`` and ``sources`` are validated
and TAG-escaped by redisvl's ``Tag`` filter. A query made of RediSearch syntax (``@ticker:{AAPL} | -foo*
{bar}``) is searched as the words ``ticker AAPL foo bar``.

Semantic cache: redisvl's ``SemanticCache`` on ``idx:semantic_cache`` (a FLAT COSINE index, exact and small
thanks to the TTL) over ``cache:query:{HASH}`` hashes holding a past query's vector, its filter ``scope`` and
its answer (JSON). A new query whose vector is within ``cache_threshold`` cosine similarity of a cached one
with the *same* scope (ticker, forms, sources, as_of, k, mode, model) gets that answer. Entries expire
``cache_ttl_s`` after they were stored (default 900 s; a hit does not extend them): queries without
``as_of`` ("now") may miss documents indexed within that window.

CLI: ``python -m headwater.documents.search "query" --ticker AAPL --as-of 2024-06-30 [--form 10-K] [--k 5]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
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
from redisvl.exceptions import RedisSearchError
from redisvl.extensions.cache.llm import SemanticCache
from redisvl.index import SearchIndex
from redisvl.query import FilterQuery, VectorQuery
from redisvl.query.filter import FilterExpression, Num, Tag, Text

from headwater.documents.embed import Embedder, EmbedderVectorizer, get_embedder, to_bytes
from headwater.documents.index import documents_index, ensure_index
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
_WORD = re.compile(r"[A-Za-z0-9]+")


# -- query building --------------------------------------------------------------------------------------
def escape_tag(value: str) -> str:
    """Escape a value for a TAG query as redisvl's ``Tag`` filter does (``10-K/A`` -> ``10\\-K\\/A``)."""
    return Tag.escaper.escape(value)


def text_terms(query: str) -> list[str]:
    """The query's ASCII words, de-duplicated, at most ``MAX_TERMS`` (punctuation and syntax are separators)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query):
        seen.setdefault(word.lower()[:64], None)
    return list(seen)[:MAX_TERMS]


def text_clause(query: str) -> str | None:
    """``@text:(w1|w2|...)`` of the query's words, or None if it has none.

    redisvl's ``Text %`` pattern operator interpolates its value raw (that is what lets ``|`` be a union);
    it is safe here because every term is letters and digits only.
    """
    terms = text_terms(query)
    return str(Text("text") % "|".join(terms)) if terms else None


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
    as_of_ms: int | None = None, time_basis: str = "knowledge",
) -> str:  # fmt: skip
    """The TAG/NUMERIC pre-filter shared by the vector and text queries (``*`` for none). With ``as_of_ms``,
    ``time_basis="knowledge"`` also requires the chunk to have been stored by then (``stored_ms``).

    The values are validated here and escaped by redisvl's ``Tag`` filter; the clauses are intersected by
    juxtaposition (redisvl's ``&`` would nest each pair in parentheses: same meaning, longer string).
    """
    parts: list[FilterExpression] = []
    if ticker is not None:
        parts.append(Tag("ticker") == check_ticker(ticker))
    if forms is not None:
        forms = list(forms)
        unknown = [f for f in forms if f not in FORMS]
        if unknown or not forms:
            raise ValueError(f"forms must be among {FORMS}, got {forms}")
        parts.append(Tag("form") == forms)
    if sources is not None:
        sources = list(sources)
        if not sources or any(s not in SOURCES for s in sources):
            raise ValueError(f"sources must be among {SOURCES}, got {sources}")
        parts.append(Tag("source") == sources)
    if as_of_ms is not None:
        parts.append(Num("public_ms") <= int(as_of_ms))
        if time_basis == "knowledge":
            parts.append(Num("stored_ms") <= int(as_of_ms))
        elif time_basis != "event":
            raise ValueError(f"time_basis must be 'knowledge' or 'event', not {time_basis!r}")
    return " ".join(str(part) for part in parts) or "*"


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


def _hit(row: dict[str, Any], score: float, similarity: float, text_score: float | None) -> DocumentHit:
    """A hit from one redisvl result row (field values are strings)."""
    period = row.get("period")
    return DocumentHit(
        key=row["id"], doc_id=row.get("doc_id", ""), ticker=row.get("ticker", ""), form=row.get("form", ""),
        source=row.get("source", ""), section=row.get("section", ""), position=int(float(row.get("position", 0))),
        public_ms=int(float(row.get("public_ms", 0))), period=int(float(period)) if period else None,
        text=row.get("text", ""), blob_url=row.get("blob_url", ""), score=score, similarity=similarity,
        text_score=text_score,
    )  # fmt: skip


def _dims(index: SearchIndex, field: str) -> int:
    return index.schema.fields[field].attrs.dims  # type: ignore[attr-defined]


def _missing_index(exc: Exception) -> bool:
    message = str(exc).lower()
    return "no such index" in message or "unknown index" in message


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
        if not 0 < cache_threshold <= 1:
            raise ValueError("cache threshold is a cosine similarity in (0, 1]")
        self.client = client
        self.keys = keys
        self._embedder = embedder
        self.cache_ttl_s = cache_ttl_s
        self.cache_threshold = cache_threshold
        self.candidates = candidates
        self._index: SearchIndex | None = None
        self._cache: SemanticCache | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def index(self, dims: int) -> SearchIndex:
        """The redisvl handle on ``idx:documents`` for vectors of ``dims`` (made once)."""
        if self._index is None or _dims(self._index, "embedding") != dims:
            self._index = documents_index(self.client, self.keys, dims)
        return self._index

    def cache(self, dims: int) -> SemanticCache:
        """redisvl's semantic cache for vectors of ``dims``; its index is created (or replaced) on first use.

        redisvl names a cache's key prefix after its index; docs/redis-keys.md keeps ``idx:semantic_cache``
        over ``cache:query:`` hashes, so the index is managed here (``create_index=False``) with that prefix.
        """
        if self._cache is None or _dims(self._cache.index, "prompt_vector") != dims:
            cache = SemanticCache(
                name=self.keys.semantic_cache_index, distance_threshold=1.0 - self.cache_threshold,
                vectorizer=EmbedderVectorizer(self._embedder, dims), redis_client=self.client,
                filterable_fields=[{"name": "scope", "type": "tag"}], create_index=False,
            )  # fmt: skip
            cache.index.schema.index.prefix = self.keys.semantic_cache_entry("")
            existing = ensure_index(cache.index)
            if existing is not None and existing.to_dict() != cache.index.schema.to_dict():
                log.warning("%s has another layout (an older version's, or another model's): replaced; its entries "
                            "expire by themselves", cache.index.name)  # fmt: skip
                cache.index.create(overwrite=True, drop=False)
            self._cache = cache
        return self._cache

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
        time_basis: str = "knowledge",
    ) -> SearchResponse:
        """The ``k`` best chunks for ``query`` (see the module docstring); ``vector`` skips embedding it.
        ``as_of`` keeps what was public *and* stored by then (``time_basis="event"``: public by then)."""
        started = time.perf_counter()
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be non-empty text")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be in [1, {MAX_K}]")
        forms = [forms] if isinstance(forms, str) else forms
        sources = [sources] if isinstance(sources, str) else sources
        as_of_ms = to_epoch_ms(as_of)
        where = filter_clause(ticker, forms, sources, as_of_ms, time_basis)
        filters = {"ticker": ticker, "forms": sorted(forms) if forms else None, "sources": sorted(sources) if sources else None,
                   "as_of_ms": as_of_ms, "k": k, "hybrid": hybrid, "time_basis": time_basis}  # fmt: skip
        if vector is None:
            vector = self.embedder.encode_one(query)
        vector = np.asarray(vector, dtype=np.float32)
        scope = ""
        if use_cache:
            model = self._embedder.name if self._embedder is not None else "vector"
            scope = hashlib.sha256(json.dumps(filters | {"model": model}, sort_keys=True).encode()).hexdigest()[:32]
            cached = self._cached(scope, vector)
            if cached is not None:
                return SearchResponse(cached, True, (time.perf_counter() - started) * 1000, filters)
        hits = self._search(query, where, vector, k, hybrid)
        if use_cache:
            self._remember(scope, query, vector, hits)
        return SearchResponse(hits, False, (time.perf_counter() - started) * 1000, filters)

    def _cached(self, scope: str, vector: np.ndarray) -> list[DocumentHit] | None:
        """The answer of the nearest fresh cached query in ``scope`` within the threshold, else None."""
        fresh = Num("inserted_at") > time.time() - self.cache_ttl_s  # belt and braces: the key's TTL expires it
        where = (Tag("scope") == scope) & fresh
        found = self.cache(len(vector)).check(vector=vector.tolist(), filter_expression=where, return_fields=["response"])
        if not found:
            return None
        answer = json.loads(found[0]["response"])
        return [DocumentHit(**{k: v for k, v in hit.items() if k != "public_at"}) for hit in answer]

    def _remember(self, scope: str, query: str, vector: np.ndarray, hits: list[DocumentHit]) -> None:
        """Cache an answer for ``cache_ttl_s`` (redisvl's TTL is whole seconds: a fraction is set with PEXPIRE)."""
        ttl_ms = max(1, int(self.cache_ttl_s * 1000))
        answer = json.dumps([h.to_dict() for h in hits])
        key = self.cache(len(vector)).store(query[:2000], answer, vector=vector.tolist(), filters={"scope": scope},
                                            ttl=math.ceil(ttl_ms / 1000))  # fmt: skip
        if ttl_ms % 1000:
            self.client.pexpire(key, ttl_ms)

    def _search(self, query: str, where: str, vector: np.ndarray, k: int, hybrid: bool) -> list[DocumentHit]:
        n = max(k, self.candidates) if hybrid else k
        clause = text_clause(query) if hybrid else None
        index = self.index(len(vector))
        knn = self.knn_query(where, vector, n)
        try:
            if clause is None:
                results = [index.query(knn)]
            else:  # both queries in one round trip
                results = index.batch_query([knn, self.text_query(where, clause, n)], batch_size=2)
        except (ResponseError, RedisSearchError) as exc:
            if _missing_index(exc):
                log.warning("%s does not exist yet: no documents have been processed", self.keys.documents_index)
                return []
            raise
        # reciprocal rank fusion: key -> [rrf, similarity, text_score, row]
        fused: dict[str, list[Any]] = {}
        for rank, row in enumerate(results[0], 1):
            fused[row["id"]] = [1.0 / (RRF_K + rank), 1.0 - float(row["vector_distance"]), None, row]
        if clause is not None:
            for rank, row in enumerate(results[1], 1):
                stored = np.frombuffer(row.get("embedding") or b"", dtype="<f4")
                similarity = float(stored @ vector) if stored.size == vector.size else 0.0
                entry = fused.setdefault(row["id"], [0.0, similarity, None, row])
                entry[0] += 1.0 / (RRF_K + rank)
                entry[2] = float(row["score"])
        ranked = sorted(fused.values(), key=lambda entry: (-entry[0], -entry[1]))[:k]
        return [_hit(row, rrf, similarity, text_score) for rrf, similarity, text_score, row in ranked]

    def knn_query(self, where: str, vector: np.ndarray, n: int) -> VectorQuery:
        """The filtered KNN query (the user's text is not in it: the vector is a parameter)."""
        return VectorQuery(to_bytes(vector), "embedding", return_fields=list(_RETURN), filter_expression=where,
                           num_results=n, ef_runtime=max(n, 20))  # fmt: skip

    @staticmethod
    def text_query(where: str, clause: str, n: int) -> FilterQuery:
        """The BM25 full-text query under the same filter; returns each chunk's vector for its similarity."""
        query = FilterQuery(clause if where == "*" else f"{where} {clause}", num_results=n)
        query.return_fields(*_RETURN, "embedding", skip_decode=["embedding"])
        return query.scorer("BM25").with_scores()


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
