"""The base of every REST provider client: one ``requests`` session, a configurable base URL, a shared rate
limiter, and errors classified so callers (Prefect task retries, the streamer's gap fill) know what to do.

| error               | when                                                    | retry?                      |
|---------------------|---------------------------------------------------------|-----------------------------|
| ``RateLimited``     | 429, Alpha Vantage's 200 "Note"/"Information", quotas   | yes, after ``retry_after_s`` |
| ``ServerError``     | 5xx                                                     | yes, with backoff           |
| ``ProviderTimeout`` | connect/read timeout, connection reset                  | yes, with backoff           |
| ``MalformedResponse`` | body is not the JSON/shape the provider documents     | yes (usually a cut-off body) |
| ``AuthError``       | 401/403, bad key                                        | no: fix the configuration   |
| ``BadRequest``      | other 4xx, "Error Message" (bad symbol)                 | no                          |
| ``QuotaExhausted``  | a daily budget is used up                               | no: the run stops cleanly   |
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from pydantic import SecretStr

from headwater.log import redact

log = logging.getLogger("headwater.providers")
T = TypeVar("T")


class ProviderError(RuntimeError):
    """Base of all provider errors; ``retryable`` says whether trying again can help."""

    retryable = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status


class RateLimited(ProviderError):
    retryable = True

    def __init__(self, provider: str, message: str, *, retry_after_s: float | None = None, status: int | None = None):
        super().__init__(provider, message, status=status)
        self.retry_after_s = retry_after_s


class ServerError(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError):
    retryable = True


class MalformedResponse(ProviderError):
    retryable = True


class AuthError(ProviderError):
    pass


class BadRequest(ProviderError):
    pass


class QuotaExhausted(ProviderError):
    """A daily budget is spent: stop cleanly and say when it resets."""

    def __init__(self, provider: str, message: str, *, resets_in_s: float | None = None):
        super().__init__(provider, message)
        self.resets_in_s = resets_in_s


def key_id(secret: SecretStr | str | None) -> str:
    """A short, non-reversible id of an API key, for quota keys and logs (never the key itself)."""
    if secret is None:
        return "anonymous"
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def retry_after_seconds(headers: requests.structures.CaseInsensitiveDict[str]) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or an epoch reset header (X, Reddit, Polygon)."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-rate-limit-reset")  # X: epoch seconds
    if reset and reset.isdigit():
        return max(0.0, float(reset) - time.time())
    reset = headers.get("X-Ratelimit-Reset")  # Reddit: seconds until reset
    if reset:
        try:
            return max(0.0, float(reset))
        except ValueError:
            pass
    return None


class HttpClient:
    """A provider's REST client: subclasses set ``provider`` and add typed methods."""

    provider = "http"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None = None,
        *,
        timeout_s: float = 30.0,
        limiter: Any | None = None,
        user_agent: str = "headwater/0.1",
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.limiter = limiter
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent

    # -- hooks for subclasses --------------------------------------------------------------------------
    def auth_params(self) -> dict[str, str]:
        """Query parameters that authenticate a request (API key), if the provider uses them."""
        return {}

    def auth_headers(self) -> dict[str, str]:
        return {}

    def check_body(self, body: Any) -> Any:
        """Raise for errors a provider reports inside a 200 body (Alpha Vantage); return the body."""
        return body

    # -- requests --------------------------------------------------------------------------------------
    def malformed(self, message: str) -> MalformedResponse:
        return MalformedResponse(self.provider, message)

    def get_json(self, path_or_url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """GET and decode JSON, raising a classified ``ProviderError`` for every failure."""
        response = self.request("GET", path_or_url, params=params, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            snippet = response.text[:120].replace("\n", " ")
            raise self.malformed(f"invalid JSON from {response.url.split('?')[0]}: {snippet!r}") from exc
        return self.check_body(body)

    def request(self, method: str, path_or_url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else f"{self.base_url}{path_or_url}"
        if self.limiter is not None:
            self.limiter.acquire()
        params = {**(params or {}), **self.auth_params()}
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        try:
            response = self.session.request(method, url, params=params, headers=headers, timeout=self.timeout_s, **kwargs)
        except requests.Timeout as exc:
            raise ProviderTimeout(self.provider, f"timed out after {self.timeout_s}s: {redact(url)}") from exc
        except requests.ConnectionError as exc:
            raise ProviderTimeout(self.provider, f"connection failed: {redact(url)}: {exc.__class__.__name__}") from exc
        self._raise_for_status(response)
        return response

    def _raise_for_status(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        where = redact(response.url.split("?")[0])
        detail = response.text[:200].replace("\n", " ")
        if status == 429:
            raise RateLimited(
                self.provider, f"429 from {where}: {detail}", retry_after_s=retry_after_seconds(response.headers), status=429
            )
        if status in (401, 403):
            raise AuthError(self.provider, f"{status} from {where}: {detail}", status=status)
        if status >= 500:
            raise ServerError(self.provider, f"{status} from {where}: {detail}", status=status)
        raise BadRequest(self.provider, f"{status} from {where}: {detail}", status=status)


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_s: float = 0.5,
    max_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    describe: str = "call",
) -> T:
    """Run ``fn`` retrying retryable ``ProviderError``s with full-jitter backoff (or the server's Retry-After).

    For code outside Prefect (the streamer's gap fill); Prefect tasks declare retries on the decorator.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except ProviderError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            delay = getattr(exc, "retry_after_s", None)
            if delay is None:
                delay = random.uniform(0, min(max_s, base_s * 2**attempt))
            log.warning("%s failed (%s); retry %d/%d in %.2fs", describe, exc, attempt + 1, attempts - 1, delay)
            sleep(min(delay, max_s))
    raise AssertionError("unreachable")
