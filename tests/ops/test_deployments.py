"""deployments/: every kustomization renders (a small Python kustomize) and every object validates against the
Kubernetes OpenAPI schemas shipped by kubernetes-validate; no cluster, kubectl or kustomize binary needed."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"
OVERLAYS = sorted(p.parent for p in (DEPLOYMENTS / "overlays").glob("*/kustomization.yaml"))
K8S_VERSION = "1.30"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
#: The kustomization fields this renderer implements; anything else in a kustomization fails the test.
SUPPORTED = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "replicas", "patches",
             "secretGenerator", "configMapGenerator", "generatorOptions"}  # fmt: skip


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic-merge in the small: maps merge, lists of named maps merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and patch and all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = _merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def _generated(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    data = {}
    for literal in spec.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if spec.get("namespace"):
        doc["metadata"]["namespace"] = spec["namespace"]
    doc["stringData" if kind == "Secret" else "data"] = data
    if kind == "Secret":
        doc["type"] = "Opaque"
    return doc


def render(directory: Path, seen: set[Path] | None = None) -> list[dict[str, Any]]:
    """Build a kustomization the way ``kustomize build`` does for the fields used here."""
    seen = seen if seen is not None else set()
    kfile = directory / "kustomization.yaml"
    assert kfile.exists(), f"{directory} has no kustomization.yaml"
    seen.add(kfile.resolve())
    k = yaml.safe_load(kfile.read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert set(k) <= SUPPORTED, f"{kfile}: fields this test cannot render: {set(k) - SUPPORTED}"
    objects: list[dict[str, Any]] = []
    for resource in k.get("resources", []):
        target = (directory / resource).resolve()
        assert target.exists(), f"{kfile}: resource {resource} does not exist"
        if target.is_dir():
            objects += render(target, seen)
        else:
            assert target.is_relative_to(directory.resolve()), f"{kfile}: {resource} is outside the kustomization root"
            seen.add(target)
            objects += _docs(target)
    for spec in k.get("secretGenerator", []):
        objects.append(_generated("Secret", spec))
    for spec in k.get("configMapGenerator", []):
        objects.append(_generated("ConfigMap", spec))
    for patch in k.get("patches", []):
        path = (directory / patch["path"]).resolve()
        assert path.exists(), f"{kfile}: patch {patch['path']} does not exist"
        seen.add(path)
        for p in _docs(path):
            matches = [i for i, o in enumerate(objects) if o["kind"] == p["kind"] and o["metadata"]["name"] == p["metadata"]["name"]]
            assert len(matches) == 1, f"{path}: patch {p['kind']}/{p['metadata']['name']} matches {len(matches)} objects"
            objects[matches[0]] = _merge(objects[matches[0]], p)
    for rep in k.get("replicas", []):
        targets = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == rep["name"]]
        assert targets, f"{kfile}: replicas for unknown Deployment {rep['name']}"
        targets[0]["spec"]["replicas"] = rep["count"]
    for image in k.get("images", []):
        for container in _containers(objects):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if "namespace" in k:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
            if o["kind"] == "RoleBinding":
                for subject in o["subjects"]:
                    if subject["kind"] == "ServiceAccount":
                        subject["namespace"] = k["namespace"]
    for group in k.get("labels", []):
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(group["pairs"])
            if group.get("includeTemplates") and "template" in o.get("spec", {}):
                o["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    return objects


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]]


@pytest.fixture(scope="module", params=[p.name for p in OVERLAYS])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(DEPLOYMENTS / "overlays" / request.param)


def test_there_are_local_and_production_overlays() -> None:
    assert {p.name for p in OVERLAYS} == {"local", "production"}


def test_every_object_validates_against_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    assert rendered
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_every_manifest_file_is_used_and_valid() -> None:
    """No orphan YAML under deployments/: each file is in a kustomization (or is the Secret example)."""
    seen: set[Path] = set()
    for overlay in OVERLAYS:
        render(overlay, seen)
    example = DEPLOYMENTS / "base" / "secret.example.yaml"
    files = {p.resolve() for p in DEPLOYMENTS.rglob("*.yaml")}
    assert files - seen == {example.resolve()}
    for doc in _docs(example):  # valid, but never applied: not referenced and only placeholders
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        from headwater.settings import PLACEHOLDER_SECRETS

        for key, value in doc["stringData"].items():
            assert any(p in value.lower() for p in PLACEHOLDER_SECRETS), f"{key} in the example is not a placeholder"


def test_workloads_are_hardened_and_wired(rendered: list[dict[str, Any]]) -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for o in rendered:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deployments = by_kind["Deployment"]
    assert {"streamer", "stream-processors", "metrics-exporter", "feature-api", "prefect-worker"} <= set(deployments)
    assert all(o["metadata"].get("namespace") == "headwater" for o in rendered if o["kind"] != "Namespace")
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for c in spec["containers"]:
            where = f"{name}/{c['name']}"
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert "livenessProbe" in c and ("readinessProbe" in c or "startupProbe" in c), where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in by_kind["ConfigMap"], where
            if c["image"].startswith("headwater") or "/headwater:" in c["image"]:  # the project's own image
                assert spec["securityContext"]["runAsNonRoot"] is True, where
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
                assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{where}: overlay must pin the image"
                command = c["command"]
                if command[:2] == ["python", "-m"]:  # the module each container runs exists in the repo
                    assert importlib.util.find_spec(command[2]) is not None, f"{where}: no module {command[2]}"
    for hpa in by_kind["HorizontalPodAutoscaler"].values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in deployments and hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
        partitions = int(by_kind["ConfigMap"]["headwater-config"]["data"]["HEADWATER_STREAM_PARTITIONS"])
        assert hpa["spec"]["maxReplicas"] == partitions, "processors beyond the partition count would idle"
    for svc in by_kind["Service"].values():
        selector = svc["spec"]["selector"].items()
        assert any(selector <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values()), svc
    binding = by_kind["RoleBinding"]["prefect-worker"]
    assert binding["roleRef"]["name"] in by_kind["Role"]
    assert binding["subjects"][0]["name"] in by_kind["ServiceAccount"]
    assert deployments["prefect-worker"]["spec"]["template"]["spec"]["serviceAccountName"] == "prefect-worker"
    worker_cmd = deployments["prefect-worker"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert worker_cmd[:3] == ["prefect", "worker", "start"] and "headwater-k8s" in worker_cmd and "kubernetes" in worker_cmd


def test_the_agents_api_is_fenced_by_a_network_policy(rendered: list[dict[str, Any]]) -> None:
    """Only labelled agent pods reach the API and MCP ports; the API itself reaches only DNS and Redis."""
    (policy,) = [o for o in rendered if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "feature-api"]
    api = next(o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "feature-api")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    agent_rule = policy["spec"]["ingress"][0]
    assert {p["port"] for p in agent_rule["ports"]} == {8000, 8001}
    assert all("headwater.io/agent-access" in str(peer) for peer in agent_rule["from"])
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6379, 6380, 10000}


def test_production_scales_processors_on_stream_lag() -> None:
    objects = render(DEPLOYMENTS / "overlays" / "production")
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    types = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert types["Resource"]["resource"]["name"] == "cpu"
    assert types["External"]["external"]["metric"]["name"] == "headwater_stream_lag"
    assert not any(o["kind"] == "Secret" for o in objects), "production Secrets are created out of band"
    local = render(DEPLOYMENTS / "overlays" / "local")
    secret = next(o for o in local if o["kind"] == "Secret")
    assert secret["metadata"]["name"] == "headwater-secrets" and "REDIS_URL" in secret["stringData"]


def test_the_renderer_catches_broken_manifests(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                                 "resources: [deploy.yaml, missing.yaml]\n")  # fmt: skip
    (tmp_path / "deploy.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n")
    with pytest.raises(AssertionError, match="missing.yaml"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                                 "resources: [deploy.yaml]\n")  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(render(tmp_path)[0], K8S_VERSION, strict=True)
