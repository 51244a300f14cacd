"""The status command against a real Redis: streams, dead letters, workers, flow runs, audit backlog."""

import orjson

from headwater import metrics
from headwater.keys import Keys
from headwater.status import collect, render


def test_status_reports_streams_flows_and_audit(r, key_prefix):
    keys = Keys(key_prefix)
    r.xgroup_create(keys.raw_market_data(0), keys.group, id="0", mkstream=True)
    r.xadd(keys.raw_market_data(0), {"d": b"[]"})
    r.xadd(keys.dead_letter, {"reason": b"bad"})
    r.xadd(keys.audit_log, {"event": b"ingested"})
    metrics.count(r, keys, "flow_runs", flow="news_scraper", state="Completed")
    metrics.count(r, keys, "flow_runs", flow="news_scraper", state="Completed")
    metrics.count(r, keys, "flow_runs", flow="market_data_fetcher", state="Failed")
    status = collect(r, keys, partitions=2, tickers=["AAPL"], sample_s=0)
    assert status["market_totals"] == {"length": 1, "pending": 0, "lag": 1}
    assert status["dead_letters"] == 1 and status["audit_backlog"] == 1
    assert status["flows"] == {"news_scraper": {"Completed": 2.0}, "market_data_fetcher": {"Failed": 1.0}}
    text = render(status)
    assert "news_scraper" in text and "Completed 2" in text and "audit events waiting" in text
    assert orjson.dumps(status)  # --json works
