"""One local HTTP server that stands in for every REST provider, with fault injection and quotas.

Each provider lives under its own path prefix and speaks that provider's wire format, including its error
behaviour, so a real client only needs its base URL swapped (``ProviderStandIn.base_urls()``):

    polygon       /polygon        api.polygon.io        (rest_polygon.py)
    alphavantage  /alphavantage   www.alphavantage.co   (rest_alphavantage.py)
    newsapi       /newsapi        newsapi.org           (rest_newsapi.py)
    reddit        /reddit         www.reddit.com + oauth.reddit.com, merged (rest_reddit.py)
    x             /x              api.x.com / api.twitter.com (rest_x.py)
    sec           /sec            www.sec.gov           (rest_edgar.py)
    sec_data      /sec-data       data.sec.gov          (rest_edgar.py)
    transcripts   /transcripts    an earnings-call transcript web site (rest_transcripts.py)

Tests steer it from Python (``inject``, ``requests_log``, ``reset``, ``new_filing``) or over HTTP under
``/_control`` (``POST /_control/faults``, ``GET /_control/requests``, ``POST /_control/reset``,
``POST /_control/filings``, ``GET /_control/health``); ``add_control`` mounts more endpoints there (``python -m
standins`` adds the WebSocket stand-in's faults under ``/_control/ws/``).

Usage::

    with ProviderStandIn(seed=42, quotas={"alphavantage": {"per_minute": 5, "per_day": 25}}) as hub:
        client = AlphaVantageClient(base_url=hub.base_urls()["alphavantage"], api_key="k")
        hub.inject("alphavantage", "note")          # the next request gets the per-minute "Note" body

Next to the WebSocket stand-in, share its simulator so REST bars equal the streamed trades:
``ProviderStandIn(market=ws_standin.sim, tickers=ws_standin.tickers)``. From a shell:
``python -m standins.http_server --port 8765 [--trades-per-minute N]`` prints the base URLs as one JSON line
once it listens, then serves until SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from standins.corpus import DEFAULT_TICKERS
from standins.market import MarketSim

PREFIXES: dict[str, str] = {
    "polygon": "/polygon",
    "alphavantage": "/alphavantage",
    "newsapi": "/newsapi",
    "reddit": "/reddit",
    "x": "/x",
    "sec": "/sec",
    "sec_data": "/sec-data",
    "transcripts": "/transcripts",
}

FAULT_MODES = ("http429", "http500", "http502", "http503", "timeout", "disconnect", "slow", "malformed",
               "empty", "note", "information", "block")
_PROVIDER_ONLY_MODES = {"note": {"alphavantage"}, "information": {"alphavantage"}, "block": {"sec", "sec_data"}}

# Named quota windows (seconds). A quota value is either a limit or ``[limit, window_seconds]`` to shrink the
# window in tests, e.g. {"alphavantage": {"per_minute": [5, 2.0]}} keeps the per-minute answer but resets in 2 s.
QUOTA_WINDOWS: dict[str, float] = {
    "per_second": 1, "per_minute": 60, "per_10min": 600, "per_15min": 900, "per_hour": 3600, "per_day": 86400,
}
AV_TRADES_PER_MINUTE = 30  # trade density behind Alpha Vantage's bars (MarketSim's default)
_SECRET_PARAMS = {"apikey", "api_key", "access_token", "token", "client_secret", "password", "key"}


# -- request / response -------------------------------------------------------------------------------------
@dataclass
class Request:
    """One parsed request as a provider handler sees it (``path`` is below the provider's prefix)."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    base_url: str  # scheme://host:port/<prefix> as the client addressed it, for next_url-style links
    received: float

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("latin-1"), keep_blank_values=True))

    def bearer(self) -> str | None:
        auth = self.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None,
             indent: int | None = None) -> Response:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":"))
        return cls(status, text.encode(), "application/json; charset=utf-8", headers or {})

    @classmethod
    def html(cls, text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), "text/html; charset=utf-8", headers or {})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), content_type, headers or {})


class ProviderHandler(Protocol):
    """What every ``rest_<provider>.py`` handler offers the server."""

    content_type: str  # of its normal answers: used by the ``malformed`` and ``empty`` faults

    def handle(self, req: Request) -> Response: ...

    def rate_limited(self, req: Request, retry_after: float) -> Response: ...


def gateway_page(status: int) -> Response:
    """What a load balancer in front of any provider answers on 502/503: HTML, whatever the API speaks."""
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable"}[status]
    return Response.html(f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>"
                         f"{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                         status)


def request_id(req: Request) -> str:
    """A request id that is stable for identical requests (keeps bodies deterministic)."""
    key = req.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(req.query.items()) if k.lower() not in _SECRET_PARAMS)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


# -- search queries shared by the news and social stand-ins ------------------------------------------------
_TOKEN_RE = re.compile(r'[+-]?"[^"]*"|\(|\)|[^\s()]+')


def _alternatives(query: str) -> list[list[str]]:
    """The query as OR-ed alternatives, each a list of AND-ed tokens (one level of parentheses distributed)."""
    tokens = _TOKEN_RE.findall(query)
    groups: list[list[list[str]]] = []  # per position: the alternatives a parenthesised group offers
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            j = i + 1
            alts: list[list[str]] = [[]]
            while j < len(tokens) and tokens[j] != ")":
                if tokens[j] == "OR":
                    alts.append([])
                elif tokens[j] != "(":
                    alts[-1].append(tokens[j])
                j += 1
            groups.append(alts)
            i = j + 1
        else:
            if tok != ")":
                groups.append([[tok]])
            i += 1
    clauses: list[list[list[list[str]]]] = [[]]
    for g in groups:
        if g == [["OR"]]:
            clauses.append([])
        else:
            clauses[-1].append(g)
    expanded: list[list[str]] = []
    for clause in clauses:
        combos: list[list[str]] = [[]]
        for g in clause:
            combos = [c + alt for c in combos for alt in g]
        expanded.extend(c for c in combos if c)
    return expanded


def compile_query(query: str) -> Callable[[str], bool]:
    """A matcher for the boolean keyword syntax NewsAPI, Reddit and X share in practice.

    Terms are words (matched as whole words, case-insensitive; ``$AAPL`` cashtags literally) or "quoted
    phrases"; ``AND`` (or juxtaposition) binds tighter than ``OR``; ``NOT``/``-`` negates and ``+`` requires.
    Parentheses are honoured one level deep by distributing: ``(a OR b) c`` means ``(a AND c) OR (b AND c)``.
    """

    def term_matcher(tok: str) -> tuple[bool, Callable[[str], bool]]:
        negate = tok.startswith("-")
        tok = tok.lstrip("+-")
        if tok.startswith('"') and tok.endswith('"') and len(tok) >= 2:
            phrase = tok[1:-1].lower()
            return negate, lambda text: phrase in text.lower()
        if tok.startswith("$"):
            pattern = re.compile(re.escape(tok) + r"\b", re.IGNORECASE)
        else:
            pattern = re.compile(r"(?<![\w$])" + re.escape(tok) + r"(?!\w)", re.IGNORECASE)
        return negate, lambda text: pattern.search(text) is not None

    compiled: list[list[tuple[bool, Callable[[str], bool]]]] = []
    for combo in _alternatives(query):
        terms, negate_next = [], False
        for tok in combo:
            if tok == "AND":
                continue
            if tok == "NOT":
                negate_next = True
                continue
            neg, fn = term_matcher(tok)
            terms.append((neg or negate_next, fn))
            negate_next = False
        if terms:
            compiled.append(terms)

    def matches(text: str) -> bool:
        return any(all(fn(text) != neg for neg, fn in terms) for terms in compiled)

    return matches


def required_cashtags(query: str) -> set[str] | None:
    """Tickers of which a matching text must mention at least one as a cashtag, or None if no such bound.

    Lets the social stand-ins skip building posts that cannot match (e.g. every alternative of
    ``($AAPL OR $MSFT) lang:en`` requires ``$AAPL`` or ``$MSFT``).
    """
    required: set[str] = set()
    for combo in _alternatives(query):
        tags = [t[1:].upper() for prev, t in zip(["", *combo], combo)
                if t.startswith("$") and len(t) > 1 and prev != "NOT"]
        if not tags:
            return None
        required.add(tags[0])
    return required


# -- quotas -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuotaState:
    exceeded: str | None  # the window name that refused the request, or None
    limit: int
    used: int
    remaining: int
    reset_at: float  # epoch seconds when the primary window frees a slot


class QuotaBook:
    """Sliding-window request quotas per (provider, API key); thread-safe.

    Providers without configured quotas are never refused; ``defaults`` still lets a handler report
    provider-style counters (Reddit's and X's rate-limit headers) for them.
    """

    def __init__(self, quotas: dict[str, dict[str, Any]] | None, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._spec: dict[str, list[tuple[str, int, float]]] = {}
        for provider, windows in (quotas or {}).items():
            if provider not in PREFIXES:
                raise ValueError(f"unknown provider in quotas: {provider!r}")
            spec = []
            for name, value in windows.items():
                if name not in QUOTA_WINDOWS:
                    raise ValueError(f"unknown quota window {name!r}; use one of {sorted(QUOTA_WINDOWS)}")
                limit, window = (value, QUOTA_WINDOWS[name]) if isinstance(value, int) else value
                spec.append((name, int(limit), float(window)))
            spec.sort(key=lambda s: -s[2])  # longest window first: its refusal is the one to report
            self._spec[provider] = spec
        self._hits: dict[tuple[str, str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def configured(self, provider: str) -> bool:
        return provider in self._spec

    def limits(self, provider: str) -> dict[str, int]:
        """Configured limits by window name, e.g. {"per_minute": 5, "per_day": 25}."""
        return {name: limit for name, limit, _ in self._spec.get(provider, [])}

    def take(self, provider: str, key: str, defaults: Iterable[tuple[str, int, float]] = ()) -> QuotaState:
        """Count one request unless a window is full; report the primary window."""
        enforce = provider in self._spec
        spec = self._spec.get(provider) or list(defaults)
        now = self._clock()
        with self._lock:
            windows = []
            for name, limit, window in spec:
                hits = self._hits.setdefault((provider, key, name), deque())
                while hits and hits[0] <= now - window:
                    hits.popleft()
                windows.append((name, limit, window, hits))
            exceeded = next((n for n, limit, _, h in windows if enforce and len(h) >= limit), None)
            if exceeded is None:
                for *_, hits in windows:
                    hits.append(now)
            if not windows:
                return QuotaState(exceeded, 0, 0, 0, now)
            primary = min(windows, key=lambda w: w[2])  # shortest window: the one clients pace against
            name, limit, window, hits = primary
            if exceeded:
                name, limit, window, hits = next(w for w in windows if w[0] == exceeded)
            reset_at = (hits[0] + window) if hits else now + window
            return QuotaState(exceeded, limit, len(hits), max(0, limit - len(hits)), reset_at)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


# -- faults -------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    mode: str
    remaining: int
    params: dict[str, Any]

    def applies_to(self, path: str) -> bool:
        only = self.params.get("path")
        return not only or only in path


class FaultQueue:
    """Faults queued per provider, consumed in order by the next matching requests; thread-safe."""

    def __init__(self) -> None:
        self._queues: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, provider: str, mode: str, count: int, params: dict[str, Any]) -> None:
        if provider not in PREFIXES:
            raise ValueError(f"unknown provider {provider!r}; one of {sorted(PREFIXES)}")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        allowed = _PROVIDER_ONLY_MODES.get(mode)
        if allowed and provider not in allowed:
            raise ValueError(f"fault mode {mode!r} only exists for {sorted(allowed)}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._queues.setdefault(provider, []).append(Fault(mode, count, dict(params)))

    def take(self, provider: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._queues.get(provider, []):
                if fault.applies_to(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._queues[provider].remove(fault)
                    return fault
        return None

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {p: [{"mode": f.mode, "remaining": f.remaining, **f.params} for f in q]
                    for p, q in self._queues.items() if q}

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()


# -- the server ---------------------------------------------------------------------------------------------
class ProviderStandIn:
    """Every REST provider's stand-in on one local port, in a daemon thread.

    ``tickers``: the listed universe (default: 18 well-known US stocks with their real CIKs, plus the SPY
    fund, which the WebSocket stand-in streams by default too); other symbols are unknown to Alpha Vantage,
    EDGAR and the transcript site, and empty on Polygon, as on the real services.
    ``market``: share the WebSocket stand-in's ``MarketSim`` so REST bars equal streamed trades.
    ``quotas``: per provider and API key, e.g. ``{"alphavantage": {"per_minute": 5, "per_day": 25}}``;
    ``None`` (default) never throttles. ``api_keys``: per provider, the keys that are valid (default: any
    non-empty key; for Reddit the ``client_id:secret`` pairs). ``rate_limit_per_s`` / ``block_seconds`` /
    ``block_extends``: EDGAR fair-access enforcement across both SEC hosts. ``polygon_session``: ``"all"``
    (default; minute bars around the clock, like the WebSocket stand-in) or ``"extended"`` (04:00-20:00 New
    York on weekdays only, like the real feed). ``newsapi_max_results`` / ``newsapi_history_days``: the
    Developer plan's paging cap and look-back. ``clock``: epoch seconds (tests may pin time).
    """

    def __init__(
        self,
        seed: int = 42,
        tickers: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        market: MarketSim | None = None,
        quotas: dict[str, dict[str, Any]] | None = None,
        *,
        api_keys: dict[str, Iterable[str]] | None = None,
        rate_limit_per_s: int = 10,
        block_seconds: float = 600.0,
        block_extends: bool = True,
        polygon_session: str = "all",
        newsapi_max_results: int = 100,
        newsapi_history_days: int = 30,
        clock: Callable[[], float] = time.time,
        log_size: int = 5000,
    ) -> None:
        if polygon_session not in ("all", "extended"):
            raise ValueError("polygon_session must be 'all' or 'extended'")
        self.seed = seed
        self.tickers: tuple[str, ...] = tuple(t.upper() for t in (tickers or DEFAULT_TICKERS))
        self.market = market or MarketSim(seed)
        self.clock = clock
        self.quotas = QuotaBook(quotas, clock)
        self.api_keys = {p: frozenset(keys) for p, keys in (api_keys or {}).items()}
        self.rate_limit_per_s = rate_limit_per_s
        self.block_seconds = block_seconds
        self.block_extends = block_extends
        self.polygon_session = polygon_session
        self.newsapi_max_results = newsapi_max_results
        self.newsapi_history_days = newsapi_history_days
        self.faults = FaultQueue()
        self.minute_bar = lru_cache(maxsize=262_144)(self.market.minute_bar)
        # Alpha Vantage aggregates many minutes per request. A dense stream simulator (thousands of trades a
        # minute) costs ~8 us per trade, so AV reads a sparse simulator on the *same* price path (the walk does
        # not depend on trade density): like a second vendor, its OHLCV differ from Polygon's only in detail.
        sparse = self.market if self.market.trades_per_minute <= AV_TRADES_PER_MINUTE else MarketSim(
            self.market.seed, AV_TRADES_PER_MINUTE, self.market.minute_vol)
        self.av_minute_bar = lru_cache(maxsize=262_144)(sparse.minute_bar)
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._counts: Counter[str] = Counter()
        self._log_lock = threading.Lock()
        self._stopping = threading.Event()
        self._handlers = self._make_handlers()
        self._extra_controls: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _make_handlers(self) -> dict[str, ProviderHandler]:
        # Imported here: the handler modules import Request/Response from this module.
        from standins import (rest_alphavantage, rest_edgar, rest_newsapi, rest_polygon, rest_reddit,
                              rest_transcripts, rest_x)

        self.edgar = rest_edgar.EdgarState(self)
        return {
            "polygon": rest_polygon.PolygonHandler(self),
            "alphavantage": rest_alphavantage.AlphaVantageHandler(self),
            "newsapi": rest_newsapi.NewsApiHandler(self),
            "reddit": rest_reddit.RedditHandler(self),
            "x": rest_x.XHandler(self),
            "sec": rest_edgar.SecWwwHandler(self.edgar),
            "sec_data": rest_edgar.SecDataHandler(self.edgar),
            "transcripts": rest_transcripts.TranscriptsHandler(self),
        }

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> ProviderStandIn:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        hub = self

        class _Handler(_RequestHandler):
            standin = hub

        self._httpd = ThreadingHTTPServer((self._host, self._port), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"standin-http-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # releases requests held by timeout/slow faults
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ProviderStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the stand-in is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def base_urls(self) -> dict[str, str]:
        """Per provider, the base URL a client is configured with (replacing e.g. https://api.polygon.io)."""
        return {name: self.url + prefix for name, prefix in PREFIXES.items()}

    # -- test controls --------------------------------------------------------------------------------------
    def inject(self, provider: str, mode: str, count: int = 1, **params: Any) -> None:
        """Queue a fault for the next ``count`` requests to ``provider``.

        Modes: http429 (``retry_after`` s, default 1; provider-style headers), http500, http502, http503
        (``retry_after`` optional), timeout (hold ``seconds``, default 10, then close without answering),
        disconnect (close at once), slow (answer normally after ``seconds``), malformed (200, right content
        type, truncated body), empty (200, empty body), note / information (Alpha Vantage throttle bodies),
        block (EDGAR: start a fair-access block of ``seconds``, default ``block_seconds``). Any mode takes
        ``path="..."``: only requests whose path (below the prefix) contains it consume the fault.
        """
        self.faults.add(provider, mode, count, params)

    def add_control(self, method: str, path: str, action: Callable[[dict[str, Any]], Any]) -> None:
        """Serve ``method /_control/<path>``: ``action(JSON body or query)`` returns the JSON answer."""
        self._extra_controls[(method.upper(), "/_control/" + path.strip("/"))] = action

    def requests_log(self, provider: str | None = None) -> list[dict[str, Any]]:
        """The recent requests (secrets redacted), oldest first."""
        with self._log_lock:
            return [e for e in self._log if provider is None or e["provider"] == provider]

    def request_counts(self) -> dict[str, int]:
        with self._log_lock:
            return {p: self._counts.get(p, 0) for p in PREFIXES}

    def reset(self) -> None:
        """Forget queued faults, the request log and counts, quota usage and EDGAR blocks (data stays)."""
        self.faults.clear()
        self.quotas.reset()
        self.edgar.reset()
        with self._log_lock:
            self._log.clear()
            self._counts.clear()

    def new_filing(self, ticker: str, form: str = "8-K", **fields: Any) -> dict[str, Any]:
        """Publish a filing accepted now (see ``rest_edgar.EdgarState.new_filing``); returns its metadata."""
        return self.edgar.new_filing(ticker, form, **fields)

    def expire_reddit_tokens(self) -> None:
        """Expire every Reddit token issued so far (tests of a client's token refresh)."""
        self._handlers["reddit"].expire_tokens()  # type: ignore[attr-defined]

    def key_ok(self, provider: str, key: str | None) -> bool:
        """Whether ``key`` is a valid credential for ``provider`` (any non-empty key unless configured)."""
        if not key:
            return False
        allowed = self.api_keys.get(provider)
        return allowed is None or key in allowed

    def now(self) -> float:
        return self.clock()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the server is stopping (so held requests let go)."""
        return self._stopping.wait(seconds)

    # -- dispatch -------------------------------------------------------------------------------------------
    def _record(self, provider: str, method: str, path: str, query: dict[str, str], status: int | None,
                fault: str | None, started: float, duration_s: float) -> None:
        entry = {
            "provider": provider,
            "method": method,
            "path": path,
            "query": {k: ("REDACTED" if k.lower() in _SECRET_PARAMS else v) for k, v in query.items()},
            "status": status,
            "fault": fault,
            "ts": started,
            "duration_ms": round(duration_s * 1000, 1),
        }
        with self._log_lock:
            self._log.append(entry)
            self._counts[provider] += 1

    def _control(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        try:
            payload = json.loads(body or b"{}") if method == "POST" else {}
        except ValueError:
            return Response.json({"error": "body must be JSON"}, 400)
        if path == "/_control/health":
            return Response.json({"status": "ok", "base_urls": self.base_urls()})
        if path == "/_control/faults" and method == "POST":
            params = {k: v for k, v in payload.items() if k not in ("provider", "mode", "count")}
            try:
                self.inject(payload.get("provider", ""), payload.get("mode", ""), int(payload.get("count", 1)),
                            **params)
            except (ValueError, TypeError) as exc:
                return Response.json({"error": str(exc)}, 400)
            return Response.json({"queued": self.faults.pending()})
        if path == "/_control/faults" and method == "GET":
            return Response.json({"queued": self.faults.pending()})
        if path == "/_control/requests" and method == "GET":
            entries = self.requests_log(query.get("provider"))
            limit = int(query.get("limit", "500"))
            return Response.json({"counts": self.request_counts(), "requests": entries[-limit:] if limit else []})
        if path == "/_control/reset" and method == "POST":
            self.reset()
            return Response.json({"status": "ok"})
        if path == "/_control/filings" and method == "POST":
            try:
                fields = {k: v for k, v in payload.items() if k not in ("ticker", "form")}
                filing = self.new_filing(payload["ticker"], payload.get("form", "8-K"), **fields)
            except (KeyError, ValueError, TypeError) as exc:
                return Response.json({"error": str(exc)}, 400)
            return Response.json(filing)
        action = self._extra_controls.get((method, path))
        if action is not None:
            try:
                return Response.json(action(payload if method == "POST" else query))
            except (KeyError, ValueError, TypeError, RuntimeError) as exc:
                return Response.json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return Response.json({"error": f"no control endpoint {method} {path}"}, 404)


_PREFIX_ORDER = sorted(PREFIXES.items(), key=lambda item: -len(item[1]))


def _route(path: str) -> tuple[str, str] | None:
    for name, prefix in _PREFIX_ORDER:
        if path == prefix or path.startswith(prefix + "/"):
            return name, path[len(prefix):] or "/"
    return None


class _RequestHandler(BaseHTTPRequestHandler):
    standin: ProviderStandIn
    protocol_version = "HTTP/1.1"
    server_version = "HeadwaterStandIn/1.0"
    timeout = 60  # idle keep-alive connections are dropped after a minute

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        hub = self.standin
        started, t0 = hub.now(), time.monotonic()
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if split.path.startswith("/_control/"):
            self._send(hub._control(self.command, split.path, query, body))
            return
        routed = _route(split.path)
        if routed is None:
            self._send(Response.json({"error": f"no provider at {split.path}", "providers": hub.base_urls()}, 404))
            return
        provider, sub_path = routed
        host = self.headers.get("Host") or f"{hub._host}:{hub.port}"
        req = Request(provider, self.command, sub_path, query, self.headers, body,
                      f"http://{host}{PREFIXES[provider]}", started)
        fault = hub.faults.take(provider, sub_path)
        status: int | None = None
        try:
            try:
                response = self._answer(req, fault)
            except Exception:  # a stand-in bug: say so loudly instead of dropping the connection
                response = Response.text("stand-in error\n" + traceback.format_exc(), 500)
            if response is None:  # timeout / disconnect: no answer at all
                self.close_connection = True
                return
            status = response.status
            self._send(response)
        finally:
            hub._record(provider, self.command, split.path, query, status, fault.mode if fault else None, started,
                        time.monotonic() - t0)

    def _answer(self, req: Request, fault: Fault | None) -> Response | None:
        hub = self.standin
        handler = hub._handlers[req.provider]
        if fault is None:
            return handler.handle(req)
        mode, params = fault.mode, fault.params
        if mode == "timeout":
            hub.wait(float(params.get("seconds", 10)))
            return None
        if mode == "disconnect":
            return None
        if mode == "slow":
            if hub.wait(float(params.get("seconds", 2))):
                return None
            return handler.handle(req)
        if mode == "http429":
            return handler.rate_limited(req, float(params.get("retry_after", 1)))
        if mode in ("http500", "http502", "http503"):
            status = int(mode[4:])
            server_error = getattr(handler, "server_error", None)
            response = server_error(req, status) if status == 500 and server_error else gateway_page(status)
            if "retry_after" in params:
                response.headers["Retry-After"] = str(int(params["retry_after"]))
            return response
        if mode == "malformed":
            normal = handler.handle(req)
            cut = normal.body[: max(1, len(normal.body) // 2)] if len(normal.body) > 1 else b"{"
            return Response(200, cut, handler.content_type)
        if mode == "empty":
            return Response(200, b"", handler.content_type)
        if mode in ("note", "information"):
            return handler.throttled(req, "per_minute" if mode == "note" else "per_day")  # type: ignore[attr-defined]
        if mode == "block":
            return hub.edgar.start_block(float(params.get("seconds", hub.block_seconds)))
        raise AssertionError(mode)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unb64(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def main(argv: list[str] | None = None) -> None:
    """``python -m standins.http_server --port 8765``: serve every REST stand-in until interrupted."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tickers", default=",".join(DEFAULT_TICKERS), help="comma-separated universe")
    parser.add_argument("--trades-per-minute", type=int, default=None,
                        help="the WebSocket stand-in's MarketSim density, so REST bars equal streamed trades")
    parser.add_argument("--quotas", default=None, help='JSON, e.g. \'{"alphavantage": {"per_day": 25}}\'')
    args = parser.parse_args(argv)
    market = MarketSim(args.seed, trades_per_minute=args.trades_per_minute) if args.trades_per_minute else None
    hub = ProviderStandIn(seed=args.seed, tickers=[t.strip() for t in args.tickers.split(",") if t.strip()],
                          host=args.host, port=args.port, market=market,
                          quotas=json.loads(args.quotas) if args.quotas else None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with hub:
        print(json.dumps(hub.base_urls()), flush=True)  # one line: the readiness signal and the URLs
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    # Run the importable module's main, so the handlers and the server share one copy of Request/Response.
    from standins.http_server import main as _main

    _main()
