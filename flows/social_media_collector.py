"""Scheduled social posts (every 2 minutes): Reddit + X -> GX ``posts`` gate -> ``stream:raw_social`` -> social processor.

* **Reddit**: the newest posts of each subreddit (``HEADWATER_REDDIT_SUBREDDITS``, default stocks, investing,
  wallstreetbets), paging back until the subreddit's watermark (``checkpoint:social_media_collector:reddit:{sub}``:
  newest creation time seen) or ``max_pages``. Which tickers a post is about is decided by the processor's tagger.
* **X**: recent-search queries of up to ``tickers_per_query`` cashtags each, ``($AAPL OR $MSFT ...) lang:en
  -is:retweet``, from the query's ``since_id`` (``checkpoint:social_media_collector:x:{query hash}``) or
  ``lookback_minutes`` back on the first run.

``max_pages`` (100 posts a page) bounds one run's catch-up: after a long outage a source with more new posts than
that keeps the newest and moves its watermark past the rest -- raise it for the first run after an outage.

Posts the clients could not parse and rows the suite rejects go to ``stream:quarantine``; posts already stored
(``seen:social``) or found twice in the run count as duplicates. The rest is XADDed to ``stream:raw_social``, the
watermarks advance, and with ``drain`` (default) the run processes the stream once: de-duplicate, tag, sentiment,
``social:{platform}:{id}`` with TTL, ``social:idx:{T}``, ``ts:{T}:sentiment:social``, ``ts:{T}:mentions:social``.

    python -m flows.social_media_collector --ticker TSLA          # X for TSLA, plus the subreddits
    python -m flows.social_media_collector --platform reddit
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any


import pandas as pd
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from expectations.posts import COLUMNS
from flows import common
from flows.context import FlowContext, flow_context
from flows.gate import gate, quarantine_unparsed
from flows.retry import io_task
from headwater.metrics import OUTCOME_HOOKS
from headwater.models import Post

FLOW = "social_media_collector"
DATASET = "social"


@dataclass
class Harvest:
    """What one source (a subreddit or an X query) gave, and where its watermark moves."""

    source: str
    posts: list[Post] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    checkpoint: str | None = None  # the new watermark value


def x_queries(tickers: list[str], per_query: int) -> list[str]:
    """Recent-search queries of up to ``per_query`` cashtags each (X allows 512 characters per query)."""
    chunks = [tickers[i : i + per_query] for i in range(0, len(tickers), per_query)]
    return ["(" + " OR ".join(f"${t}" for t in chunk) + ") lang:en -is:retweet" for chunk in chunks]


def x_checkpoint_item(query: str) -> str:
    return "x:" + hashlib.sha256(query.encode()).hexdigest()[:12]


@io_task(tags=["reddit"])
def fetch_reddit(ctx: FlowContext, subreddit: str, max_pages: int) -> Harvest:
    """The newest posts of one subreddit down to its watermark."""
    client = ctx.provider("reddit")
    stored = ctx.client.get(ctx.keys.checkpoint(FLOW, f"reddit:{subreddit}"))
    watermark = int(stored) if stored else 0
    harvest = Harvest(f"reddit:{subreddit}", checkpoint=str(watermark) if watermark else None)
    after, newest = None, watermark
    for _ in range(max_pages):
        listing = client.new(subreddit, limit=100, after=after)  # type: ignore[attr-defined]
        fresh = [p for p in listing.posts if int(p.created_at.timestamp() * 1000) > watermark]
        harvest.posts += fresh
        harvest.rejected += listing.rejected
        newest = max([newest, *(int(p.created_at.timestamp() * 1000) for p in fresh)])
        if not listing.after or len(fresh) < len(listing.posts):
            break
        after = listing.after
    harvest.checkpoint = str(newest) if newest else None
    return harvest


@io_task(tags=["x"])
def fetch_x(ctx: FlowContext, query: str, lookback_minutes: float, max_pages: int) -> Harvest:
    """Recent tweets for one cashtag query since its ``since_id``."""
    client = ctx.provider("x")
    since_id = ctx.client.get(ctx.keys.checkpoint(FLOW, x_checkpoint_item(query)))
    since_id = since_id.decode() if since_id else None
    start = dt.datetime.fromtimestamp(time.time() - lookback_minutes * 60, dt.UTC)
    harvest = Harvest(f"x:{query}", checkpoint=since_id)
    token, newest = None, None
    for _ in range(max_pages):
        page = client.search_recent(query, since_id=since_id, next_token=token, start_time=start)  # type: ignore[attr-defined]
        harvest.posts += page.posts
        harvest.rejected += page.rejected
        newest = newest or page.newest_id  # the first page holds the newest tweet
        if not page.next_token:
            break
        token = page.next_token
    harvest.checkpoint = newest or since_id
    return harvest


def post_frame(harvests: list[Harvest]) -> tuple[pd.DataFrame, dict[str, Post]]:
    rows, by_id = [], {}
    for h in harvests:
        for p in h.posts:
            by_id.setdefault(p.id, p)
            rows.append({"id": p.id, "platform": p.platform, "post_id": p.post_id, "text": p.text, "author": p.author,
                         "created_ms": int(p.created_at.timestamp() * 1000), "url": p.url, "score": p.score,
                         "comments": p.comments, "query": h.source})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), by_id


@flow(name=FLOW, task_runner=ThreadPoolTaskRunner(max_workers=8), **OUTCOME_HOOKS)
def social_media_collector(
    tickers: list[str] | None = None,
    tickers_file: str | None = None,
    platforms: list[str] | None = None,
    subreddits: list[str] | None = None,
    tickers_per_query: int = 20,
    lookback_minutes: float = 60.0,
    max_pages: int = 2,
    drain: bool = True,
    data_sources: str | None = None,
) -> dict:
    """Fetch, validate and publish new Reddit and X posts; optionally process them at once."""
    summary = common.RunSummary(FLOW)
    platforms = platforms or ["reddit", "x"]
    futures: dict[str, Any] = {}
    with flow_context(data_sources=data_sources) as ctx:
        if "reddit" in platforms:
            for sub in subreddits or ctx.settings.reddit.subreddits:
                futures[f"reddit:{sub}"] = fetch_reddit.submit(ctx, sub, max_pages)
        if "x" in platforms:
            symbols = common.resolve_tickers(tickers, tickers_file)
            for query in x_queries(symbols, tickers_per_query):
                futures[query] = fetch_x.submit(ctx, query, lookback_minutes, max_pages)
        harvests: list[Harvest] = list(common.collect(futures, summary).values())
        rejected = [r for h in harvests for r in h.rejected]
        parse_quarantined = quarantine_unparsed(ctx, "posts", rejected, "Post", FLOW, "social")
        frame, by_id = post_frame(harvests)
        fresh, duplicates = common.drop_duplicates(ctx, DATASET, frame)
        good, quarantined = gate(ctx, dataset="posts", frame=fresh, flow=FLOW, source="social")
        k = ctx.keys
        now = str(int(time.time() * 1000))
        messages = [{"d": by_id[row.id].model_dump_json(), "q": row.query, "src": row.platform, "fetched_ms": now}
                    for row in good.itertuples(index=False)]  # fmt: skip
        checkpoints = {}
        for h in harvests:
            if h.checkpoint:
                item = h.source if h.source.startswith("reddit:") else x_checkpoint_item(h.source[2:])
                checkpoints[k.checkpoint(FLOW, item)] = h.checkpoint
        published = common.publish(ctx, k.raw_social, messages, checkpoints)
        summary.add(sources=len(futures), fetched=len(frame) + len(rejected), duplicates=duplicates,
                    validated=len(good), quarantined=quarantined + parse_quarantined, published=published)  # fmt: skip
        if drain:
            processed = common.drain_stream(ctx, DATASET)
            summary.add(stored=processed["stored"], untagged=processed["untagged"],
                        processor_duplicates=processed["duplicates"], dead_letters=processed["dead_letters"])  # fmt: skip
    return common.finish(summary)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.social_media_collector", description=__doc__.splitlines()[0])
    parser.add_argument("--ticker", action="append", help="ticker(s) for the X searches; default: the tickers file")
    parser.add_argument("--tickers-file", default=None)
    parser.add_argument("--platform", action="append", choices=("reddit", "x"), help="default: both")
    parser.add_argument("--subreddit", action="append", help="default: HEADWATER_REDDIT_SUBREDDITS")
    parser.add_argument("--test", action="store_true", help="one quick run for TSLA (or --ticker)")
    parser.add_argument("--no-drain", action="store_true", help="only publish to stream:raw_social")
    args = parser.parse_args(argv)
    setup_logging()
    tickers = args.ticker or (["TSLA"] if args.test else None)
    state = social_media_collector(tickers=tickers, tickers_file=args.tickers_file, platforms=args.platform,
                                   subreddits=args.subreddit, drain=not args.no_drain, return_state=True)  # fmt: skip
    print(json.dumps(state.result(raise_on_failure=False) if state.is_completed() else {"error": state.message},
                     default=str))  # fmt: skip
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
