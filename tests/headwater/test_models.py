"""Models: Polygon wire names validate straight into the neutral models; bad values are refused."""

from datetime import datetime, timezone

import orjson
import pytest
from pydantic import ValidationError

from headwater.models import MARKET_EVENT, MARKET_EVENTS, Article, Bar, Filing, Quote, Trade, content_hash

TRADE = {"ev": "T", "sym": "AAPL", "x": 4, "i": "52983525029461", "z": 3, "p": 189.25, "s": 100, "c": [14, 41],
         "t": 1732480000123, "q": 1063}
QUOTE = {"ev": "Q", "sym": "MSFT", "bx": 2, "bp": 415.1, "bs": 3, "ax": 11, "ap": 415.13, "as": 2, "c": [1],
         "t": 1732480000200, "q": 88, "z": 3}
AM = {"ev": "AM", "sym": "AAPL", "v": 4110, "av": 61253, "op": 188.9, "vw": 189.1, "o": 189.0, "c": 189.2,
      "h": 189.3, "l": 188.95, "a": 189.0, "z": 55, "s": 1732480020000, "e": 1732480080000}


def test_polygon_frame_validates_into_typed_events():
    trade, quote, bar = MARKET_EVENTS.validate_json(orjson.dumps([TRADE, QUOTE, AM]))
    assert isinstance(trade, Trade) and trade.price == 189.25 and trade.size == 100 and trade.seq == 1063
    assert trade.conditions == (14, 41) and trade.ts == 1732480000123
    assert isinstance(quote, Quote) and (quote.bid, quote.ask, quote.ask_size) == (415.1, 415.13, 2)
    assert isinstance(bar, Bar) and bar.kind == "AM" and bar.start == 1732480020000 and bar.vwap == 189.1


def test_second_aggregates_are_one_second_bars():
    bar = MARKET_EVENT.validate_python({**AM, "ev": "A"})
    assert bar.timeframe == "1s"


@pytest.mark.parametrize(
    "event, problem",
    [
        ({**TRADE, "p": -1}, "p"),
        ({**TRADE, "sym": "aapl"}, "sym"),
        ({**TRADE, "t": "yesterday"}, "t"),
        ({**TRADE, "t": 1732480000123 * 1_000_000}, "t"),  # nanoseconds where ms were expected
        ({k: v for k, v in TRADE.items() if k != "p"}, "p"),
        ({**QUOTE, "bp": float("nan")}, "bp"),
        ({**AM, "h": 100.0}, "OHLC"),
        ({"ev": "X", "sym": "AAPL"}, "ev"),
    ],
)
def test_invalid_events_are_refused_with_the_field_named(event, problem):
    with pytest.raises(ValidationError) as info:
        MARKET_EVENT.validate_python(event)
    assert problem in str(info.value)


def test_article_identity_and_content_hash():
    a = Article(url="https://news.example.com/a", title="Apple beats", published_at=datetime(2024, 1, 2, tzinfo=timezone.utc))
    b = Article(url="https://other.example.com/b", title=" apple BEATS ", published_at=datetime(2024, 1, 2, tzinfo=timezone.utc))
    assert a.id != b.id and a.text_hash == b.text_hash == content_hash("Apple beats", "")
    with pytest.raises(ValidationError, match="timezone"):
        Article(url="https://x.example.com/c", title="t", published_at=datetime(2024, 1, 2))


def test_filing_accession_and_form_are_checked():
    ok = Filing(ticker="AAPL", cik=320193, accession="0000320193-24-000123", form="10-K/A", filed_on="2024-11-01",
                accepted_at=datetime(2024, 11, 1, 18, 1, tzinfo=timezone.utc), primary_document="aapl-20240928.htm")
    assert ok.doc_id == "sec:0000320193-24-000123"
    with pytest.raises(ValidationError):
        Filing(ticker="AAPL", cik=320193, accession="123", form="8-K", filed_on="2024-11-01",
               accepted_at=datetime(2024, 11, 1, tzinfo=timezone.utc), primary_document="x.htm")
