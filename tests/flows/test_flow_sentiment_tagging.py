"""Finance sentiment (accuracy on the hand-labelled sample, floors reported in headwater/sentiment.py) and tagging."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from headwater.config import load_tickers
from headwater.sentiment import FinanceSentiment, default_scorer, score
from headwater.tagging import TickerTagger, names_from_sec

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sentiment_sample.csv"


def accuracy(scorer: FinanceSentiment, split: str) -> float:
    rows = [r for r in csv.DictReader(SAMPLE.open(encoding="utf-8")) if r["split"] == split]
    assert len(rows) >= 45 and {r["label"] for r in rows} == {"positive", "negative", "neutral"}
    return sum(scorer.score(r["text"]).label == r["label"] for r in rows) / len(rows)


def test_accuracy_on_the_labelled_sample_meets_the_reported_floors():
    combined, lm_only = default_scorer(), FinanceSentiment(supplement=False)
    # Measured: LM + supplement 0.97 dev (in-sample) / 0.76 holdout; LM alone 0.73 / 0.67. Floors sit just below.
    assert accuracy(combined, "holdout") >= 0.75
    assert accuracy(combined, "dev") >= 0.95
    assert accuracy(lm_only, "holdout") < accuracy(combined, "holdout")


def test_scores_are_bounded_signed_and_negation_aware():
    assert score("Shares surge after a record quarter").score > 0.1
    assert score("Shares plunge after the company missed estimates").score < -0.1
    assert score("The company will report results on Tuesday").label == "neutral"
    assert score("Results were not strong").score < 0  # "not" flips "strong"
    assert -1 < score("beat beat beat beat beat beat").score < 1
    assert score("").score == 0.0


@pytest.fixture(scope="module")
def tagger() -> TickerTagger:
    return TickerTagger(load_tickers())


@pytest.mark.parametrize(("text", "tickers"), [
    ("$aapl and $MSFT ripping", ("AAPL", "MSFT")),
    ("Shares of Apple (NASDAQ: AAPL) rose; Microsoft's cloud grew", ("AAPL", "MSFT")),
    ("NOW is the time to buy ALL of it", ()),  # word-like symbols count only as cashtags
    ("Bought $NOW and (NYSE: T) today", ("NOW", "T")),
    ("BRK.B hit a record. Also TSLA.", ("BRK.B", "TSLA")),
    ("Meta Platforms and Johnson & Johnson report", ("META", "JNJ")),
    ("$ZZZZ is not in the universe", ()),
])  # fmt: skip
def test_tagging(tagger, text, tickers):
    assert tagger.tag(text) == tickers


def test_company_names_from_sec_company_tickers():
    names = names_from_sec({"0": {"ticker": "AAPL", "title": "Apple Inc."},
                            "1": {"ticker": "JPM", "title": "JPMORGAN CHASE & CO"}})  # fmt: skip
    assert names == {"AAPL": ("Apple",), "JPM": ("Jpmorgan Chase",)}
    assert TickerTagger(["XYZ"], names={"XYZ": ["Xylophone Corp"]}).tag("Xylophone Corp beats") == ("XYZ",)
