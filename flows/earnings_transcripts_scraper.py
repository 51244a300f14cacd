"""Daily: earnings-call transcripts scraped from the configured site -> Azure Blob -> ``stream:raw_documents``.

    python -m flows.earnings_transcripts_scraper [--ticker AAPL ...] [--max-per-ticker 2] [--selectors JSON] [--refetch] [--process]

Per ticker: the site's index page lists the published transcripts (``HEADWATER_TRANSCRIPTS_URL_TEMPLATE``
recognises their links); the newest ``max_per_ticker`` not stored yet
(``checkpoint:earnings_transcripts_scraper:{TICKER}``: ``{YEAR}Q{QUARTER}`` -> content SHA-256) are fetched,
parsed (speaker turns, prepared remarks vs Q&A: a page that does not parse is not stored) and written to Blob
as ``transcripts/{TICKER}/{FISCAL_YEAR}Q{QUARTER}.html`` with the metadata described in
``flows/sec_filings_fetcher.py``; the stream entry carries the CSS selectors so the document processor
parses the page the same way. The call time is the point-in-time timestamp (``public_ms``).

Politeness: robots.txt is honoured (disallowed pages are not requested), requests are spaced by the larger
of its Crawl-delay and ``1/per_second`` (shared by every worker through Redis), pages over
``HEADWATER_TRANSCRIPTS_MAX_BYTES`` are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.context import flow_context
from flows.document_ingest import DocumentContext, process_documents, record_checkpoint, store_document
from flows.retry import io_task
from headwater.config import load_tickers
from headwater.documents import RawDocument, transcript_blob_path
from headwater.keys import check_ticker
from headwater.metrics import OUTCOME_HOOKS
from headwater.models import Transcript
from headwater.providers.http import ProviderError
from headwater.providers.transcripts import (
    RobotsDisallowed,
    TranscriptLink,
    TranscriptParseError,
    TranscriptScraper,
    TranscriptSelectors,
)

JOB = "earnings_transcripts_scraper"
SITE_TASK = io_task(retry_delay_seconds=[5, 15, 60])  # a TranscriptParseError is not retried: it will not parse


@dataclass
class ScrapeContext(DocumentContext):
    scraper: TranscriptScraper


def build_context(selectors: TranscriptSelectors, per_second: float) -> ScrapeContext:
    """The run's context (Redis, Blob) plus a client for the transcript site, from the environment's settings."""
    ctx = flow_context(actor=f"flow:{JOB}")
    settings, client, keys = ctx.settings, ctx.client, ctx.keys
    scraper = TranscriptScraper.from_settings(settings.transcripts, client, keys, standins=settings.standins,
                                              per_second=per_second, selectors=selectors)  # fmt: skip
    return ScrapeContext(ctx, JOB, scraper)


@SITE_TASK
def list_transcripts(ctx: ScrapeContext, ticker: str, refetch: bool = False) -> list[TranscriptLink]:
    """Transcripts the site lists for the ticker that this flow has not stored yet, newest first."""
    links = ctx.scraper.list_transcripts(ticker)
    if refetch:
        return links
    done = ctx.stored_ids(ticker)
    return [link for link in links if f"{link.year}Q{link.quarter}" not in done]


@SITE_TASK
def fetch_transcript(ctx: ScrapeContext, link: TranscriptLink) -> tuple[Transcript, bytes]:
    """Download and parse one transcript page."""
    return ctx.scraper.fetch(link)


def raw_document(transcript: Transcript, selectors: TranscriptSelectors) -> RawDocument:
    """The blob/stream description of a transcript."""
    t = transcript
    return RawDocument(
        doc_id=t.doc_id, source="transcript", ticker=t.ticker, form="transcript",
        public_ms=int(t.call_at.timestamp() * 1000), period=t.year * 10 + t.quarter,
        path=transcript_blob_path(t.ticker, t.year, t.quarter), url=t.url, selectors=selectors.model_dump_json(),
        extra_metadata={"turns": str(len(t.turns)), "qa_turns": str(sum(1 for x in t.turns if x.section == "qa"))},
    )  # fmt: skip


@flow(name="earnings_transcripts_scraper", **OUTCOME_HOOKS)
def earnings_transcripts_scraper(
    tickers: list[str] | None = None,
    max_per_ticker: int = 2,
    selectors: dict[str, str] | None = None,
    per_second: float = 1.0,
    refetch: bool = False,
    process: bool = False,
) -> dict[str, int]:
    """Scrape new earnings-call transcripts of ``tickers`` (default config/tickers.txt) into Blob and the stream.

    ``process`` also drains the stream through the document processor at the end (see sec_filings_fetcher).
    """
    logger = get_run_logger()
    tickers = [check_ticker(t.strip().upper()) for t in tickers] if tickers else load_tickers()
    chosen = TranscriptSelectors(**(selectors or {}))
    ctx = build_context(chosen, per_second)
    counts: Counter[str] = Counter(tickers=len(tickers))
    for ticker in tickers:
        try:
            links = list_transcripts(ctx, ticker, refetch)
        except ProviderError as exc:
            counts["failed"] += 1
            logger.warning("%s: transcript index unavailable: %s", ticker, exc)
            continue
        counts["listed"] += len(links)
        for link in links[:max_per_ticker] if max_per_ticker > 0 else []:
            try:
                transcript, raw = fetch_transcript(ctx, link)
                outcome = store_document(ctx, raw_document(transcript, chosen), raw)
                record_checkpoint(ctx, ticker, f"{link.year}Q{link.quarter}", outcome.content_sha256)
                counts[outcome.status] += 1
                counts["turns"] += len(transcript.turns)
            except RobotsDisallowed as exc:
                counts["disallowed"] += 1
                logger.warning("%s: %s", link.url, exc)
            except (ProviderError, TranscriptParseError) as exc:
                counts["failed"] += 1
                logger.warning("%s: %s", link.url, exc)
    logger.info(
        "earnings_transcripts_scraper: %d tickers, %d new transcripts listed, %d stored (%d turns), %d unchanged, "
        "%d republished, %d failed, %d disallowed by robots.txt",
        counts["tickers"], counts["listed"], counts["new"], counts["turns"], counts["unchanged"], counts["republished"],
        counts["failed"], counts["disallowed"],
    )  # fmt: skip
    if process:
        counts.update({f"processed_{k}": v for k, v in process_documents(ctx).items()})
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.earnings_transcripts_scraper", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticker", action="append", dest="tickers", help="repeatable (default config/tickers.txt)")
    parser.add_argument("--max-per-ticker", type=int, default=2)
    parser.add_argument("--selectors", default=None, help='JSON overriding CSS selectors, e.g. \'{"turn": "div.utterance"}\'')
    parser.add_argument("--per-second", type=float, default=1.0, help="request rate shared by every worker")
    parser.add_argument("--refetch", action="store_true", help="ignore the checkpoint (blob writes stay idempotent)")
    parser.add_argument("--process", action="store_true", help="also run the document processor on what was fetched")
    args = parser.parse_args(argv)
    setup_logging()
    selectors = json.loads(args.selectors) if args.selectors else None
    print(earnings_transcripts_scraper(args.tickers, args.max_per_ticker, selectors, args.per_second, args.refetch,
                                       args.process))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
