"""The provider clients against the stand-ins: wire formats, error taxonomy, time zones, OAuth, quotas."""

from __future__ import annotations

import pytest
from flow_support import new_york, utc_ms
from pydantic import SecretStr

from headwater.keys import Keys
from headwater.providers.alphavantage import AlphaVantageClient, AlphaVantageDailyLimit, eastern_to_utc_ms, parse_series
from headwater.providers.http import AuthError, BadRequest, MalformedResponse, ProviderTimeout, QuotaExhausted, RateLimited
from headwater.providers.newsapi import NewsApiClient
from headwater.providers.reddit import RedditClient
from headwater.providers.x import XClient
from headwater.ratelimit import Limits, SharedRateLimiter
from standins.http_server import ProviderStandIn

KEY = SecretStr("test-key")


def test_eastern_wall_time_becomes_utc_across_both_dst_changes():
    stamps = eastern_to_utc_ms(["2024-03-08 09:30:00", "2024-03-11 09:30:00", "2024-11-01 09:30:00",
                                "2024-11-04 09:30:00", "2024-11-03 01:30:00"])  # fmt: skip
    assert stamps.tolist() == [
        utc_ms(2024, 3, 8, 14, 30),  # EST: UTC-5
        utc_ms(2024, 3, 11, 13, 30),  # EDT after the spring change: UTC-4
        utc_ms(2024, 11, 1, 13, 30),  # still EDT
        utc_ms(2024, 11, 4, 14, 30),  # EST again
        utc_ms(2024, 11, 3, 5, 30),  # the repeated hour: the first (daylight) reading
    ]
    assert eastern_to_utc_ms(["2024-03-08"], daily=True).tolist() == [utc_ms(2024, 3, 8)]


def test_values_that_are_not_numbers_become_nan_for_the_gate_not_an_error():
    body = {"Time Series (1min)": {
        "2024-03-08 09:31:00": {"1. open": "10.5", "2. high": "n/a", "3. low": "10.0", "4. close": "10.2", "5. volume": "7"},
        "2024-03-08 09:30:00": {"1. open": "10.0", "2. high": "10.6", "3. low": None, "4. close": "10.5"},
        "2024-03-08 09:32:00": "not an object",
    }}  # fmt: skip
    frame = parse_series(body, "AAPL", timeframe="1m")
    assert frame["local_time"].tolist() == ["2024-03-08 09:30:00", "2024-03-08 09:31:00", "2024-03-08 09:32:00"]
    assert frame["open"].tolist()[:2] == [10.0, 10.5] and frame["close"].tolist()[:2] == [10.5, 10.2]
    assert frame[["high", "low", "volume"]].isna().to_numpy().tolist() == [[False, True, True], [True, False, False],
                                                                            [True, True, True]]  # fmt: skip
    assert frame["volume"].tolist()[1] == 7.0 and frame["open"].isna().tolist() == [False, False, True]


def test_intraday_bars_cross_the_spring_dst_change_in_utc():
    # Monday 2024-03-11 04:30 New York (EDT): the latest 100 bars are 30 of Monday and 70 of Friday (EST).
    with ProviderStandIn(clock=lambda: new_york(2024, 3, 11, 4, 30).timestamp()) as hub:
        frame = AlphaVantageClient(hub.base_urls()["alphavantage"], KEY).intraday("AAPL")
    assert len(frame) == 100 and frame["ts"].is_monotonic_increasing
    ts = set(frame["ts"])
    assert utc_ms(2024, 3, 11, 8, 0) in ts and utc_ms(2024, 3, 11, 8, 29) in ts  # 04:00-04:29 EDT
    assert utc_ms(2024, 3, 9, 0, 59) in ts and utc_ms(2024, 3, 8, 23, 50) in ts  # 19:59 / 18:50 EST
    assert not [t for t in ts if utc_ms(2024, 3, 9, 1, 0) <= t < utc_ms(2024, 3, 11, 8, 0)]  # nothing in between


def test_alpha_vantage_bodies_that_are_not_data_raise_the_right_errors(standins, r, key_prefix):
    client = AlphaVantageClient(standins.base_urls()["alphavantage"], KEY)
    standins.inject("alphavantage", "note")
    with pytest.raises(RateLimited, match="Note") as note:
        client.intraday("AAPL")
    assert note.value.retry_after_s == 60
    standins.inject("alphavantage", "malformed")
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        client.intraday("AAPL")
    with pytest.raises(BadRequest, match="Error Message"):
        client.intraday("NOPE")
    # The provider's daily limit: an "Information" body; every worker on the key is paused until UTC midnight.
    limiter = SharedRateLimiter(r, Keys(key_prefix), "alphavantage", "k", Limits(per_day=100))
    client = AlphaVantageClient(standins.base_urls()["alphavantage"], KEY, limiter=limiter)
    standins.inject("alphavantage", "information")
    with pytest.raises(AlphaVantageDailyLimit, match="daily limit") as info:
        client.intraday("AAPL")
    assert info.value.retry_after_s > 0 and info.value.retryable
    with pytest.raises(QuotaExhausted):
        client.intraday("AAPL")  # the shared block stops the next request before it is sent


def test_timeouts_and_429_are_classified_with_the_servers_wait(standins):
    client = AlphaVantageClient(standins.base_urls()["alphavantage"], KEY, timeout_s=0.3)
    standins.inject("alphavantage", "timeout", seconds=2)
    with pytest.raises(ProviderTimeout):
        client.intraday("AAPL")
    standins.inject("x", "http429", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        XClient(standins.base_urls()["x"], KEY).search_recent("$AAPL")
    assert 5 <= limited.value.retry_after_s <= 8  # from x-rate-limit-reset (epoch seconds)


def test_newsapi_articles_parse_and_errors_map(standins):
    client = NewsApiClient(standins.base_urls()["newsapi"], KEY)
    page = client.everything('AAPL OR "Apple"')
    assert page.articles and not page.rejected and page.total >= len(page.articles)
    assert all(a.url.startswith("https://") and a.published_at.tzinfo for a in page.articles)
    with pytest.raises(AuthError, match="401"):
        NewsApiClient(standins.base_urls()["newsapi"], None).everything("AAPL")
    standins.inject("newsapi", "http429", retry_after=3)
    with pytest.raises(RateLimited) as limited:
        client.everything("AAPL")
    assert limited.value.retry_after_s == 3


def test_reddit_caches_its_token_and_refreshes_it_when_it_expires(standins):
    client = RedditClient(standins.base_urls()["reddit"], SecretStr("client-id"), client_secret=SecretStr("s3cret"),
                          user_agent="headwater-tests/1.0 (ops@example.com)")  # fmt: skip
    first = client.new("stocks", limit=25)
    second = client.new("investing", limit=25)
    assert first.posts and second.posts and client.tokens_fetched == 1
    standins.expire_reddit_tokens()
    assert client.new("stocks", limit=5).posts and client.tokens_fetched == 2  # 401 -> one refresh -> retried
    post = first.posts[0]
    assert post.platform == "reddit" and post.id == f"reddit:{post.post_id}" and post.url.startswith("https://www.reddit.com/r/")


def test_x_recent_search_parses_tweets_and_pages(standins):
    page = XClient(standins.base_urls()["x"], KEY).search_recent("($AAPL OR $MSFT) lang:en -is:retweet", max_results=10)
    assert len(page.posts) == 10 and page.next_token and page.newest_id == page.posts[0].post_id
    assert all(p.platform == "x" and ("$AAPL" in p.text or "$MSFT" in p.text) for p in page.posts)
