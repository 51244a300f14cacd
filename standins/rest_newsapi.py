"""NewsAPI stand-in: ``GET /v2/everything`` (key in ``X-Api-Key``, ``Authorization`` or ``apiKey``).

Answers ``{"status":"ok","totalResults":N,"articles":[{"source":{"id","name"},"author","title",
"description","url","urlToImage","publishedAt","content"}]}``; ``content`` is cut at 200 characters with
NewsAPI's ``"… [+N chars]"`` tail. Articles come from ``corpus.news_slot``: about seven per ticker and day,
stable URLs (a re-fetch duplicates exactly), clearly positive/negative/neutral finance wording, some
mentioning two tickers, and ~6 % syndicated word-for-word under a second outlet's URL.

Query: ``q`` (whole words, "phrases", AND/OR/NOT, +/-, one level of parentheses) over title, description and
full text (``searchIn`` narrows), ``qInTitle``, ``sources``, ``domains``, ``excludeDomains``, ``from``/``to``
(ISO 8601, UTC when naive), ``language`` (all articles are ``en``), ``sortBy`` publishedAt (default) |
relevancy | popularity, ``pageSize`` (default and max 100), ``page``.

Errors as NewsAPI: 401 ``apiKeyMissing``/``apiKeyInvalid``, 429 ``rateLimited`` (quota), 400
``parametersMissing``/``parameterInvalid``, 426 ``parameterInvalid`` (``from`` older than the plan's
look-back) and 426 ``maximumResultsReached`` (beyond ``newsapi_max_results``, 100 on the Developer plan).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from standins.corpus import NEWS_SLOT_MS, UTC, Article, news_slot
from standins.http_server import Response, compile_query

if TYPE_CHECKING:
    from standins.http_server import ProviderStandIn, Request

LANGUAGES = {"ar", "de", "en", "es", "fr", "he", "it", "nl", "no", "pt", "ru", "sv", "ud", "zh"}
MESSAGES = {
    "apiKeyMissing": "Your API key is missing. Append this to the URL with the apiKey param, or use the "
                     "x-api-key HTTP header.",
    "apiKeyInvalid": "Your API key is invalid or incorrect. Check your key, or go to https://newsapi.org to "
                     "create a free API key.",
    "rateLimited": "You have made too many requests recently. Developer accounts are limited to 100 requests "
                   "over a 24 hour period (50 requests available every 12 hours). Please upgrade to a paid plan "
                   "if you need more requests.",
    "parametersMissing": "Required parameters are missing, the scope of your search is too broad. Please set "
                         "any of the following required parameters and try again: q, qInTitle, sources, domains.",
    "unexpectedError": "This shouldn't happen, and if it does then it's our fault, not yours. Try the request "
                       "again shortly.",
}


class NewsError(Exception):
    def __init__(self, status: int, code: str, message: str | None = None) -> None:
        super().__init__(message or MESSAGES[code])
        self.status, self.code = status, code


def _error(status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response.json({"status": "error", "code": code, "message": message or MESSAGES[code]}, status, headers)


def _parse_time(value: str, name: str) -> int:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NewsError(400, "parameterInvalid", f"The '{name}' parameter is not in a valid format. Use ISO "
                                                 "8601, e.g. 2024-01-02 or 2024-01-02T14:00:00.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def article_json(a: Article) -> dict[str, Any]:
    content = a.body if len(a.body) <= 200 else f"{a.body[:200]}… [+{len(a.body) - 200} chars]"
    return {
        "source": {"id": a.source_id, "name": a.source_name},
        "author": a.author,
        "title": a.title,
        "description": a.description,
        "url": a.url,
        "urlToImage": a.url_to_image,
        "publishedAt": dt.datetime.fromtimestamp(a.published_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content": content,
    }


class NewsApiHandler:
    content_type = "application/json"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        return _error(429, "rateLimited", headers={"Retry-After": str(int(retry_after))})

    def server_error(self, req: Request, status: int) -> Response:
        return _error(status, "unexpectedError")

    def _key(self, req: Request) -> str | None:
        auth = req.header("Authorization")
        if auth and auth.lower().startswith("bearer "):
            auth = auth[7:]
        return req.header("X-Api-Key") or req.query.get("apiKey") or (auth.strip() if auth else None)

    def handle(self, req: Request) -> Response:
        key = self._key(req)
        if not key:
            return _error(401, "apiKeyMissing")
        if not self.hub.key_ok("newsapi", key):
            return _error(401, "apiKeyInvalid")
        if req.path.rstrip("/") != "/v2/everything":
            return _error(404, "routeNotFound", f"The route {req.path} does not exist. Try /v2/everything.")
        if self.hub.quotas.take("newsapi", key).exceeded:
            return _error(429, "rateLimited")
        try:
            return Response.json(self._everything(req.query))
        except NewsError as exc:
            return _error(exc.status, exc.code, str(exc))

    def _everything(self, q: dict[str, str]) -> dict[str, Any]:
        query, in_title = q.get("q", "").strip(), q.get("qInTitle", "").strip()
        sources = {s for s in q.get("sources", "").split(",") if s}
        domains = {d for d in q.get("domains", "").split(",") if d}
        exclude = {d for d in q.get("excludeDomains", "").split(",") if d}
        if not (query or in_title or sources or domains):
            raise NewsError(400, "parametersMissing")
        language = q.get("language")
        if language and language not in LANGUAGES:
            raise NewsError(400, "parameterInvalid", f"The language parameter must be one of: "
                                                     f"{', '.join(sorted(LANGUAGES))}.")
        sort_by = q.get("sortBy", "publishedAt")
        if sort_by not in ("publishedAt", "relevancy", "popularity"):
            raise NewsError(400, "parameterInvalid", "The sortBy parameter must be one of: relevancy, "
                                                     "popularity, publishedAt.")
        try:
            page_size = min(100, max(1, int(q.get("pageSize", 100))))
            page = int(q.get("page", 1))
        except ValueError:
            raise NewsError(400, "parameterInvalid", "The page and pageSize parameters must be integers.") from None
        if page < 1:
            raise NewsError(400, "parameterInvalid", "The page parameter must be 1 or greater.")
        now_ms = int(self.hub.now() * 1000)
        oldest = now_ms - self.hub.newsapi_history_days * 86_400_000
        start = _parse_time(q["from"], "from") if q.get("from") else oldest
        end = _parse_time(q["to"], "to") if q.get("to") else now_ms
        if start < oldest - 86_400_000:  # the plan's limit is by calendar day
            allowed = dt.datetime.fromtimestamp(oldest / 1000, UTC).date().isoformat()
            asked = dt.datetime.fromtimestamp(start / 1000, UTC).date().isoformat()
            raise NewsError(426, "parameterInvalid", "You are trying to request results too far in the past. Your "
                            f"plan permits you to request articles as far back as {allowed}, but you have "
                            f"requested {asked}. You may need to upgrade to a paid plan.")
        cap = self.hub.newsapi_max_results
        if page * page_size > cap:
            raise NewsError(426, "maximumResultsReached", "You have requested too many results. Developer "
                            f"accounts are limited to a max of {cap} results. You are trying to request results "
                            f"{(page - 1) * page_size} to {page * page_size}. Please upgrade to a paid plan if "
                            "you need more results.")

        search_in = set((q.get("searchIn") or "title,description,content").split(","))
        match_q = compile_query(query) if query else None
        match_title = compile_query(in_title) if in_title else None
        found: list[tuple[Article, int]] = []
        if language in (None, "", "en"):
            for article in self._window(max(start, oldest), min(end, now_ms)):
                if sources and article.source_id not in sources:
                    continue
                host = urlsplit(article.url).hostname or ""
                if domains and not any(host.endswith(d) for d in domains):
                    continue
                if exclude and any(host.endswith(d) for d in exclude):
                    continue
                if match_title and not match_title(article.title):
                    continue
                hits = 1
                if match_q:
                    parts = {"title": article.title, "description": article.description, "content": article.body}
                    text = " ".join(v for k, v in parts.items() if k in search_in)
                    if not match_q(text):
                        continue
                    hits = sum(text.lower().count(w.lower().strip('"')) for w in query.split() if w not in
                               ("AND", "OR", "NOT"))
                found.append((article, hits))
        if sort_by == "publishedAt":
            found.sort(key=lambda f: (-f[0].published_ms, f[0].url))
        elif sort_by == "popularity":
            found.sort(key=lambda f: (-f[0].popularity, f[0].url))
        else:
            found.sort(key=lambda f: (-f[1], -f[0].published_ms, f[0].url))
        chunk = found[(page - 1) * page_size: page * page_size]
        return {"status": "ok", "totalResults": len(found), "articles": [article_json(a) for a, _ in chunk]}

    def _window(self, start_ms: int, end_ms: int) -> list[Article]:
        out = []
        universe = self.hub.tickers
        for slot in range(start_ms // NEWS_SLOT_MS, end_ms // NEWS_SLOT_MS + 1):
            for ticker in universe:
                for article in news_slot(self.hub.seed, ticker, slot, universe):
                    if start_ms <= article.published_ms <= end_ms:
                        out.append(article)
        return out
