"""EDGAR client against the stand-in: fair access (User-Agent, shared rate, shared block), CIKs, acceptance times."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from headwater.providers.edgar import (
    DocumentTooLarge,
    EdgarBlocked,
    EdgarConfigError,
    check_user_agent,
    conservative_acceptance,
    fiscal_period,
)
from headwater.providers.http import QuotaExhausted
from standins.corpus import company
from standins.http_server import ProviderStandIn
from standins.rest_edgar import generated_filings

from .support import edgar_client, logged_requests

APPLE_CIK = 320193


@pytest.mark.parametrize("agent", [None, "", "   ", "python-requests/2.32.5", "Headwater Research",
                                   "Sample Company Name AdminContact@example.com"])
def test_missing_or_invalid_user_agent_is_refused_before_any_request(r, keys, standins, agent):
    with pytest.raises(EdgarConfigError, match="User-Agent|USER_AGENT"):
        edgar_client(r, keys, standins.base_urls()["sec"], user_agent=agent)
    counts = standins.request_counts()
    assert counts["sec"] == 0 and counts["sec_data"] == 0
    assert not list(r.scan_iter(match=f"{keys.prefix}*"))  # not even the limiter was touched


def test_user_agent_is_sent_and_never_shown(edgar, standins):
    check_user_agent("Acme Research ops@acme.com")
    assert edgar.cik("AAPL") == APPLE_CIK
    assert "tests@headwater.dev" not in repr(edgar)
    assert logged_requests(standins, 1)[-1]["status"] == 200


def test_ticker_map_handles_class_shares_and_unknown_tickers(edgar):
    assert edgar.cik("MSFT") == 789019
    assert edgar.cik("ZZZZ") is None


def test_submissions_give_periodic_filings_with_fiscal_periods(edgar):
    refs = edgar.filings("AAPL", APPLE_CIK)
    assert refs and {ref.filing.form for ref in refs} <= {"10-K", "10-Q", "10-K/A", "10-Q/A"}
    assert [r.filing.accepted_at for r in refs] == sorted(r.filing.accepted_at for r in refs)
    annual = next(r for r in reversed(refs) if r.filing.form == "10-K")
    assert annual.period % 10 == 4 and annual.url.endswith(annual.filing.primary_document)
    since = refs[-1].filing.accepted_at - dt.timedelta(seconds=1)
    assert [r.filing.accession for r in edgar.filings("AAPL", APPLE_CIK, since=since)] == [refs[-1].filing.accession]


@pytest.mark.parametrize("ticker", ["NVDA", "AAPL"])  # NVDA writes New York time with a "Z"; Apple writes UTC
def test_acceptance_time_comes_from_the_index_page_in_utc(edgar, standins, ticker):
    truth = {f.accession: f.acceptance for f in generated_filings(standins.seed, ticker, dt.date.today().year + 1)}
    ref = edgar.filings(ticker, company(ticker).cik, ["10-Q"])[-1]
    accepted = edgar.acceptance_time(ref)
    assert accepted == truth[ref.filing.accession]
    if company(ticker).acceptance_clock == "et":
        assert ref.filing.accepted_at < accepted  # the JSON's "Z" would have put it hours too early
        assert conservative_acceptance(ref.acceptance_text) == accepted  # the fallback is never early
    else:
        assert ref.filing.accepted_at == accepted


def test_fiscal_period_follows_the_fiscal_year_end():
    assert fiscal_period("2024-09-28", "0928") == 20244  # Apple Q4
    assert fiscal_period("2024-06-29", "0928") == 20243
    assert fiscal_period("2023-12-30", "0928") == 20241  # fiscal 2024 starts in October 2023
    assert fiscal_period("2024-10-27", "0126") == 20253  # Nvidia: fiscal 2025 ends in January 2025
    assert fiscal_period("2024-10-01", "0930") == 20244  # a 52/53-week year ending just after September
    assert fiscal_period("2024-03-31", "1231") == 20241
    assert fiscal_period(None, "1231") is None


def test_download_is_size_limited(edgar):
    ref = edgar.filings("AAPL", APPLE_CIK, ["10-Q"])[-1]
    with pytest.raises(DocumentTooLarge, match="limit"):
        edgar.download(ref.url, max_bytes=1000)
    assert edgar.download(ref.url).startswith(b"<?xml")


@pytest.mark.parametrize("fault", ["block", "http429"])
def test_403_or_429_pauses_every_worker_for_the_cooloff(r, keys, fault):
    cooloff = 1.5
    with ProviderStandIn(block_seconds=1.0) as hub:
        base = hub.base_urls()["sec"]
        first = edgar_client(r, keys, base, block_cooloff_s=cooloff)
        first.cik_map()
        hub.inject("sec", fault, seconds=1.0) if fault == "block" else hub.inject("sec", fault)
        with pytest.raises(EdgarBlocked) as caught:
            edgar_client(r, keys, base, block_cooloff_s=cooloff).cik_map()  # another worker hits the block
        assert not caught.value.retryable and caught.value.status in (403, 429)
        blocked_at = time.time()
        assert 0 < r.pttl(keys.quota("sec", "fair-access", "blocked")) <= cooloff * 1000
        assert [e["status"] for e in logged_requests(hub, 2)] == [200, caught.value.status]

        impatient = edgar_client(r, keys, base, max_wait_s=0.2)  # a worker that will not wait that long
        with pytest.raises(QuotaExhausted):
            impatient.submissions(APPLE_CIK)
        waits: list[float] = []
        patient = edgar_client(r, keys, base, sleep=lambda s: (waits.append(s), time.sleep(s)))
        assert patient.submissions(APPLE_CIK)["cik"] == str(APPLE_CIK)  # waited out the pause, then succeeded

        after = logged_requests(hub, 3)[2:]
        assert len(after) == 1 and after[0]["status"] == 200  # nobody touched EDGAR during the pause
        assert after[0]["ts"] >= blocked_at + cooloff - 0.3
        assert sum(waits) >= cooloff - 0.4


def test_shared_rate_keeps_concurrent_workers_under_the_limit(r, keys):
    with ProviderStandIn(rate_limit_per_s=10) as hub:
        clients = [edgar_client(r, keys, hub.base_urls()["sec"], max_requests_per_s=8) for _ in range(2)]
        errors: list[Exception] = []

        def work(client) -> None:
            try:
                for _ in range(8):
                    client.submissions(APPLE_CIK)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        log = logged_requests(hub, 16, ("sec_data",))
        stamps = sorted(e["ts"] for e in log)
        assert len(stamps) == 16 and all(e["status"] == 200 for e in log)
        assert max(sum(1 for s in stamps if t <= s < t + 1.0) for t in stamps) <= 9
