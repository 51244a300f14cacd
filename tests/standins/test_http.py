"""The REST stand-ins over real HTTP: wire formats, provider error behaviour, faults, quotas, controls.

Every test talks to a real ``ProviderStandIn`` on a random local port with ``requests``; nothing is mocked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
import requests

from standins.corpus import DEFAULT_TICKERS, company
from standins.http_server import PREFIXES, ProviderStandIn, compile_query, required_cashtags
from standins.market import MINUTE_MS, MarketSim

NY = ZoneInfo("America/New_York")
SEC_UA = {"User-Agent": "Headwater tests ops@example.com"}
REDDIT_UA = "python:headwater-tests:v0.1 (by /u/headwater)"


@pytest.fixture(scope="module")
def server() -> Iterator[ProviderStandIn]:
    with ProviderStandIn(seed=42) as hub:
        yield hub


@pytest.fixture
def hub(server: ProviderStandIn) -> ProviderStandIn:
    """The shared stand-in with faults, logs, quotas and EDGAR blocks cleared for this test."""
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _completed_minute(now_s: float | None = None) -> int:
    """Start (ms) of the last fully completed minute."""
    return int((now_s or time.time()) * 1000) // MINUTE_MS * MINUTE_MS - MINUTE_MS


# -- server, controls ---------------------------------------------------------------------------------------
def test_base_urls_cover_every_provider_and_health_answers(hub: ProviderStandIn, http: requests.Session) -> None:
    urls = hub.base_urls()
    assert set(urls) == {"polygon", "alphavantage", "newsapi", "reddit", "x", "sec", "sec_data", "transcripts"}
    assert all(url == hub.url + PREFIXES[name] for name, url in urls.items())
    health = http.get(f"{hub.url}/_control/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_control_endpoints_count_redact_and_reset(hub: ProviderStandIn, http: requests.Session) -> None:
    base = hub.base_urls()["polygon"]
    for _ in range(2):
        http.get(f"{base}/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05", params={"apiKey": "s3cret"},
                 timeout=5)
    log = http.get(f"{hub.url}/_control/requests", timeout=5).json()
    assert log["counts"]["polygon"] == 2 and log["counts"]["newsapi"] == 0
    entry = log["requests"][-1]
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["provider"] == "polygon"
    assert entry["path"].startswith("/polygon/v2/aggs/ticker/AAPL")
    assert entry["query"]["apiKey"] == "REDACTED" and "s3cret" not in json.dumps(log)
    assert isinstance(entry["ts"], float)

    queued = http.post(f"{hub.url}/_control/faults", json={"provider": "polygon", "mode": "http503", "count": 1},
                       timeout=5)
    assert queued.status_code == 200 and queued.json()["queued"]["polygon"][0]["mode"] == "http503"
    faulted = http.get(f"{base}/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05", params={"apiKey": "k"},
                       timeout=5)
    assert faulted.status_code == 503
    assert hub.requests_log("polygon")[-1]["fault"] == "http503"

    bad = http.post(f"{hub.url}/_control/faults", json={"provider": "polygon", "mode": "note"}, timeout=5)
    assert bad.status_code == 400  # Alpha Vantage-only mode
    assert http.post(f"{hub.url}/_control/reset", timeout=5).json() == {"status": "ok"}
    assert http.get(f"{hub.url}/_control/requests", timeout=5).json()["counts"]["polygon"] == 0


def test_inject_rejects_unknown_provider_or_mode(hub: ProviderStandIn) -> None:
    with pytest.raises(ValueError):
        hub.inject("yahoo", "http500")
    with pytest.raises(ValueError):
        hub.inject("polygon", "explode")
    with pytest.raises(ValueError):
        hub.inject("x", "block")


# -- Polygon ------------------------------------------------------------------------------------------------
def test_polygon_minute_aggregates_equal_market_sim(hub: ProviderStandIn, http: requests.Session) -> None:
    last = _completed_minute()
    start = last - 29 * MINUTE_MS
    body = http.get(f"{hub.base_urls()['polygon']}/v2/aggs/ticker/AAPL/range/1/minute/{start}/{last + 59_999}",
                    params={"apiKey": "k"}, timeout=10).json()
    assert {"ticker", "queryCount", "resultsCount", "adjusted", "results", "status", "request_id", "count"} <= set(body)
    assert body["status"] == "OK" and body["ticker"] == "AAPL" and body["adjusted"] is True
    assert body["resultsCount"] == body["count"] == len(body["results"]) == 30
    sim = MarketSim(42)  # an independent simulator with the same seed: REST must equal the stream's bars
    for bar in body["results"]:
        assert set(bar) == {"v", "vw", "o", "c", "h", "l", "t", "n"}
        expected = sim.minute_bar("AAPL", bar["t"])
        assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["vw"], bar["n"]) == (
            expected.open, expected.high, expected.low, expected.close, expected.volume, expected.vwap,
            expected.trades)
    assert body["results"][-1]["t"] == last  # nothing of the running minute
    assert "next_url" not in body
    spy = http.get(f"{hub.base_urls()['polygon']}/v2/aggs/ticker/SPY/range/1/minute/{last}/{last}",
                   params={"apiKey": "k"}, timeout=10).json()["results"]
    assert spy[0]["c"] == sim.minute_bar("SPY", last).close  # the WebSocket stand-in's default universe has SPY


def test_polygon_limit_truncates_with_next_url_and_sort(hub: ProviderStandIn, http: requests.Session) -> None:
    base = hub.base_urls()["polygon"]
    last = _completed_minute()
    start, end = last - 24 * MINUTE_MS, last
    full = http.get(f"{base}/v2/aggs/ticker/MSFT/range/1/minute/{start}/{end}", params={"apiKey": "k"},
                    timeout=10).json()["results"]
    pages, url, params = [], f"{base}/v2/aggs/ticker/MSFT/range/1/minute/{start}/{end}", {"apiKey": "k", "limit": 10}
    while url:
        page = http.get(url, params=params, timeout=10).json()
        pages.append(page)
        url, params = page.get("next_url"), {"apiKey": "k"}  # next_url carries no key: the client adds it
    assert [p["resultsCount"] for p in pages] == [10, 10, 5]
    assert "apiKey" not in pages[0]["next_url"] and "cursor=" in pages[0]["next_url"]
    assert [b for p in pages for b in p["results"]] == full
    desc = http.get(f"{base}/v2/aggs/ticker/MSFT/range/1/minute/{start}/{end}",
                    params={"apiKey": "k", "sort": "desc"}, timeout=10).json()["results"]
    assert desc == list(reversed(full))


def test_polygon_hour_and_day_bars(hub: ProviderStandIn, http: requests.Session) -> None:
    base = hub.base_urls()["polygon"]
    hour = http.get(f"{base}/v2/aggs/ticker/AAPL/range/1/hour/1704200400000/1704203999999", params={"apiKey": "k"},
                    timeout=10).json()["results"]
    sim = MarketSim(42)
    minutes = [sim.minute_bar("AAPL", 1704200400000 + i * MINUTE_MS) for i in range(60)]
    assert len(hour) == 1
    assert hour[0]["o"] == minutes[0].open and hour[0]["c"] == minutes[-1].close
    assert hour[0]["h"] == max(m.high for m in minutes) and hour[0]["l"] == min(m.low for m in minutes)
    assert hour[0]["v"] == sum(m.volume for m in minutes) and hour[0]["n"] == sum(m.trades for m in minutes)

    days = http.get(f"{base}/v2/aggs/ticker/AAPL/range/1/day/2024-03-08/2024-03-12", params={"apiKey": "k"},
                    timeout=10).json()["results"]
    stamps = [dt.datetime.fromtimestamp(d["t"] / 1000, NY) for d in days]
    assert [s.date().isoformat() for s in stamps] == ["2024-03-08", "2024-03-11", "2024-03-12"]  # no weekend
    assert all((s.hour, s.minute) == (0, 0) for s in stamps)  # stamped at New York midnight, across DST
    daily = sim.daily_bar("AAPL", int(dt.datetime(2024, 3, 8, tzinfo=dt.timezone.utc).timestamp() * 1000))
    assert (days[0]["o"], days[0]["c"], days[0]["v"]) == (daily.open, daily.close, daily.volume)


def test_polygon_key_errors_and_unknown_ticker(http: requests.Session) -> None:
    with ProviderStandIn(api_keys={"polygon": {"good"}}) as hub:
        url = f"{hub.base_urls()['polygon']}/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05"
        missing = http.get(url, timeout=5)
        assert missing.status_code == 401 and missing.json()["error"] == "API Key was not provided"
        bad = http.get(url, params={"apiKey": "nope"}, timeout=5)
        assert bad.status_code == 401
        assert bad.json()["status"] == "ERROR" and bad.json()["error"] == "Unknown API Key" and bad.json()["request_id"]
        bearer = http.get(url, headers={"Authorization": "Bearer good"}, timeout=5)
        assert bearer.status_code == 200 and bearer.json()["resultsCount"] == 4
        unknown = http.get(url.replace("AAPL", "ZZZZ"), params={"apiKey": "good"}, timeout=5).json()
        assert unknown["status"] == "OK" and unknown["resultsCount"] == 0 and "results" not in unknown


def test_polygon_quota_answers_429(http: requests.Session) -> None:
    with ProviderStandIn(quotas={"polygon": {"per_minute": 2}}) as hub:
        url = f"{hub.base_urls()['polygon']}/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-03"
        assert [http.get(url, params={"apiKey": "a"}, timeout=5).status_code for _ in range(2)] == [200, 200]
        over = http.get(url, params={"apiKey": "a"}, timeout=5)
        assert over.status_code == 429 and "exceeded the maximum requests per minute" in over.json()["error"]
        assert http.get(url, params={"apiKey": "b"}, timeout=5).status_code == 200  # quotas are per key


# -- Alpha Vantage ------------------------------------------------------------------------------------------
def _av(http: requests.Session, hub: ProviderStandIn, **params: str) -> requests.Response:
    return http.get(f"{hub.base_urls()['alphavantage']}/query", params=params, timeout=15)


def test_alphavantage_intraday_shape_and_values(hub: ProviderStandIn, http: requests.Session) -> None:
    resp = _av(http, hub, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="5min", apikey="k")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["Meta Data", "Time Series (5min)"]
    assert list(body["Meta Data"]) == ["1. Information", "2. Symbol", "3. Last Refreshed", "4. Interval",
                                       "5. Output Size", "6. Time Zone"]
    assert body["Meta Data"]["6. Time Zone"] == "US/Eastern" and body["Meta Data"]["5. Output Size"] == "Compact"
    series = body["Time Series (5min)"]
    keys = list(series)
    assert len(keys) == 100 and keys == sorted(keys, reverse=True)
    assert body["Meta Data"]["3. Last Refreshed"] == keys[0]
    for key in keys:
        local = dt.datetime.strptime(key, "%Y-%m-%d %H:%M:%S").replace(tzinfo=NY)
        assert local.weekday() < 5 and 4 <= local.hour < 20
    bar = series[keys[0]]
    assert list(bar) == ["1. open", "2. high", "3. low", "4. close", "5. volume"]
    assert all(isinstance(v, str) for v in bar.values()) and re.fullmatch(r"\d+\.\d{4}", bar["1. open"])
    start = int(dt.datetime.strptime(keys[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=NY).timestamp() * 1000)
    minutes = [MarketSim(42).minute_bar("IBM", start + i * MINUTE_MS) for i in range(5)]
    assert bar["1. open"] == f"{minutes[0].open:.4f}" and bar["4. close"] == f"{minutes[-1].close:.4f}"
    assert bar["2. high"] == f"{max(m.high for m in minutes):.4f}"
    assert bar["5. volume"] == str(sum(m.volume for m in minutes))


def test_alphavantage_timestamps_are_us_eastern_across_dst(http: requests.Session) -> None:
    # Monday 2024-03-11 06:00 New York (EDT); the previous session, Friday 2024-03-08, was still on EST.
    pinned = dt.datetime(2024, 3, 11, 6, 0, tzinfo=NY).timestamp()
    with ProviderStandIn(clock=lambda: pinned) as hub:
        series = _av(http, hub, function="TIME_SERIES_INTRADAY", symbol="AAPL", interval="15min",
                     apikey="k").json()["Time Series (15min)"]
    assert list(series)[0] == "2024-03-11 05:45:00"  # the last completed bar
    assert "2024-03-11 04:00:00" in series and "2024-03-08 19:45:00" in series
    assert not any(k.startswith(("2024-03-09", "2024-03-10")) for k in series)  # no weekend bars
    sim = MarketSim(42)
    utc = dt.timezone.utc
    edt_open = int(dt.datetime(2024, 3, 11, 8, 0, tzinfo=utc).timestamp() * 1000)  # 04:00 EDT = 08:00 UTC
    est_last = int(dt.datetime(2024, 3, 9, 0, 45, tzinfo=utc).timestamp() * 1000)  # 19:45 EST = 00:45 UTC
    assert series["2024-03-11 04:00:00"]["1. open"] == f"{sim.minute_bar('AAPL', edt_open).open:.4f}"
    assert series["2024-03-08 19:45:00"]["1. open"] == f"{sim.minute_bar('AAPL', est_last).open:.4f}"


def test_alphavantage_daily_shape(hub: ProviderStandIn, http: requests.Session) -> None:
    body = _av(http, hub, function="TIME_SERIES_DAILY", symbol="MSFT", apikey="k").json()
    assert list(body["Meta Data"]) == ["1. Information", "2. Symbol", "3. Last Refreshed", "4. Output Size",
                                       "5. Time Zone"]
    days = list(body["Time Series (Daily)"])
    assert len(days) == 100 and all(dt.date.fromisoformat(d).weekday() < 5 for d in days)
    csv = _av(http, hub, function="TIME_SERIES_DAILY", symbol="MSFT", apikey="k", datatype="csv").text.splitlines()
    assert csv[0] == "timestamp,open,high,low,close,volume" and csv[1].startswith(days[0])


def test_alphavantage_errors_come_as_http_200(hub: ProviderStandIn, http: requests.Session) -> None:
    missing = _av(http, hub, function="TIME_SERIES_DAILY", symbol="IBM")
    assert missing.status_code == 200 and "apikey is invalid or missing" in missing.json()["Error Message"]
    bad_symbol = _av(http, hub, function="TIME_SERIES_DAILY", symbol="NOPE", apikey="k")
    assert bad_symbol.status_code == 200
    assert bad_symbol.json() == {"Error Message": "Invalid API call. Please retry or visit the documentation "
                                                  "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."}
    bad_interval = _av(http, hub, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="2min", apikey="k")
    assert "Error Message" in bad_interval.json()


def test_alphavantage_quota_note_then_information(http: requests.Session) -> None:
    quotas = {"alphavantage": {"per_minute": [2, 1.0], "per_day": 3}}
    with ProviderStandIn(quotas=quotas) as hub:
        def call(key: str = "k") -> dict:
            return _av(http, hub, function="TIME_SERIES_DAILY", symbol="IBM", apikey=key).json()

        assert "Time Series (Daily)" in call() and "Time Series (Daily)" in call()
        note = call()
        assert list(note) == ["Note"] and note["Note"].startswith("Thank you for using Alpha Vantage!")
        assert "2 calls per minute" in note["Note"]
        time.sleep(1.05)  # the (shrunk) minute window frees up; the day still counts
        assert "Time Series (Daily)" in call()
        info = call()
        assert list(info) == ["Information"] and "3 requests per day" in info["Information"]
        assert "Time Series (Daily)" in call("other-key")


def test_alphavantage_injected_note_and_information(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("alphavantage", "note")
    hub.inject("alphavantage", "information")
    first = _av(http, hub, function="TIME_SERIES_DAILY", symbol="IBM", apikey="k")
    second = _av(http, hub, function="TIME_SERIES_DAILY", symbol="IBM", apikey="k")
    assert first.status_code == second.status_code == 200
    assert list(first.json()) == ["Note"] and list(second.json()) == ["Information"]
    assert "Time Series (Daily)" in _av(http, hub, function="TIME_SERIES_DAILY", symbol="IBM", apikey="k").json()


# -- NewsAPI ------------------------------------------------------------------------------------------------
def _news(http: requests.Session, hub: ProviderStandIn, key: str | None = "k", **params: object) -> requests.Response:
    headers = {"X-Api-Key": key} if key else {}
    return http.get(f"{hub.base_urls()['newsapi']}/v2/everything", params=params, headers=headers, timeout=15)


def test_newsapi_everything_shape_and_determinism(hub: ProviderStandIn, http: requests.Session) -> None:
    first = _news(http, hub, q="Apple OR AAPL", sortBy="publishedAt", pageSize=50)
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "ok" and isinstance(body["totalResults"], int) and body["totalResults"] >= 50
    assert len(body["articles"]) == 50
    for art in body["articles"]:
        assert set(art) == {"source", "author", "title", "description", "url", "urlToImage", "publishedAt", "content"}
        assert set(art["source"]) == {"id", "name"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", art["publishedAt"])
        assert len(art["content"]) <= 200 or re.search(r"… \[\+\d+ chars\]$", art["content"])
    visible = [a["title"] + a["description"] + a["content"] for a in body["articles"]]
    assert sum(bool(re.search(r"\b(Apple|AAPL)\b", v)) for v in visible) >= 40  # the rest match in the full text
    stamps = [a["publishedAt"] for a in body["articles"]]
    assert stamps == sorted(stamps, reverse=True)
    newest = body["articles"][0]["publishedAt"]
    again = _news(http, hub, q="Apple OR AAPL", sortBy="publishedAt", pageSize=50, to=newest)
    assert again.json()["articles"] == body["articles"]  # stable URLs and text: re-fetches duplicate exactly


def test_newsapi_corpus_has_sentiment_pairs_and_syndicated_copies(hub: ProviderStandIn, http: requests.Session) -> None:
    articles = []
    for q in ("Nvidia OR NVDA", "Tesla OR TSLA", "Microsoft OR MSFT", "JPMorgan OR JPM"):
        articles += _news(http, hub, q=q, pageSize=100).json()["articles"]
    text = [a["title"] + " " + a["description"] for a in articles]
    assert any(re.search(r"beat|surged|upgraded|record|raised", t) for t in text)
    assert any(re.search(r"missed|plunged|downgraded|cut|slumped|weakened", t) for t in text)
    tickers = {t for t in DEFAULT_TICKERS}
    two = [t for t in text if sum(company(tk).short in t for tk in tickers) >= 2]
    assert two, "some articles mention two companies"
    by_body = {}
    for a in articles:
        by_body.setdefault((a["title"], a["content"]), set()).add(a["url"])
    assert any(len(urls) > 1 for urls in by_body.values()), "syndicated copies under different URLs"


def test_newsapi_errors(hub: ProviderStandIn, http: requests.Session) -> None:
    missing = _news(http, hub, key=None, q="Apple")
    assert missing.status_code == 401 and missing.json()["code"] == "apiKeyMissing"
    assert missing.json()["status"] == "error" and missing.json()["message"]
    no_query = _news(http, hub)
    assert no_query.status_code == 400 and no_query.json()["code"] == "parametersMissing"
    too_many = _news(http, hub, q="Apple", page=2, pageSize=100)
    assert too_many.status_code == 426 and too_many.json()["code"] == "maximumResultsReached"
    assert "results 100 to 200" in too_many.json()["message"]
    old = (dt.date.today() - dt.timedelta(days=60)).isoformat()
    too_old = _news(http, hub, q="Apple", **{"from": old})
    assert too_old.status_code == 426 and too_old.json()["code"] == "parameterInvalid"
    bad_sort = _news(http, hub, q="Apple", sortBy="newest")
    assert bad_sort.status_code == 400 and bad_sort.json()["code"] == "parameterInvalid"
    with ProviderStandIn(api_keys={"newsapi": {"good"}}, quotas={"newsapi": {"per_day": 1}}) as strict:
        invalid = _news(http, strict, key="bad", q="Apple")
        assert invalid.status_code == 401 and invalid.json()["code"] == "apiKeyInvalid"
        assert _news(http, strict, key="good", q="Apple").status_code == 200
        limited = http.get(f"{strict.base_urls()['newsapi']}/v2/everything", params={"q": "Apple", "apiKey": "good"},
                           timeout=10)
        assert limited.status_code == 429 and limited.json()["code"] == "rateLimited"


# -- Reddit -------------------------------------------------------------------------------------------------
def _reddit_token(http: requests.Session, base: str, auth: tuple[str, str] = ("cid", "secret")) -> requests.Response:
    return http.post(f"{base}/api/v1/access_token", auth=auth, data={"grant_type": "client_credentials"},
                     headers={"User-Agent": REDDIT_UA}, timeout=5)


def test_reddit_token_flow_listing_and_rate_headers(hub: ProviderStandIn, http: requests.Session) -> None:
    base = hub.base_urls()["reddit"]
    no_agent = http.post(f"{base}/api/v1/access_token", auth=("cid", "secret"),
                         data={"grant_type": "client_credentials"}, headers={"User-Agent": ""}, timeout=5)
    assert no_agent.status_code == 429  # undeclared bots are refused
    token = _reddit_token(http, base).json()
    assert set(token) == {"access_token", "token_type", "expires_in", "scope"}
    assert token["token_type"] == "bearer" and token["expires_in"] == 86400 and token["scope"] == "*"
    assert http.get(f"{base}/r/stocks/new", headers={"User-Agent": REDDIT_UA}, timeout=5).status_code == 401

    headers = {"Authorization": f"bearer {token['access_token']}", "User-Agent": REDDIT_UA}
    first = http.get(f"{base}/r/stocks/new", params={"limit": 25}, headers=headers, timeout=10)
    assert first.status_code == 200
    listing = first.json()
    assert listing["kind"] == "Listing" and listing["data"]["dist"] == 25
    posts = [c["data"] for c in listing["data"]["children"]]
    assert all(c["kind"] == "t3" for c in listing["data"]["children"])
    for post in posts:
        assert post["name"] == f"t3_{post['id']}" and post["subreddit"] == "stocks"
        assert isinstance(post["created_utc"], float) and isinstance(post["score"], int)
        assert isinstance(post["num_comments"], int) and post["permalink"].startswith("/r/stocks/comments/")
        assert post["url"].endswith(post["permalink"]) and isinstance(post["title"], str)
        assert {"selftext", "author"} <= set(post)
    assert [p["created_utc"] for p in posts] == sorted((p["created_utc"] for p in posts), reverse=True)
    used_1 = int(first.headers["X-Ratelimit-Used"])
    assert float(first.headers["X-Ratelimit-Remaining"]) == 1000 - used_1
    assert 0 < int(first.headers["X-Ratelimit-Reset"]) <= 600

    older = http.get(f"{base}/r/stocks/new", params={"limit": 25, "after": listing["data"]["after"]}, headers=headers,
                     timeout=10)
    assert int(older.headers["X-Ratelimit-Used"]) == used_1 + 1
    older_posts = [c["data"] for c in older.json()["data"]["children"]]
    assert older_posts and max(p["created_utc"] for p in older_posts) < posts[-1]["created_utc"]

    hub.expire_reddit_tokens()
    assert http.get(f"{base}/r/stocks/new", headers=headers, timeout=5).status_code == 401
    headers["Authorization"] = f"bearer {_reddit_token(http, base).json()['access_token']}"
    found = http.get(f"{base}/r/wallstreetbets/search", params={"q": "TSLA OR Tesla", "restrict_sr": 1, "sort": "new",
                                                                "limit": 10}, headers=headers, timeout=20).json()
    hits = [c["data"] for c in found["data"]["children"]]
    assert hits and all(h["subreddit"] == "wallstreetbets" for h in hits)
    assert all(re.search(r"TSLA|Tesla", h["title"] + h["selftext"]) for h in hits)


def test_reddit_bad_credentials_and_quota(http: requests.Session) -> None:
    with ProviderStandIn(api_keys={"reddit": {"cid:secret"}}, quotas={"reddit": {"per_10min": 2}}) as hub:
        base = hub.base_urls()["reddit"]
        bad = _reddit_token(http, base, ("cid", "wrong"))
        assert bad.status_code == 401 and bad.json() == {"message": "Unauthorized", "error": 401}
        token = _reddit_token(http, base).json()["access_token"]
        headers = {"Authorization": f"bearer {token}", "User-Agent": REDDIT_UA}
        statuses = [http.get(f"{base}/r/investing/new", headers=headers, timeout=10) for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert statuses[2].headers["X-Ratelimit-Remaining"] == "0.0"
        assert statuses[2].json() == {"message": "Too Many Requests", "error": 429}


# -- X ------------------------------------------------------------------------------------------------------
def _x(http: requests.Session, hub: ProviderStandIn, token: str | None = "t", **params: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(f"{hub.base_urls()['x']}/2/tweets/search/recent", params=params, headers=headers, timeout=15)


def test_x_recent_search_shape_filters_and_pagination(hub: ProviderStandIn, http: requests.Session) -> None:
    fields = "created_at,public_metrics,author_id,lang"
    first = _x(http, hub, query="$AAPL lang:en -is:retweet", max_results=20, **{"tweet.fields": fields})
    assert first.status_code == 200
    assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= {k.lower() for k in first.headers}
    body = first.json()
    assert body["meta"]["result_count"] == len(body["data"]) == 20
    assert {"newest_id", "oldest_id", "next_token"} <= set(body["meta"])
    for tweet in body["data"]:
        assert {"id", "text", "created_at", "author_id", "lang", "public_metrics"} <= set(tweet)
        assert "$AAPL" in tweet["text"] and tweet["lang"] == "en" and not tweet["text"].startswith("RT @")
        assert set(tweet["public_metrics"]) >= {"retweet_count", "reply_count", "like_count", "quote_count"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tweet["created_at"])
    ids = [int(t["id"]) for t in body["data"]]
    assert ids == sorted(ids, reverse=True) and body["meta"]["newest_id"] == str(ids[0])
    second = _x(http, hub, query="$AAPL lang:en -is:retweet", max_results=20, next_token=body["meta"]["next_token"],
                **{"tweet.fields": fields}).json()
    assert max(int(t["id"]) for t in second["data"]) < min(ids)
    minimal = _x(http, hub, query="$MSFT", max_results=10).json()["data"][0]
    assert set(minimal) == {"id", "text", "edit_history_tweet_ids"}  # only the default fields unless asked
    empty = _x(http, hub, query="$ZZZZ").json()
    assert empty == {"meta": {"result_count": 0}}


def test_x_errors_and_quota_429_headers(http: requests.Session) -> None:
    with ProviderStandIn(quotas={"x": {"per_15min": 2}}) as hub:
        assert _x(http, hub, token=None, query="$AAPL").status_code == 401
        bad = _x(http, hub, query="$AAPL", max_results=5)
        assert bad.status_code == 400 and bad.json()["title"] == "Invalid Request"
        assert "max_results" in bad.json()["errors"][0]["message"]
        assert _x(http, hub, query="$AAPL").status_code == 200
        over = _x(http, hub, query="$AAPL")
        assert over.status_code == 429
        assert over.json() == {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                               "status": 429}
        assert over.headers["x-rate-limit-remaining"] == "0" and over.headers["x-rate-limit-limit"] == "2"
        assert time.time() < int(over.headers["x-rate-limit-reset"]) <= time.time() + 901


def test_x_injected_429_has_epoch_reset(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("x", "http429", retry_after=30)
    resp = _x(http, hub, query="$AAPL")
    assert resp.status_code == 429 and "Retry-After" not in resp.headers
    assert abs(int(resp.headers["x-rate-limit-reset"]) - (time.time() + 30)) < 3


# -- SEC EDGAR ----------------------------------------------------------------------------------------------
def test_edgar_requires_a_declared_user_agent(hub: ProviderStandIn, http: requests.Session) -> None:
    url = f"{hub.base_urls()['sec']}/files/company_tickers.json"
    for agent in ("", "python-requests/2.32", "Headwater research bot"):
        refused = http.get(url, headers={"User-Agent": agent}, timeout=5)
        assert refused.status_code == 403 and "Undeclared Automated Tool" in refused.text
        assert refused.headers["Content-Type"].startswith("text/html") and "Retry-After" not in refused.headers
    tickers = http.get(url, headers=SEC_UA, timeout=5).json()
    assert tickers["0"] == {"cik_str": 320193, "ticker": "AAPL", "title": "Apple Inc."}
    assert len(tickers) == len(DEFAULT_TICKERS)


def test_edgar_submissions_and_documents(hub: ProviderStandIn, http: requests.Session) -> None:
    sub = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000320193.json", headers=SEC_UA, timeout=10).json()
    assert sub["cik"] == "320193" and sub["name"] == "Apple Inc." and sub["tickers"] == ["AAPL"]
    assert {"entityType", "sic", "sicDescription", "exchanges", "fiscalYearEnd", "filings"} <= set(sub)
    recent = sub["filings"]["recent"]
    columns = ["accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "act", "form", "fileNumber",
               "items", "size", "isXBRL", "isInlineXBRL", "primaryDocument", "primaryDocDescription"]
    assert set(columns) <= set(recent)
    assert len({len(recent[c]) for c in recent}) == 1 and len(recent["form"]) > 40  # parallel arrays
    assert {"10-K", "10-Q", "8-K", "4"} <= set(recent["form"])
    assert all(re.fullmatch(r"\d{10}-\d\d-\d{6}", a) for a in recent["accessionNumber"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", a) for a in recent["acceptanceDateTime"])
    assert recent["acceptanceDateTime"] == sorted(recent["acceptanceDateTime"], reverse=True)
    assert recent["items"][recent["form"].index("8-K")]  # 8-Ks list their items

    def document(form: str) -> str:
        i = recent["form"].index(form)
        acc = recent["accessionNumber"][i].replace("-", "")
        resp = http.get(f"{hub.base_urls()['sec']}/Archives/edgar/data/320193/{acc}/{recent['primaryDocument'][i]}",
                        headers=SEC_UA, timeout=10)
        assert resp.status_code == 200
        return resp.text

    ten_k = document("10-K")
    assert len(ten_k) > 20_000 and "Apple" in ten_k and "ix:nonFraction" in ten_k and "ix:header" in ten_k
    assert ten_k.index("Item 1A. Risk Factors") < ten_k.index("Item 7. Management") < ten_k.index("Item 8.")
    ten_q = document("10-Q")
    assert "PART I" in ten_q and "Item 2. Management" in ten_q and "ix:nonFraction" in ten_q
    assert "<ownershipDocument>" in document("4")
    fund = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000884394.json", headers=SEC_UA, timeout=10).json()
    assert fund["tickers"] == ["SPY"] and fund["entityType"] == "other"
    fund_forms = set(fund["filings"]["recent"]["form"])
    assert {"N-CSR", "N-CSRS"} <= fund_forms and "10-K" not in fund_forms
    missing = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000000001.json", headers=SEC_UA, timeout=5)
    assert missing.status_code == 404 and "NoSuchKey" in missing.text


def test_edgar_acceptance_clock_quirk_is_resolvable_from_the_index_page(hub: ProviderStandIn,
                                                                        http: requests.Session) -> None:
    for ticker in ("AAPL", "NVDA"):  # a filer writing UTC, one writing New York time with a "Z"
        co = company(ticker)
        recent = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK{co.cik10}.json", headers=SEC_UA,
                          timeout=10).json()["filings"]["recent"]
        i = recent["form"].index("10-Q")
        acc = recent["accessionNumber"][i]
        folder = f"{hub.base_urls()['sec']}/Archives/edgar/data/{co.cik}/{acc.replace('-', '')}"
        index = http.get(f"{folder}/{acc}-index.htm", headers=SEC_UA, timeout=10).text
        accepted_ny = re.search(r"Accepted</div><div class=\"info\">([\d-]+ [\d:]+)", index).group(1)
        json_clock = recent["acceptanceDateTime"][i][:19].replace("T", " ")
        if co.acceptance_clock == "et":
            assert json_clock == accepted_ny
        else:
            as_ny = dt.datetime.fromisoformat(recent["acceptanceDateTime"][i].replace("Z", "+00:00")).astimezone(NY)
            assert as_ny.strftime("%Y-%m-%d %H:%M:%S") == accepted_ny
    assert company("NVDA").acceptance_clock == "et" and company("AAPL").acceptance_clock == "utc"


def test_edgar_new_filing_appears_first(hub: ProviderStandIn, http: requests.Session) -> None:
    filing = hub.new_filing("MSFT", "8-K", items="5.02")
    recent = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000789019.json", headers=SEC_UA,
                      timeout=10).json()["filings"]["recent"]
    assert recent["accessionNumber"][0] == filing["accessionNumber"] and recent["form"][0] == "8-K"
    assert recent["items"][0] == "5.02"
    doc = http.get(filing["url"], headers=SEC_UA, timeout=10)
    assert doc.status_code == 200 and "Item 5.02" in doc.text
    over_http = http.post(f"{hub.url}/_control/filings", json={"ticker": "MSFT", "form": "10-Q"}, timeout=10).json()
    recent = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000789019.json", headers=SEC_UA,
                      timeout=10).json()["filings"]["recent"]
    assert recent["accessionNumber"][0] == over_http["accessionNumber"] and recent["form"][0] == "10-Q"


def test_edgar_rate_over_limit_blocks_then_recovers(http: requests.Session) -> None:
    with ProviderStandIn(rate_limit_per_s=5, block_seconds=1.0) as hub:
        url = f"{hub.base_urls()['sec']}/files/company_tickers.json"
        statuses = [http.get(url, headers=SEC_UA, timeout=5) for _ in range(6)]
        assert [r.status_code for r in statuses] == [200] * 5 + [429]
        assert "Request Rate Threshold Exceeded" in statuses[-1].text and "Retry-After" not in statuses[-1].headers
        data = http.get(f"{hub.base_urls()['sec_data']}/submissions/CIK0000320193.json", headers=SEC_UA, timeout=5)
        assert data.status_code == 403  # the block covers both hosts, every request
        time.sleep(0.6)
        assert http.get(url, headers=SEC_UA, timeout=5).status_code == 403  # retrying restarts the block
        time.sleep(0.6)
        assert http.get(url, headers=SEC_UA, timeout=5).status_code == 403  # still inside the extended block
        time.sleep(1.1)  # a full quiet block_seconds
        assert http.get(url, headers=SEC_UA, timeout=5).status_code == 200


def test_edgar_injected_block_refuses_for_its_duration(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("sec_data", "block", seconds=0.5)
    url = f"{hub.base_urls()['sec_data']}/submissions/CIK0000320193.json"
    first = http.get(url, headers=SEC_UA, timeout=5)
    assert first.status_code == 403 and "Threshold" in first.text
    assert hub.edgar.blocked()
    hub.edgar.reset()
    assert http.get(url, headers=SEC_UA, timeout=5).status_code == 200


# -- transcripts --------------------------------------------------------------------------------------------
def test_transcripts_robots_index_and_page(hub: ProviderStandIn, http: requests.Session) -> None:
    base = hub.base_urls()["transcripts"]
    robots = http.get(f"{base}/robots.txt", timeout=5)
    assert robots.status_code == 200 and "Disallow: /transcripts/drafts/" in robots.text
    index = http.get(f"{base}/AAPL", timeout=5).text
    links = re.findall(r'href="(/transcripts/AAPL/(\d{4})/q([1-4]))"', index)
    assert len(links) >= 20 and re.search(r'<time datetime="\d{4}-\d\d-\d\dT', index)
    page = http.get(f"{hub.url}{links[-1][0]}", timeout=5)
    assert page.status_code == 200
    html = page.text
    assert "Earnings Call Transcript</title>" in html
    prepared, qa = html.index('class="prepared-remarks"'), html.index('class="question-and-answer"')
    assert prepared < qa
    turns = re.findall(r'<div class="turn"><span class="speaker">([^<]+)</span>(?:<span class="role">([^<]+)</span>)?',
                       html)
    assert turns[0] == ("Operator", "") and any(role == "CEO" for _, role in turns)
    assert any(role.startswith("Analyst") for _, role in turns[html[:qa].count('class="turn"'):])
    assert http.get(f"{base}/ZZZZ", timeout=5).status_code == 404
    assert http.get(f"{base}/SPY", timeout=5).status_code == 404  # a fund holds no earnings calls
    assert http.get(f"{base}/AAPL/2099/q1", timeout=5).status_code == 404


# -- faults -------------------------------------------------------------------------------------------------
def _poly(http: requests.Session, hub: ProviderStandIn, timeout: float = 5) -> requests.Response:
    return http.get(f"{hub.base_urls()['polygon']}/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05",
                    params={"apiKey": "k"}, timeout=timeout)


def test_fault_http_errors_and_count(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("polygon", "http429", count=2, retry_after=7)
    hub.inject("polygon", "http500")
    hub.inject("polygon", "http502")
    hub.inject("polygon", "http503", retry_after=3)
    responses = [_poly(http, hub) for _ in range(6)]
    assert [r.status_code for r in responses] == [429, 429, 500, 502, 503, 200]
    assert responses[0].headers["Retry-After"] == "7" and responses[0].json()["status"] == "ERROR"
    assert responses[2].json()["status"] == "ERROR"
    assert "Bad Gateway" in responses[3].text and responses[3].headers["Content-Type"].startswith("text/html")
    assert responses[4].headers["Retry-After"] == "3"


def test_fault_429_headers_per_provider(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("reddit", "http429", retry_after=12)
    hub.inject("newsapi", "http429")
    reddit = http.get(f"{hub.base_urls()['reddit']}/r/stocks/new", headers={"User-Agent": REDDIT_UA}, timeout=5)
    assert reddit.status_code == 429 and reddit.headers["X-Ratelimit-Reset"] == "12"
    assert reddit.headers["X-Ratelimit-Remaining"] == "0.0"
    news = _news(http, hub, q="Apple")
    assert news.status_code == 429 and news.json()["code"] == "rateLimited" and "Retry-After" in news.headers


def test_fault_timeout_fires_the_client_read_timeout(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("polygon", "timeout", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        _poly(http, hub, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert _poly(http, hub).status_code == 200


def test_fault_disconnect_slow_malformed_empty(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("polygon", "disconnect")
    with pytest.raises(requests.exceptions.ConnectionError):
        _poly(http, hub)
    hub.inject("polygon", "slow", seconds=0.3)
    started = time.monotonic()
    assert _poly(http, hub).status_code == 200 and time.monotonic() - started >= 0.3
    hub.inject("polygon", "malformed")
    malformed = _poly(http, hub)
    assert malformed.status_code == 200 and malformed.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        malformed.json()
    hub.inject("transcripts", "empty")
    empty = http.get(f"{hub.base_urls()['transcripts']}/AAPL", timeout=5)
    assert empty.status_code == 200 and empty.content == b"" and empty.headers["Content-Type"].startswith("text/html")


def test_fault_path_filter_only_hits_matching_requests(hub: ProviderStandIn, http: requests.Session) -> None:
    hub.inject("reddit", "http500", path="/r/")
    base = hub.base_urls()["reddit"]
    token = _reddit_token(http, base)
    assert token.status_code == 200  # the token endpoint does not match the filter
    headers = {"Authorization": f"bearer {token.json()['access_token']}", "User-Agent": REDDIT_UA}
    assert http.get(f"{base}/r/stocks/new", headers=headers, timeout=5).status_code == 500
    assert http.get(f"{base}/r/stocks/new", headers=headers, timeout=5).status_code == 200


# -- shared query syntax ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "text", "expected"), [
    ("Apple OR AAPL", "Shares of AAPL rose", True),
    ("Apple AAPL", "Apple shares rose", False),
    ('"raised guidance"', "They raised guidance today", True),
    ("Apple -lawsuit", "Apple faces lawsuit", False),
    ("($AAPL OR $MSFT) beat", "$MSFT beat estimates", True),
    ("$AAPL", "$AAPLX is not it", False),
    ("Apple NOT Tesla", "Apple and Tesla", False),
])
def test_compile_query(query: str, text: str, expected: bool) -> None:
    assert compile_query(query)(text) is expected


def test_required_cashtags_bounds_what_can_match() -> None:
    assert required_cashtags("($AAPL OR $MSFT) beat") == {"AAPL", "MSFT"}
    assert required_cashtags("$AAPL OR Apple") is None  # the second alternative needs no cashtag
    assert required_cashtags("Apple NOT $AAPL") is None
