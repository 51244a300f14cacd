"""HTTP API for agents in any language: features, bars, news and social posts, document search, nearest
embeddings and the caller's own profile and portfolios. OpenAPI spec at ``/openapi.json``, docs at ``/docs``.

Run: ``python -m features.api --port 8000`` (binds 127.0.0.1 unless ``--host`` says otherwise). Every route but
``/health`` needs an API key (``Authorization: Bearer hw_...``, issued by ``python -m features.auth issue``):
401 without a valid key, 403 without the scope or for someone else's user or portfolio, 429 over the key's
request rate (with ``Retry-After``), 400 for a malformed argument, 404 for an unknown feature, entity, user or
portfolio, 503 while Redis is unreachable. Every error body is ``{"detail": ..., "error": <kind>}``.

Feature references are ``"name:variant"``, ``"name"`` (the only variant) or ``["name", "variant"]``. ``as_of``
answers what the pipeline knew then (``time_basis=knowledge``, the default) or what had happened by then
(``time_basis=event``); see ``features.access``.

Request durations go to ``headwater_serving_request_duration_seconds{endpoint, status}`` through an in-memory
buffer flushed once a second (``headwater.metrics.HistogramBuffer``): no Redis round trip on the request path.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError

from features import UnknownEntityError, UnknownFeatureError
from features.access import AgentAccess, parse_ref
from features.agent_state import Portfolio, StateConflictError, StateNotFoundError, UserProfile
from features.auth import ApiKeyStore, AuthError, ForbiddenError, Principal, RateLimitedError, bearer
from features.serving import ServingClient
from headwater.metrics import HistogramBuffer
from headwater.storage.redis import RETRY_ERRORS

log = logging.getLogger("headwater.features.api")

__all__ = ["create_app", "parse_ref", "main"]

Ref = Annotated[str, Field(max_length=130)] | tuple[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=64)]]
Ticker = Annotated[str, Field(max_length=10)]
Scalar = float | int | bool | str | None
FeatureValueOut = Scalar | list[float]
TimeBasis = Literal["knowledge", "event"]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Body = TypeVar("Body", bound=BaseModel)
AS_OF_DOC = "point in time (ISO 8601 with zone, or epoch ms)"
BASIS_DOC = "knowledge: what the pipeline had ingested by as_of (default); event: what had happened by as_of"


class FeaturesRequest(BaseModel):
    features: list[Ref] = Field(min_length=1, max_length=50, examples=[["last_price:v1", "return_5m:v1"]])
    entities: dict[str, Ticker | list[Ticker]] = Field(examples=[{"ticker": ["AAPL", "MSFT"]}])
    as_of: datetime | int | None = Field(None, description=AS_OF_DOC)
    time_basis: TimeBasis = Field("knowledge", description=BASIS_DOC)
    params: dict[str, Annotated[str, Field(max_length=64)]] | None = Field(
        None, description="parameters of on-demand features, e.g. portfolio_id")
    include_timestamps: bool = Field(False, description="add each stored value's source time (epoch ms)")


class FeatureRowOut(BaseModel):
    entity: str
    values: list[FeatureValueOut]
    source_ms: list[int | None] | None = None


class FeaturesResponse(BaseModel):
    entity: str
    features: list[tuple[str, str]]
    rows: list[FeatureRowOut]


class NearestRequest(BaseModel):
    feature: Ref = Field(examples=["filing_embedding:v1"])
    vector: list[Finite] | None = Field(None, max_length=4096, description="query vector (the feature's dimension)")
    text: str | None = Field(None, max_length=2000, description="query text, embedded with the offline all-MiniLM-L6-v2 model")
    k: int = Field(5, ge=1, le=100)


class Neighbour(BaseModel):
    entity: str
    distance: float


class NearestResponse(BaseModel):
    feature: tuple[str, str]
    neighbours: list[Neighbour]


class FeatureInfo(BaseModel):
    name: str
    variant: str
    kind: str
    entity: str
    value_type: str
    dims: int
    group: str
    description: str
    properties: dict[str, str]


class CatalogResponse(BaseModel):
    entities: list[str]
    features: list[FeatureInfo]


class FillRequest(BaseModel):
    ticker: Ticker
    quantity: Finite = Field(description="shares bought (> 0) or sold (< 0)")
    price: Finite = Field(gt=0)


class CashRequest(BaseModel):
    delta: Finite = Field(description="deposit (> 0) or withdrawal (< 0)")


class ErrorBody(BaseModel):
    detail: str
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((400, "malformed argument"), (401, "missing or invalid API key"),
                       (403, "missing scope, or not the owner"), (404, "unknown feature, entity, user or portfolio"),
                       (429, "over the key's request rate"), (503, "Redis unavailable"))
}  # fmt: skip


async def _access(request: Request) -> AgentAccess:
    return request.app.state.access


async def _principal(request: Request) -> Principal:
    """The caller's key, verified (cached) and counted against its rate: one short Redis call, run inline
    (a thread hop would cost more than the call)."""
    return request.app.state.auth.authenticate(bearer(request.headers.get("authorization")))


async def _verified(request: Request) -> Principal:
    """The caller's key, verified (cached) but not yet counted: the route sends its rate check with its read."""
    return request.app.state.auth.verify(bearer(request.headers.get("authorization")))


Access = Annotated[AgentAccess, Depends(_access)]
Caller = Annotated[Principal, Depends(_principal)]
Verified = Annotated[Principal, Depends(_verified)]


def _error(status: int, kind: str) -> Callable[[Request, Exception], JSONResponse]:
    def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)[:2000], "error": kind}, status_code=status)

    return handler


def _auth_error(_: Request, exc: Exception) -> JSONResponse:
    status, kind = getattr(exc, "status", 401), getattr(exc, "error", "unauthenticated")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse({"detail": str(exc), "error": kind}, status_code=status, headers=headers)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:5]]
    return JSONResponse({"detail": "; ".join(parts)[:2000] or "invalid request", "error": "invalid_request"}, status_code=422)


def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Redis is down or restarting (the client's retries are spent): 503, so callers and probes retry."""
    log.warning("Redis unavailable while serving %s: %s", request.url.path, exc)
    return JSONResponse(
        {"error": "redis_unavailable", "detail": f"Redis is unavailable ({exc}); the request can be retried shortly"},
        status_code=503, headers={"Retry-After": "1"},
    )  # fmt: skip


class RequestTimer:
    """Pure ASGI middleware: ``headwater_serving_request_duration_seconds{endpoint, status}``, buffered in memory
    (``HistogramBuffer``), so timing a request costs no Redis call and no extra task."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_timed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            route = scope.get("route")
            try:
                scope["app"].state.metrics.observe("serving_request_duration_seconds", time.perf_counter() - started,
                                                   endpoint=getattr(route, "path", "unmatched"), status=str(status[0]))  # fmt: skip
            except Exception:  # noqa: BLE001 - metrics must never fail a request
                log.debug("could not record serving latency", exc_info=True)


def direct_route(handler: Callable[[Request], Awaitable[Response]]) -> type[APIRoute]:
    """A route class whose OpenAPI comes from the endpoint's signature as usual, but whose requests go to
    ``handler(request)``: it skips FastAPI's per-request dependency solving and response handling, about
    0.1 ms of the HTTP cost of a feature read (bench/serving_latency.py). For the hot read path only."""

    class DirectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            return handler  # type: ignore[return-value]

    return DirectRoute


def parse_body(model: type[Body], raw: bytes) -> Body:
    """``model`` validated from a JSON body; errors as FastAPI reports them (422, located under ``body``)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        raise RequestValidationError(errors) from None


def create_app(serving: ServingClient | None = None, *, auth: ApiKeyStore | None = None,
               documents: Any | None = None, metrics_interval_s: float = 1.0) -> FastAPI:  # fmt: skip
    """The app; without ``serving`` it connects to the configured Redis at start-up and closes at shutdown.
    ``auth`` defaults to the API keys in the serving client's Redis and namespace; request metrics are
    written every ``metrics_interval_s``."""

    def attach(app: FastAPI, client: ServingClient) -> None:
        app.state.serving = client
        app.state.access = AgentAccess(client, documents)
        app.state.auth = auth or ApiKeyStore(client._client, client.keys)  # noqa: SLF001
        app.state.metrics = HistogramBuffer(client._client, client.keys, interval_s=metrics_interval_s)  # noqa: SLF001

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if serving is None:
            attach(app, ServingClient.from_settings())
        try:
            yield
        finally:
            app.state.metrics.close()
            if serving is None:
                app.state.serving.close()

    app = FastAPI(title="Headwater", version="2", lifespan=lifespan, responses=ERRORS,
                  description="Validated, point-in-time features, bars, news, document search and agent state, "
                              "served straight from Redis. Authenticate with `Authorization: Bearer <API key>`.")  # fmt: skip

    if serving is not None:  # ready without a lifespan run (test clients, fuzzers)
        attach(app, serving)

    app.add_middleware(RequestTimer)

    for exc_type in (AuthError, ForbiddenError, RateLimitedError):
        app.add_exception_handler(exc_type, _auth_error)
    app.add_exception_handler(UnknownFeatureError, _error(404, "unknown_feature"))
    app.add_exception_handler(UnknownEntityError, _error(404, "unknown_entity"))
    app.add_exception_handler(StateNotFoundError, _error(404, "not_found"))
    app.add_exception_handler(StateConflictError, _error(409, "conflict"))
    app.add_exception_handler(ValueError, _error(400, "bad_request"))
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in RETRY_ERRORS:  # ConnectionError covers "LOADING" while a restarted server reads its AOF
        app.add_exception_handler(error, _redis_unavailable)

    @app.get("/health")
    def health(request: Request) -> dict[str, str]:
        """Liveness and Redis reachability (no key needed)."""
        request.app.state.serving.ping()
        return {"status": "ok"}

    # -- features ------------------------------------------------------------------------------------------
    @app.get("/catalog")
    def catalog(access: Access, caller: Caller) -> CatalogResponse:
        """The registered features (from features/definitions.py) and entities."""
        caller.require("features:read")
        specs = sorted(access.serving.catalog.features.values(), key=lambda s: s.ref)
        return CatalogResponse(
            entities=sorted(access.serving.catalog.entities),
            features=[FeatureInfo(name=s.name, variant=s.variant, kind=s.kind, entity=s.entity, value_type=s.value_type,
                                  dims=s.dims, group=s.group, description=s.description.strip(),
                                  properties=dict(s.properties)) for s in specs],
        )  # fmt: skip

    def _features(access: AgentAccess, caller: Principal, body: FeaturesRequest) -> Response:
        """The rows as JSON, serialised directly (FeaturesResponse documents the shape). The key's rate check
        rides in the feature read's pipeline: authentication costs no Redis round trip of its own."""
        guard = app.state.auth.guard(caller)
        try:
            if len(body.entities) != 1:
                raise UnknownEntityError('entities must be one {entity: value or [values]}, e.g. {"ticker": "AAPL"}')
            ((entity, values),) = body.entities.items()
            if entity != "ticker":
                raise UnknownEntityError(f"unknown entity {entity[:40]!r}: features here are per ticker")
            out = access.features(caller, body.features, values, as_of=body.as_of, time_basis=body.time_basis,
                                  params=body.params, include_timestamps=body.include_timestamps, guard=guard)  # fmt: skip
        finally:
            guard.settle()  # a request refused before its read still counts against the rate
        payload = {
            "entity": entity,
            "features": [f.split(":", 1) for f in out["features"]],
            "rows": [{"entity": r["ticker"], "values": r["values"], "source_ms": r.get("source_ms")} for r in out["rows"]],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    # The feature reads are one pipelined Redis round trip (well under a millisecond): they run inline on the
    # event loop, which is cheaper than the thread hop FastAPI gives a sync endpoint. as_of reads compute from
    # the series and may take longer: they go to the thread pool.
    async def features_post(body: FeaturesRequest, access: Access, caller: Verified) -> Response:
        """Feature values for one or many tickers (``{"ticker": "AAPL"}`` or ``{"ticker": [...]}``)."""
        if body.as_of is not None:
            return await run_in_threadpool(_features, access, caller, body)
        return _features(access, caller, body)

    async def serve_features_post(request: Request) -> Response:
        """POST /features as served: the same checks in the same order as FastAPI's (key, then body)."""
        caller = await _verified(request)
        body = parse_body(FeaturesRequest, await request.body())
        return await features_post(body, await _access(request), caller)

    app.router.add_api_route("/features", features_post, methods=["POST"], response_model=FeaturesResponse,
                             route_class_override=direct_route(serve_features_post))  # fmt: skip

    @app.get("/features", response_model=FeaturesResponse)
    async def features_get(
        access: Access,
        caller: Verified,
        feature: Annotated[list[Annotated[str, Field(max_length=130)]], Query(description="name:variant, repeatable", max_length=50)],
        ticker: Annotated[list[Ticker], Query(description="repeatable", max_length=100)],
        as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC)] = None,
        time_basis: Annotated[TimeBasis, Query(description=BASIS_DOC)] = "knowledge",
        include_timestamps: bool = False,
        portfolio_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """The same as POST /features, for quick reads (entity: ticker)."""
        params = {"portfolio_id": portfolio_id} if portfolio_id else None
        body = FeaturesRequest(features=feature, entities={"ticker": ticker}, as_of=as_of, time_basis=time_basis,
                               params=params, include_timestamps=include_timestamps)  # fmt: skip
        if as_of is not None:
            return await run_in_threadpool(_features, access, caller, body)
        return _features(access, caller, body)

    @app.post("/nearest")
    def nearest(body: NearestRequest, access: Access, caller: Caller) -> NearestResponse:
        """Tickers whose embedding (e.g. latest filing) is nearest to a vector or a text."""
        ref = body.feature if isinstance(body.feature, str) else ":".join(body.feature)
        hits = access.nearest(caller, ref, text=body.text, vector=body.vector, k=body.k)
        spec = access.serving.catalog.resolve(parse_ref(ref))
        return NearestResponse(feature=spec.ref, neighbours=[Neighbour(entity=h["ticker"], distance=h["distance"]) for h in hits])

    # -- market data, news, documents ----------------------------------------------------------------------
    @app.get("/bars")
    def bars(
        access: Access,
        caller: Caller,
        ticker: Ticker,
        timeframe: Literal["1m", "5m", "1h", "1d"] = "1m",
        start: Annotated[datetime | int | None, Query(alias="from", description=AS_OF_DOC)] = None,
        end: Annotated[datetime | int | None, Query(alias="to", description=AS_OF_DOC)] = None,
        source: Literal["trades", "polygon", "alphavantage"] = "trades",
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC + "; only bars closed by then")] = None,
        time_basis: Annotated[TimeBasis, Query(description=BASIS_DOC)] = "knowledge",
    ) -> dict[str, Any]:
        """OHLCV bars from TimeSeries, oldest first: ``columns`` names each row's fields (``t_ms`` = bar start).
        With ``as_of``: the bars closed by then, and (knowledge basis) a provider's bars only if stored by then."""
        return access.bars(caller, ticker, timeframe, start=start, end=end, source=source, limit=limit,
                           as_of=as_of, time_basis=time_basis)  # fmt: skip

    @app.get("/news")
    def news(
        access: Access,
        caller: Caller,
        ticker: Ticker,
        as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC)] = None,
        time_basis: Annotated[TimeBasis, Query(description=BASIS_DOC)] = "knowledge",
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> list[dict[str, Any]]:
        """The latest articles tagged with the ticker, newest first, with sentiment and publish/ingest times."""
        return access.news(caller, ticker, as_of=as_of, time_basis=time_basis, limit=limit)

    @app.get("/social")
    def social(
        access: Access,
        caller: Caller,
        ticker: Ticker,
        as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC)] = None,
        time_basis: Annotated[TimeBasis, Query(description=BASIS_DOC)] = "knowledge",
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> list[dict[str, Any]]:
        """The latest Reddit/X posts mentioning the ticker, newest first."""
        return access.social(caller, ticker, as_of=as_of, time_basis=time_basis, limit=limit)

    @app.get("/search")
    def search(
        access: Access,
        caller: Caller,
        q: Annotated[str, Query(min_length=1, max_length=2000, description="the question, in plain words")],
        ticker: Ticker | None = None,
        form: Literal["10-K", "10-Q", "10-K/A", "10-Q/A", "transcript"] | None = None,
        as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC)] = None,
        time_basis: Annotated[TimeBasis, Query(description=BASIS_DOC)] = "knowledge",
        k: Annotated[int, Query(ge=1, le=20)] = 5,
    ) -> dict[str, Any]:
        """Filing and transcript passages that best answer ``q`` (hybrid BM25 + vector), public by ``as_of``."""
        return access.search_documents(caller, q, ticker=ticker, form=form, as_of=as_of, time_basis=time_basis, k=k)

    # -- agent state (the caller's own) --------------------------------------------------------------------
    @app.get("/users/{user_id}")
    def get_user(user_id: str, access: Access, caller: Caller) -> UserProfile:
        return access.profile(caller, user_id)

    @app.put("/users/{user_id}", status_code=201)
    def put_user(user_id: str, profile: UserProfile, access: Access, caller: Caller, replace: bool = False) -> UserProfile:
        if profile.user_id != user_id:
            raise ValueError("user_id in the path and the body differ")
        return access.create_profile(caller, profile, replace=replace)

    @app.patch("/users/{user_id}")
    def patch_user(user_id: str, changes: dict[str, Any], access: Access, caller: Caller) -> UserProfile:
        return access.update_profile(caller, user_id, changes)

    @app.get("/portfolios/{portfolio_id}")
    def get_portfolio(portfolio_id: str, access: Access, caller: Caller) -> Portfolio:
        return access.portfolio(caller, portfolio_id)

    @app.put("/portfolios/{portfolio_id}", status_code=201)
    def put_portfolio(portfolio_id: str, portfolio: Portfolio, access: Access, caller: Caller, replace: bool = False) -> Portfolio:
        if portfolio.portfolio_id != portfolio_id:
            raise ValueError("portfolio_id in the path and the body differ")
        return access.create_portfolio(caller, portfolio, replace=replace)

    @app.post("/portfolios/{portfolio_id}/fills")
    def post_fill(portfolio_id: str, fill: FillRequest, access: Access, caller: Caller) -> dict[str, float]:
        """Book a fill atomically (position, average cost, cash)."""
        return access.fill(caller, portfolio_id, fill.ticker, fill.quantity, fill.price)

    @app.post("/portfolios/{portfolio_id}/cash")
    def post_cash(portfolio_id: str, body: CashRequest, access: Access, caller: Caller) -> dict[str, float]:
        return access.cash(caller, portfolio_id, body.delta)

    @app.put("/portfolios/{portfolio_id}/watchlist/{ticker}")
    def watch(portfolio_id: str, ticker: str, access: Access, caller: Caller) -> dict[str, bool]:
        return access.watch(caller, portfolio_id, ticker, add=True)

    @app.delete("/portfolios/{portfolio_id}/watchlist/{ticker}")
    def unwatch(portfolio_id: str, ticker: str, access: Access, caller: Caller) -> dict[str, bool]:
        return access.watch(caller, portfolio_id, ticker, add=False)

    @app.patch("/portfolios/{portfolio_id}/risk_limits")
    def patch_limits(portfolio_id: str, limits: dict[str, Finite], access: Access, caller: Caller) -> Portfolio:
        return access.risk_limits(caller, portfolio_id, limits)

    @app.get("/portfolios/{portfolio_id}/weights")
    def weights(portfolio_id: str, access: Access, caller: Caller,
                as_of: Annotated[datetime | int | None, Query(description=AS_OF_DOC)] = None) -> dict[str, float]:  # fmt: skip
        """Position weights (market value / equity), used by the exposure features."""
        return access.weights(caller, portfolio_id, as_of=as_of)

    return app


app = create_app()


def main(argv: list[str] | None = None) -> int:
    """``python -m features.api --port 8000``: serve the app with uvicorn."""
    import uvicorn

    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m features.api", description="Serve features to agents over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    setup_logging()
    gc.freeze()  # the imported modules and the app never become garbage: keep them out of every collection
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
