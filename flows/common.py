"""What every ingestion flow shares besides its context (``flows.context``), retry policy (``flows.retry``) and
GX gate (``flows.gate``): the run summary, the ticker list, and the raw-stream tasks.

**Summary**: each flow run ends with one log line of counts (``RunSummary.line``) and returns the summary as a
dict; a run with real failures (not a quota stop, see ``flows.retry.stop_reason``) ends Failed with that line as
the message.

**Raw streams**: ``publish`` XADDs validated items to ``stream:raw_news`` / ``stream:raw_social`` and advances the
sources' checkpoints; ``drain_stream`` then processes the stream once in-process with its processor
(``headwater.processors``), so a one-shot run stores its data end to end.

Provider tasks carry no Prefect tags on purpose: a tagged task run asks the API for tag concurrency slots, which
cost ~2 s per burst of task runs on an idle Prefect 3 server (measured here) and would limit nothing the Redis
limiter (``flows.context``) does not already limit.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.futures import PrefectFuture

from flows.context import FlowContext
from flows.retry import io_task, stop_reason
from headwater.config import load_tickers

log = logging.getLogger("headwater.flows")


def resolve_tickers(tickers: Iterable[str] | None, tickers_file: str | None) -> list[str]:
    """Explicit tickers, else the ones in ``tickers_file``, else ``config/tickers.txt``."""
    if tickers:
        from headwater.keys import check_ticker

        return list(dict.fromkeys(check_ticker(t.strip().upper()) for t in tickers))
    return load_tickers(tickers_file)


# -- run summary -------------------------------------------------------------------------------------------
class IngestionFailed(RuntimeError):
    """A flow run finished its work but some items failed for reasons other than a quota stop."""


@dataclass
class RunSummary:
    """What one flow run did: counts, failures, and why it stopped early (if it did)."""

    flow: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    stopped_reason: str | None = None

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + int(value)

    def record_failure(self, item: str, exc: BaseException) -> None:
        reason = stop_reason(exc)
        if reason is not None:
            self.stopped_reason = self.stopped_reason or reason
            self.skipped.append(item)
        else:
            self.failed[item] = f"{type(exc).__name__}: {exc}"

    def line(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        if self.failed:
            items = list(self.failed)
            named = ", ".join(items[:5]) + (f", ... ({len(items) - 5} more)" if len(items) > 5 else "")
            parts.append(f"failed={len(items)} [{named}] (first: {items[0]}: {self.failed[items[0]][:200]})")
        if self.stopped_reason:
            parts.append(f"skipped={len(self.skipped)} stopped: {self.stopped_reason}")
        return f"{self.flow}: " + " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (unit use)
        return log


def collect(futures: Mapping[str, PrefectFuture[Any]], summary: RunSummary) -> dict[str, Any]:
    """Wait for per-item futures; return the results of those that succeeded, record the others."""
    results: dict[str, Any] = {}
    for item, future in futures.items():
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            summary.record_failure(item, outcome)
        else:
            results[item] = outcome
    return results


def finish(summary: RunSummary) -> dict[str, Any]:
    """Log the run's one summary line; raise if items failed for real, else return the summary."""
    logger = run_logger()
    line = summary.line()
    if summary.failed:
        logger.error(line)
        raise IngestionFailed(line)
    if summary.stopped_reason:
        logger.warning(line)
    else:
        logger.info(line)
    return summary.as_dict()


def run_name() -> str:
    """The current flow run's name (or host:pid outside Prefect), for quarantine records and consumers."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.name or flow_run.id)
    except Exception:  # noqa: BLE001
        return f"{socket.gethostname()}:{os.getpid()}"


# -- raw streams: publish, then drain ------------------------------------------------------------------------
@io_task()
def publish(ctx: FlowContext, stream: str, messages: list[dict[str, str]], checkpoints: dict[str, str]) -> int:
    """XADD messages to a raw stream, then advance the sources' checkpoints (a crash in between only re-fetches)."""
    pipe = ctx.client.pipeline(transaction=False)
    maxlen = ctx.settings.streams.maxlen
    for message in messages:
        pipe.xadd(stream, message, maxlen=maxlen, approximate=True)
    for key, value in checkpoints.items():
        pipe.set(key, value)
    pipe.execute()
    return len(messages)


@io_task()
def drain_stream(ctx: FlowContext, dataset: str) -> dict[str, int]:
    """Process what is waiting in the dataset's raw stream with its processor (a one-shot consumer)."""
    from headwater.processors import drain, news, social

    client, k = ctx.client, ctx.keys
    module, stream = {"news": (news, k.raw_news), "social": (social, k.raw_social)}[dataset]
    handler = module.make_handler(client, k)
    stats = drain(client, k, stream, handler, stage=f"{dataset}_processor")
    return {"processed": stats.entries, "stored": handler.stats.stored, "duplicates": handler.stats.duplicates,
            "untagged": handler.stats.untagged, "dead_letters": stats.dead_letters}  # fmt: skip


@io_task()
def drop_duplicates(ctx: FlowContext, dataset: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows found twice in this run or already stored (``seen:{dataset}``); return (new rows, duplicates)."""
    if frame.empty:
        return frame, 0
    once = frame.drop_duplicates(subset="id", keep="first")
    ids = once["id"].tolist()
    flags = ctx.client.smismember(ctx.keys.seen(dataset), ids)
    fresh = once[[not flag for flag in flags]].reset_index(drop=True)
    return fresh, len(frame) - len(fresh)
