"""Reddit client: OAuth2 client credentials, then subreddit listings and search on the API host.

* The token comes from ``{auth_url}/api/v1/access_token`` (HTTP basic auth ``client_id:secret``, form
  ``grant_type=client_credentials``); live, ``auth_url`` is ``https://www.reddit.com`` and the API is
  ``https://oauth.reddit.com``; against the stand-in both are its ``/reddit`` prefix.
* The token is cached until 60 s before ``expires_in`` and fetched again then, or at once when the API answers
  401 (one refresh per request; a second 401 is an ``AuthError``).
* Reddit refuses generic User-Agents: pass a descriptive one (``RedditSettings.user_agent``).
* ``X-Ratelimit-Remaining`` reaching 0 pauses every worker on this client id (shared limiter ``block``) until
  ``X-Ratelimit-Reset``, so the next request is not a guaranteed 429.

Posts become ``headwater.models.Post`` (``platform="reddit"``, text = title + self-text); entries that do
not validate are returned in ``Listing.rejected`` with the reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from pydantic import SecretStr, ValidationError

from headwater.models import Post
from headwater.providers.http import AuthError, HttpClient

TOKEN_MARGIN_S = 60.0


@dataclass
class Listing:
    posts: list[Post] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    after: str | None = None  # fullname to pass as ``after`` for the next (older) page


def parse_post(data: dict[str, Any]) -> Post:
    """A ``t3`` listing child's ``data`` -> ``Post`` (raises ``ValueError`` when it does not validate)."""
    if not isinstance(data, dict):
        raise ValueError(f"post is a {type(data).__name__}, not an object")
    title, body = (data.get("title") or "").strip(), (data.get("selftext") or "").strip()
    try:
        created = dt.datetime.fromtimestamp(float(data["created_utc"]), dt.UTC)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"created_utc {data.get('created_utc')!r} is not an epoch time") from None
    permalink = data.get("permalink") or ""
    try:
        return Post(
            platform="reddit",
            post_id=str(data.get("id") or ""),
            text=f"{title}\n\n{body}".strip(),
            author=data.get("author"),
            created_at=created,
            url=f"https://www.reddit.com{permalink}" if permalink.startswith("/") else permalink,
            score=int(data.get("score") or 0),
            comments=int(data.get("num_comments") or 0),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


class RedditClient(HttpClient):
    """``api_key`` is the OAuth client id, ``client_secret`` its secret (may be empty for installed apps)."""

    provider = "reddit"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None = None,
        *,
        client_secret: SecretStr | None = None,
        auth_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, api_key, **kwargs)
        self.auth_url = (auth_url or base_url).rstrip("/")
        self._client_secret = client_secret
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self.tokens_fetched = 0

    # -- OAuth -----------------------------------------------------------------------------------------
    def _fetch_token(self) -> None:
        if self.api_key is None:
            raise AuthError(self.provider, "no client id configured")
        pair = f"{self.api_key.get_secret_value()}:{self._client_secret.get_secret_value() if self._client_secret else ''}"
        basic = base64.b64encode(pair.encode()).decode()
        response = super().request(
            "POST", f"{self.auth_url}/api/v1/access_token", data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )  # fmt: skip
        try:
            body = response.json()
        except ValueError as exc:
            raise self.malformed("token endpoint answered something that is not JSON") from exc
        if not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else body
            raise AuthError(self.provider, f"no access token from the token endpoint: {error!r}")
        self._token = str(body["access_token"])
        self._token_expires = time.monotonic() + float(body.get("expires_in") or 3600) - TOKEN_MARGIN_S
        self.tokens_fetched += 1

    def _bearer(self, *, refresh: bool = False) -> str:
        with self._token_lock:
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                self._fetch_token()
            assert self._token is not None
            return self._token

    def api_get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET an API path with the cached bearer token (refreshed once on 401) and decode JSON."""
        try:
            response = self.request("GET", path, params=params, headers={"Authorization": f"bearer {self._bearer()}"})
        except AuthError as exc:
            if exc.status != 401:
                raise
            response = self.request("GET", path, params=params,
                                    headers={"Authorization": f"bearer {self._bearer(refresh=True)}"})  # fmt: skip
        self._observe_quota(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise self.malformed(f"invalid JSON from {path}: {response.text[:120]!r}") from exc
        if not isinstance(body, dict) or body.get("kind") != "Listing" or not isinstance(body.get("data"), dict):
            raise self.malformed(f"expected a Listing from {path}, got {str(body)[:120]!r}")
        return body

    def _observe_quota(self, response: requests.Response) -> None:
        remaining, reset = response.headers.get("X-Ratelimit-Remaining"), response.headers.get("X-Ratelimit-Reset")
        block = getattr(self.limiter, "block", None)
        try:
            if remaining is not None and float(remaining) < 1 and reset and callable(block):
                block(float(reset), "Reddit X-Ratelimit-Remaining reached 0")
        except ValueError:
            pass

    # -- listings --------------------------------------------------------------------------------------
    def _listing(self, path: str, params: dict[str, Any]) -> Listing:
        body = self.api_get(path, params)
        data = body["data"]
        result = Listing(after=data.get("after"))
        for child in data.get("children") or []:
            post = child.get("data") if isinstance(child, dict) else None
            try:
                result.posts.append(parse_post(post))  # type: ignore[arg-type]
            except ValueError as exc:
                result.rejected.append((post if isinstance(post, dict) else {"child": child}, str(exc)))
        return result

    def new(self, subreddit: str, *, limit: int = 100, after: str | None = None) -> Listing:
        """The newest posts of a subreddit, newest first (``after`` pages back in time)."""
        params: dict[str, Any] = {"limit": min(limit, 100), "raw_json": 1}
        if after:
            params["after"] = after
        return self._listing(f"/r/{subreddit}/new", params)

    def search(
        self, query: str, *, subreddit: str | None = None, sort: str = "new", time_filter: str = "day",
        limit: int = 100, after: str | None = None,
    ) -> Listing:  # fmt: skip
        """Search posts (within ``subreddit`` if given), e.g. ``"$AAPL OR AAPL"``."""
        params: dict[str, Any] = {"q": query, "sort": sort, "t": time_filter, "limit": min(limit, 100), "raw_json": 1}
        if after:
            params["after"] = after
        if subreddit:
            params["restrict_sr"] = 1
            return self._listing(f"/r/{subreddit}/search", params)
        return self._listing("/search", params)
