"""NewsAPI client: ``GET /v2/everything`` with the key in ``X-Api-Key``.

Answers are ``{"status": "ok", "totalResults": N, "articles": [...]}``; errors are ``{"status": "error",
"code": ..., "message": ...}`` with 401 (``apiKeyMissing``/``apiKeyInvalid``), 429 (``rateLimited``), 400/426
(parameters, plan limits). Every article becomes a ``headwater.models.Article``; an entry that does not
validate (NewsAPI serves ``"[Removed]"`` stubs and the odd entry without a URL) is returned in
``NewsPage.rejected`` with the reason, so the caller can quarantine it instead of dropping it silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from headwater.models import Article
from headwater.providers.http import AuthError, BadRequest, HttpClient, RateLimited

MAX_PAGE_SIZE = 100
_AUTH_CODES = {"apiKeyMissing", "apiKeyInvalid", "apiKeyDisabled", "apiKeyExhausted"}


@dataclass
class NewsPage:
    total: int
    articles: list[Article] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (raw entry, why)


def parse_article(raw: dict[str, Any]) -> Article:
    """One NewsAPI ``articles[]`` entry -> ``Article`` (raises ``ValueError`` when it does not validate)."""
    if not isinstance(raw, dict):
        raise ValueError(f"article is a {type(raw).__name__}, not an object")
    source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
    published = raw.get("publishedAt")
    try:
        when = dt.datetime.fromisoformat(str(published).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"publishedAt {published!r} is not ISO 8601") from None
    try:
        return Article(
            url=raw.get("url") or "",
            title=raw.get("title") or "",
            description=raw.get("description") or "",
            content=raw.get("content") or "",
            source=source.get("name") or "",
            author=raw.get("author"),
            published_at=when,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


class NewsApiClient(HttpClient):
    provider = "newsapi"

    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key.get_secret_value()} if self.api_key else {}

    def check_body(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise self.malformed(f"expected a JSON object, got {type(body).__name__}")
        status = body.get("status")
        if status == "error":
            code, message = body.get("code", "?"), body.get("message", "")
            if code == "rateLimited":
                raise RateLimited(self.provider, f"{code}: {message}", status=200)
            if code in _AUTH_CODES:
                raise AuthError(self.provider, f"{code}: {message}", status=200)
            raise BadRequest(self.provider, f"{code}: {message}", status=200)
        if status != "ok" or not isinstance(body.get("articles"), list):
            raise self.malformed(f"expected status 'ok' and an 'articles' list, got status {status!r}")
        return body

    def everything(
        self,
        query: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        sort_by: str = "publishedAt",
        language: str = "en",
    ) -> NewsPage:
        """One page of ``/v2/everything`` for ``query`` (NewsAPI's boolean keyword syntax)."""
        params: dict[str, Any] = {"q": query, "sortBy": sort_by, "pageSize": min(page_size, MAX_PAGE_SIZE),
                                  "page": page, "language": language}  # fmt: skip
        if since is not None:
            params["from"] = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if until is not None:
            params["to"] = until.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = self.get_json("/v2/everything", params=params)
        result = NewsPage(total=int(body.get("totalResults") or 0))
        for raw in body["articles"]:
            try:
                result.articles.append(parse_article(raw))
            except ValueError as exc:
                result.rejected.append((raw, str(exc)))
        return result
