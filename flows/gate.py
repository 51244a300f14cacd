"""The Great Expectations gate and the quarantine: every batch a flow stores passes its suite first.

``gate(ctx, dataset, frame, flow, source)`` validates a batch with its suite (``expectations/``: ``bars``,
``articles``, ``posts``) and returns the accepted rows; rejected rows go to ``stream:quarantine`` with the failed
expectations, together with rows a client could not even parse (``quarantine_unparsed``). ``gate_parts``
validates several frames as one batch (a suite run has a fixed cost of ~0.1 s) and splits the result back.
Quarantined rows and the GX counters of ``headwater.metrics`` are written in one round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import redis
from prefect import task
from prefect.cache_policies import NO_CACHE

from expectations import Outcome, Quarantined
from flows.common import run_logger, run_name
from flows.context import FlowContext
from flows.retry import io_task
from headwater import metrics

QUARANTINE_MAXLEN = 1_000_000


def quarantine(ctx: FlowContext, dataset: str, items: Iterable[Quarantined], *, flow: str, source: str,
               pipe: redis.client.Pipeline | None = None) -> int:  # fmt: skip
    """XADD rejected rows to ``stream:quarantine`` with the failed expectations; returns how many.

    With ``pipe`` the entries are only queued on it (the caller executes it with its own writes).
    """
    own = pipe is None
    pipe = ctx.client.pipeline(transaction=False) if pipe is None else pipe
    count, run, now, stream = 0, run_name(), str(int(time.time() * 1000)), ctx.keys.quarantine
    for item in items:
        fields = {"dataset": dataset, "expectation": "; ".join(item.failed)[:2000], "flow": flow, "source": source,
                  "run": run, "ts": now, "row": json.dumps(item.row, default=str)[:1_000_000]}  # fmt: skip
        pipe.xadd(stream, fields, maxlen=QUARANTINE_MAXLEN, approximate=True)
        count += 1
    if own and count:
        pipe.execute()
    return count


def rejected_rows(rejected: Iterable[tuple[dict[str, Any], str]], model: str) -> list[Quarantined]:
    """Entries a client could not parse into ``model``, as quarantine items."""
    return [Quarantined(row=raw, failed=(f"model:{model}: {reason}",)) for raw, reason in rejected]


def validate(ctx: FlowContext, dataset: str, frame: pd.DataFrame, flow: str, source: str) -> Outcome:
    """Run the dataset's suite on ``frame``; quarantine what it rejects and count both outcomes."""
    from expectations import articles, bars, posts

    suites = {"bars": bars, "articles": articles, "posts": posts}
    outcome = suites[dataset].validate_batch(frame)
    pipe, k = ctx.client.pipeline(transaction=False), ctx.keys  # quarantined rows and counters: one round trip
    count = quarantine(ctx, dataset, outcome.quarantined, flow=flow, source=source, pipe=pipe)
    metrics.count(pipe, k, "gx_validations", suite=dataset, flow=flow, outcome="fail" if count else "pass")
    metrics.count(pipe, k, "gx_rows", len(frame) - count, suite=dataset, outcome="accepted")
    metrics.count(pipe, k, "gx_rows", count, suite=dataset, outcome="quarantined")
    pipe.execute()
    if count:
        run_logger().warning("%s: quarantined %d of %d %s rows: %s", flow, count, outcome.checked, dataset,
                             outcome.failed_expectations)  # fmt: skip
    return outcome


@task(cache_policy=NO_CACHE)
def gate(ctx: FlowContext, dataset: str, frame: pd.DataFrame, flow: str, source: str) -> tuple[pd.DataFrame, int]:
    """Validate a batch with its GX suite; quarantine rejected rows; return (accepted rows, quarantined count)."""
    return gate_parts.fn(ctx, dataset, [frame], flow, source)[0]


@task(cache_policy=NO_CACHE)
def gate_parts(ctx: FlowContext, dataset: str, frames: list[pd.DataFrame], flow: str,
               source: str) -> list[tuple[pd.DataFrame, int]]:  # fmt: skip
    """``gate`` for several frames validated as ONE batch (a suite run has a fixed cost of ~0.1 s): per frame, in
    order, its accepted rows and its quarantined count."""
    sizes = [len(f) for f in frames]
    if not sum(sizes):
        return [(f, 0) for f in frames]
    present = [f for f in frames if len(f)]
    outcome = validate(ctx, dataset, present[0] if len(present) == 1 else pd.concat(present, ignore_index=True), flow, source)
    if len(frames) == 1:
        return [(outcome.good, len(outcome.quarantined))]
    bounds = np.cumsum([0, *sizes])
    parts = []
    for i, size in enumerate(sizes):
        lo, hi = np.searchsorted(outcome.kept, bounds[i]), np.searchsorted(outcome.kept, bounds[i + 1])
        parts.append((outcome.good.iloc[lo:hi].reset_index(drop=True), size - int(hi - lo)))
    return parts


@io_task()
def quarantine_unparsed(ctx: FlowContext, dataset: str, rejected: list[tuple[dict[str, Any], str]], model: str,
                        flow: str, source: str) -> int:  # fmt: skip
    """Quarantine entries the client could not parse into ``model`` (with the reason as the failed check)."""
    return quarantine(ctx, dataset, rejected_rows(rejected, model), flow=flow, source=source) if rejected else 0
