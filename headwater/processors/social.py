"""Social processor: ``stream:raw_social`` -> de-duplicated, tagged, scored posts plus mention counts in Redis.

Entries (written by ``flows/social_media_collector.py``): ``d`` = the ``Post`` as JSON, ``q`` = the subreddit or
search that found it, ``src`` = ``reddit`` / ``x``. Per post:

1. **De-duplicate**: skip it if its id (``platform:post_id``) or its content hash (author + text: the same user's
   cross-posts and copy-paste repeats) is in ``seen:social``, or already in this batch. Different users posting
   the same words are different mentions and are kept.
2. **Tag** tickers (``headwater.tagging``). A post that names no ticker of the universe is acknowledged and not
   stored (it feeds no per-ticker feature); the processor counts them.
3. **Score** sentiment (``headwater.sentiment``).
4. **Store**: ``social:{platform}:{id}`` hash with a TTL (``config/retention.yaml``: social hot days + archive grace);
   per ticker ``social:idx:{T}`` (sorted set by creation time, trimmed to the TTL), ``ts:{T}:sentiment:social``
   (at the creation time: the mean score of the posts created in that millisecond) and ``ts:{T}:mentions:social``.

Mentions: the sample at a post's creation millisecond is the number of stored posts of that ticker created in that
millisecond (``ZCOUNT`` on the index in the same atomic script as the ``ZADD``, ``headwater.processors.INDEX_EVENT``,
so concurrent processors agree), written with the LAST policy. Summing the series over a window gives the mention count of the window, redeliveries do not
double it, and nothing is stamped before it was posted (no look-ahead). Mention *velocity* -- mentions in the last
hour against the hourly average of the last 24 h -- is derived from this series by ``features/sentiment.py``
(``mention_velocity``).

    python -m headwater.processors.social [--consumer NAME] [--once]
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from headwater.processors import ProcessorSettings, TaggedItemProcessor, default_tagger, run_cli, ttl_seconds
from headwater.keys import Keys
from headwater.models import Post, content_hash
from headwater.sentiment import default_scorer
from headwater.streams import Entry

log = logging.getLogger("headwater.processors.social")
DATASET = "social"


@dataclass
class SocialStats:
    stored: int = 0
    duplicates: int = 0
    untagged: int = 0
    late: int = 0
    mentions: Counter[str] = field(default_factory=Counter)  # ticker -> mentions stored by this process


class SocialProcessor(TaggedItemProcessor):
    """The ``StreamWorker`` handler for ``stream:raw_social``."""

    dataset, model, what = DATASET, Post, "a post"

    def __init__(self, client: redis.Redis, keys: Keys, **kwargs: Any) -> None:
        super().__init__(client, keys, **kwargs)
        self.stats = SocialStats()
        self._mentioned: list[str] = []  # tickers of the batch in flight, counted once its writes are in

    def __call__(self, entries: list[Entry]) -> list[str | None]:
        self._mentioned.clear()  # what a failed batch queued is not counted
        return super().__call__(entries)

    def text_hash(self, item: Post) -> str:
        return content_hash(item.platform, item.author or "", item.text)

    def store(self, pipe: redis.client.Pipeline, item: Post, text_hash: str, query: str, now_ms: int) -> None:
        post = item
        tickers = self.tagger.tag(post.text)
        if not tickers:
            self.stats.untagged += 1  # feeds no per-ticker feature: acknowledged, remembered as seen, not stored
            return
        score = self.scorer.score(post.text)
        created_ms = int(post.created_at.timestamp() * 1000)
        key = self.keys.post(post.id)
        pipe.hset(key, mapping={
            "platform": post.platform, "post_id": post.post_id, "text": post.text, "author": post.author or "",
            "created_ms": created_ms, "url": post.url, "score": post.score, "comments": post.comments,
            "tickers": ",".join(tickers), "query": query, "sentiment": score.score,
            "sentiment_label": score.label, "text_hash": text_hash, "stored_ms": now_ms,
        })  # fmt: skip
        pipe.expire(key, self.ttl_s)
        for ticker in tickers:
            sentiment, mentions = self.keys.sentiment(ticker, DATASET), self.keys.mentions(ticker, DATASET)
            known_sentiment = self.keys.known(ticker, "sentiment", DATASET)
            known_mentions = self.keys.known(ticker, "mentions", DATASET)
            for key, field in ((sentiment, "sentiment"), (mentions, "mentions"), (known_sentiment, "known"), (known_mentions, "known")):
                self.series.ensure(key, ticker, field, DATASET)
            self.index_event(keys=[self.keys.social_index(ticker), sentiment, known_sentiment, mentions, known_mentions],
                             client=pipe, args=[created_ms, post.id, score.score, now_ms - self.ttl_s * 1000, self.ttl_s, now_ms])  # fmt: skip
            self._mentioned.append(ticker)
        self.stats.stored += 1

    def committed(self) -> None:
        self.stats.mentions.update(self._mentioned)
        self._mentioned.clear()


def make_handler(client: redis.Redis, keys: Keys) -> SocialProcessor:
    """A social handler configured from the environment (TTL, ticker universe)."""
    config = ProcessorSettings()
    return SocialProcessor(client, keys, ttl_s=ttl_seconds("social"),
                           tagger=default_tagger(config.tickers_file), scorer=default_scorer())  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_cli("social", lambda k: k.raw_social, make_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
