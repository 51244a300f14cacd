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
   millisecond (``flows.processors.INDEX_EVENT``, one atomic script per ticker); then both hashes go into
   ``seen:news``.

Every write is idempotent (same hash fields, same scores, LAST-policy samples), and ``seen:news`` is written
last, so an entry redelivered after a crash is stored again rather than mistaken for a duplicate. An entry whose
``d`` is not an article goes to the dead-letter stream with the reason.

    python -m flows.processors.news [--consumer NAME] [--once]
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import redis
from pydantic import ValidationError

from flows.processors import INDEX_EVENT, ProcessorSettings, SeriesCache, default_tagger, run_cli, ttl_seconds
from headwater.keys import Keys
from headwater.models import Article
from headwater.sentiment import FinanceSentiment, default_scorer
from headwater.streams import Entry
from headwater.tagging import TickerTagger

log = logging.getLogger("headwater.processors.news")
DATASET = "news"


@dataclass
class NewsStats:
    stored: int = 0
    duplicates: int = 0
    untagged: int = 0
    links: int = 0  # (article, ticker) index entries written
    late: int = 0  # sentiment samples older than the series' retention (skipped by TimeSeries)


class NewsProcessor:
    """The ``StreamWorker`` handler for ``stream:raw_news``."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, ttl_s: int, tagger: TickerTagger, scorer: FinanceSentiment,
    ) -> None:  # fmt: skip
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.tagger = tagger
        self.scorer = scorer
        self.series = SeriesCache(client)
        self.index_event = client.register_script(INDEX_EVENT)
        self.stats = NewsStats()

    def __call__(self, entries: list[Entry]) -> list[str | None]:
        outcomes: list[str | None] = [None] * len(entries)
        parsed: list[tuple[Article, str]] = []
        for i, (_, fields) in enumerate(entries):
            try:
                article = Article.model_validate_json(fields[b"d"])
            except (KeyError, ValidationError, ValueError) as exc:
                outcomes[i] = f"not an article: {str(exc)[:300]}"
                continue
            parsed.append((article, fields.get(b"q", b"").decode()))
        if not parsed:
            return outcomes
        seen_key = self.keys.seen(DATASET)
        hashes = [h for a, _ in parsed for h in (a.id, a.text_hash)]
        seen = {h for h, member in zip(hashes, self.client.smismember(seen_key, hashes)) if member}
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        done: list[str] = []  # hashes to add to seen:* once every write above has succeeded
        for article, query in parsed:
            if article.id in seen or article.text_hash in seen:
                self.stats.duplicates += 1
                continue
            seen.update((article.id, article.text_hash))
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
                "sentiment_neg": score.negative, "text_hash": article.text_hash, "stored_ms": now_ms,
            })  # fmt: skip
            pipe.expire(key, self.ttl_s)
            for ticker in tickers:
                series = self.keys.sentiment(ticker, DATASET)
                self.series.ensure(series, ticker, "sentiment", DATASET)
                self.index_event(keys=[self.keys.news_index(ticker), series], client=pipe,
                                 args=[published_ms, article.id, score.score, now_ms - self.ttl_s * 1000, self.ttl_s])  # fmt: skip
                self.stats.links += 1
            done += (article.id, article.text_hash)
            self.stats.stored += 1
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError):
                raise reply
            if isinstance(reply, list) and len(reply) == 2 and reply[1] == 1:
                self.stats.late += 1  # older than the sentiment series' retention: indexed, not charted
        if done:  # last, and only after the writes: a failed batch is redone in full, never skipped as "seen"
            self.client.sadd(seen_key, *done)
        return outcomes


def make_handler(client: redis.Redis, keys: Keys) -> NewsProcessor:
    """A news handler configured from the environment (TTL, ticker universe)."""
    config = ProcessorSettings()
    return NewsProcessor(client, keys, ttl_s=ttl_seconds("news"), tagger=default_tagger(config.tickers_file),
                         scorer=default_scorer())  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_cli("news", lambda k: k.raw_news, make_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
