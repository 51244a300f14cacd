"""The one retry policy of the flows: ``@io_task(...)`` on every task that does I/O.

    @io_task()                                     # 3 retries, backoff 1-2-4 s, 50 % jitter
    def fetch_intraday(ctx: FlowContext, ticker: str) -> pd.DataFrame: ...

    @io_task(retry_delay_seconds=[5, 15, 60])      # its own delays (as many retries as delays)
    def fetch_transcript(ctx: ScrapeContext, link: TranscriptLink) -> ...: ...

Any ``@task`` keyword can be overridden (``tags``, ``retries``, ``retry_jitter_factor`` ...). The default base
of the backoff is ``HEADWATER_FLOW_RETRY_BASE_S`` (read at import; the tests shorten it).

**What is retried** (``is_transient``): only what can get better --

* a ``ProviderError`` whose ``retryable`` is set: 429 and Alpha Vantage's Note/Information bodies, 5xx, timeouts
  and resets, malformed/cut-off bodies. When the provider named a wait (Retry-After, ``x-rate-limit-reset``,
  ``X-Ratelimit-Reset``), ``retry_on_transient`` sleeps until Prefect's scheduled backoff can no longer start the
  retry before it; a wait longer than ``MAX_HONOURED_WAIT_S`` is not retried;
* Redis connection errors and timeouts; socket-level ``ConnectionError``/``TimeoutError``;
* Azure Blob transport errors and 408/429/5xx answers.

Everything else fails at once: a spent daily budget (``QuotaExhausted``), an EDGAR fair-access block, a page that
does not parse, a failed archive verification, a bug. ``stop_reason`` tells a flow which failures mean "stop
cleanly and say why" rather than "failed".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.utilities.math import lower_clamp_multiple

from headwater.providers.http import ProviderError, QuotaExhausted, RateLimited

F = TypeVar("F", bound=Callable[..., Any])

MAX_HONOURED_WAIT_S = 120.0  # a provider asking for longer stops the run instead of holding a worker
RETRIES = 3
RETRY_BASE_S = float(os.environ.get("HEADWATER_FLOW_RETRY_BASE_S") or 1.0)
RETRY_JITTER = 0.5
_RETRYABLE_HTTP = frozenset({408, 429})


def is_transient(exc: BaseException | None) -> bool:
    """Whether trying again can help (see the module doc)."""
    if isinstance(exc, ProviderError):
        return exc.retryable
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, (ResourceNotFoundError, ResourceExistsError)):
        return False
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return status >= 500 or status in _RETRYABLE_HTTP
    return isinstance(exc, AzureError)  # transport: ServiceRequestError, ServiceResponseError ...


def _exception(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - the result itself could not be read
        return exc
    return result if isinstance(result, BaseException) else None


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry what is transient; wait out a provider-named delay first."""
    exc = _exception(state)
    if not is_transient(exc):
        return False
    wait = getattr(exc, "retry_after_s", None)
    if wait is not None:
        if wait > MAX_HONOURED_WAIT_S:
            return False
        delays = task.retry_delay_seconds if isinstance(task.retry_delay_seconds, list) else [task.retry_delay_seconds or 0]
        index = min(max(0, (task_run.run_count or 1) - 1), len(delays) - 1)
        earliest = float(delays[index]) * (lower_clamp_multiple(1 + (task.retry_jitter_factor or 0))
                                           if task.retry_jitter_factor else 1.0)  # fmt: skip
        if wait > earliest:
            time.sleep(wait - earliest)
    return True


def io_task(**overrides: Any) -> Callable[[F], F]:
    """``@task`` with the flows' retry policy; keywords override it (a list of delays sets the retry count)."""
    delays = overrides.get("retry_delay_seconds")
    options: dict[str, Any] = {
        "retries": len(delays) if isinstance(delays, list) else RETRIES,
        "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_BASE_S),
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": retry_on_transient,
        "cache_policy": NO_CACHE,
        **overrides,
    }
    return task(**options)  # type: ignore[return-value]


def stop_reason(exc: BaseException) -> str | None:
    """Why a run should stop cleanly (daily budget, a rate limit too long to wait out), or None (a real failure)."""
    if isinstance(exc, QuotaExhausted):
        return f"quota exhausted: {exc}"
    if isinstance(exc, RateLimited) and (exc.retry_after_s or 0) > MAX_HONOURED_WAIT_S:
        return f"rate limited for {exc.retry_after_s / 60:.0f} min: {exc}"
    return None
