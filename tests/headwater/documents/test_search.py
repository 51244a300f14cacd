"""search_documents: point-in-time filtering, query escaping, hybrid ranking, semantic cache, CLI."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import numpy as np
import pytest

from headwater.documents.index import ChunkRecord, ensure_documents_index, write_document
from headwater.documents.embed import to_bytes
from headwater.documents.search import (
    DocumentSearch,
    escape_tag,
    filter_clause,
    search_documents,
    text_clause,
    to_epoch_ms,
)
from headwater.keys import Keys

UTC = dt.timezone.utc
EARLY = int(dt.datetime(2024, 2, 1, 21, 0, tzinfo=UTC).timestamp() * 1000)
LATE = int(dt.datetime(2024, 8, 2, 21, 0, tzinfo=UTC).timestamp() * 1000)
# doc_id, ticker, form, source, section, public_ms, text
DOCS = [
    ("sec:0000320193-24-000010", "AAPL", "10-K", "sec", "Item 1A", EARLY,
     "Risk factors: the Company depends on component suppliers and its supply chain could be disrupted."),
    ("sec:0000320193-24-000090", "AAPL", "10-Q", "sec", "Part I Item 2", LATE,
     "The Company faces new supply chain risks from tariffs announced during the quarter."),
    ("sec:0000789019-24-000020", "MSFT", "10-K", "sec", "Item 1A", EARLY,
     "Risk factors: cloud data center capacity and supply chain constraints could limit growth."),
    ("transcript:AAPL:2024Q2", "AAPL", "transcript", "transcript", "qa", EARLY,
     "Analyst: can you comment on the foo bar program and the services margin?"),
]  # fmt: skip


@pytest.fixture
def corpus(r, keys, embedder) -> DocumentSearch:
    ensure_documents_index(r, keys, embedder.dims)
    vectors = embedder.encode([d[-1] for d in DOCS])
    for (doc_id, ticker, form, source, section, public_ms, text), vector in zip(DOCS, vectors):
        record = ChunkRecord(doc_id, 0, ticker, form, source, section, public_ms, 20241, text,
                             f"http://blob.test/raw/{doc_id}", "h")  # fmt: skip
        write_document(r, keys, [record], {0: to_bytes(vector)})
    return DocumentSearch(r, keys, embedder)


def test_as_of_never_returns_what_was_not_yet_public(corpus):
    question = "supply chain risks from tariffs"
    now = corpus.search(question, ticker="AAPL", k=10, use_cache=False).hits
    assert "sec:0000320193-24-000090" in [h.doc_id for h in now]
    for as_of in ("2024-06-30", dt.datetime(2024, 8, 2, 20, 59, tzinfo=UTC), LATE - 1, "2024-08-02T16:59:59-04:00"):
        for hybrid in (True, False):
            hits = corpus.search(question, ticker="AAPL", as_of=as_of, k=10, hybrid=hybrid, use_cache=False).hits
            assert hits and all(h.public_ms <= to_epoch_ms(as_of) for h in hits)
            assert "sec:0000320193-24-000090" not in [h.doc_id for h in hits]
    assert corpus.search(question, ticker="AAPL", as_of=LATE, k=10, use_cache=False).hits[0].public_ms == LATE
    assert corpus.search(question, as_of="2024-01-01", use_cache=False).hits == []  # nothing public yet


def test_as_of_dates_and_datetimes():
    assert to_epoch_ms("2024-06-30") == int(dt.datetime(2024, 7, 1, 3, 59, 59, 999_000, tzinfo=UTC).timestamp() * 1000)
    assert to_epoch_ms("2024-06-30T12:00:00Z") == int(dt.datetime(2024, 6, 30, 12, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="time zone"):
        to_epoch_ms(dt.datetime(2024, 6, 30, 12))
    with pytest.raises(ValueError):
        to_epoch_ms("last tuesday")


SYNTAX_QUERIES = [
    "@ticker:{AAPL} | -foo* {bar}",
    "@ticker:{MSFT}",
    "*",
    "-*",
    '"unterminated',
    "(@text:foo) => [KNN 100 @embedding $vec]",
    "@public_ms:[0 +inf] | @source:{transcript}",
    "%foo% ~bar \\ ; : ' ` ^ & !",
    "}{)(][",
]


@pytest.mark.parametrize("query", SYNTAX_QUERIES)
def test_query_syntax_is_searched_as_text_and_never_executed(corpus, query):
    hits = corpus.search(query, ticker="AAPL", as_of="2024-06-30", k=10, use_cache=False).hits
    assert all(h.ticker == "AAPL" and h.public_ms <= to_epoch_ms("2024-06-30") for h in hits)  # filters still hold
    everything = corpus.search(query, k=10, use_cache=False).hits
    assert {h.ticker for h in everything} == {"AAPL", "MSFT"}  # "@ticker:{...}" in the text filtered nothing


def test_syntax_words_match_as_words(corpus):
    hits = corpus.search("@ticker:{MSFT} | -foo* {bar}", k=10, use_cache=False).hits
    assert hits[0].doc_id == "transcript:AAPL:2024Q2"  # "-foo*" did not exclude foo; the words foo and bar ranked it first
    assert hits[0].text_score is not None and hits[0].source == "transcript"
    assert text_clause("@ticker:{MSFT} | -foo* {bar}") == "@text:(ticker|msft|foo|bar)"
    assert text_clause("*** -- {}") is None


def test_filters_are_validated_and_escaped():
    assert escape_tag("10-K/A") == "10\\-K\\/A" and escape_tag("BRK.B") == "BRK\\.B"
    assert filter_clause("BRK.B", ["10-K/A", "transcript"], ["sec"], 5, "event") == (
        "@ticker:{BRK\\.B} @form:{10\\-K\\/A|transcript} @source:{sec} @public_ms:[-inf 5]")
    assert filter_clause("BRK.B", None, None, 5) == "@ticker:{BRK\\.B} @public_ms:[-inf 5] @stored_ms:[-inf 5]"  # knowledge
    for bad in ("AAPL} | @form:{10-K", "aapl", "*"):
        with pytest.raises(ValueError):
            filter_clause(ticker=bad)
    with pytest.raises(ValueError):
        filter_clause(forms=["10-K} @ticker:{MSFT"])


def test_semantic_cache_hits_near_duplicates_and_expires(r, keys, embedder, corpus):
    search = DocumentSearch(r, keys, embedder, cache_ttl_s=1.5, cache_threshold=0.95)
    first = search.search("What are Apple's supply chain risks?", ticker="AAPL", k=3)
    assert not first.cached and first.hits
    near = search.search("what are apple's supply-chain risks", ticker="AAPL", k=3)
    assert near.cached and [h.key for h in near.hits] == [h.key for h in first.hits]
    assert near.hits[0].blob_url == first.hits[0].blob_url and near.hits[0].score == first.hits[0].score
    assert not search.search("What are Apple's supply chain risks?", ticker="MSFT", k=3).cached  # other scope
    assert not search.search("What are Apple's supply chain risks?", ticker="AAPL", k=3, as_of="2024-06-30").cached
    assert not search.search("Who is the chief executive officer?", ticker="AAPL", k=3).cached  # not similar
    entries = list(r.scan_iter(match=f"{keys.semantic_cache_entry('')}*"))
    assert entries and all(0 < r.pttl(e) <= 1500 for e in entries)
    time.sleep(1.7)
    assert not search.search("what are apple's supply-chain risks", ticker="AAPL", k=3).cached  # after the TTL


def test_search_documents_api_and_cli(r, keys, embedder, corpus, redis_url, key_prefix, monkeypatch, capsys):
    hits = search_documents("supplier disruption", ticker="AAPL", forms=["10-K"], k=2, client=r, keys=keys,
                            embedder=embedder)  # fmt: skip
    assert [h.doc_id for h in hits] == ["sec:0000320193-24-000010"]
    assert hits[0].section == "Item 1A" and hits[0].blob_url.startswith("http://blob.test/")

    from headwater.documents import search as module

    monkeypatch.setenv("HEADWATER_REDIS_URL", redis_url)
    monkeypatch.setenv("HEADWATER_REDIS_KEY_PREFIX", key_prefix)
    module._default_search.cache_clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert module.main(["supply chain", "--ticker", "AAPL", "--as-of", "2024-06-30", "--json", "--no-cache"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["hits"] and all(h["ticker"] == "AAPL" and h["public_ms"] <= to_epoch_ms("2024-06-30") for h in out["hits"])
        assert module.main(["supply chain", "--ticker", "AAPL", "--k", "1"]) == 0
        text = capsys.readouterr().out
        assert "AAPL" in text and "http://blob.test/raw/" in text
        assert module.main(["x", "--as-of", "soon"]) == 2
    finally:
        module._default_search.cache_clear()
        root.handlers[:], root.level = handlers, level


# -- pinned with redisvl (index schema, escaping, cache thresholds and TTL) -------------------------------
def test_documents_index_has_the_documented_schema(r, keys, embedder, corpus):
    """redisvl's FT.CREATE makes the index the raw command of docs/redis-keys.md made (existing data stays valid)."""
    reference = Keys(f"{keys.prefix}ref:")
    r.execute_command(
        "FT.CREATE", reference.documents_index, "ON", "HASH", "PREFIX", 1, reference.chunk_prefix,
        "SCHEMA", "doc_id", "TAG", "ticker", "TAG", "form", "TAG", "source", "TAG", "section", "TAG",
        "position", "NUMERIC", "public_ms", "NUMERIC", "SORTABLE", "stored_ms", "NUMERIC", "period", "NUMERIC", "text", "TEXT",
        "embedding", "VECTOR", "HNSW", 10, "TYPE", "FLOAT32", "DIM", embedder.dims, "DISTANCE_METRIC", "COSINE",
        "M", 16, "EF_CONSTRUCTION", 200,
    )  # fmt: skip
    ours, theirs = (r.ft(k.documents_index).info() for k in (keys, reference))
    assert ours["attributes"] == theirs["attributes"]
    assert [a[1] for a in ours["attributes"]] == ["doc_id", "ticker", "form", "source", "section", "position",
                                                   "public_ms", "stored_ms", "period", "text", "embedding"]  # fmt: skip
    assert ours["index_definition"]["prefixes"] == [keys.chunk_prefix]
    assert not ensure_documents_index(r, keys, embedder.dims)  # exists: kept as it is
    with pytest.raises(RuntimeError, match=f"{embedder.dims}-dimensional"):
        ensure_documents_index(r, keys, 8)


def test_tag_values_with_punctuation_match_exactly(r, keys, embedder, corpus):
    vector = embedder.encode_one("Berkshire Hathaway insurance float")
    for ticker in ("BRK.B", "BRK-B", "BRK"):
        record = ChunkRecord(f"sec:{ticker}", 0, ticker, "10-K/A", "sec", "Item 1", EARLY, None,
                             f"{ticker} insurance float and underwriting", f"http://blob.test/raw/{ticker}", "h")  # fmt: skip
        write_document(r, keys, [record], {0: to_bytes(vector)})
    for ticker in ("BRK.B", "BRK-B", "BRK"):
        for hybrid in (True, False):
            hits = corpus.search("insurance float", ticker=ticker, forms="10-K/A", k=10, hybrid=hybrid, use_cache=False).hits
            assert [(h.ticker, h.form, h.period) for h in hits] == [(ticker, "10-K/A", None)]


HOSTILE_QUERIES = [
    "\\", "\\\\@ticker:{MSFT}", "$vec", "=>[KNN 100 @embedding $vec]", '"supply" | "chain"', "supply\x00chain",
    "ünïcödé — 供应链 risk", "the of and a", "a" * 5000, " ".join(["supply"] * 500), "@text:(supply) @ticker:{MSFT}",
    "$BLOB $K $ef", "-@ticker:{AAPL}", "~supply %chain% ||| &&&",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_text_is_only_ever_words(corpus, query):
    assert text_clause(query) is None or set(text_clause(query)[7:-1]) <= set("abcdefghijklmnopqrstuvwxyz0123456789|")
    hits = corpus.search(query, ticker="AAPL", as_of="2024-06-30", k=10, use_cache=False).hits
    assert all(h.ticker == "AAPL" and h.public_ms <= to_epoch_ms("2024-06-30") for h in hits)
    assert {h.ticker for h in corpus.search(query, k=10, use_cache=False).hits} == {"AAPL", "MSFT"}


def _unit(v):
    return v / np.linalg.norm(v)


def test_semantic_cache_threshold_is_a_cosine_similarity(r, keys, corpus):
    rng = np.random.default_rng(3)
    base, noise = _unit(rng.standard_normal(384)), _unit(rng.standard_normal(384))
    noise = _unit(noise - (noise @ base) * base)  # orthogonal to base

    def at(similarity):  # a unit vector at exactly this cosine similarity to base
        return (similarity * base + np.sqrt(1 - similarity**2) * noise).astype(np.float32)

    strict, loose = (DocumentSearch(r, keys, None, cache_threshold=t) for t in (0.97, 0.95))
    first = loose.search("supply chain", ticker="AAPL", k=2, vector=base)
    assert not first.cached and first.hits
    assert loose.search("supply chain", ticker="AAPL", k=2, vector=at(0.96)).cached
    assert not strict.search("supply chain", ticker="AAPL", k=2, vector=at(0.96)).cached  # 0.96 < 0.97: miss, stored
    assert strict.search("supply chain", ticker="AAPL", k=2, vector=at(0.96)).cached
    assert not loose.search("supply chain", ticker="AAPL", k=2, vector=at(0.5)).cached
    assert not loose.search("supply chain", ticker="AAPL", k=3, vector=base).cached  # k is part of the scope
    with pytest.raises(ValueError):
        DocumentSearch(r, keys, None, cache_threshold=0)


def test_semantic_cache_ttl_is_fixed_from_the_store(r, keys, corpus):
    search = DocumentSearch(r, keys, None, cache_ttl_s=2.5)
    vector = corpus.embedder.encode_one("supply chain")
    assert not search.search("supply chain", ticker="AAPL", vector=vector).cached
    (entry,) = r.scan_iter(match=f"{keys.semantic_cache_entry('')}*")
    assert 0 < r.pttl(entry) <= 2500 and r.hget(entry, "scope") and r.hget(entry, "prompt") == b"supply chain"
    time.sleep(0.3)
    assert search.search("supply chain", ticker="AAPL", vector=vector).cached
    assert r.pttl(entry) <= 2200  # a hit does not extend the entry's life


def test_a_cache_index_of_the_old_layout_is_replaced(r, keys, corpus, caplog):
    r.execute_command("FT.CREATE", keys.semantic_cache_index, "ON", "HASH", "PREFIX", 1, keys.semantic_cache_entry(""),
                      "SCHEMA", "scope", "TAG", "expires_ms", "NUMERIC",
                      "embedding", "VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 384, "DISTANCE_METRIC", "COSINE")  # fmt: skip
    vector = corpus.embedder.encode_one("supply chain")
    with caplog.at_level(logging.WARNING, logger="headwater.documents.search"):
        assert not corpus.search("supply chain", ticker="AAPL", vector=vector).cached
        assert corpus.search("supply chain", ticker="AAPL", vector=vector).cached
    assert "another layout" in caplog.text
    assert "prompt_vector" in {a[1] for a in r.ft(keys.semantic_cache_index).info()["attributes"]}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headwater.documents.search"):
        assert DocumentSearch(r, keys, corpus.embedder).search("supply chain", ticker="AAPL", vector=vector).cached
    assert "another layout" not in caplog.text  # the index it made is the one it expects


def test_knowledge_time_a_filing_stored_after_as_of_is_not_found(r, key_prefix):
    """Accepted (public) at EARLY but stored a day later: invisible at as_of EARLY + 1 h on the knowledge basis,
    found on the event basis and once the pipeline had stored it."""
    keys = Keys(key_prefix)
    ensure_documents_index(r, keys, dims=4)
    vector = np.array([1, 0, 0, 0], dtype=np.float32)
    record = ChunkRecord("sec:LATE", 0, "LATE", "10-K", "sec", "Item 7", EARLY, None, "gross margin outlook improved",
                         "raw/sec/LATE.htm", "h1", stored_ms=EARLY + 86_400_000)  # fmt: skip
    write_document(r, keys, [record], {0: vector.tobytes()})
    search = DocumentSearch(r, keys, embedder=None)
    at = EARLY + 3_600_000

    def found(**kwargs):
        return [h.doc_id for h in search.search("gross margin", "LATE", vector=vector, use_cache=False, **kwargs).hits]

    assert found(as_of=at) == []
    assert found(as_of=at, time_basis="event") == ["sec:LATE"]
    assert found(as_of=EARLY + 86_400_000) == ["sec:LATE"]
