"""HTTP endpoint over the serving client, so agents in any language can fetch features, search the document
embeddings and read/update their state. OpenAPI spec at ``/openapi.json``, docs at ``/docs``.

Run: ``python -m features.api --port 8000`` (or ``uvicorn features.api:app``). Feature references are
``"name:variant"``, ``"name"`` (the only variant) or ``["name", "variant"]``. Unknown features and entities
answer 404 with ``{"detail": ..., "error": "unknown_feature" | "unknown_entity"}``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from features import FeatureRef, UnknownEntityError, UnknownFeatureError
from features.agent_state import Portfolio, StateConflictError, StateNotFoundError, UserProfile
from features.serving import ServingClient
from headwater.metrics import observe
from headwater.storage.redis import RETRY_ERRORS

log = logging.getLogger("headwater.features.api")

Ref = str | tuple[str, str]
Scalar = float | int | bool | str | None
FeatureValueOut = Scalar | list[float]


class FeaturesRequest(BaseModel):
    features: list[Ref] = Field(min_length=1, examples=[["last_price:v1", "return_5m:v1"]])
    entities: dict[str, str | list[str]] = Field(examples=[{"ticker": ["AAPL", "MSFT"]}])
    as_of: datetime | int | None = Field(None, description="point in time (ISO 8601 with zone or epoch ms): "
                                         "compute from the time series as they were then")  # fmt: skip
    params: dict[str, Any] | None = Field(None, description="parameters of on-demand features, e.g. portfolio_id")
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
    vector: list[float] | None = Field(None, description="query vector (the feature's dimension)")
    text: str | None = Field(None, description="query text, embedded with the offline all-MiniLM-L6-v2 model")
    k: int = Field(5, ge=1, le=1000)


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
    ticker: str
    quantity: float = Field(description="shares bought (> 0) or sold (< 0)")
    price: float = Field(gt=0)


class CashRequest(BaseModel):
    delta: float = Field(description="deposit (> 0) or withdrawal (< 0)")


def parse_ref(ref: Ref) -> FeatureRef:
    """``"name:variant"`` -> (name, variant); ``"name"`` stays a name; pairs pass through."""
    if isinstance(ref, str) and ":" in ref:
        name, variant = ref.split(":", 1)
        return (name, variant)
    return ref if isinstance(ref, str) else (ref[0], ref[1])


def _serving(request: Request) -> ServingClient:
    return request.app.state.serving


Serving = Annotated[ServingClient, Depends(_serving)]


def _error(status: int, kind: str) -> Callable[[Request, Exception], JSONResponse]:
    def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "error": kind}, status_code=status)

    return handler


def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Redis is down or restarting (the client's retries are spent): 503, so callers and probes retry."""
    request.state.redis_unavailable = True
    log.warning("Redis unavailable while serving %s: %s", request.url.path, exc)
    return JSONResponse(
        {"error": "redis_unavailable", "detail": f"Redis is unavailable ({exc}); the request can be retried shortly"},
        status_code=503, headers={"Retry-After": "1"},
    )  # fmt: skip


def create_app(serving: ServingClient | None = None) -> FastAPI:
    """The app; without ``serving`` it connects to the configured Redis at start-up and closes at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = serving is None
        app.state.serving = serving or ServingClient.from_settings()
        try:
            yield
        finally:
            if owned:
                app.state.serving.close()

    app = FastAPI(title="Headwater features", version="1", lifespan=lifespan,
                  description="Featureform features served straight from Redis, document search and agent state.")  # fmt: skip
    @app.middleware("http")
    async def record_latency(request: Request, call_next: Any) -> Any:
        """``headwater_serving_request_duration_seconds{endpoint, status}`` for the metrics exporter."""
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        if getattr(request.state, "redis_unavailable", False):
            return response  # the latency histogram lives in Redis too: do not wait for it again
        try:
            serving_client = request.app.state.serving
            observe(serving_client._client, serving_client.keys, "serving_request_duration_seconds",  # noqa: SLF001
                    time.perf_counter() - started, endpoint=getattr(route, "path", "unmatched"),
                    status=str(response.status_code))  # fmt: skip
        except Exception:  # noqa: BLE001 - metrics must never fail a request
            log.debug("could not record serving latency", exc_info=True)
        return response

    app.add_exception_handler(UnknownFeatureError, _error(404, "unknown_feature"))
    app.add_exception_handler(UnknownEntityError, _error(404, "unknown_entity"))
    app.add_exception_handler(StateNotFoundError, _error(404, "not_found"))
    app.add_exception_handler(StateConflictError, _error(409, "conflict"))
    app.add_exception_handler(ValueError, _error(400, "bad_request"))
    for error in RETRY_ERRORS:  # ConnectionError covers "LOADING" while a restarted server reads its AOF
        app.add_exception_handler(error, _redis_unavailable)

    @app.get("/health")
    def health(client: Serving) -> dict[str, str]:
        client.ping()
        return {"status": "ok"}

    @app.get("/catalog")
    def catalog(client: Serving) -> CatalogResponse:
        """The registered features (from features/definitions.py) and entities."""
        specs = sorted(client.catalog.features.values(), key=lambda s: s.ref)
        return CatalogResponse(
            entities=sorted(client.catalog.entities),
            features=[FeatureInfo(name=s.name, variant=s.variant, kind=s.kind, entity=s.entity, value_type=s.value_type,
                                  dims=s.dims, group=s.group, description=s.description.strip(),
                                  properties=dict(s.properties)) for s in specs],
        )  # fmt: skip

    def _features(client: ServingClient, body: FeaturesRequest) -> Response:
        """The rows as JSON, serialised directly (FeaturesResponse documents the shape)."""
        refs = [parse_ref(ref) for ref in body.features]
        rows = client.rows(refs, body.entities, body.params, as_of=body.as_of, include_timestamps=body.include_timestamps)
        payload = {
            "entity": next(iter(body.entities)),
            "features": [client.catalog.resolve(ref).ref for ref in refs],
            "rows": [{"entity": r.entity, "values": r.values, "source_ms": r.source_ms} for r in rows],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.post("/features", response_model=FeaturesResponse)
    def features_post(body: FeaturesRequest, client: Serving) -> Response:
        """Feature values for one or many entities (``{"ticker": "AAPL"}`` or ``{"ticker": [...]}``)."""
        return _features(client, body)

    @app.get("/features", response_model=FeaturesResponse)
    def features_get(
        client: Serving,
        feature: Annotated[list[str], Query(description="name:variant, repeatable")],
        ticker: Annotated[list[str], Query(description="repeatable")],
        as_of: datetime | int | None = None,
        include_timestamps: bool = False,
        portfolio_id: str | None = None,
    ) -> Response:
        """The same as POST /features, for quick reads (entity: ticker)."""
        params = {"portfolio_id": portfolio_id} if portfolio_id else None
        body = FeaturesRequest(features=feature, entities={"ticker": ticker}, as_of=as_of, params=params,
                               include_timestamps=include_timestamps)  # fmt: skip
        return _features(client, body)

    @app.post("/nearest")
    def nearest(body: NearestRequest, client: Serving) -> NearestResponse:
        """Entities whose embedding (e.g. latest filing) is nearest to a vector or a text."""
        if (body.vector is None) == (body.text is None):
            raise ValueError("give exactly one of vector or text")
        spec = client.catalog.resolve(parse_ref(body.feature))
        query: Any = body.text if body.text is not None else body.vector
        hits = client.nearest(spec.ref, query, body.k, with_scores=True)
        return NearestResponse(feature=spec.ref, neighbours=[Neighbour(entity=e, distance=d) for e, d in hits])

    # -- agent state -----------------------------------------------------------------------------------
    @app.get("/users/{user_id}")
    def get_user(user_id: str, client: Serving) -> UserProfile:
        return client.profile(user_id)

    @app.put("/users/{user_id}", status_code=201)
    def put_user(user_id: str, profile: UserProfile, client: Serving, replace: bool = False) -> UserProfile:
        if profile.user_id != user_id:
            raise ValueError("user_id in the path and the body differ")
        return client.state.create_profile(profile, replace=replace)

    @app.patch("/users/{user_id}")
    def patch_user(user_id: str, changes: dict[str, Any], client: Serving) -> UserProfile:
        return client.state.update_profile(user_id, **changes)

    @app.get("/portfolios/{portfolio_id}")
    def get_portfolio(portfolio_id: str, client: Serving) -> Portfolio:
        return client.portfolio(portfolio_id)

    @app.put("/portfolios/{portfolio_id}", status_code=201)
    def put_portfolio(portfolio_id: str, portfolio: Portfolio, client: Serving, replace: bool = False) -> Portfolio:
        if portfolio.portfolio_id != portfolio_id:
            raise ValueError("portfolio_id in the path and the body differ")
        return client.state.create_portfolio(portfolio, replace=replace)

    @app.post("/portfolios/{portfolio_id}/fills")
    def post_fill(portfolio_id: str, fill: FillRequest, client: Serving) -> dict[str, float]:
        """Book a fill atomically (position, average cost, cash)."""
        return {"quantity": client.state.apply_fill(portfolio_id, fill.ticker, fill.quantity, fill.price)}

    @app.post("/portfolios/{portfolio_id}/cash")
    def post_cash(portfolio_id: str, body: CashRequest, client: Serving) -> dict[str, float]:
        return {"cash": client.state.adjust_cash(portfolio_id, body.delta)}

    @app.put("/portfolios/{portfolio_id}/watchlist/{ticker}")
    def watch(portfolio_id: str, ticker: str, client: Serving) -> dict[str, bool]:
        return {"added": client.state.watch(portfolio_id, ticker)}

    @app.delete("/portfolios/{portfolio_id}/watchlist/{ticker}")
    def unwatch(portfolio_id: str, ticker: str, client: Serving) -> dict[str, bool]:
        return {"removed": client.state.unwatch(portfolio_id, ticker)}

    @app.patch("/portfolios/{portfolio_id}/risk_limits")
    def patch_limits(portfolio_id: str, limits: dict[str, float], client: Serving) -> Portfolio:
        return client.state.set_risk_limits(portfolio_id, **limits)

    @app.get("/portfolios/{portfolio_id}/weights")
    def weights(portfolio_id: str, client: Serving, as_of: datetime | int | None = None) -> dict[str, float]:
        """Position weights (market value / equity), used by the exposure features."""
        return client.position_weights(portfolio_id, as_of=as_of)

    return app


app = create_app()


def main(argv: list[str] | None = None) -> int:
    """``python -m features.api --port 8000``: serve the app with uvicorn."""
    import uvicorn

    from headwater.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m features.api", description="Serve features over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    setup_logging()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
