"""The Prefect flows end to end: stand-ins -> Blob -> stream -> document processor -> search_documents."""

from __future__ import annotations

import pytest
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.earnings_transcripts_scraper import earnings_transcripts_scraper
from flows.sec_filings_fetcher import sec_filings_fetcher
from headwater.documents.search import search_documents
from headwater.providers.edgar import EdgarBlocked, EdgarConfigError

from .support import USER_AGENT, logged_requests


@pytest.fixture
def flow_env(monkeypatch, redis_url, key_prefix, blob_connection_string, blobs, standins):
    """The environment a deployed flow would get, pointing at the test's Redis namespace, container and stand-ins."""
    monkeypatch.setenv("HEADWATER_REDIS_URL", redis_url)
    monkeypatch.setenv("HEADWATER_REDIS_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HEADWATER_BLOB_CONNECTION_STRING", blob_connection_string)
    monkeypatch.setenv("HEADWATER_BLOB_RAW_CONTAINER", blobs.settings.raw_container)
    monkeypatch.setenv("HEADWATER_STANDIN_HTTP_URL", standins.url)
    monkeypatch.setenv("HEADWATER_STANDIN_DISCOVER", "false")
    monkeypatch.setenv("HEADWATER_EDGAR_USER_AGENT", USER_AGENT)
    monkeypatch.delenv("HEADWATER_EDGAR_MODE", raising=False)
    return monkeypatch


def test_fetcher_refuses_to_start_without_a_user_agent(flow_env, standins):
    flow_env.delenv("HEADWATER_EDGAR_USER_AGENT")
    with pytest.raises(EdgarConfigError, match="HEADWATER_EDGAR_USER_AGENT"):
        sec_filings_fetcher.fn(tickers=["AAPL"])
    assert standins.request_counts()["sec"] == standins.request_counts()["sec_data"] == 0


@pytest.fixture
def prefect_server(prefect_api_url):
    """Flows in this process report to the session's Prefect server (settings are read once, at import)."""
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}):
        yield prefect_api_url
        APILogHandler().flush()  # send the runs' logs while the server is still up


@pytest.mark.slow
def test_filings_and_transcripts_flow_to_search(prefect_server, flow_env, r, keys, blobs, embedder, standins):
    first = sec_filings_fetcher(tickers=["AAPL"], forms=["10-Q"], max_filings_per_ticker=1)  # the newest one
    assert first["new"] == 1 and "failed" not in first
    listing = sec_filings_fetcher(tickers=["AAPL"], forms=["10-Q"], max_filings_per_ticker=0)
    assert listing["listed"] == first["listed"] - 1  # the stored filing is not "new" any more
    refetched = sec_filings_fetcher(tickers=["AAPL"], forms=["10-Q"], max_filings_per_ticker=1, refetch=True)
    assert refetched["unchanged"] == 1 and "new" not in refetched  # same content: no blob write, nothing published
    calls = earnings_transcripts_scraper(tickers=["AAPL"], max_per_ticker=1, process=True)  # and drain the stream
    assert calls["new"] == 1 and calls["turns"] > 10
    assert r.xlen(keys.raw_documents) == 2  # one filing, one transcript: re-runs published nothing
    names = blobs.list(blobs.settings.raw_container)
    assert any(n.startswith("sec/AAPL/10-Q/") for n in names) and any(n.startswith("transcripts/AAPL/") for n in names)
    assert calls["processed_documents"] == 2 and calls["processed_rejected"] == 0
    assert calls["processed_embedded"] == calls["processed_chunks"] > 5
    hits = search_documents("what did management say about revenue and margins", ticker="AAPL", k=8, client=r,
                            keys=keys, embedder=embedder)  # fmt: skip
    assert {h.source for h in hits} == {"sec", "transcript"}
    for hit in hits:
        assert hit.blob_url.startswith(blobs.service.url) and blobs.settings.raw_container in hit.blob_url
        assert hit.section and hit.public_ms > 0


@pytest.mark.slow
def test_a_fair_access_block_stops_the_run_without_retrying_into_it(prefect_server, flow_env, r, keys, standins):
    standins.inject("sec", "block", seconds=5)
    with pytest.raises(EdgarBlocked):
        sec_filings_fetcher(tickers=["AAPL", "MSFT"], forms=["10-Q"])
    # one refused request and a prompt failure: a retried task would have waited out the 600 s pause
    assert [e["status"] for e in logged_requests(standins, 1)] == [403]
    assert 590_000 < r.pttl(keys.quota("sec", "fair-access", "blocked")) <= 600_000  # every worker now pauses
