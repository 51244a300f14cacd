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
millisecond (``ZCOUNT`` on the index in the same atomic script as the ``ZADD``, ``flows.processors.INDEX_EVENT``,
so concurrent processors agree), written with the LAST policy. Summing the series over a window gives the mention count of the window, redeliveries do not
double it, and nothing is stamped before it was posted (no look-ahead). Mention *velocity* -- mentions in the last
hour against the hourly average of the last 24 h -- is derived from this series by ``features/sentiment.py``
(``mention_velocity``).

    python -m flows.processors.social [--consumer NAME] [--once]
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import redis
from pydantic import ValidationError

from flows.processors import INDEX_EVENT, ProcessorSettings, SeriesCache, default_tagger, run_cli, ttl_seconds
from headwater.keys import Keys
from headwater.models import Post, content_hash
from headwater.sentiment import FinanceSentiment, default_scorer
from headwater.streams import Entry
from headwater.tagging import TickerTagger

log = logging.getLogger("headwater.processors.social")
DATASET = "social"


@dataclass
class SocialStats:
    stored: int = 0
    duplicates: int = 0
    untagged: int = 0
    late: int = 0
    mentions: Counter[str] = field(default_factory=Counter)  # ticker -> mentions stored by this process


class SocialProcessor:
    """The ``StreamWorker`` handler for ``stream:raw_social``."""

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
        self.stats = SocialStats()

    def __call__(self, entries: list[Entry]) -> list[str | None]:
        outcomes: list[str | None] = [None] * len(entries)
        parsed: list[tuple[Post, str, str]] = []
        for i, (_, fields) in enumerate(entries):
            try:
                post = Post.model_validate_json(fields[b"d"])
            except (KeyError, ValidationError, ValueError) as exc:
                outcomes[i] = f"not a post: {str(exc)[:300]}"
                continue
            parsed.append((post, content_hash(post.platform, post.author or "", post.text), fields.get(b"q", b"").decode()))
        if not parsed:
            return outcomes
        seen_key = self.keys.seen(DATASET)
        hashes = [h for p, text_hash, _ in parsed for h in (p.id, text_hash)]
        seen = {h for h, member in zip(hashes, self.client.smismember(seen_key, hashes)) if member}
        now_ms = int(time.time() * 1000)
        trim_before = now_ms - self.ttl_s * 1000
        pipe = self.client.pipeline(transaction=False)
        done: list[str] = []  # hashes to add to seen:* once every write above has succeeded
        mention_calls: list[str] = []
        for post, text_hash, query in parsed:
            if post.id in seen or text_hash in seen:
                self.stats.duplicates += 1
                continue
            seen.update((post.id, text_hash))
            tickers = self.tagger.tag(post.text)
            if not tickers:
                self.stats.untagged += 1
                done += (post.id, text_hash)
                continue
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
                sentiment = self.keys.sentiment(ticker, DATASET)
                mentions = self.keys.mentions(ticker, DATASET)
                self.series.ensure(sentiment, ticker, "sentiment", DATASET)
                self.series.ensure(mentions, ticker, "mentions", DATASET)
                self.index_event(keys=[self.keys.social_index(ticker), sentiment, mentions], client=pipe,
                                 args=[created_ms, post.id, score.score, trim_before, self.ttl_s])  # fmt: skip
                mention_calls.append(ticker)
            done += (post.id, text_hash)
            self.stats.stored += 1
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError):
                raise reply
            if isinstance(reply, list) and len(reply) == 2 and reply[1] == 1:
                self.stats.late += 1  # older than the series' retention: indexed, not charted
        if done:  # last, and only after the writes: a failed batch is redone in full, never skipped as "seen"
            self.client.sadd(seen_key, *done)
        self.stats.mentions.update(mention_calls)
        return outcomes


def make_handler(client: redis.Redis, keys: Keys) -> SocialProcessor:
    """A social handler configured from the environment (TTL, ticker universe)."""
    config = ProcessorSettings()
    return SocialProcessor(client, keys, ttl_s=ttl_seconds("social"),
                           tagger=default_tagger(config.tickers_file), scorer=default_scorer())  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_cli("social", lambda k: k.raw_social, make_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
