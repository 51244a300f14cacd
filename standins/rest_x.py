"""X (Twitter) API v2 stand-in: ``GET /2/tweets/search/recent`` with ``Authorization: Bearer <token>``.

Answers ``{"data":[{"id","text","edit_history_tweet_ids", + requested tweet.fields: created_at, author_id,
lang, public_metrics{retweet_count,reply_count,like_count,quote_count,bookmark_count,impression_count},
conversation_id}],"meta":{"newest_id","oldest_id","result_count","next_token"}}``, newest first; an empty
result is just ``{"meta":{"result_count":0}}`` (no ``data`` key), as on the real API.

Query: cashtags (``$AAPL``), words, "phrases", ``OR``, ``-`` negation, one level of parentheses, and the
operators ``lang:xx``, ``is:retweet`` / ``-is:retweet`` (other ``key:value`` operators are accepted and
ignored). Parameters: ``max_results`` 10..100 (default 10), ``start_time``/``end_time`` (ISO 8601, within
the last 7 days, ``end_time`` at least 10 s ago), ``since_id``/``until_id``, ``next_token`` (or
``pagination_token``). ``sort_order=relevancy`` is accepted and answered in recency order.

Tweets: per ticker one candidate every 2 minutes (60 % present), ids are real-style snowflakes that grow with
``created_at``; ~15 % mention a second cashtag, ~15 % are retweets, ~8 % are Spanish.

Every answer carries ``x-rate-limit-limit``, ``x-rate-limit-remaining`` and ``x-rate-limit-reset`` (epoch
seconds); the default window is 450 requests per 15 minutes per token, enforced only when ``quotas["x"]`` is
configured; over it -> 429 ``{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank",
"status":429}``. Missing/invalid token -> 401, bad parameters -> 400 ``invalid-request`` problems.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from standins.corpus import UTC, rng, tweet_mentions, tweet_text, unit
from standins.http_server import Response, compile_query, required_cashtags

if TYPE_CHECKING:
    from collections.abc import Iterator

    from standins.http_server import ProviderStandIn, QuotaState, Request

TWITTER_EPOCH_MS = 1_288_834_974_657
SLOT_MS = 120_000
RECENT_WINDOW_MS = 7 * 86_400_000
DEFAULT_WINDOW = ("per_15min", 450, 900.0)
INVALID = "https://api.twitter.com/2/problems/invalid-request"
_OPERATOR = re.compile(r"^-?[a-z_]+:\S+$")
_FIELDS = ("author_id", "conversation_id", "created_at", "lang", "public_metrics")


def snowflake(created_ms: int, worker: int) -> int:
    return ((created_ms - TWITTER_EPOCH_MS) << 22) | (worker << 12)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def tweet_exists(seed: int, ticker: str, slot: int) -> bool:
    return unit(seed, "tweet?", ticker, slot) < 0.6


@lru_cache(maxsize=262_144)
def tweet_at(seed: int, ticker: str, worker: int, slot: int, universe: tuple[str, ...]) -> dict[str, Any] | None:
    """The tweet of ``ticker``'s stream in 2-minute slot ``slot`` (or None), with all fields."""
    if not tweet_exists(seed, ticker, slot):
        return None
    created = slot * SLOT_MS + int(SLOT_MS * unit(seed, "tweet-t", ticker, slot))
    tid = snowflake(created, worker)
    text, lang, tickers, retweet = tweet_text(seed, ticker, slot, universe)
    r = rng(seed, "tweet-metrics", ticker, slot)
    likes = int(2 ** (r.random() * 10)) - 1
    return {
        "id": tid,
        "text": text,
        "lang": lang,
        "retweet": retweet,
        "tickers": tickers,
        "created_ms": created,
        "author_id": str(1_000_000_000 + r.randrange(500) * 7_919),
        "public_metrics": {"retweet_count": int(likes * r.random() / 3), "reply_count": int(likes * r.random() / 5),
                           "like_count": likes, "quote_count": int(likes * r.random() / 10),
                           "bookmark_count": int(likes * r.random() / 8),
                           "impression_count": likes * (20 + r.randrange(80))},
    }


class XError(Exception):
    def __init__(self, name: str, value: str, message: str) -> None:
        super().__init__(message)
        self.name, self.value = name, value


def _parse_time(value: str, name: str) -> int:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise XError(name, value, f"Invalid '{name}':'{value}'. '{name}' must be a valid RFC3339 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _minute_iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


class XHandler:
    content_type = "application/json"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub

    # -- errors and headers ---------------------------------------------------------------------------------
    @staticmethod
    def _problem(status: int, title: str, headers: dict[str, str] | None = None) -> Response:
        return Response.json({"title": title, "detail": title, "type": "about:blank", "status": status},
                             status, headers)

    @staticmethod
    def _headers(state: QuotaState) -> dict[str, str]:
        return {"x-rate-limit-limit": str(state.limit), "x-rate-limit-remaining": str(state.remaining),
                "x-rate-limit-reset": str(int(state.reset_at))}

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        headers = {"x-rate-limit-limit": str(DEFAULT_WINDOW[1]), "x-rate-limit-remaining": "0",
                   "x-rate-limit-reset": str(int(self.hub.now() + retry_after))}
        return self._problem(429, "Too Many Requests", headers)

    def server_error(self, req: Request, status: int) -> Response:
        return self._problem(status, "Internal Server Error")

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        token = req.bearer()
        if not self.hub.key_ok("x", token):
            return Response.json({"title": "Unauthorized", "type": "about:blank", "status": 401,
                                  "detail": "Unauthorized"}, 401)
        state = self.hub.quotas.take("x", token or "", [DEFAULT_WINDOW])
        headers = self._headers(state)
        if state.exceeded:
            return self._problem(429, "Too Many Requests", headers)
        if req.path.rstrip("/") != "/2/tweets/search/recent":
            return Response.json({"title": "Not Found Error", "detail": f"Could not find {req.path}",
                                  "type": "https://api.twitter.com/2/problems/resource-not-found"}, 404, headers)
        try:
            return Response.json(self._search(req.query), headers=headers)
        except XError as exc:
            return Response.json({"errors": [{"parameters": {exc.name: [exc.value]}, "message": str(exc)}],
                                  "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": INVALID}, 400, headers)

    # -- search ---------------------------------------------------------------------------------------------
    def _search(self, q: dict[str, str]) -> dict[str, Any]:
        query = q.get("query", "").strip()
        if not query:
            raise XError("query", query, "Invalid 'query':''. 'query' must be a non-empty string")
        raw_max = q.get("max_results", "10")
        if not raw_max.isdigit() or not 10 <= int(raw_max) <= 100:
            raise XError("max_results", raw_max,
                         f"The `max_results` query parameter value [{raw_max}] is not between 10 and 100")
        max_results = int(raw_max)
        now_ms = int(self.hub.now() * 1000)
        oldest = now_ms - RECENT_WINDOW_MS
        start = _parse_time(q["start_time"], "start_time") if q.get("start_time") else oldest
        end = _parse_time(q["end_time"], "end_time") if q.get("end_time") else now_ms
        if start < oldest - 60_000:
            raise XError("start_time", q["start_time"], f"Invalid 'start_time':'{q['start_time']}'. 'start_time' "
                         f"must be on or after {_minute_iso(oldest)}")
        if q.get("end_time") and end > now_ms - 10_000:
            raise XError("end_time", q["end_time"], f"Invalid 'end_time':'{q['end_time']}'. 'end_time' must be a "
                         "minimum of 10 seconds prior to the request time.")
        if start >= end:
            raise XError("start_time", q.get("start_time", ""), "Invalid 'start_time'. 'start_time' must be "
                         "before 'end_time'.")
        since_id = int(q["since_id"]) if q.get("since_id", "").isdigit() else 0
        until_id = int(q["until_id"]) if q.get("until_id", "").isdigit() else None
        token = q.get("next_token") or q.get("pagination_token")
        if token:
            cursor = self._decode_token(token, query)
            if cursor is None:
                raise XError("next_token", token, f"The `next_token` query parameter value [{token}] is not valid")
            until_id = cursor if until_id is None else min(until_id, cursor)

        lang, retweet_filter, text_query = None, None, []
        for tok in re.findall(r'"[^"]*"|\S+', query):
            bare = tok.strip("()")
            if _OPERATOR.match(bare) and not bare.lstrip("-").startswith("http"):
                if bare.startswith("lang:"):
                    lang = bare[5:]
                elif bare == "is:retweet":
                    retweet_filter = True
                elif bare == "-is:retweet":
                    retweet_filter = False
                tok = tok.replace(bare, "").strip() or ""
            if tok:
                text_query.append(tok)
        text = " ".join(text_query).strip()
        matcher = compile_query(text) if text.strip("() ") else (lambda _t: True)
        cashtags = required_cashtags(text) if text.strip("() ") else None

        fields = {f for f in q.get("tweet.fields", "").split(",") if f in _FIELDS}
        found: list[dict[str, Any]] = []
        has_more = False
        for tweet in self._stream(start, end, cashtags):
            if tweet["id"] <= since_id:
                break
            if until_id is not None and tweet["id"] >= until_id:
                continue
            if lang and tweet["lang"] != lang:
                continue
            if retweet_filter is not None and tweet["retweet"] != retweet_filter:
                continue
            if not matcher(tweet["text"]):
                continue
            if len(found) == max_results:
                has_more = True
                break
            found.append(tweet)
        if not found:
            return {"meta": {"result_count": 0}}
        meta: dict[str, Any] = {"newest_id": str(found[0]["id"]), "oldest_id": str(found[-1]["id"]),
                                "result_count": len(found)}
        if has_more:
            meta["next_token"] = self._encode_token(found[-1]["id"], query)
        return {"data": [self._render(t, fields) for t in found], "meta": meta}

    def _stream(self, start_ms: int, end_ms: int, cashtags: set[str] | None) -> Iterator[dict[str, Any]]:
        """Tweets created in [start_ms, end_ms], newest first; with ``cashtags``, only tweets mentioning one."""
        seed, universe = self.hub.seed, self.hub.tickers
        workers = {t: i for i, t in enumerate(universe)}
        for slot in range(end_ms // SLOT_MS, start_ms // SLOT_MS - 1, -1):
            in_slot = []
            for ticker in universe:
                if not tweet_exists(seed, ticker, slot):
                    continue
                if cashtags is not None and cashtags.isdisjoint(tweet_mentions(seed, ticker, slot, universe)[0]):
                    continue
                tweet = tweet_at(seed, ticker, workers[ticker], slot, universe)
                if tweet and start_ms <= tweet["created_ms"] <= end_ms:
                    in_slot.append(tweet)
            yield from sorted(in_slot, key=lambda t: -t["id"])

    @staticmethod
    def _render(tweet: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "author_id" in fields:
            out["author_id"] = tweet["author_id"]
        if "conversation_id" in fields:
            out["conversation_id"] = str(tweet["id"])
        if "created_at" in fields:
            out["created_at"] = iso(tweet["created_ms"])
        out["edit_history_tweet_ids"] = [str(tweet["id"])]
        out["id"] = str(tweet["id"])
        if "lang" in fields:
            out["lang"] = tweet["lang"]
        if "public_metrics" in fields:
            out["public_metrics"] = dict(tweet["public_metrics"])
        out["text"] = tweet["text"]
        return out

    @staticmethod
    def _encode_token(last_id: int, query: str) -> str:
        check = hashlib.blake2b(query.encode(), digest_size=4).hexdigest()
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        n, out = last_id, ""
        while n:
            n, r = divmod(n, 36)
            out = digits[r] + out
        return f"b26v{out}z{check}"

    @staticmethod
    def _decode_token(token: str, query: str) -> int | None:
        if not token.startswith("b26v") or "z" not in token[4:]:
            return None
        body, _, check = token[4:].rpartition("z")
        if check != hashlib.blake2b(query.encode(), digest_size=4).hexdigest():
            return None
        try:
            return int(body, 36)
        except ValueError:
            return None
