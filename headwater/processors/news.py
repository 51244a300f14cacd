"""News processor: ``stream:raw_news`` -> de-duplicated, tagged, scored articles in Redis.

Entries (written by ``flows/news_scraper.py``): ``d`` = the ``Article`` as JSON, ``q`` = the ticker whose search
found it, ``src`` = provider. Per article:

1. **De-duplicate**: skip it if its id (hash of the URL) or its content hash (title + description: the same story
   syndicated under another URL) is in ``seen:news``, or already in this batch.
2. **Tag** tickers (``headwater.tagging``: cashtags, tickers, company names in title/description/content), plus
   the ticker whose search found it.
3. **Score** sentiment (``headwater.sentiment``: Loughran-McDonald + news supplement), in (-1, 1).
4. **Store**: ``news:{id}`` hash with a TTL (``config/retention.yaml``: news hot days + archive grace);
   ``news:idx:{T}`` sorted set by publish time (ms; entries older than the TTL trimmed, TTL refreshed);
   ``ts:{T}:sentiment:news`` sample at the publish time -- the mean score of the articles published in that
   millisecond (``headwater.processors.INDEX_EVENT``, one atomic script per ticker); then both hashes go into
   ``seen:news``.

Every write is idempotent (same hash fields, same scores, LAST-policy samples), and ``seen:news`` is written
last, so an entry redelivered after a crash is stored again rather than mistaken for a duplicate. An entry whose
``d`` is not an article goes to the dead-letter stream with the reason.

    python -m headwater.processors.news [--consumer NAME] [--once]
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import redis

from headwater.processors import ProcessorSettings, TaggedItemProcessor, default_tagger, run_cli, ttl_seconds
from headwater.keys import Keys
from headwater.models import Article
from headwater.sentiment import default_scorer

log = logging.getLogger("headwater.processors.news")
DATASET = "news"


@dataclass
class NewsStats:
    stored: int = 0
    duplicates: int = 0
    untagged: int = 0
    links: int = 0  # (article, ticker) index entries written
    late: int = 0  # sentiment samples older than the series' retention (skipped by TimeSeries)


class NewsProcessor(TaggedItemProcessor):
    """The ``StreamWorker`` handler for ``stream:raw_news``."""

    dataset, model, what = DATASET, Article, "an article"

    def __init__(self, client: redis.Redis, keys: Keys, **kwargs: Any) -> None:
        super().__init__(client, keys, **kwargs)
        self.stats = NewsStats()

    def text_hash(self, item: Article) -> str:
        return item.text_hash

    def store(self, pipe: redis.client.Pipeline, item: Article, text_hash: str, query: str, now_ms: int) -> None:
        article = item
        tickers = self.tagger.tag(article.title, article.description, article.content)
        if query in self.tagger.universe and query not in tickers:
            tickers = (*tickers, query)
        if not tickers:
            self.stats.untagged += 1
        score = self.scorer.score(f"{article.title}. {article.description} {article.content}")
        published_ms = int(article.published_at.timestamp() * 1000)
        key = self.keys.article(article.id)
        pipe.hset(key, mapping={
            "url": article.url, "title": article.title, "description": article.description,
            "content": article.content, "source": article.source, "author": article.author or "",
            "published_ms": published_ms, "tickers": ",".join(tickers), "query": query,
            "sentiment": score.score, "sentiment_label": score.label, "sentiment_pos": score.positive,
            "sentiment_neg": score.negative, "text_hash": text_hash, "stored_ms": now_ms,
        })  # fmt: skip
        pipe.expire(key, self.ttl_s)
        for ticker in tickers:
            series, known = self.keys.sentiment(ticker, DATASET), self.keys.known(ticker, "sentiment", DATASET)
            self.series.ensure(series, ticker, "sentiment", DATASET)
            self.series.ensure(known, ticker, "known", DATASET)
            self.index_event(keys=[self.keys.news_index(ticker), series, known], client=pipe,
                             args=[published_ms, article.id, score.score, now_ms - self.ttl_s * 1000, self.ttl_s, now_ms])  # fmt: skip
            self.stats.links += 1
        self.stats.stored += 1


def make_handler(client: redis.Redis, keys: Keys) -> NewsProcessor:
    """A news handler configured from the environment (TTL, ticker universe)."""
    config = ProcessorSettings()
    return NewsProcessor(client, keys, ttl_s=ttl_seconds("news"), tagger=default_tagger(config.tickers_file),
                         scorer=default_scorer())  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_cli("news", lambda k: k.raw_news, make_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
