"""Fixtures for the feature tests: a namespaced feature store (Featureform-layout keys cleaned up too), the
catalog of features/definitions.py, and a serving client with a stand-in embedder."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import redis
from feature_scenario import Store, unit

from features import Catalog, load_catalog
from features.online_store import OnlineLayout
from features.serving import ServingClient
from headwater.keys import Keys


@pytest.fixture
def store(r: redis.Redis, key_prefix: str) -> Iterator[Store]:
    """The test's namespace; also removes the Featureform-layout keys and indexes (they start with '{')."""
    layout = OnlineLayout.for_namespace(key_prefix)
    yield Store(r, Keys(key_prefix), layout)
    json_prefix = '{"Prefix":"' + key_prefix  # also covers sub_store() namespaces
    for index in r.execute_command("FT._LIST"):
        name = index.decode() if isinstance(index, bytes) else str(index)
        if name.startswith(json_prefix):
            r.execute_command("FT.DROPINDEX", name)
    found = list(r.scan_iter(match=json_prefix + "*", count=1000))
    if found:
        r.unlink(*found)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


class FakeEmbedder:
    """Maps known texts to vectors, standing in for the real model (about 20 s to load on these machines)."""

    TEXTS = {"iphone supply chain": unit(2, 3), "insurance float": unit(2)}

    def __call__(self, text: str) -> np.ndarray:
        return self.TEXTS[text]


@pytest.fixture
def serving(store: Store, catalog: Catalog) -> ServingClient:
    return ServingClient(store.r, key_prefix=store.keys.prefix, catalog=catalog, embedder=FakeEmbedder())
