"""The apply contract: ``featureform apply features/definitions.py`` against a local gRPC server built from the
SDK's own generated stubs, and what ``python -m features.apply`` does with and without a host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from featureform.proto import metadata_pb2 as pb
from featureform.proto import metadata_pb2_grpc as pb_grpc

from features.apply import DEFINITIONS, child_env, featureform_command, validate

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "contract-test-password"


class RecordingApi(pb_grpc.ApiServicer):
    """Featureform's metadata API, recording every Create* request; nothing exists yet (GetEquivalent empty)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, object]] = []

    def _record(self, method: str, request: object) -> pb.Empty:
        self.requests.append((method, request))
        return pb.Empty()

    def CreateUser(self, request, context):  # noqa: N802 - the generated servicer's names
        return self._record("CreateUser", request)

    def CreateProvider(self, request, context):  # noqa: N802
        return self._record("CreateProvider", request)

    def CreateSourceVariant(self, request, context):  # noqa: N802
        return self._record("CreateSourceVariant", request)

    def CreateEntity(self, request, context):  # noqa: N802
        return self._record("CreateEntity", request)

    def CreateFeatureVariant(self, request, context):  # noqa: N802
        return self._record("CreateFeatureVariant", request)

    def GetEquivalent(self, request, context):  # noqa: N802
        self.requests.append(("GetEquivalent", request))
        return pb.ResourceVariant()

    def of(self, method: str) -> list:
        return [request for name, request in self.requests if name == method]


@pytest.fixture
def featureform_api() -> Iterator[tuple[RecordingApi, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api = RecordingApi()
    pb_grpc.add_ApiServicer_to_server(api, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield api, port
    finally:
        server.stop(grace=None)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FEATUREFORM_HOST", "REDIS_URL", "HEADWATER_REDIS_URL")}
    env.update({"FEATUREFORM_REDIS_URL": f"redis://:{PASSWORD}@redis.internal:6380/2", "PYTHONPATH": str(ROOT)}, **extra)
    return env


def test_featureform_apply_sends_every_registered_resource(featureform_api, catalog):
    api, port = featureform_api
    out = subprocess.run(
        [sys.executable, "-m", "featureform", "apply", "features/definitions.py", "--host", f"localhost:{port}",
         "--insecure", "--no-wait"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]

    providers = {req.provider.name: req.provider for req in api.of("CreateProvider")}
    assert set(providers) == {"headwater-redis", "headwater-warm", "headwater-k8s"}
    redis_provider = providers["headwater-redis"]
    assert redis_provider.type == "REDIS_ONLINE"
    assert json.loads(redis_provider.serialized_config) == {"Addr": "redis.internal:6380", "Password": PASSWORD, "DB": 2}
    assert providers["headwater-k8s"].type == "K8S_OFFLINE"

    assert [req.entity.name for req in api.of("CreateEntity")] == ["ticker"]
    (source,) = api.of("CreateSourceVariant")
    assert (source.source_variant.name, source.source_variant.variant) == ("ticker_document_embeddings", "v1")

    sent = {(r.feature_variant.name, r.feature_variant.variant): r.feature_variant for r in api.of("CreateFeatureVariant")}
    assert set(sent) == set(catalog.features)  # exactly what the serving client reads from the registrar
    assert {variant for _, variant in sent} == {"v1"}
    for ref, spec in catalog.features.items():
        fv = sent[ref]
        if spec.kind == "stream":
            assert fv.mode == pb.ComputationMode.STREAMING and fv.WhichOneof("location") == "stream"
            assert fv.type.scalar == pb.ScalarType.FLOAT64 and fv.entity == "ticker"
            assert (fv.provider, fv.stream.offline_provider) == ("headwater-redis", "headwater-k8s")
            assert dict(fv.properties.property)["computation"].string_value == spec.properties["computation"]
        elif spec.kind == "batch":
            assert fv.mode == pb.ComputationMode.PRECOMPUTED and fv.provider == "headwater-redis"
            assert (fv.type.vector.dimension, fv.type.vector.is_embedding) == (384, True)
            assert (fv.source.name, fv.source.variant) == ("ticker_document_embeddings", "v1")
            assert fv.columns.entity == "ticker"
        else:
            assert fv.mode == pb.ComputationMode.CLIENT_COMPUTED and fv.function.query
            assert f"def {spec.name}(client, params, entities)" in fv.additional_parameters.ondemand.definition
    kinds = {spec.kind for spec in catalog.features.values()}
    assert kinds == {"stream", "batch", "ondemand"}


def test_dry_run_without_a_host_validates_and_masks_secrets():
    out = subprocess.run([sys.executable, "-m", "features.apply"], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validating the definitions only (--dry-run)" in out.stderr
    assert "validated: 17 feature variants" in out.stderr
    assert "headwater-redis" in out.stdout and "redis.internal" in out.stdout
    assert PASSWORD not in out.stdout + out.stderr


def test_real_apply_command_line():
    cmd = featureform_command("ff.example:7878", dry_run=False, insecure=True, cert=None)
    assert cmd[1:] == ["-m", "featureform", "apply", str(DEFINITIONS), "--host", "ff.example:7878", "--no-wait", "--insecure"]
    assert featureform_command("h:1", dry_run=True, insecure=False, cert="c.pem")[-3:] == ["--dry-run", "--cert", "c.pem"]


def test_child_env_masks_passwords_only_in_a_dry_run(monkeypatch):
    monkeypatch.setenv("FEATUREFORM_REDIS_URL", f"redis://:{PASSWORD}@h:1/0")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=s3cr3t;BlobEndpoint=http://x")
    assert PASSWORD in child_env(dry_run=False)["FEATUREFORM_REDIS_URL"]
    masked = child_env(dry_run=True)
    assert PASSWORD not in masked["FEATUREFORM_REDIS_URL"] and "s3cr3t" not in masked["AZURE_STORAGE_CONNECTION_STRING"]


def test_validate_flags_unpinned_variants_and_missing_computations(catalog):
    assert validate(catalog, "some-run-name") == []
    from dataclasses import replace

    from features import Catalog

    broken = dict(catalog.features)
    price = catalog.resolve("last_price")
    broken[("last_price", "run-1")] = replace(price, variant="run-1")
    broken[("odd", "v1")] = replace(price, name="odd", properties={"group": "market", "computation": "astrology"})
    problems = validate(Catalog(broken, catalog.entities), "run-1")
    assert any("not pinned" in p for p in problems) and any("astrology" in p for p in problems)
