"""Featureform 1.15 definitions of the features Headwater serves to agents: the one source of truth.

This module is what ``featureform apply features/definitions.py`` executes and sends to a Featureform server,
and it is what Headwater's own serving client (``features.serving``) and feature engineer
(``features.engineer``) import: both read the registrar state this module leaves behind, never a second list.

Because the Featureform CLI executes this file with fresh globals (no package, no ``__file__``), it imports
nothing but ``featureform`` and the standard library. Connection details are read from the environment at
apply time, never written here:

* ``FEATUREFORM_REDIS_URL`` -- how the *Featureform server* reaches Redis (e.g. ``host.docker.internal``);
  falls back to ``HEADWATER_REDIS_URL`` / ``REDIS_URL``, then ``redis://localhost:6379/0``. The password in the
  URL becomes the provider's password.
* ``HEADWATER_BLOB_CONNECTION_STRING`` / ``AZURE_STORAGE_CONNECTION_STRING`` -- account name and key of the
  warm tier (the offline store the server would use); ``HEADWATER_BLOB_WARM_CONTAINER`` (default ``warm``).

What is registered (every variant pinned to ``VARIANT``; a default variant would be the run name and change
the Redis keys on every apply):

* providers: ``headwater-redis`` (Redis Stack: inference store *and* vector DB), ``headwater-warm`` (Azure Blob
  warm tier) and ``headwater-k8s`` (Featureform's K8s runner over that blob store, the offline provider);
* the ``ticker`` entity;
* streaming features (``register_feature_stream``, Float64) for every market and sentiment value: Headwater's
  feature engineer computes them from RedisTimeSeries and writes them online in Featureform's Redis layout;
  the ``properties`` say how (``computation``, ``window``, ``series``), and the engineer follows them;
* embedding features (``ff.Embedding``, 384-d, ``vector_db=redis``) of each ticker's latest filing and
  transcript, sourced from a warm-tier parquet file for a server's materialization, and written online by
  the engineer (``nearest`` queries work on both);
* on-demand features computed at serving time from the features above (and agent state).

Needs a Featureform server: ``apply`` to a host, materializing the embedding source from the offline store,
``write_feature`` through the server. Does not: serving, ``nearest``, on-demand features, computing and writing
the values (Headwater does those straight against Redis, in the same layout).
"""

import os
import urllib.parse

import featureform as ff

VARIANT = "v1"
ENTITY = "ticker"
EMBEDDING_DIMS = 384


def _redis_target() -> tuple[str, int, int, str]:
    """(host, port, db, password) of the Redis the Featureform server should use, from the environment."""
    url = (
        os.environ.get("FEATUREFORM_REDIS_URL")
        or os.environ.get("HEADWATER_REDIS_URL")
        or os.environ.get("REDIS_URL")
        or "redis://localhost:6379/0"
    )
    parts = urllib.parse.urlsplit(url)
    db = (parts.path or "/0").lstrip("/") or "0"
    return parts.hostname or "localhost", parts.port or 6379, int(db), urllib.parse.unquote(parts.password or "")


def _blob_account() -> tuple[str, str, str]:
    """(account name, account key, warm container) of the warm tier, from the environment (empty if unset)."""
    conn = os.environ.get("HEADWATER_BLOB_CONNECTION_STRING") or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
    fields = dict(part.split("=", 1) for part in conn.split(";") if "=" in part)
    container = os.environ.get("HEADWATER_BLOB_WARM_CONTAINER", "warm")
    return fields.get("AccountName", ""), fields.get("AccountKey", ""), container


def _fix_featureform_1_15() -> None:
    """Work around two featureform 1.15.8 bugs that make ``apply`` crash on this module's resources.

    * ``featureform/types.py`` uses ``pb`` in ``VectorType.to_proto`` without importing it (NameError on every
      embedding feature): the missing module global is provided.
    * ``StreamFeature._create`` builds ``pb.FeatureVariant(type="float64")`` (a string where the proto wants a
      ``ValueType`` message: TypeError) and sends a bare ``FeatureVariant`` where ``CreateFeatureVariant`` takes
      a ``FeatureVariantRequest``: it is replaced by one that sends what the server's API expects.

    Installed only on the 1.15 line, once; the contract test (tests/features/test_apply_contract.py) checks the
    requests these produce.
    """
    from featureform import resources, types
    from featureform.enums import ComputationMode, ScalarType
    from featureform.proto import metadata_pb2 as pb
    from featureform.version import get_package_version

    if not get_package_version().startswith("1.15.") or getattr(resources.StreamFeature, "_headwater_fixed", False):
        return
    types.pb = pb

    def _create(self, req_id, stub):  # noqa: ANN001, ANN202 - mirrors the SDK's signature
        variant = pb.FeatureVariant(
            name=self.name,
            variant=self.variant,
            type=ScalarType(self.value_type).to_proto(),
            entity=self.entity,
            owner=self.owner,
            description=self.description,
            provider=self.inference_store,
            stream=pb.Stream(offline_provider=self.offline_provider),
            mode=ComputationMode.STREAMING.proto(),
            tags=pb.Tags(tag=self.tags),
            properties=resources.Properties(self.properties).serialized,
        )
        stub.CreateFeatureVariant(pb.FeatureVariantRequest(feature_variant=variant, request_id=""))
        return self.variant, None

    resources.StreamFeature._create = _create
    resources.StreamFeature._headwater_fixed = True


_fix_featureform_1_15()
ff.register_user("headwater").make_default_owner()

# -- providers -------------------------------------------------------------------------------------------
_host, _port, _db, _password = _redis_target()
redis = ff.register_redis(
    name="headwater-redis",
    host=_host,
    port=_port,
    db=_db,
    password=_password,
    description="Redis Stack of the Headwater pipeline: inference store and vector DB (Featureform_table__ keys)",
)

_account, _account_key, _warm_container = _blob_account()
warm = ff.register_blob_store(
    name="headwater-warm",
    account_name=_account,
    account_key=_account_key,
    container_name=_warm_container,
    root_path="featureform",
    description="Warm tier (Azure Blob): offline data for a Featureform server's materialization",
)
k8s = ff.register_k8s(
    name="headwater-k8s",
    store=warm,
    description="Featureform's K8s runner over the warm tier: the offline provider of the features below",
)

# -- offline source of the document embeddings (read by a server's materialization only) -----------------
ticker_document_embeddings = k8s.register_file(
    name="ticker_document_embeddings",
    variant=VARIANT,
    path=f"abfss://{_warm_container}@{_account or 'devstoreaccount1'}.dfs.core.windows.net"
    "/featureform/ticker_document_embeddings.parquet",
    description="Per ticker and document: mean chunk embedding and public time (ms); columns ticker, "
    "filing_embedding, transcript_embedding, filing_public_ts, transcript_public_ts",
)


# -- entity and embedding features ------------------------------------------------------------------------
@ff.entity
class Ticker:
    """A US-listed security, by upper-case symbol (AAPL, BRK.B)."""

    filing_embedding = ff.Embedding(
        ticker_document_embeddings[["ticker", "filing_embedding", "filing_public_ts"]],
        dims=EMBEDDING_DIMS,
        vector_db=redis,
        variant=VARIANT,
        description="Mean (L2-normalised) embedding of the chunks of the ticker's latest SEC filing public at "
        "compute time",
        properties={"group": "documents", "computation": "document_embedding", "source": "sec"},
    )
    transcript_embedding = ff.Embedding(
        ticker_document_embeddings[["ticker", "transcript_embedding", "transcript_public_ts"]],
        dims=EMBEDDING_DIMS,
        vector_db=redis,
        variant=VARIANT,
        description="Mean (L2-normalised) embedding of the chunks of the ticker's latest earnings-call "
        "transcript public at compute time",
        properties={"group": "documents", "computation": "document_embedding", "source": "transcript"},
    )


# -- streaming features: computed by features.engineer, written online -----------------------------------
def _stream(name: str, description: str, **properties: str) -> None:
    """Register one Float64 streaming feature of the ticker entity, pinned to VARIANT."""
    ff.register_feature_stream(
        name=name,
        entity=ENTITY,
        type=ff.Float64,
        offline_provider=k8s,
        inference_store=redis,
        variant=VARIANT,
        description=description,
        properties=properties,
    )


_stream("last_price", "Last trade price at or before the time", group="market", computation="last_price", unit="USD")
for _window in ("1m", "5m", "1h", "1d"):
    _stream(
        f"return_{_window}",
        f"Simple return of the last trade price over {_window}: p(t) / p(t - {_window}) - 1, where p(s) is the "
        "last trade at or before s",
        group="market", computation="return", window=_window, unit="fraction",
    )  # fmt: skip
_stream(
    "vwap",
    "Session VWAP since 00:00 America/New_York: per-minute typical price (high+low+close)/3 weighted by volume, "
    "from the tick series aggregated at query time",
    group="market", computation="vwap", session_tz="America/New_York", unit="USD",
)  # fmt: skip
_stream(
    "realized_vol_1h",
    "Realized volatility over the last hour: sqrt of the sum of squared 1-minute log returns (not annualised)",
    group="market", computation="realized_vol", window="1h", bucket="1m", unit="fraction",
)  # fmt: skip
_stream(
    "volume_zscore_1m",
    "Z-score of the last minute's volume against the 60 minutes before it (minutes without trades count as 0)",
    group="market", computation="volume_zscore", bucket="1m", baseline="60", unit="z",
)  # fmt: skip
_stream(
    "bid_ask_spread_bps",
    "Quoted spread of the last quote: (ask - bid) / mid in basis points",
    group="market", computation="spread_bps", unit="bps",
)  # fmt: skip
for _window in ("1h", "24h"):
    _stream(
        f"news_sentiment_{_window}",
        f"Mean news sentiment score in [-1, 1] of the articles published in the last {_window}",
        group="sentiment", computation="sentiment_mean", series="news", window=_window, unit="score",
    )  # fmt: skip
_stream(
    "social_sentiment_1h",
    "Mean social sentiment score in [-1, 1] of the posts created in the last hour",
    group="sentiment", computation="sentiment_mean", series="social", window="1h", unit="score",
)  # fmt: skip
_stream(
    "mention_velocity_1h",
    "Social mentions in the last hour relative to the hourly average of the last 24 h (1 = usual attention)",
    group="sentiment", computation="mention_velocity", series="social", window="1h", baseline="24h", unit="ratio",
)  # fmt: skip


# -- on-demand features: computed by the serving client at request time ----------------------------------
# Featureform ships the function's code (dill) and the client calls fn(client, params, entities): the body may
# only use its arguments and what it imports itself.
@ff.ondemand_feature(variant=VARIANT, properties={"group": "market", "inputs": "last_price:v1,vwap:v1"})
def price_vs_vwap(client, params, entities):  # noqa: ANN001, ANN201, ARG001 - Featureform's signature
    """Last trade price relative to the session VWAP: last_price / vwap - 1."""
    price, vwap = client.features([("last_price", "v1"), ("vwap", "v1")], entities)
    if price is None or not vwap:
        return None
    return price / vwap - 1.0


@ff.ondemand_feature(
    variant=VARIANT,
    properties={"group": "agent_state", "inputs": "news_sentiment_24h:v1,last_price:v1", "params": "portfolio_id"},
)
def news_sentiment_exposure(client, params, entities):  # noqa: ANN001, ANN201 - Featureform's signature
    """Position-weighted exposure to the ticker's 24 h news sentiment: portfolio weight x news_sentiment_24h.

    The weight is the position's market value over the portfolio's equity (``params['portfolio_id']``); it needs
    Headwater's serving client, which reads portfolios from RedisJSON.
    """
    if not params or "portfolio_id" not in params:
        raise ValueError("news_sentiment_exposure needs params={'portfolio_id': ...}")
    ticker = entities["ticker"]
    weight = client.position_weights(params["portfolio_id"]).get(ticker, 0.0)
    (sentiment,) = client.features([("news_sentiment_24h", "v1")], entities)
    if sentiment is None:
        return None
    return weight * sentiment
