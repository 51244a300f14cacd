"""X (Twitter) API v2 client: ``GET /2/tweets/search/recent`` with an app bearer token.

Answers ``{"data": [{"id", "text", "created_at", "public_metrics", ...}], "meta": {"newest_id", "result_count",
"next_token"}}``; an empty result has no ``data``. A 429 carries ``x-rate-limit-reset`` (epoch seconds), which
``retry_after_seconds`` turns into the wait. Tweets become ``headwater.models.Post`` (``platform="x"``, score =
likes, comments = replies); entries that do not validate are returned in ``TweetPage.rejected``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from headwater.models import Post
from headwater.providers.http import HttpClient

TWEET_FIELDS = "created_at,public_metrics,author_id,lang"


@dataclass
class TweetPage:
    posts: list[Post] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    newest_id: str | None = None
    next_token: str | None = None


def parse_tweet(raw: dict[str, Any]) -> Post:
    """One ``data[]`` entry -> ``Post`` (raises ``ValueError`` when it does not validate)."""
    if not isinstance(raw, dict):
        raise ValueError(f"tweet is a {type(raw).__name__}, not an object")
    try:
        created = dt.datetime.fromisoformat(str(raw.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"created_at {raw.get('created_at')!r} is not ISO 8601 (ask for tweet.fields=created_at)") from None
    metrics = raw.get("public_metrics") if isinstance(raw.get("public_metrics"), dict) else {}
    tweet_id = str(raw.get("id") or "")
    try:
        return Post(
            platform="x",
            post_id=tweet_id,
            text=raw.get("text") or "",
            author=raw.get("author_id"),
            created_at=created,
            url=f"https://x.com/i/web/status/{tweet_id}",
            score=int(metrics.get("like_count") or 0),
            comments=int(metrics.get("reply_count") or 0),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


class XClient(HttpClient):
    provider = "x"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"} if self.api_key else {}

    def check_body(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            raise self.malformed(f"expected an object with 'meta', got {str(body)[:120]!r}")
        if "data" in body and not isinstance(body["data"], list):
            raise self.malformed("'data' is not a list")
        return body

    def search_recent(
        self,
        query: str,
        *,
        max_results: int = 100,
        since_id: str | None = None,
        next_token: str | None = None,
        start_time: dt.datetime | None = None,
    ) -> TweetPage:
        """One page of recent tweets matching ``query`` (newest first); ``since_id`` returns only newer ones."""
        params: dict[str, Any] = {"query": query, "max_results": max(10, min(max_results, 100)),
                                  "tweet.fields": TWEET_FIELDS}  # fmt: skip
        if since_id:
            params["since_id"] = since_id
        if next_token:
            params["next_token"] = next_token
        if start_time is not None and not since_id:
            params["start_time"] = start_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = self.get_json("/2/tweets/search/recent", params=params)
        meta = body["meta"]
        page = TweetPage(newest_id=meta.get("newest_id"), next_token=meta.get("next_token"))
        for raw in body.get("data") or []:
            try:
                page.posts.append(parse_tweet(raw))
            except ValueError as exc:
                page.rejected.append((raw if isinstance(raw, dict) else {"entry": raw}, str(exc)))
        return page
