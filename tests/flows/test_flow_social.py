"""Social: the processor (dedupe, tags, sentiment, mention counts) and the collector flow end to end."""

from __future__ import annotations

import datetime as dt

import pytest
from flow_support import samples

from flows.social_media_collector import social_media_collector, x_queries
from headwater.keys import Keys
from headwater.models import Post
from headwater.processors import drain
from headwater.processors.social import SocialProcessor
from headwater.sentiment import default_scorer
from headwater.tagging import TickerTagger

WEEK_S = 7 * 86_400
AT = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


def post(platform: str, post_id: str, text: str, author: str, at: dt.datetime = AT) -> dict[str, str]:
    p = Post(platform=platform, post_id=post_id, text=text, author=author, created_at=at)
    return {"d": p.model_dump_json(), "q": "test", "src": platform}


def test_mentions_count_posts_per_millisecond_and_redeliveries_do_not_double(r, key_prefix):
    keys = Keys(key_prefix)
    entries = [
        post("x", "1", "$TSLA to the moon, huge beat 🚀", "alice"),
        post("x", "2", "$TSLA to the moon, huge beat 🚀", "bob"),  # same words, another person: a mention
        post("reddit", "a", "Bought more $TSLA and $AAPL today", "carol"),
        post("reddit", "a", "Bought more $TSLA and $AAPL today", "carol"),  # the same post twice
        post("x", "3", "$TSLA to the moon, huge beat 🚀", "alice", AT + dt.timedelta(minutes=1)),  # alice repeating
        post("x", "4", "What a nice day", "dave"),  # no ticker: not stored
    ]
    for fields in entries:
        r.xadd(keys.raw_social, fields)
    handler = SocialProcessor(r, keys, ttl_s=WEEK_S, tagger=TickerTagger(["TSLA", "AAPL"]), scorer=default_scorer())
    drain(r, keys, keys.raw_social, handler, stage="social_processor", consumer="test")
    assert (handler.stats.stored, handler.stats.duplicates, handler.stats.untagged) == (3, 2, 1)
    ms = int(AT.timestamp() * 1000)
    assert samples(r, keys.mentions("TSLA", "social")) == [(ms, 3.0)]  # three distinct posts in that millisecond
    assert samples(r, keys.mentions("AAPL", "social")) == [(ms, 1.0)]
    assert r.zcard(keys.social_index("TSLA")) == 3 and not r.exists(keys.post("x:4"))
    (_, sentiment), = samples(r, keys.sentiment("TSLA", "social"))  # the mean of the three posts of that ms
    scores = [default_scorer().score(t).score for t in ("$TSLA to the moon, huge beat 🚀",) * 2 + ("Bought more $TSLA and $AAPL today",)]
    assert sentiment == pytest.approx(sum(scores) / 3) and sentiment > 0
    stored = {k.decode(): v.decode() for k, v in r.hgetall(keys.post("reddit:a")).items()}
    assert stored["tickers"] == "TSLA,AAPL" and 0 < r.ttl(keys.post("reddit:a")) <= WEEK_S

    for fields in entries[:3]:  # delivered again: nothing doubles
        r.xadd(keys.raw_social, fields)
    drain(r, keys, keys.raw_social, handler, stage="social_processor", consumer="test")
    assert samples(r, keys.mentions("TSLA", "social")) == [(ms, 3.0)]
    assert samples(r, keys.sentiment("TSLA", "social"))[0][1] == pytest.approx(sentiment)


def test_x_queries_chunk_cashtags():
    assert x_queries(["AAPL", "MSFT", "TSLA"], 2) == ["($AAPL OR $MSFT) lang:en -is:retweet", "($TSLA) lang:en -is:retweet"]


def test_the_collector_stores_reddit_and_x_posts_and_retries_an_x_429(live_hub, flow_env, r, fast):
    live_hub.inject("x", "http429", retry_after=1)
    summary = social_media_collector(tickers=["AAPL", "TSLA", "NVDA"], subreddits=["stocks", "wallstreetbets"],
                                     max_pages=1, data_sources=fast)  # fmt: skip
    counts = summary["counts"]
    assert not summary["failed"] and counts["published"] > 0 and counts["stored"] > 0 and counts["dead_letters"] == 0
    assert [e["status"] for e in live_hub.requests_log("x")][:2] == [429, 200]
    names = [k.decode()[len(flow_env.prefix):] for k in r.scan_iter(match=f"{flow_env.prefix}social:*", count=1000)]
    platforms = {name.split(":")[1] for name in names if not name.startswith("social:idx:")}
    assert platforms == {"reddit", "x"}
    assert r.exists(flow_env.mentions("TSLA", "social")) and r.exists(flow_env.sentiment("TSLA", "social"))
    assert r.get(flow_env.checkpoint("social_media_collector", "reddit:stocks"))

    again = social_media_collector(tickers=["AAPL", "TSLA", "NVDA"], subreddits=["stocks", "wallstreetbets"],
                                   max_pages=1, data_sources=fast)  # fmt: skip
    assert again["counts"]["published"] <= 3  # only what was posted in the seconds between the runs
