"""Features for agents: the catalog that ``features/definitions.py`` registers, and the types shared by the
feature engineer (``features.engineer``) and the serving client (``features.serving``).

The catalog is read from Featureform's registrar after importing the definitions module -- the same objects
``featureform apply`` sends to a server -- so there is no second, hand-written list of features. Computations
live in one module per group (``market``, ``sentiment``, ``documents``); each exposes
``compute(client, keys, specs, tickers, as_of_ms) -> list[FeatureValue]`` and reads only data at or before
``as_of_ms``.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

import numpy as np
import redis
from redis.exceptions import ResponseError

from headwater.keys import Keys
from headwater.timeframes import DAY_MS, TIMEFRAMES

FeatureKind = Literal["stream", "batch", "ondemand"]
Value = float | int | bool | str | np.ndarray | None
FeatureRef = tuple[str, str] | str


class FeatureError(LookupError):
    """Base class of the serving errors an agent can act on."""


class UnknownFeatureError(FeatureError):
    """A (name, variant) that the definitions do not register."""


class UnknownEntityError(FeatureError):
    """An entity type the definitions do not register, or an entity value the pipeline has no features for."""


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One registered feature variant, as the definitions module declared it."""

    name: str
    variant: str
    kind: FeatureKind
    entity: str
    value_type: str
    dims: int = 0
    description: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)
    function: Callable[..., Any] | None = None

    @property
    def ref(self) -> tuple[str, str]:
        return (self.name, self.variant)

    @property
    def group(self) -> str:
        return self.properties.get("group", "")

    @property
    def is_embedding(self) -> bool:
        return self.dims > 0

    @property
    def stored(self) -> bool:
        """True if the value lives in the online store (everything but on-demand features)."""
        return self.kind != "ondemand"


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """A computed value with the time of the newest input it used and the time it was computed for."""

    spec: FeatureSpec
    entity: str
    value: Value
    source_ms: int
    as_of_ms: int


@dataclass(frozen=True)
class Catalog:
    """The registered features and entities, indexed for serving."""

    features: Mapping[tuple[str, str], FeatureSpec]
    entities: frozenset[str]

    def resolve(self, ref: FeatureRef | Sequence[str]) -> FeatureSpec:
        """The spec of ``(name, variant)`` (or a bare name with exactly one registered variant)."""
        if isinstance(ref, str):
            variants = [spec for spec in self.features.values() if spec.name == ref]
            if len(variants) == 1:
                return variants[0]
            if not variants:
                raise UnknownFeatureError(f"unknown feature {ref!r}; registered: {self.names()}")
            raise UnknownFeatureError(f"feature {ref!r} has several variants; give one of {[s.variant for s in variants]}")
        try:
            name, variant = ref
        except (TypeError, ValueError):
            raise UnknownFeatureError(f"a feature is a name or a (name, variant) pair, not {ref!r}") from None
        spec = self.features.get((str(name), str(variant)))
        if spec is None:
            raise UnknownFeatureError(f"unknown feature ({name!r}, {variant!r}); registered: {self.names()}")
        return spec

    def names(self) -> list[str]:
        """``name:variant`` of every registered feature, sorted."""
        return sorted(f"{name}:{variant}" for name, variant in self.features)

    def group(self, group: str) -> list[FeatureSpec]:
        """The stored features of one computation group (market, sentiment, documents)."""
        return [spec for spec in self.features.values() if spec.stored and spec.group == group]

    @property
    def stored(self) -> list[FeatureSpec]:
        return [spec for spec in self.features.values() if spec.stored]

    def check_entity(self, entity: str) -> None:
        """Raise UnknownEntityError unless ``entity`` is a registered entity type."""
        if entity not in self.entities:
            raise UnknownEntityError(f"unknown entity {entity!r}; registered: {sorted(self.entities)}")


def _ondemand_function(code: bytes, name: str) -> Callable[..., Any]:
    """Rebuild an on-demand feature from the pickled code Featureform ships (as Featureform's client does)."""
    import dill

    return types.FunctionType(dill.loads(code), {"__builtins__": builtins}, name)


def catalog_from_resources(resources: Iterable[Any]) -> Catalog:
    """Build the catalog from Featureform resource objects (``global_registrar.state().sorted_list()``)."""
    from featureform.resources import Entity, FeatureVariant, OnDemandFeatureVariant, StreamFeature
    from featureform.types import VectorType

    features: dict[tuple[str, str], FeatureSpec] = {}
    entities: set[str] = set()
    for res in resources:
        if isinstance(res, Entity):
            entities.add(res.name)
        elif isinstance(res, FeatureVariant):
            vtype = res.value_type
            if isinstance(vtype, VectorType):
                spec = FeatureSpec(res.name, res.variant, "batch", _entity_name(res.entity), vtype.scalarType.value,
                                   vtype.dims, res.description, dict(res.properties or {}))  # fmt: skip
            else:
                spec = FeatureSpec(res.name, res.variant, "batch", _entity_name(res.entity), vtype.value, 0,
                                   res.description, dict(res.properties or {}))  # fmt: skip
            features[spec.ref] = spec
        elif isinstance(res, StreamFeature):
            vtype = str(getattr(res.value_type, "value", res.value_type))  # a ScalarType (a str Enum) or its value
            spec = FeatureSpec(res.name, res.variant, "stream", res.entity, vtype, 0, res.description,
                               dict(res.properties or {}))  # fmt: skip
            features[spec.ref] = spec
        elif isinstance(res, OnDemandFeatureVariant):
            spec = FeatureSpec(res.name, res.variant, "ondemand", "", "", 0, res.description,
                               dict(res.properties or {}), _ondemand_function(res.query, res.name))  # fmt: skip
            features[spec.ref] = spec
    for spec in features.values():
        if ":" in spec.name or ":" in spec.variant:
            raise ValueError(f"feature {spec.name}:{spec.variant}: names and variants must not contain ':'")
    return Catalog(features, frozenset(entities))


def _entity_name(entity: Any) -> str:
    return entity if isinstance(entity, str) else entity.name()


@cache
def load_catalog() -> Catalog:
    """The catalog of ``features.definitions`` (imported once per process; Featureform's registrar is read once).

    ``Client.apply()`` clears Featureform's registrar: the catalog is taken before anything could apply.
    """
    import featureform.register

    import features.definitions  # noqa: F401 - registers the resources

    return catalog_from_resources(featureform.register.global_registrar.state().sorted_list())


def to_ms(as_of: datetime | int | float | str) -> int:
    """Epoch ms of a point in time (aware datetime, ISO 8601 string with zone, or epoch ms)."""
    if isinstance(as_of, str):
        as_of = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    if isinstance(as_of, datetime):
        if as_of.tzinfo is None:
            raise ValueError("as_of must carry a timezone")
        return int(as_of.timestamp() * 1000)
    return int(as_of)


# -- reading many series in one round trip -----------------------------------------------------------------
Command = tuple[Any, ...]
WINDOW_MS: dict[str, int] = {**TIMEFRAMES, "24h": DAY_MS}


def samples(reply: list) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, values) of a TS.RANGE/REVRANGE reply."""
    if not reply:
        return np.empty(0, dtype=np.int64), np.empty(0)
    ts = np.fromiter((int(s[0]) for s in reply), dtype=np.int64, count=len(reply))
    vals = np.fromiter((float(s[1]) for s in reply), dtype=float, count=len(reply))
    return ts, vals


@dataclass(slots=True)
class Job:
    """The Redis reads one (feature, ticker) needs, and how to turn their replies into (value, source_ms)."""

    spec: FeatureSpec
    entity: str
    commands: list[Command]
    finish: Callable[[list[Any]], tuple[Value, int] | None]


def run_jobs(client: redis.Redis, jobs: Sequence[Job], as_of_ms: int) -> list[FeatureValue]:
    """Send every job's commands in one pipeline and compute the values (None where there was no data)."""
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        for command in job.commands:
            pipe.execute_command(*command)
    replies = pipe.execute(raise_on_error=False) if jobs else []
    values: list[FeatureValue] = []
    pos = 0
    for job in jobs:
        chunk = [no_data_as_empty(reply) for reply in replies[pos : pos + len(job.commands)]]
        pos += len(job.commands)
        result = job.finish(chunk)
        value, source_ms = result if result is not None else (None, 0)
        values.append(FeatureValue(job.spec, job.entity, value, source_ms, as_of_ms))
    return values


def search_results(reply: Any) -> list[tuple[bytes, dict[bytes, Any]]]:
    """(key, fields) of each document of an FT.SEARCH reply, RESP2 (flat list) or RESP3 (map)."""
    if isinstance(reply, dict):
        return [(doc[b"id"], doc.get(b"extra_attributes") or {}) for doc in reply.get(b"results", [])]
    return [(reply[i], dict(zip(reply[i + 1][::2], reply[i + 1][1::2]))) for i in range(1, len(reply) - 1, 2)]


def no_data_as_empty(reply: Any) -> Any:
    """A missing series reads as no samples; any other error is raised."""
    if isinstance(reply, ResponseError):
        if "does not exist" in str(reply):
            return []
        raise reply
    return reply


def compute_features(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int,
    *, time_basis: str = "knowledge",
) -> list[FeatureValue]:
    """Compute stored features for tickers from the source data at or before ``as_of_ms`` (group by group).

    ``time_basis="knowledge"`` uses only what the pipeline had ingested by ``as_of_ms``; ``"event"`` uses
    everything whose event time is at or before it (see ``features.access``)."""
    from features import documents, market, sentiment

    modules = {"market": market, "sentiment": sentiment, "documents": documents}
    values: list[FeatureValue] = []
    for group, module in modules.items():
        chosen = [spec for spec in specs if spec.group == group]
        if chosen and tickers:
            values += module.compute(client, keys, chosen, tickers, as_of_ms, time_basis=time_basis)
    unknown = {spec.group for spec in specs if spec.stored and spec.group not in modules}
    if unknown:
        raise ValueError(f"no computation for feature group(s) {sorted(unknown)}")
    return values
