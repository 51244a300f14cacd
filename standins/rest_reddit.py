"""Reddit stand-in: OAuth2 client credentials, then subreddit listings and search.

Real Reddit splits this over two hosts: the token comes from ``https://www.reddit.com/api/v1/access_token``
and the API lives on ``https://oauth.reddit.com``. Here both sit under one prefix, so a client configured
with separate token and API base URLs points both at ``base_urls()["reddit"]``.

* ``POST /api/v1/access_token`` with HTTP basic auth ``client_id:secret`` and form ``grant_type=
  client_credentials`` -> ``{"access_token","token_type":"bearer","expires_in":86400,"scope":"*"}``; bad
  credentials (only checked when ``api_keys["reddit"]`` lists ``"id:secret"`` pairs) -> 401
  ``{"message":"Unauthorized","error":401}``; other grants -> 200 ``{"error":"unsupported_grant_type"}``.
* ``GET /r/{sub}/new`` and ``GET /r/{sub}/search?q&restrict_sr=1&sort=new|relevance|top|comments&t&limit&
  after`` (also ``/search`` site-wide, and a ``.json`` suffix) with ``Authorization: bearer <token>`` ->
  Listing ``{"kind":"Listing","data":{"after","dist","modhash","geo_filter","children":[{"kind":"t3",
  "data":{id,name,title,selftext,author,created_utc,score,num_comments,permalink,url,subreddit,...}}],
  "before"}}``. Listings reach back 1,000 posts, search 30 days and 250 results, as on the real site.
* Every API answer carries ``X-Ratelimit-Used``, ``X-Ratelimit-Remaining`` (a float, e.g. ``"996.0"``) and
  ``X-Ratelimit-Reset`` (seconds); the default window is 1,000 requests per 600 s per client id (100 QPM
  averaged), enforced only when ``quotas["reddit"]`` is configured; over it -> 429.
* A missing or generic User-Agent (python-requests/..., curl/...) -> 429 without rate headers, as Reddit
  treats undeclared bots; missing/expired token -> 401.
"""

from __future__ import annotations

import base64
import secrets
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from standins.corpus import reddit_text, rng, unit
from standins.http_server import Response, compile_query

if TYPE_CHECKING:
    from collections.abc import Iterator

    from standins.http_server import ProviderStandIn, QuotaState, Request

# subreddit -> seconds between candidate posts (a post appears in ~75 % of slots)
SUBREDDITS: dict[str, int] = {"wallstreetbets": 180, "stocks": 600, "investing": 900, "StockMarket": 900,
                              "options": 1200, "SecurityAnalysis": 3600, "ValueInvesting": 1800}
_SUB_INDEX = {name: i for i, name in enumerate(SUBREDDITS)}
_CANONICAL = {name.lower(): name for name in SUBREDDITS}
T0 = 1_577_836_800  # 2020-01-01: ids count seconds from here
ID_BASE = 36**6
LISTING_DEPTH, SEARCH_CAP, SEARCH_HORIZON_S = 1000, 250, 30 * 86_400
TOKEN_TTL = 86_400
DEFAULT_WINDOW = ("per_10min", 1000, 600.0)
GENERIC_AGENTS = ("python-requests", "python-urllib", "python-httpx", "curl/", "wget/", "go-http-client",
                  "okhttp", "aiohttp", "java/", "libwww-perl")
_FLAIRS = ("DD", "Discussion", "News", "YOLO", "Gain", "Loss", "Question", None)
_T_WINDOWS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400}


def b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def post_number(sub: str, created_s: int) -> int:
    return ID_BASE + (created_s - T0) * 8 + _SUB_INDEX[sub]


def decode_fullname(fullname: str) -> tuple[str, int] | None:
    """(subreddit, created_s) from a ``t3_...`` name this stand-in issued."""
    if not fullname.startswith("t3_"):
        return None
    try:
        n = int(fullname[3:], 36) - ID_BASE
    except ValueError:
        return None
    if n < 0 or n % 8 >= len(SUBREDDITS):
        return None
    return list(SUBREDDITS)[n % 8], n // 8 + T0


@lru_cache(maxsize=262_144)
def post_at(seed: int, sub: str, slot: int, universe: tuple[str, ...]) -> dict[str, Any] | None:
    """The post of ``sub`` in candidate slot ``slot`` (or None): Reddit's t3 ``data`` object."""
    period = SUBREDDITS[sub]
    if unit(seed, "post?", sub, slot) >= 0.75:
        return None
    created = slot * period + int(period * unit(seed, "post-t", sub, slot))
    number = post_number(sub, created)
    pid = b36(number)
    text = reddit_text(seed, sub, number, universe)
    r = rng(seed, "post-meta", sub, slot)
    score = int(2 ** (r.random() * 12)) - 1
    user = r.randrange(5000)
    author = f"{r.choice(('Sad', 'Bullish', 'Theta', 'Diamond', 'Lucky', 'Quiet', 'Value'))}_" \
             f"{r.choice(('Ape', 'Investor', 'Trader', 'Gang', 'Hands', 'Analyst'))}_{user}"
    slug = "_".join(w for w in "".join(c.lower() if c.isalnum() else " " for c in text.title).split()[:9])
    permalink = f"/r/{sub}/comments/{pid}/{slug}/"
    return {
        "subreddit": sub,
        "selftext": text.body,
        "author_fullname": f"t2_{b36(ID_BASE + user * 7919)}",
        "title": text.title,
        "subreddit_name_prefixed": f"r/{sub}",
        "name": f"t3_{pid}",
        "upvote_ratio": round(0.5 + r.random() / 2, 2),
        "ups": score,
        "score": score,
        "link_flair_text": r.choice(_FLAIRS),
        "created": float(created),
        "created_utc": float(created),
        "num_comments": int(score * r.random() * 0.8),
        "permalink": permalink,
        "url": f"https://www.reddit.com{permalink}",
        "id": pid,
        "author": author,
        "is_self": True,
        "over_18": False,
        "stickied": False,
        "domain": f"self.{sub}",
        "subreddit_id": f"t5_{b36(ID_BASE * 3 + _SUB_INDEX[sub])}",
        "num_crossposts": 0,
        "is_video": False,
    }


class RedditHandler:
    content_type = "application/json"

    def __init__(self, hub: ProviderStandIn) -> None:
        self.hub = hub
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client_id, expires_at)
        self._lock = threading.Lock()

    # -- errors and headers ---------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response.json({"message": message, "error": status}, status, headers)

    @staticmethod
    def _rate_headers(state: QuotaState, now: float) -> dict[str, str]:
        return {"X-Ratelimit-Used": str(state.used), "X-Ratelimit-Remaining": f"{float(state.remaining):.1f}",
                "X-Ratelimit-Reset": str(max(0, int(state.reset_at - now)))}

    def rate_limited(self, req: Request, retry_after: float) -> Response:
        headers = {"X-Ratelimit-Used": str(DEFAULT_WINDOW[1]), "X-Ratelimit-Remaining": "0.0",
                   "X-Ratelimit-Reset": str(int(retry_after))}
        return self._error(429, "Too Many Requests", headers)

    def server_error(self, req: Request, status: int) -> Response:
        return self._error(status, "Internal Server Error")

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        agent = (req.header("User-Agent") or "").strip()
        if not agent or agent.lower().startswith(GENERIC_AGENTS):
            return self._error(429, "Too Many Requests")
        path = req.path[:-5] if req.path.endswith(".json") else req.path
        path = path.rstrip("/") or "/"
        if path == "/api/v1/access_token":
            return self._token(req) if req.method == "POST" else self._error(405, "Method Not Allowed")
        client_id = self._client_for(req)
        if client_id is None:
            return self._error(401, "Unauthorized")
        now = self.hub.now()
        state = self.hub.quotas.take("reddit", client_id, [DEFAULT_WINDOW])
        headers = self._rate_headers(state, now)
        if state.exceeded:
            return self._error(429, "Too Many Requests", headers)
        parts = path.strip("/").split("/")
        if parts == ["search"]:
            return self._search(req, None, headers)
        if len(parts) == 3 and parts[0] == "r" and parts[2] in ("new", "search"):
            sub = _CANONICAL.get(parts[1].lower())
            if sub is None:
                return self._error(404, "Not Found", headers)
            if parts[2] == "new":
                return self._new(req, sub, headers)
            restrict = req.query.get("restrict_sr", "").lower() in ("1", "true", "on", "yes")
            return self._search(req, sub if restrict else None, headers)
        return self._error(404, "Not Found", headers)

    # -- OAuth ----------------------------------------------------------------------------------------------
    def _token(self, req: Request) -> Response:
        auth = req.header("Authorization") or ""
        scheme, _, encoded = auth.partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            client_id, secret = "", ""
        # Without configured credentials any client id is accepted, even with an empty secret (simulated mode
        # may run without one); with ``api_keys={"reddit": {"id:secret"}}`` the pair must match exactly.
        configured = "reddit" in self.hub.api_keys
        if scheme.lower() != "basic" or not client_id or (configured and
                                                          not self.hub.key_ok("reddit", f"{client_id}:{secret}")):
            return self._error(401, "Unauthorized")
        grant = req.form().get("grant_type", "")
        if grant not in ("client_credentials", "https://oauth.reddit.com/grants/installed_client"):
            return Response.json({"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (client_id, self.hub.now() + TOKEN_TTL)
        return Response.json({"access_token": token, "token_type": "bearer", "expires_in": TOKEN_TTL, "scope": "*"})

    def _client_for(self, req: Request) -> str | None:
        token = req.bearer()
        with self._lock:
            found = self._tokens.get(token or "")
        if not found or found[1] <= self.hub.now():
            return None
        return found[0]

    def expire_tokens(self) -> None:
        """Make every issued token expired (tests of the refresh path)."""
        with self._lock:
            self._tokens = {t: (c, 0.0) for t, (c, _) in self._tokens.items()}

    # -- listings -------------------------------------------------------------------------------------------
    def _posts_before(self, sub: str, before_s: float, after_s: float = 0) -> Iterator[dict[str, Any]]:
        """Posts of ``sub`` created in (after_s, before_s], newest first."""
        period = SUBREDDITS[sub]
        slot = int(before_s) // period
        after_s = max(after_s, T0)
        while (slot + 1) * period > after_s:
            post = post_at(self.hub.seed, sub, slot, self.hub.tickers)
            if post and after_s < post["created_utc"] <= before_s:
                yield post
            slot -= 1

    def _listing(self, children: list[dict[str, Any]], after: str | None, before: str | None,
                 headers: dict[str, str]) -> Response:
        return Response.json({"kind": "Listing", "data": {
            "after": after, "dist": len(children), "modhash": "", "geo_filter": "",
            "children": [{"kind": "t3", "data": c} for c in children], "before": before}}, headers=headers)

    @staticmethod
    def _limit(req: Request) -> int:
        try:
            return min(100, max(1, int(req.query.get("limit", 25))))
        except ValueError:
            return 25

    def _new(self, req: Request, sub: str, headers: dict[str, str]) -> Response:
        now = self.hub.now()
        limit = self._limit(req)
        reachable = []
        for post in self._posts_before(sub, now):
            reachable.append(post)
            if len(reachable) == LISTING_DEPTH:
                break
        after_name, before_name = req.query.get("after"), req.query.get("before")
        start, stop = 0, limit
        if after_name or before_name:
            decoded = decode_fullname(after_name or before_name or "")
            if decoded is None:
                return self._listing([], None, None, headers)
            _, created = decoded
            if after_name:  # older than the anchor
                start = next((i for i, p in enumerate(reachable) if p["created_utc"] < created), len(reachable))
                stop = start + limit
            else:  # newer than the anchor, the ones closest to it
                stop = next((i for i, p in enumerate(reachable) if p["created_utc"] <= created), len(reachable))
                start = max(0, stop - limit)
        page = reachable[start:stop]
        return self._listing(page, page[-1]["name"] if page and stop < len(reachable) else None,
                             page[0]["name"] if page and start > 0 else None, headers)

    def _search(self, req: Request, sub: str | None, headers: dict[str, str]) -> Response:
        query = req.query.get("q", "").strip()
        if not query:
            return self._listing([], None, None, headers)
        matcher = compile_query(query)
        now = self.hub.now()
        horizon = min(SEARCH_HORIZON_S, _T_WINDOWS.get(req.query.get("t", "all"), SEARCH_HORIZON_S))
        if req.query.get("t") == "year":
            horizon = SEARCH_HORIZON_S
        subs = [sub] if sub else list(SUBREDDITS)
        found = [p for s in subs for p in self._posts_before(s, now, now - horizon)
                 if matcher(p["title"] + "\n" + p["selftext"])]
        sort = req.query.get("sort", "relevance")
        if sort == "top":
            found.sort(key=lambda p: (-p["score"], -p["created_utc"]))
        elif sort == "comments":
            found.sort(key=lambda p: (-p["num_comments"], -p["created_utc"]))
        elif sort == "new":
            found.sort(key=lambda p: -p["created_utc"])
        else:  # relevance / hot: more matching words first, then newer
            words = [w.strip('"+-').lower() for w in query.split() if w not in ("AND", "OR", "NOT")]
            found.sort(key=lambda p: (-sum((p["title"] + p["selftext"]).lower().count(w) for w in words),
                                      -p["created_utc"]))
        found = found[:SEARCH_CAP]
        limit = self._limit(req)
        start = 0
        if req.query.get("after"):
            start = next((i + 1 for i, p in enumerate(found) if p["name"] == req.query["after"]), len(found))
        page = found[start:start + limit]
        more = start + limit < len(found)
        return self._listing(page, page[-1]["name"] if page and more else None, None, headers)
