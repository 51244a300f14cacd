"""What an authenticated agent may read and change: one implementation behind the HTTP API and the MCP server.

Every method takes the caller's ``Principal`` (``features.auth``), checks its scope and, for agent state, that
the caller owns the user or portfolio, validates ids before any key is built (hostile ids are a
``ValueError``: HTTP 400 / a tool error, never a 500 and never part of a query), and returns compact,
JSON-ready results.

Point in time: ``as_of`` answers "what the pipeline knew then" by default (``time_basis="knowledge"``): an
item counts only once it was both published *and* ingested by then, so ingestion lag (NewsAPI's delayed tier,
a backfill run years later) never leaks the future into a past answer. ``time_basis="event"`` reads by event
time alone (publish, trade, acceptance time), as a backtest on complete data would.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import redis
from pydantic import TypeAdapter, ValidationError

from features import FeatureRef, no_data_as_empty, to_ms
from features.agent_state import Id, Portfolio, StateNotFoundError, UserProfile
from features.auth import DOCUMENTS_READ, FEATURES_READ, STATE_READ, STATE_WRITE, Principal
from features.serving import PipelineGuard, ServingClient
from headwater.keys import BAR_FIELDS, TICKER_RE, TIMEFRAMES

TimeBasis = Literal["knowledge", "event"]
TIME_BASES: tuple[str, ...] = ("knowledge", "event")
MAX_TICKERS = 100
MAX_FEATURES = 50
MAX_BARS = 5000
MAX_ITEMS = 100
MAX_TEXT = 2000
_ID = TypeAdapter(Id)
_REF_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}(:[A-Za-z0-9_.\-]{1,64})?$")
BAR_SOURCES: tuple[str, ...] = ("trades", "polygon", "alphavantage")
AsOf = datetime | int | str | None


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a plain id (letters, digits, '_' or '-', at most 64), else ``ValueError``."""
    try:
        return _ID.validate_python(value)
    except ValidationError:
        shown = repr(value)[:40]
        raise ValueError(f"invalid {what} {shown}: 1-64 letters, digits, '_' or '-'") from None


def check_ticker(value: Any) -> str:
    if not isinstance(value, str) or not TICKER_RE.match(value):
        raise ValueError(f"invalid ticker {repr(value)[:40]}: upper-case symbols like AAPL, BRK.B")
    return value


def check_basis(value: str) -> str:
    if value not in TIME_BASES:
        raise ValueError(f"time_basis must be one of {TIME_BASES}, not {repr(value)[:40]}")
    return value


def check_number(value: Any, what: str) -> float:
    """A finite number (NaN and Infinity are refused: they would poison cash and positions)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {repr(value)[:40]}")
    return float(value)


def as_of_ms(as_of: AsOf) -> int | None:
    if as_of is None:
        return None
    if isinstance(as_of, str) and as_of.strip().isdigit():
        as_of = int(as_of)
    try:
        ms = to_ms(as_of)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"invalid as_of {repr(as_of)[:40]}: ISO 8601 with a zone, or epoch ms ({exc})") from None
    if not 0 <= ms < 32_503_680_000_000:  # before year 3000
        raise ValueError(f"as_of out of range: {as_of!r}")
    return ms


def parse_ref(ref: str | Sequence[str]) -> FeatureRef:
    """``"name:variant"`` -> (name, variant); ``"name"`` stays a name; pairs pass through."""
    if isinstance(ref, str):
        if not _REF_RE.match(ref):
            raise ValueError(f"invalid feature reference {ref[:40]!r}: name or name:variant")
        if ":" in ref:
            name, variant = ref.split(":", 1)
            return (name, variant)
        return ref
    if len(ref) != 2 or not all(isinstance(part, str) for part in ref):
        raise ValueError("a feature reference is 'name', 'name:variant' or [name, variant]")
    return (ref[0], ref[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AgentAccess:
    """The agents' operations over one ``ServingClient`` (and, for document search, a ``DocumentSearch``)."""

    def __init__(self, serving: ServingClient, documents: Any | None = None) -> None:
        self.serving = serving
        self._documents = documents

    @property
    def client(self) -> Any:
        return self.serving._client  # noqa: SLF001 - the serving client's connection is the one to use

    @property
    def keys(self) -> Any:
        return self.serving.keys

    @property
    def documents(self) -> Any:
        if self._documents is None:
            from headwater.documents.search import DocumentSearch

            self._documents = DocumentSearch(self.client, self.keys)
        return self._documents

    # -- features ------------------------------------------------------------------------------------------
    def features(self, principal: Principal, features: Sequence[str | Sequence[str]], tickers: Sequence[str], *,
                 as_of: AsOf = None, time_basis: str = "knowledge", params: dict[str, Any] | None = None,
                 include_timestamps: bool = False, guard: PipelineGuard | None = None) -> dict[str, Any]:  # fmt: skip
        """Feature values per ticker; ``as_of`` computes them from what was known (or happened) by then.
        ``guard``: the caller's rate check, sent with the read (see ``ServingClient.rows``)."""
        principal.require(FEATURES_READ)
        if not features or len(features) > MAX_FEATURES:
            raise ValueError(f"give 1 to {MAX_FEATURES} features")
        tickers = [tickers] if isinstance(tickers, str) else list(tickers)
        if not tickers or len(tickers) > MAX_TICKERS:
            raise ValueError(f"give 1 to {MAX_TICKERS} tickers")
        refs = [parse_ref(ref) for ref in features]
        for ticker in tickers:
            check_ticker(ticker)
        if params and "portfolio_id" in params:
            self._owned_portfolio(principal, params["portfolio_id"])
        at = as_of_ms(as_of)
        rows = self.serving.rows(refs, {"ticker": tickers}, params, as_of=at, include_timestamps=include_timestamps,
                                 time_basis=check_basis(time_basis), guard=guard)  # fmt: skip
        return {
            "features": [":".join(self.serving.catalog.resolve(ref).ref) for ref in refs],
            "as_of_ms": at,
            "time_basis": time_basis if at is not None else "online",
            "rows": [{"ticker": r.entity, "values": r.values, **({"source_ms": r.source_ms} if include_timestamps else {})}
                     for r in rows],
        }  # fmt: skip

    def catalog(self, principal: Principal, group: str | None = None) -> list[dict[str, Any]]:
        """The registered features: reference, kind, type, group and what each means."""
        principal.require(FEATURES_READ)
        specs = sorted(self.serving.catalog.features.values(), key=lambda s: s.ref)
        return [{"feature": f"{s.name}:{s.variant}", "kind": s.kind, "entity": s.entity, "type": s.value_type,
                 "dims": s.dims, "group": s.group, "description": " ".join(s.description.split())}
                for s in specs if group is None or s.group == group]  # fmt: skip

    def nearest(self, principal: Principal, feature: str, *, text: str | None = None,
                vector: Sequence[float] | None = None, k: int = 5) -> list[dict[str, Any]]:  # fmt: skip
        """Entities whose embedding is nearest to a text (embedded offline) or a vector."""
        principal.require(FEATURES_READ)
        if (text is None) == (vector is None):
            raise ValueError("give exactly one of text or vector")
        if not 1 <= int(k) <= 100:
            raise ValueError("k must be in [1, 100]")
        if text is not None and not (0 < len(text) <= MAX_TEXT):
            raise ValueError(f"text must be 1 to {MAX_TEXT} characters")
        if vector is not None:
            vector = [check_number(v, "a vector component") for v in vector]
        spec = self.serving.catalog.resolve(parse_ref(feature))
        query: Any = text if text is not None else np.asarray(vector, dtype="<f4")
        hits = self.serving.nearest(spec.ref, query, int(k), with_scores=True)
        return [{"ticker": entity, "distance": round(float(distance), 6)} for entity, distance in hits]

    # -- market data ---------------------------------------------------------------------------------------
    def bars(self, principal: Principal, ticker: str, timeframe: str = "1m", *, start: AsOf = None, end: AsOf = None,
             source: str = "trades", limit: int = 500, as_of: AsOf = None,
             time_basis: str = "knowledge") -> dict[str, Any]:  # fmt: skip
        """OHLCV bars from TimeSeries: ``source="trades"`` = compacted from the real-time trades, or a provider's
        own bars (``polygon``, ``alphavantage``); newest ``limit`` bars in [start, end].

        ``as_of``: only bars closed by then (start + timeframe <= as_of: an open bar holds later trades); with
        ``time_basis="knowledge"`` a provider's bars also only if the pipeline had stored them by then (a
        backfill run today is invisible to an ``as_of`` in the past). Bars compacted from the real-time trades
        are known as they close."""
        principal.require(FEATURES_READ)
        check_ticker(ticker)
        check_basis(time_basis)
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {sorted(TIMEFRAMES)}")
        if source not in BAR_SOURCES:
            raise ValueError(f"source must be one of {BAR_SOURCES}")
        if not 1 <= int(limit) <= MAX_BARS:
            raise ValueError(f"limit must be in [1, {MAX_BARS}]")
        lo, hi, at = as_of_ms(start), as_of_ms(end), as_of_ms(as_of)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("start is after end")
        out = {"ticker": ticker, "timeframe": timeframe, "source": source, "as_of_ms": at,
               "time_basis": time_basis if at is not None else "latest", "columns": ["t_ms", *BAR_FIELDS], "bars": []}  # fmt: skip
        if at is not None:
            closed_by = at - TIMEFRAMES[timeframe]
            hi = closed_by if hi is None else min(hi, closed_by)
            if lo is not None and lo > hi:
                return out
        keys = [self.keys.bar(ticker, timeframe, f) if source == "trades" else self.keys.provider_bar(ticker, source, timeframe, f)
                for f in BAR_FIELDS]  # fmt: skip
        span: tuple[Any, Any] = ("-" if lo is None else lo, "+" if hi is None else hi)
        count: list[Any] = ["COUNT", int(limit)]
        wanted: set[int] | None = None
        if at is not None and time_basis == "knowledge" and source != "trades":
            # The newest `limit` bars stored by `at` (the knowledge series holds each bar's first-stored time).
            known = self._ts_range("TS.REVRANGE", self.keys.known_bar(ticker, source, timeframe), *span,
                                   "FILTER_BY_VALUE", 0, at, *count)  # fmt: skip
            if not known:
                return out
            wanted = {int(t) for t, _ in known}
            span, count = (min(wanted), max(wanted)), []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("TS.REVRANGE", key, *span, *count)
        columns: dict[str, dict[int, float]] = {}
        for field, reply in zip(BAR_FIELDS, pipe.execute(raise_on_error=False)):
            columns[field] = {int(t): float(v) for t, v in no_data_as_empty(reply)}
        stamps = sorted(set().union(*(c.keys() for c in columns.values())))
        if wanted is not None:
            stamps = [t for t in stamps if t in wanted]
        out["bars"] = [[t, *(columns[f].get(t) for f in BAR_FIELDS)] for t in stamps]
        return out

    def _ts_range(self, command: str, key: str, *args: Any) -> list[Any]:
        """A TS.RANGE/REVRANGE reply; a series not created yet reads as empty."""
        try:
            return self.client.execute_command(command, key, *args)
        except redis.ResponseError as exc:
            return no_data_as_empty(exc)

    def news(self, principal: Principal, ticker: str, *, as_of: AsOf = None, time_basis: str = "knowledge",
             limit: int = 10) -> list[dict[str, Any]]:  # fmt: skip
        """The latest articles tagged with ``ticker`` (headline, source, sentiment, publish and ingest time)."""
        fields = ("title", "description", "source", "url", "published_ms", "stored_ms", "sentiment", "sentiment_label")
        return self._latest(principal, "news", ticker, fields, "published_ms", as_of, time_basis, limit)

    def social(self, principal: Principal, ticker: str, *, as_of: AsOf = None, time_basis: str = "knowledge",
               limit: int = 10) -> list[dict[str, Any]]:  # fmt: skip
        """The latest Reddit/X posts mentioning ``ticker`` (text, platform, score, sentiment, times)."""
        fields = ("platform", "text", "author", "url", "score", "created_ms", "stored_ms", "sentiment", "sentiment_label")
        return self._latest(principal, "social", ticker, fields, "created_ms", as_of, time_basis, limit)

    def _latest(self, principal: Principal, dataset: str, ticker: str, fields: tuple[str, ...], event_field: str,
                as_of: AsOf, time_basis: str, limit: int) -> list[dict[str, Any]]:  # fmt: skip
        principal.require(FEATURES_READ)
        check_ticker(ticker)
        check_basis(time_basis)
        if not 1 <= int(limit) <= MAX_ITEMS:
            raise ValueError(f"limit must be in [1, {MAX_ITEMS}]")
        at = as_of_ms(as_of)
        index = self.keys.news_index(ticker) if dataset == "news" else self.keys.social_index(ticker)
        item_key = self.keys.article if dataset == "news" else self.keys.post
        found: list[dict[str, Any]] = []
        offset, page = 0, max(2 * int(limit), 20)
        while len(found) < limit:
            ids = self.client.zrevrangebyscore(index, "+inf" if at is None else at, "-inf", start=offset, num=page)
            if not ids:
                break
            offset += len(ids)
            pipe = self.client.pipeline(transaction=False)
            for item_id in ids:
                pipe.hmget(item_key(_text(item_id)), fields)
            for item_id, values in zip(ids, pipe.execute()):
                if values[fields.index(event_field)] is None:
                    continue  # expired between the index read and now
                item = {f: _text(v) for f, v in zip(fields, values) if v is not None}
                known = int(float(item.get("stored_ms") or 0))
                if at is not None and time_basis == "knowledge" and known > at:
                    continue  # published by then, but the pipeline learned it later
                for numeric in (event_field, "stored_ms"):
                    if numeric in item:
                        item[numeric] = int(float(item[numeric]))
                for numeric in ("sentiment", "score"):
                    if numeric in item:
                        item[numeric] = float(item[numeric])
                item["id"] = _text(item_id)
                found.append(item)
                if len(found) == limit:
                    break
        return found

    # -- documents -----------------------------------------------------------------------------------------
    def search_documents(self, principal: Principal, query: str, *, ticker: str | None = None, form: str | None = None,
                         as_of: AsOf = None, time_basis: str = "knowledge", k: int = 5) -> dict[str, Any]:  # fmt: skip
        """Filing and transcript chunks that best answer ``query`` (hybrid BM25 + vector), public by ``as_of``."""
        principal.require(DOCUMENTS_READ)
        if not isinstance(query, str) or not (0 < len(query.strip()) and len(query) <= MAX_TEXT):
            raise ValueError(f"query must be 1 to {MAX_TEXT} characters")
        if ticker is not None:
            check_ticker(ticker)
        forms = ("10-K", "10-Q", "10-K/A", "10-Q/A", "transcript")
        if form is not None and form not in forms:
            raise ValueError(f"form must be one of {forms}")
        if not 1 <= int(k) <= 20:
            raise ValueError("k must be in [1, 20]")
        at = as_of_ms(as_of)
        response = self.documents.search(query, ticker, form, at, int(k), time_basis=check_basis(time_basis))
        hits = [{"doc_id": h.doc_id, "ticker": h.ticker, "form": h.form, "section": h.section, "public_ms": h.public_ms,
                 "period": h.period, "score": round(h.score, 6), "similarity": round(h.similarity, 4), "text": h.text,
                 "blob_url": h.blob_url} for h in response.hits]  # fmt: skip
        return {"hits": hits, "cached": response.cached, "as_of_ms": at, "time_basis": time_basis}

    # -- agent state ---------------------------------------------------------------------------------------
    def profile(self, principal: Principal, user_id: str) -> UserProfile:
        principal.require(STATE_READ)
        principal.require_owner(check_id(user_id, "user_id"), f"user {user_id!r}")
        return self.serving.state.get_profile(user_id)

    def create_profile(self, principal: Principal, profile: UserProfile, *, replace: bool = False) -> UserProfile:
        principal.require(STATE_WRITE)
        principal.require_owner(profile.user_id, f"user {profile.user_id!r}")
        return self.serving.state.create_profile(profile, replace=replace)

    def update_profile(self, principal: Principal, user_id: str, changes: dict[str, Any]) -> UserProfile:
        principal.require(STATE_WRITE)
        principal.require_owner(check_id(user_id, "user_id"), f"user {user_id!r}")
        for pid in changes.get("portfolio_ids") or []:
            self._owned_portfolio(principal, pid)
        return self.serving.state.update_profile(user_id, **changes)

    def portfolio(self, principal: Principal, portfolio_id: str) -> Portfolio:
        principal.require(STATE_READ)
        portfolio = self.serving.state.get_portfolio(check_id(portfolio_id, "portfolio_id"))
        principal.require_owner(portfolio.owner, f"portfolio {portfolio_id!r}")
        return portfolio

    def create_portfolio(self, principal: Principal, portfolio: Portfolio, *, replace: bool = False) -> Portfolio:
        principal.require(STATE_WRITE)
        principal.require_owner(portfolio.owner, f"portfolio {portfolio.portfolio_id!r}")
        if replace:
            existing = self._owner_of(portfolio.portfolio_id)
            if existing is not None:
                principal.require_owner(existing, f"portfolio {portfolio.portfolio_id!r}")
        return self.serving.state.create_portfolio(portfolio, replace=replace)

    def fill(self, principal: Principal, portfolio_id: str, ticker: str, quantity: float, price: float) -> dict[str, float]:
        """Book a fill atomically (position, average cost, cash)."""
        self._writable(principal, portfolio_id)
        check_ticker(ticker)
        q, p = check_number(quantity, "quantity"), check_number(price, "price")
        if q == 0 or p <= 0:
            raise ValueError("quantity must be non-zero and price > 0")
        return {"quantity": self.serving.state.apply_fill(portfolio_id, ticker, q, p)}

    def cash(self, principal: Principal, portfolio_id: str, delta: float) -> dict[str, float]:
        self._writable(principal, portfolio_id)
        return {"cash": self.serving.state.adjust_cash(portfolio_id, check_number(delta, "delta"))}

    def watch(self, principal: Principal, portfolio_id: str, ticker: str, *, add: bool = True) -> dict[str, bool]:
        self._writable(principal, portfolio_id)
        check_ticker(ticker)
        if add:
            return {"added": self.serving.state.watch(portfolio_id, ticker)}
        return {"removed": self.serving.state.unwatch(portfolio_id, ticker)}

    def risk_limits(self, principal: Principal, portfolio_id: str, limits: dict[str, float]) -> Portfolio:
        self._writable(principal, portfolio_id)
        return self.serving.state.set_risk_limits(portfolio_id, **{k: check_number(v, k) for k, v in limits.items()})

    def weights(self, principal: Principal, portfolio_id: str, *, as_of: AsOf = None) -> dict[str, float]:
        """Position weights (market value / equity)."""
        self._owned_portfolio(principal, portfolio_id)
        return self.serving.position_weights(portfolio_id, as_of=as_of_ms(as_of))

    def _owner_of(self, portfolio_id: str) -> str | None:
        raw = self.client.execute_command("JSON.GET", self.keys.portfolio(check_id(portfolio_id, "portfolio_id")), "$.owner")
        if raw is None:
            return None
        owners = json.loads(raw)
        return owners[0] if owners else None

    def _owned_portfolio(self, principal: Principal, portfolio_id: Any) -> None:
        principal.require(STATE_READ)
        owner = self._owner_of(check_id(portfolio_id, "portfolio_id"))
        if owner is None:
            raise StateNotFoundError(f"no portfolio {portfolio_id!r}")
        principal.require_owner(owner, f"portfolio {portfolio_id!r}")

    def _writable(self, principal: Principal, portfolio_id: str) -> None:
        principal.require(STATE_WRITE)
        self._owned_portfolio(principal, portfolio_id)
