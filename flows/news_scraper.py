"""Scheduled news (every 5 minutes): NewsAPI -> GX ``articles`` gate -> ``stream:raw_news`` -> news processor.

Per ticker one ``/v2/everything`` search (``AAPL OR "Apple"``; company names from ``headwater.tagging``; symbols
that are English words are searched by name only), from the ticker's watermark
(``checkpoint:news_scraper:{T}``: newest publish time seen, minus ``overlap_minutes`` for late-indexed articles)
or ``lookback_hours`` back on the first run. Articles the client could not parse and rows the suite rejects go
to ``stream:quarantine``; an article already stored (its id in ``seen:news``) or found twice in this run is
counted as a duplicate and not re-published. The rest is XADDed to ``stream:raw_news`` and the watermarks
advance. With ``drain`` (default) the run then processes the stream once (``headwater.processors.news``): de-duplicate,
sentiment, ticker tags, ``news:{id}`` hashes with TTL, ``news:idx:{T}``, ``ts:{T}:sentiment:news``.

CLI (the reference's ``--test --ticker``)::

    python -m flows.news_scraper --ticker MSFT
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any


import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from expectations.articles import COLUMNS
from flows import common
from flows.context import FlowContext, flow_context
from flows.gate import gate, quarantine_unparsed
from flows.retry import io_task
from headwater.metrics import OUTCOME_HOOKS
from headwater.models import Article
from headwater.tagging import COMPANY_NAMES, is_ambiguous

FLOW = "news_scraper"
DATASET = "news"


def news_query(ticker: str) -> str:
    """The NewsAPI search for a ticker: the symbol and the company's names (names only for word-like symbols)."""
    names = [f'"{n}"' for n in COMPANY_NAMES.get(ticker, ())]
    terms = names if is_ambiguous(ticker) and names else [ticker, *names]
    return " OR ".join(terms)


@dataclass
class TickerNews:
    ticker: str
    articles: list[Article] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    newest_ms: int | None = None


@io_task(tags=["newsapi"])
def fetch_articles(ctx: FlowContext, ticker: str, lookback_hours: float, overlap_minutes: float,
                   max_pages: int) -> TickerNews:  # fmt: skip
    """Search NewsAPI for one ticker's articles since its watermark."""
    client = ctx.provider("newsapi")
    watermark = ctx.client.get(ctx.keys.checkpoint(FLOW, ticker))
    now = time.time()
    since_s = now - lookback_hours * 3600
    if watermark:
        since_s = max(since_s, int(watermark) / 1000 - overlap_minutes * 60)
    result = TickerNews(ticker, newest_ms=int(watermark) if watermark else None)
    for page in range(1, max_pages + 1):
        answer = client.everything(news_query(ticker), since=dt.datetime.fromtimestamp(since_s, dt.UTC), page=page)
        result.articles += answer.articles
        result.rejected += answer.rejected
        if page * 100 >= answer.total or not (answer.articles or answer.rejected):
            break
    for article in result.articles:
        published = int(article.published_at.timestamp() * 1000)
        result.newest_ms = max(result.newest_ms or 0, published)
    return result


def article_frame(found: dict[str, TickerNews]) -> tuple[pd.DataFrame, dict[str, Article]]:
    """One row per (article, query ticker), in the ``articles`` suite's columns; and the articles by id."""
    rows, by_id = [], {}
    for ticker, news in found.items():
        for a in news.articles:
            by_id.setdefault(a.id, a)
            rows.append({"id": a.id, "url": a.url, "title": a.title, "description": a.description, "content": a.content,
                         "source": a.source, "author": a.author, "published_ms": int(a.published_at.timestamp() * 1000),
                         "query": ticker})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), by_id


@flow(name=FLOW, task_runner=ThreadPoolTaskRunner(max_workers=8), **OUTCOME_HOOKS)
def news_scraper(
    tickers: list[str] | None = None,
    tickers_file: str | None = None,
    lookback_hours: float = 24.0,
    overlap_minutes: float = 15.0,
    max_pages: int = 1,
    drain: bool = True,
    data_sources: str | None = None,
) -> dict:
    """Fetch, validate and publish new articles per ticker; optionally process them at once."""
    summary = common.RunSummary(FLOW)
    symbols = common.resolve_tickers(tickers, tickers_file)
    with flow_context(data_sources=data_sources) as ctx:
        futures = {t: fetch_articles.submit(ctx, t, lookback_hours, overlap_minutes, max_pages) for t in symbols}
        found: dict[str, TickerNews] = common.collect(futures, summary)
        rejected = [r for news in found.values() for r in news.rejected]
        parse_quarantined = quarantine_unparsed(ctx, "articles", rejected, "Article", FLOW, "newsapi")
        frame, by_id = article_frame(found)
        fresh, duplicates = common.drop_duplicates(ctx, DATASET, frame)
        good, quarantined = gate(ctx, dataset="articles", frame=fresh, flow=FLOW, source="newsapi")
        k = ctx.keys
        messages = [{"d": by_id[row.id].model_dump_json(), "q": row.query, "src": "newsapi",
                     "fetched_ms": str(int(time.time() * 1000))} for row in good.itertuples(index=False)]  # fmt: skip
        watermarks = {k.checkpoint(FLOW, t): str(n.newest_ms) for t, n in found.items() if n.newest_ms}
        published = common.publish(ctx, k.raw_news, messages, watermarks)
        summary.add(tickers=len(symbols), fetched=len(frame) + len(rejected), duplicates=duplicates,
                    validated=len(good), quarantined=quarantined + parse_quarantined, published=published)  # fmt: skip
        if drain:
            processed = common.drain_stream(ctx, DATASET)
            summary.add(stored=processed["stored"], processor_duplicates=processed["duplicates"],
                        dead_letters=processed["dead_letters"])  # fmt: skip
    return common.finish(summary)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.news_scraper", description=__doc__.splitlines()[0])
    parser.add_argument("--ticker", action="append", help="ticker(s) to search (repeatable); default: the tickers file")
    parser.add_argument("--tickers-file", default=None)
    parser.add_argument("--test", action="store_true", help="one quick run for MSFT (or --ticker)")
    parser.add_argument("--lookback-hours", type=float, default=24.0)
    parser.add_argument("--no-drain", action="store_true", help="only publish to stream:raw_news (a processor runs elsewhere)")
    args = parser.parse_args(argv)
    setup_logging()
    tickers = args.ticker or (["MSFT"] if args.test else None)
    state = news_scraper(tickers=tickers, tickers_file=args.tickers_file, lookback_hours=args.lookback_hours,
                         drain=not args.no_drain, return_state=True)  # fmt: skip
    print(json.dumps(state.result(raise_on_failure=False) if state.is_completed() else {"error": state.message},
                     default=str))  # fmt: skip
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
