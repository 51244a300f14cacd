"""Featureform's Redis online-store layout, written and read straight from Redis.

Featureform's server (``provider/redis.go``) keeps, under a prefix ``P`` (``Featureform_table__`` by default;
Headwater prepends its ``key_prefix``, which is empty in production):

* ``{P}__tables`` -- hash: table key -> value type, Go ``json.Marshal`` of ``{"ValueType":"float64"}`` or
  ``{"ValueType":{"ScalarType":"float32","Dimension":384,"IsEmbedding":true}}``;
* a scalar feature: hash ``{"Prefix":P,"Feature":name,"Variant":variant}``, field = entity, value = the
  value as a string (floats as Go ``FormatFloat(v, 'f', -1, 64)``, bools ``1``/``0``);
* an embedding: one hash per entity ``{"Prefix":P,"Feature":name,"Variant":variant,"Entity":"AAPL"}`` with
  the field ``vector_field_<base64 (no padding) of "name_variant">`` = little-endian float32 bytes, and a
  RediSearch HNSW/COSINE index named ``{"Prefix":P,"Feature":name,"Variant":variant,"Entity":""}``.

A Featureform server pointed at the same Redis serves these values. Two deliberate differences: the vector
index is created with ``PREFIX`` (the server creates it without, so it would index every hash in the
database that has the field), and ``nearest`` sends ``LIMIT 0 k`` (the server sends none, so it never returns
more than 10). If this writer registers a table first, a server's later materialization of the same
name/variant fails with DatasetAlreadyExists (``__tables`` entries are only ever added with ``HSETNX``).

Headwater's additions, which Featureform ignores:

* ``{P}__timestamps`` -- hash: ``name:variant:entity`` -> ``"{source_ms}:{as_of_ms}"``, the time of the newest
  input the value was computed from and the point in time it was computed for (``source_ms <= as_of_ms``);
* ``{P}__entities:{entity type}`` -- hash: entity -> ``as_of_ms`` of the last engineer run that computed it
  (an entity missing here is unknown to the pipeline).

Values, timestamps and the entity registry of one batch are written in one MULTI/EXEC, so a reader never sees
a value with another run's timestamp. A value that could not be computed (no data in its window) is deleted,
never left stale.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.exceptions import ResponseError

from features import FeatureSpec, FeatureValue, Value

FEATUREFORM_PREFIX = "Featureform_table__"


def go_json(obj: Any) -> str:
    """JSON as Go's ``json.Marshal`` writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def format_float(value: float) -> str:
    """A float as Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, no exponent."""
    return np.format_float_positional(value, unique=True, trim="-")


def encode_scalar(value: Value, value_type: str) -> str:
    """A scalar value as Featureform's Redis table stores it."""
    if isinstance(value, bool) or value_type == "bool":
        return "1" if value else "0"
    if value_type in ("float32", "float64"):
        return format_float(float(value))  # type: ignore[arg-type]
    return str(value)


def decode_scalar(raw: bytes | None, value_type: str) -> Value:
    """The Python value of a stored scalar (None if absent)."""
    if raw is None:
        return None
    if value_type in ("float64", "float32"):
        return float(raw)
    if value_type in ("int", "int32", "int64"):
        return int(raw)
    if value_type == "bool":
        return raw in (b"1", b"true", b"True")
    return raw.decode()


def vector_bytes(vector: Sequence[float] | np.ndarray) -> bytes:
    """Little-endian float32 bytes (``rueidis.VectorString32``)."""
    return np.asarray(vector, dtype="<f4").tobytes()


@dataclass(frozen=True, slots=True)
class OnlineLayout:
    """Key builders of Featureform's Redis layout under one prefix (``Featureform_table__`` + namespace)."""

    prefix: str = FEATUREFORM_PREFIX

    @classmethod
    def for_namespace(cls, key_prefix: str = "") -> OnlineLayout:
        """The layout for a Headwater key namespace (production: empty, i.e. Featureform's own prefix)."""
        return cls(f"{key_prefix}{FEATUREFORM_PREFIX}")

    @property
    def tables(self) -> str:
        return f"{self.prefix}__tables"

    @property
    def timestamps(self) -> str:
        return f"{self.prefix}__timestamps"

    def entities(self, entity_type: str) -> str:
        return f"{self.prefix}__entities:{entity_type}"

    def table(self, feature: str, variant: str) -> str:
        """Hash of a scalar feature: entity -> value."""
        return go_json({"Prefix": self.prefix, "Feature": feature, "Variant": variant})

    def vector(self, feature: str, variant: str, entity: str) -> str:
        """Hash holding one entity's embedding (also the index name with ``entity=""``)."""
        return go_json({"Prefix": self.prefix, "Feature": feature, "Variant": variant, "Entity": entity})

    def index(self, feature: str, variant: str) -> str:
        return self.vector(feature, variant, "")

    def vector_key_prefix(self, feature: str, variant: str) -> str:
        """What every entity's embedding key of a feature starts with (the index's PREFIX)."""
        return self.index(feature, variant)[: -len('""}')] + '"'

    @staticmethod
    def vector_field(feature: str, variant: str) -> str:
        encoded = base64.b64encode(f"{feature}_{variant}".encode()).decode().rstrip("=")
        return f"vector_field_{encoded}"

    @staticmethod
    def timestamp_field(feature: str, variant: str, entity: str) -> str:
        return f"{feature}:{variant}:{entity}"

    @staticmethod
    def value_type_json(spec: FeatureSpec) -> str:
        """The ``__tables`` value of a feature."""
        if spec.is_embedding:
            vtype: Any = {"ScalarType": spec.value_type, "Dimension": spec.dims, "IsEmbedding": True}
        else:
            vtype = spec.value_type
        return go_json({"ValueType": vtype})


class OnlineStoreWriter:
    """Registers tables and vector indexes and writes computed values in Featureform's layout."""

    def __init__(self, client: redis.Redis, layout: OnlineLayout) -> None:
        self.client = client
        self.layout = layout

    def register(self, specs: Iterable[FeatureSpec]) -> None:
        """Add missing ``__tables`` entries (HSETNX) and vector indexes (idempotent)."""
        pipe = self.client.pipeline(transaction=False)
        stored = [spec for spec in specs if spec.stored]
        for spec in stored:
            key = self.layout.index(*spec.ref) if spec.is_embedding else self.layout.table(*spec.ref)
            pipe.hsetnx(self.layout.tables, key, self.layout.value_type_json(spec))
        pipe.execute()
        for spec in stored:
            if spec.is_embedding:
                self._create_index(spec)

    def _create_index(self, spec: FeatureSpec) -> None:
        layout = self.layout
        try:
            self.client.execute_command(
                "FT.CREATE", layout.index(*spec.ref), "ON", "HASH",
                "PREFIX", 1, layout.vector_key_prefix(*spec.ref),
                "SCHEMA", layout.vector_field(*spec.ref), "VECTOR", "HNSW", 6,
                "TYPE", "FLOAT32", "DIM", spec.dims, "DISTANCE_METRIC", "COSINE",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise

    def write(self, values: Sequence[FeatureValue], entity_type: str = "ticker") -> None:
        """Write values (deleting the ones that are None), their timestamps and the entity registry atomically."""
        layout = self.layout
        tables: dict[str, dict[str, str]] = {}
        deletes: dict[str, list[str]] = {}
        stamps: dict[str, str] = {}
        stale: list[str] = []
        entities: dict[str, int] = {}
        pipe = self.client.pipeline(transaction=True)
        for item in values:
            spec = item.spec
            field = layout.timestamp_field(spec.name, spec.variant, item.entity)
            entities[item.entity] = max(entities.get(item.entity, 0), item.as_of_ms)
            if item.value is None:
                stale.append(field)
                if spec.is_embedding:
                    pipe.delete(layout.vector(spec.name, spec.variant, item.entity))
                else:
                    deletes.setdefault(layout.table(*spec.ref), []).append(item.entity)
                continue
            stamps[field] = f"{item.source_ms}:{item.as_of_ms}"
            if spec.is_embedding:
                pipe.hset(layout.vector(spec.name, spec.variant, item.entity),
                          layout.vector_field(*spec.ref), vector_bytes(item.value))  # type: ignore[arg-type]  # fmt: skip
            else:
                tables.setdefault(layout.table(*spec.ref), {})[item.entity] = encode_scalar(item.value, spec.value_type)
        for key, mapping in tables.items():
            pipe.hset(key, mapping=mapping)
        for key, fields in deletes.items():
            pipe.hdel(key, *fields)
        if stamps:
            pipe.hset(layout.timestamps, mapping=stamps)
        if stale:
            pipe.hdel(layout.timestamps, *stale)
        if entities:
            pipe.hset(layout.entities(entity_type), mapping=entities)
        pipe.execute()
