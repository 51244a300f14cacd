"""The flows' one retry policy: what is transient, and what ``io_task`` puts on the decorator."""

from __future__ import annotations

import redis
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from flows.retry import RETRIES, RETRY_JITTER, io_task, is_transient, retry_on_transient, stop_reason
from headwater.providers.edgar import EdgarBlocked
from headwater.providers.http import AuthError, MalformedResponse, QuotaExhausted, RateLimited, ServerError
from headwater.providers.transcripts import TranscriptParseError


def http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"{status}")
    error.status_code = status
    return error


def test_only_what_can_get_better_is_transient():
    transient = [ServerError("x", "500"), MalformedResponse("x", "cut off"), RateLimited("x", "429", retry_after_s=1),
                 redis.ConnectionError(), redis.TimeoutError(), ConnectionResetError(), ServiceRequestError("reset"),
                 http_error(503), http_error(429)]  # fmt: skip
    permanent = [AuthError("x", "401"), QuotaExhausted("x", "daily budget"), EdgarBlocked("403", status=403, cooloff_s=600),
                 TranscriptParseError("no turns"), ResourceNotFoundError("gone"), http_error(403), KeyError("bug"), None]  # fmt: skip
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)


def test_io_task_declares_the_policy_and_takes_overrides():
    @io_task()
    def default() -> None: ...

    @io_task(retry_delay_seconds=[5, 15, 60, 120], tags=["site"])
    def own_delays() -> None: ...

    assert default.retries == RETRIES and default.retry_jitter_factor == RETRY_JITTER
    assert default.retry_condition_fn is retry_on_transient and len(default.retry_delay_seconds) == RETRIES
    assert own_delays.retries == 4 and own_delays.retry_delay_seconds == [5, 15, 60, 120] and own_delays.tags == {"site"}


def test_a_spent_budget_or_a_long_rate_limit_stops_the_run_instead_of_failing_it():
    assert stop_reason(QuotaExhausted("alphavantage", "25/day")).startswith("quota exhausted")
    assert stop_reason(RateLimited("x", "429", retry_after_s=900)).startswith("rate limited for 15 min")
    assert stop_reason(RateLimited("x", "429", retry_after_s=5)) is None and stop_reason(ServerError("x", "500")) is None
