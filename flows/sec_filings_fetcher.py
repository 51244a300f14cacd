"""Hourly: new 10-K/10-Q filings (and 10-K/A, 10-Q/A) from SEC EDGAR -> Azure Blob -> ``stream:raw_documents``.

    python -m flows.sec_filings_fetcher [--ticker AAPL ...] [--lookback-days 400] [--max-filings 8] [--refetch] [--process]

Per ticker: CIK from ``company_tickers.json``, the submissions API, the filings of ``forms`` accepted within
``lookback_days`` that this flow has not stored yet (``checkpoint:sec_filings_fetcher:{TICKER}``: accession
-> content SHA-256), newest ``max_filings_per_ticker`` of them; for each, the acceptance time from its
index page and the primary document (size-limited). The document processor takes it from there.

Raw documents in Blob (container ``raw``, ``HEADWATER_BLOB_RAW_CONTAINER``):

    sec/{TICKER}/{FORM}/{ACCESSION}/{primaryDocument}   e.g. sec/AAPL/10-K/0000320193-24-000123/aapl-20240928.htm
                                                        (the form's "/" is written "_": 10-K_A, 10-Q_A)
    transcripts/{TICKER}/{FISCAL_YEAR}Q{QUARTER}.html   e.g. transcripts/AAPL/2024Q4.html (the scraped page)

Blob metadata: ``ticker``, ``form`` (``10-K`` ... or ``transcript``), ``period`` (fiscal ``YYYYQ``),
``accession`` and ``accepted_at`` (filings; ISO UTC), ``call_at`` (transcripts), ``public_ms`` (epoch ms of
the one or the other), ``doc_id``, ``source``, ``url`` (where it was fetched) and ``content_sha256``.
Re-runs are idempotent by content hash: an identical document is neither rewritten nor re-published.

Point in time: ``accepted_at`` is EDGAR's acceptance time as the filing's index page shows it (New York
clock, converted to UTC), because about one filer in five writes New York time with a ``Z`` in the
submissions JSON; see ``headwater.providers.edgar``.

Fair access: a User-Agent with a contact e-mail is required (``HEADWATER_EDGAR_USER_AGENT``; the flow refuses
to start without one); all workers share one rate limit (``HEADWATER_EDGAR_MAX_REQUESTS_PER_S``, default 8);
a 403/429 pauses every worker for ``HEADWATER_EDGAR_BLOCK_COOLOFF_S`` (default 600 s) and ends this run as
failed -- tasks never retry into a block (other I/O errors are retried on the task decorators).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.context import flow_context
from flows.document_ingest import DocumentContext, process_documents, record_checkpoint, store_document
from flows.retry import io_task
from headwater.config import load_tickers
from headwater.documents import RawDocument, filing_blob_path
from headwater.keys import check_ticker
from headwater.metrics import OUTCOME_HOOKS
from headwater.providers.edgar import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    PERIODIC_FORMS,
    EdgarBlocked,
    EdgarClient,
    EdgarConfigError,
    FilingRef,
    check_user_agent,
)
from headwater.providers.http import ProviderError
from headwater.settings import Settings

JOB = "sec_filings_fetcher"
EDGAR_TASK = io_task(retry_delay_seconds=[2, 5, 15])  # an EdgarBlocked is not retried: never retry into a block


@dataclass
class FetchContext(DocumentContext):
    """The clients a run shares (built once per flow run from the environment's settings)."""

    edgar: EdgarClient


def build_context(max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> FetchContext:
    """The run's context (Redis, Blob) plus an EDGAR client; refuses a missing User-Agent before connecting."""
    settings = Settings()
    check_user_agent(settings.edgar.user_agent)
    ctx = flow_context(settings, actor=f"flow:{JOB}")
    client, keys = ctx.client, ctx.keys
    edgar = EdgarClient.from_settings(settings.edgar, client, keys, standins=settings.standins,
                                      max_document_bytes=max_document_bytes)  # fmt: skip
    return FetchContext(ctx, JOB, edgar)


@EDGAR_TASK
def resolve_ciks(ctx: FetchContext, tickers: list[str]) -> dict[str, int | None]:
    """Ticker -> CIK from EDGAR's company_tickers.json (None for unknown tickers)."""
    return {ticker: ctx.edgar.cik(ticker) for ticker in tickers}


@EDGAR_TASK
def list_new_filings(ctx: FetchContext, ticker: str, cik: int, forms: list[str], since: dt.datetime,
                     refetch: bool = False) -> list[FilingRef]:  # fmt: skip
    """The ticker's filings of ``forms`` accepted since ``since`` that this flow has not stored yet."""
    refs = ctx.edgar.filings(ticker, cik, forms, since)
    if refetch:
        return refs
    seen = ctx.stored_ids(ticker)
    return [ref for ref in refs if ref.filing.accession not in seen]


@EDGAR_TASK
def acceptance_time(ctx: FetchContext, ref: FilingRef) -> dt.datetime:
    """When the market could first see the filing (the index page's New York time, in UTC)."""
    return ctx.edgar.acceptance_time(ref)


@EDGAR_TASK
def download_document(ctx: FetchContext, ref: FilingRef) -> bytes:
    """The filing's primary document (size-limited)."""
    return ctx.edgar.download(ref.url)


def raw_document(ref: FilingRef, accepted_at: dt.datetime) -> RawDocument:
    """The blob/stream description of a filing."""
    f = ref.filing
    return RawDocument(
        doc_id=f.doc_id, source="sec", ticker=f.ticker, form=f.form, public_ms=int(accepted_at.timestamp() * 1000),
        period=ref.period, path=filing_blob_path(f.ticker, f.form, f.accession, f.primary_document), url=ref.url,
        accession=f.accession, extra_metadata={"cik": str(f.cik), "filed_on": f.filed_on},
    )  # fmt: skip


@flow(name="sec_filings_fetcher", **OUTCOME_HOOKS)
def sec_filings_fetcher(
    tickers: list[str] | None = None,
    forms: list[str] | None = None,
    lookback_days: int = 400,
    max_filings_per_ticker: int = 8,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    refetch: bool = False,
    process: bool = False,
) -> dict[str, int]:
    """Fetch new periodic filings of ``tickers`` (default config/tickers.txt) into Blob and the documents stream.

    ``process`` also drains the stream through the document processor at the end (embedding is CPU-heavy:
    leave it off where ``python -m headwater.processors.documents`` runs).
    """
    ctx = build_context(max_document_bytes)  # first: no User-Agent, no run
    logger = get_run_logger()
    tickers = [check_ticker(t.strip().upper()) for t in tickers] if tickers else load_tickers()
    forms = list(forms or PERIODIC_FORMS)
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=lookback_days)
    counts: Counter[str] = Counter(tickers=len(tickers))
    blocked: EdgarBlocked | None = None
    try:
        ciks = resolve_ciks(ctx, tickers)
        for ticker in tickers:
            cik = ciks.get(ticker)
            if cik is None:
                counts["unknown_tickers"] += 1
                continue
            refs = list_new_filings(ctx, ticker, cik, forms, since, refetch)
            counts["listed"] += len(refs)
            for ref in refs[-max_filings_per_ticker:] if max_filings_per_ticker > 0 else []:
                try:
                    accepted = acceptance_time(ctx, ref)
                    if accepted != ref.filing.accepted_at:
                        counts["acceptance_corrected"] += 1
                    data = download_document(ctx, ref)
                    outcome = store_document(ctx, raw_document(ref, accepted), data)
                    record_checkpoint(ctx, ticker, ref.filing.accession, outcome.content_sha256)
                    counts[outcome.status] += 1
                except EdgarBlocked:
                    raise
                except ProviderError as exc:
                    counts["failed"] += 1
                    logger.warning("%s %s %s: %s", ticker, ref.filing.form, ref.filing.accession, exc)
    except EdgarBlocked as exc:
        blocked = exc
        counts["blocked"] = 1
    logger.info(
        "sec_filings_fetcher: %d tickers, %d new filings listed, %d stored, %d unchanged, %d republished, %d failed, "
        "%d acceptance times corrected from index pages, %d unknown tickers%s",
        counts["tickers"], counts["listed"], counts["new"], counts["unchanged"], counts["republished"], counts["failed"],
        counts["acceptance_corrected"], counts["unknown_tickers"], "; STOPPED by an EDGAR fair-access block" if blocked else "",
    )  # fmt: skip
    if blocked is not None:
        raise blocked
    if process:
        counts.update({f"processed_{k}": v for k, v in process_documents(ctx).items()})
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m flows.sec_filings_fetcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticker", action="append", dest="tickers", help="repeatable (default config/tickers.txt)")
    parser.add_argument("--form", action="append", dest="forms", choices=PERIODIC_FORMS, help="repeatable")
    parser.add_argument("--lookback-days", type=int, default=400)
    parser.add_argument("--max-filings", type=int, default=8, help="newest filings per ticker per run")
    parser.add_argument("--max-document-bytes", type=int, default=DEFAULT_MAX_DOCUMENT_BYTES)
    parser.add_argument("--refetch", action="store_true", help="ignore the checkpoint (blob writes stay idempotent)")
    parser.add_argument("--process", action="store_true", help="also run the document processor on what was fetched")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        result = sec_filings_fetcher(args.tickers, args.forms, args.lookback_days, args.max_filings, args.max_document_bytes,
                                     args.refetch, args.process)  # fmt: skip
    except EdgarConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except EdgarBlocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
