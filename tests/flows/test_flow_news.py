"""News: the processor (dedupe, sentiment, tags, TTL, index, sentiment series) and the scraper flow end to end."""

from __future__ import annotations

import datetime as dt

import pytest
from flow_support import samples, total_samples

from flows.news_scraper import news_query, news_scraper
from headwater.models import Article
from headwater.processors import drain, ttl_seconds
from headwater.processors.news import NewsProcessor
from headwater.sentiment import default_scorer
from headwater.tagging import TickerTagger

WEEK_S = 7 * 86_400
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def article(url: str, title: str, description: str = "", minutes_ago: int = 30) -> Article:
    return Article(url=url, title=title, description=description, content=description, source="Wire",
                   published_at=NOW - dt.timedelta(minutes=minutes_ago))  # fmt: skip


GOOD_NEWS = article("https://news.example.com/apple-beats", "Apple shares jump after earnings beat estimates",
                    "Apple (NASDAQ: AAPL) posted record revenue; Microsoft also rallied.")  # fmt: skip
SYNDICATED = article("https://other.example.com/copy", GOOD_NEWS.title, GOOD_NEWS.description)
BAD_NEWS = article("https://news.example.com/tesla", "Tesla shares plunge as deliveries miss estimates",
                   "The carmaker cut its outlook.", minutes_ago=10)  # fmt: skip


def entry(a: Article, query: str) -> dict[str, str]:
    return {"d": a.model_dump_json(), "q": query, "src": "newsapi"}


def test_the_processor_dedupes_tags_scores_and_stores_with_ttl(r, key_prefix):
    from headwater.keys import Keys

    keys = Keys(key_prefix)
    for fields in (entry(GOOD_NEWS, "AAPL"), entry(GOOD_NEWS, "MSFT"), entry(SYNDICATED, "AAPL"),
                   entry(BAD_NEWS, "TSLA"), {"d": "not json", "q": "AAPL"}):  # fmt: skip
        r.xadd(keys.raw_news, fields)
    handler = NewsProcessor(r, keys, ttl_s=WEEK_S, tagger=TickerTagger(["AAPL", "MSFT", "TSLA"]), scorer=default_scorer())
    stats = drain(r, keys, keys.raw_news, handler, stage="news_processor", consumer="test")
    assert (handler.stats.stored, handler.stats.duplicates, stats.dead_letters) == (2, 2, 1)
    assert r.xpending(keys.raw_news, keys.group)["pending"] == 0  # everything acked, nothing lost

    stored = {k.decode(): v.decode() for k, v in r.hgetall(keys.article(GOOD_NEWS.id)).items()}
    assert stored["url"] == GOOD_NEWS.url and stored["tickers"] == "AAPL,MSFT" and stored["sentiment_label"] == "positive"
    assert 0 < r.ttl(keys.article(GOOD_NEWS.id)) <= WEEK_S
    published = int(GOOD_NEWS.published_at.timestamp() * 1000)
    for ticker in ("AAPL", "MSFT"):  # tagged from the text: the search that found it was only AAPL's
        assert r.zscore(keys.news_index(ticker), GOOD_NEWS.id) == published
        (ts, value), = samples(r, keys.sentiment(ticker, "news"))
        assert ts == published and value > 0
    (_, tesla), = samples(r, keys.sentiment("TSLA", "news"))
    assert tesla < 0 and r.ttl(keys.news_index("TSLA")) > 0
    assert not r.exists(keys.article(SYNDICATED.id))  # same story under another URL: a duplicate

    # Redelivery of the same articles (a re-fetch, or a worker that died before acking): nothing doubles.
    r.xadd(keys.raw_news, entry(GOOD_NEWS, "AAPL"))
    r.xadd(keys.raw_news, entry(BAD_NEWS, "TSLA"))
    drain(r, keys, keys.raw_news, handler, stage="news_processor", consumer="test")
    assert handler.stats.duplicates == 4 and total_samples(r, keys.sentiment("AAPL", "news")) == 1


def test_ttl_comes_from_the_retention_policy_within_7_to_90_days(retention_file):
    retention_file(news=14, social=10)
    assert ttl_seconds("news") == (14 + 7) * 86_400 and ttl_seconds("social") == (10 + 7) * 86_400  # + archive grace
    for days in (3, 120):
        retention_file(news=days)
        with pytest.raises(ValueError, match="processors need 7-90"):
            ttl_seconds("news")


def test_news_query_searches_symbol_and_names():
    assert news_query("AAPL") == 'AAPL OR "Apple"'
    assert news_query("T") == '"AT&T"'  # a one-letter symbol alone would match everything


def test_the_scraper_publishes_processes_and_does_not_republish(live_hub, flow_env, r, fast):
    first = news_scraper(tickers=["AAPL", "MSFT"], data_sources=fast)
    counts = first["counts"]
    assert counts["fetched"] > 0 and counts["published"] == counts["validated"] > 0
    assert counts["stored"] + counts["processor_duplicates"] == counts["published"] and counts["dead_letters"] == 0
    assert r.zcard(flow_env.news_index("AAPL")) > 0 and r.exists(flow_env.sentiment("AAPL", "news"))
    assert r.get(flow_env.checkpoint("news_scraper", "AAPL"))  # the watermark moved
    assert r.xpending(flow_env.raw_news, flow_env.group)["pending"] == 0
    articles_before = r.zcard(flow_env.news_index("AAPL"))

    second = news_scraper(tickers=["AAPL", "MSFT"], data_sources=fast)
    assert second["counts"]["published"] == 0 and second["counts"]["duplicates"] >= 1
    assert r.zcard(flow_env.news_index("AAPL")) == articles_before


def test_a_malformed_answer_fails_the_run_and_publishes_nothing(live_hub, flow_env, r, fast):
    live_hub.inject("newsapi", "malformed", count=4)
    state = news_scraper(tickers=["AAPL"], data_sources=fast, return_state=True)
    assert state.is_failed() and "MalformedResponse" in state.message
    assert r.xlen(flow_env.raw_news) == 0 and not r.exists(flow_env.checkpoint("news_scraper", "AAPL"))
    assert news_scraper(tickers=["AAPL"], data_sources=fast)["counts"]["published"] > 0


def test_knowledge_time_a_late_article_is_invisible_before_it_was_stored(r, key_prefix):
    """Published 30 min ago, stored now: news_sentiment_1h as of 10 min ago (knowledge) does not see it, by
    event time it does; the processor keeps the ingest time beside the sample."""
    from features import compute_features, load_catalog
    from headwater.keys import Keys

    keys = Keys(key_prefix)
    r.xadd(keys.raw_news, entry(GOOD_NEWS, "AAPL"))
    handler = NewsProcessor(r, keys, ttl_s=WEEK_S, tagger=TickerTagger(["AAPL"]), scorer=default_scorer())
    before_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    drain(r, keys, keys.raw_news, handler, stage="news_processor", consumer="test")
    published = int(GOOD_NEWS.published_at.timestamp() * 1000)
    stored = int(r.hget(keys.article(GOOD_NEWS.id), "stored_ms"))
    (ts, known_at), = samples(r, keys.known("AAPL", "sentiment", "news"))
    assert ts == published and known_at == stored >= before_ms

    spec = load_catalog().resolve("news_sentiment_1h")
    at = published + 20 * 60_000  # after publication, before it was stored
    (known,) = compute_features(r, keys, [spec], ["AAPL"], at)
    (event,) = compute_features(r, keys, [spec], ["AAPL"], at, time_basis="event")
    assert known.value is None and event.value is not None and event.value > 0
    (later,) = compute_features(r, keys, [spec], ["AAPL"], stored + 1)
    assert later.value == event.value
