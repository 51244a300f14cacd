"""Featureform's Redis layout, to the character, and the writer's atomic batches."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from features import FeatureValue
from features.online_store import (
    FEATUREFORM_PREFIX,
    OnlineLayout,
    OnlineStoreWriter,
    decode_scalar,
    encode_scalar,
    format_float,
    go_json,
)


def test_key_strings_match_featureforms_go_layout():
    layout = OnlineLayout()
    assert layout.prefix == FEATUREFORM_PREFIX == "Featureform_table__"
    assert layout.tables == "Featureform_table____tables"
    assert layout.table("last_price", "v1") == '{"Prefix":"Featureform_table__","Feature":"last_price","Variant":"v1"}'
    assert layout.vector("filing_embedding", "v1", "AAPL") == (
        '{"Prefix":"Featureform_table__","Feature":"filing_embedding","Variant":"v1","Entity":"AAPL"}'
    )
    assert layout.index("filing_embedding", "v1") == (
        '{"Prefix":"Featureform_table__","Feature":"filing_embedding","Variant":"v1","Entity":""}'
    )
    assert layout.vector_key_prefix("filing_embedding", "v1") == (
        '{"Prefix":"Featureform_table__","Feature":"filing_embedding","Variant":"v1","Entity":"'
    )
    encoded = base64.b64encode(b"filing_embedding_v1").decode().rstrip("=")
    assert layout.vector_field("filing_embedding", "v1") == f"vector_field_{encoded}" == "vector_field_ZmlsaW5nX2VtYmVkZGluZ192MQ"
    assert OnlineLayout.for_namespace("t1:").table("x", "v1").startswith('{"Prefix":"t1:Featureform_table__"')


def test_value_type_json_matches_go(catalog):
    assert OnlineLayout.value_type_json(catalog.resolve("last_price")) == '{"ValueType":"float64"}'
    assert OnlineLayout.value_type_json(catalog.resolve("filing_embedding")) == (
        '{"ValueType":{"ScalarType":"float32","Dimension":384,"IsEmbedding":true}}'
    )


@pytest.mark.parametrize(("value", "text"), [(1.0, "1"), (0.1, "0.1"), (-2.5, "-2.5"), (1e-7, "0.0000001"),
                                              (123456789.125, "123456789.125"), (1e21, "1000000000000000000000"),
                                              (0.1 + 0.2, "0.30000000000000004")])  # fmt: skip
def test_floats_are_formatted_like_go_strconv_f_minus_one(value, text):
    assert format_float(value) == text
    assert float(text) == value


def test_scalar_encoding_round_trips():
    assert encode_scalar(True, "bool") == "1" and decode_scalar(b"1", "bool") is True
    assert decode_scalar(encode_scalar(42, "int64").encode(), "int64") == 42
    assert decode_scalar(None, "float64") is None
    assert go_json({"a": "<&>"}) == '{"a":"\\u003c\\u0026\\u003e"}'


def test_writer_registers_tables_once_and_writes_values_timestamps_and_entities(store, catalog):
    layout, r = store.layout, store.r
    writer = OnlineStoreWriter(r, layout)
    price, filing = catalog.resolve("last_price"), catalog.resolve("filing_embedding")
    writer.register([price, filing, catalog.resolve("price_vs_vwap")])
    writer.register([price, filing])  # idempotent
    tables = {k.decode(): v.decode() for k, v in r.hgetall(layout.tables).items()}
    assert tables == {layout.table("last_price", "v1"): '{"ValueType":"float64"}',
                      layout.index("filing_embedding", "v1"): OnlineLayout.value_type_json(filing)}  # fmt: skip
    vector = np.arange(384, dtype=np.float32) / 384
    writer.write([FeatureValue(price, "AAPL", 189.5, 1000, 2000), FeatureValue(price, "MSFT", None, 0, 2000),
                  FeatureValue(filing, "AAPL", vector, 500, 2000)])  # fmt: skip
    assert r.hgetall(layout.table("last_price", "v1")) == {b"AAPL": b"189.5"}
    raw = r.hget(layout.vector("filing_embedding", "v1", "AAPL"), layout.vector_field("filing_embedding", "v1"))
    assert np.frombuffer(raw, "<f4").tolist() == vector.tolist()
    assert r.hgetall(layout.timestamps) == {b"last_price:v1:AAPL": b"1000:2000", b"filing_embedding:v1:AAPL": b"500:2000"}
    assert r.hgetall(layout.entities("ticker")) == {b"AAPL": b"2000", b"MSFT": b"2000"}
    # a value that can no longer be computed is deleted, not left stale
    writer.write([FeatureValue(price, "AAPL", None, 0, 3000), FeatureValue(filing, "AAPL", None, 0, 3000)])
    assert r.hgetall(layout.table("last_price", "v1")) == {}
    assert not r.exists(layout.vector("filing_embedding", "v1", "AAPL"))
    assert r.hgetall(layout.timestamps) == {}


def test_vector_index_only_covers_its_own_feature(store, catalog):
    writer = OnlineStoreWriter(store.r, store.layout)
    filing = catalog.resolve("filing_embedding")
    writer.register([filing])
    writer.write([FeatureValue(filing, "AAPL", np.ones(384, np.float32), 1, 2)])
    info = store.r.ft(store.layout.index("filing_embedding", "v1")).info()
    assert int(info["num_docs"]) == 1
