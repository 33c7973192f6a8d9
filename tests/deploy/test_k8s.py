"""k8s/: every overlay rendered with the real ``kubectl kustomize`` and validated.

kubectl (with kustomize v4 or later: kubectl 1.21+) renders k8s/base and each directory of
k8s/overlays. Without it, or with an older one (Debian 12's kubernetes-client is 1.20, whose
kustomize v2.0.3 reads neither `patches` nor directories under `resources`), these tests skip
on a developer machine and fail on CI (the ``skip_or_fail`` policy of tests/conftest.py).

Every rendered object is validated with kubernetes-validate, strictly (unknown fields are
errors), against the newest Kubernetes version it ships schemas for. Custom resources have no
schema there and are NOT validated by it: ServiceMonitor and PrometheusRule (Prometheus
Operator) and ScaledObject (KEDA); the tests below check their content instead (selectors,
job label, rule groups, autoscaling bounds).

Then the properties the deployment promises: namespace and replicas per overlay; requests
and limits; liveness on /healthz and readiness on /readyz on the metrics port; preStop and a
grace period; a restricted securityContext that agrees with the Dockerfile (UID, writable
working directory); spread across nodes; a PodDisruptionBudget; a NetworkPolicy that admits
only Prometheus to port 8000 and lets the workers reach Kafka, Redis and DNS; secrets only by
reference; one autoscaler per overlay, capped at the partition count, and KEDA reading the
consumer group the workers really use (``agents.app.namespace`` + ``.ingest``); the
PrometheusRule in sync with deploy/prometheus/rules; every Grafana dashboard in a ConfigMap
labelled for the sidecar.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from agents.app import namespace as app_namespace
from agents.cli import build_parser
from agents.settings import Settings

from .test_dockerfile import _stages
from .tools import ROOT

K8S = ROOT / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
TARGETS = ["base", *OVERLAYS]
EXPECTED_NAMESPACE = {"prod": "mlops-prod", "dev": "mlops-dev"}
EXPECTED_REPLICAS = {"prod": 2}
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
WORKER = "undertow-worker"
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|WEBHOOK|ROUTING_KEY|CREDENTIAL|REDIS_URL")


# --------------------------------------------------------------------------- rendering


def _kubectl_or_unavailable(unavailable: Callable[[str], NoReturn]) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable(
            "kubectl is not installed: k8s/ is rendered with `kubectl kustomize` "
            "(kubectl 1.21 or later; scripts/setup.sh says where to get one)"
        )
    result = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    info = json.loads(result.stdout or "{}")
    kustomize = info.get("kustomizeVersion", "")
    match = re.match(r"v(\d+)", kustomize)
    if not match or int(match.group(1)) < 4:
        version = info.get("clientVersion", {}).get("gitVersion", "unknown")
        unavailable(
            f"kubectl {version} has kustomize {kustomize or 'v2 or older'}; k8s/ needs "
            "kustomize v4 or later (kubectl 1.21+)"
        )
    return kubectl


@pytest.fixture
def kubectl(service_unavailable: Callable[[str], NoReturn]) -> str:
    return _kubectl_or_unavailable(service_unavailable)


@functools.cache
def _render(kubectl: str, target: str) -> tuple[tuple[dict[str, Any], ...], str]:
    path = K8S / "base" if target == "base" else K8S / "overlays" / target
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {path}:\n{result.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    return docs, result.stderr


def objects(kubectl: str, target: str) -> list[dict[str, Any]]:
    return list(_render(kubectl, target)[0])


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("undertow-config")
    ]
    assert len(maps) == 1
    return maps[0]["data"]


def worker_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", WORKER)["spec"]["template"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = worker_pod(docs)["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    return containers[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(kubectl: str, overlay: str) -> list[dict[str, Any]]:
    return objects(kubectl, overlay)


# -------------------------------------------------------------------------- validation


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("target", TARGETS)
def test_renders_without_warnings(kubectl: str, target: str) -> None:
    docs, stderr = _render(kubectl, target)
    assert docs
    assert "warning" not in stderr.lower(), f"kustomize warns (deprecated syntax?):\n{stderr}"


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_for_the_newest_kubernetes(kubectl: str, target: str) -> None:
    version = kv_utils.latest_version()
    skipped = set()
    for doc in objects(kubectl, target):
        ident = (doc["apiVersion"], doc["kind"])
        if ident in CUSTOM_RESOURCES:
            skipped.add(ident)  # no schema shipped for CRDs: checked by the tests below
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {exc.path}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{ident} has no schema in Kubernetes {version}: a typo or a removed API")
    assert skipped <= CUSTOM_RESOURCES


def test_namespace_per_overlay(docs: list[dict[str, Any]], overlay: str) -> None:
    expected = EXPECTED_NAMESPACE.get(overlay)
    assert expected, f"add overlay {overlay} to EXPECTED_NAMESPACE"
    for doc in docs:
        assert doc["metadata"].get("namespace") == expected, doc["metadata"]["name"]
    assert not any(d["kind"] == "Namespace" for d in docs), (
        "the namespace is shared: `kubectl delete -k` must never delete it"
    )


def test_replicas_per_overlay(docs: list[dict[str, Any]], overlay: str) -> None:
    replicas = one(docs, "Deployment", WORKER)["spec"]["replicas"]
    if overlay in EXPECTED_REPLICAS:
        assert replicas == EXPECTED_REPLICAS[overlay]
    assert replicas >= 1


def test_prod_is_namespace_mlops_prod_with_two_workers(kubectl: str) -> None:
    docs = objects(kubectl, "prod")
    assert {d["metadata"]["namespace"] for d in docs} == {"mlops-prod"}
    assert one(docs, "Deployment", WORKER)["spec"]["replicas"] == 2


# ---------------------------------------------------------------------------- the pods


def test_worker_settings_are_valid_and_the_command_is_real(docs: list[dict[str, Any]]) -> None:
    Settings.from_env(config(docs))  # raises SettingsError on a bad value
    c = container(docs)
    build_parser().parse_args(c["args"])
    assert c["args"] == ["worker"]
    image = c["image"]
    assert ":" in image and not image.endswith(":latest"), f"pin the image tag: {image}"


def test_requests_and_limits(docs: list[dict[str, Any]]) -> None:
    resources = container(docs)["resources"]
    for resource in ("cpu", "memory"):
        request = _quantity(resources["requests"][resource])
        limit = _quantity(resources["limits"][resource])
        assert 0 < request <= limit, f"{resource}: request {request} limit {limit}"
    assert _quantity(resources["limits"]["memory"]) >= 256 * 2**20, "idle RSS is ~137 MB"


def test_probes_on_the_metrics_port(docs: list[dict[str, Any]]) -> None:
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    settings = Settings.from_env(config(docs))
    assert ports["metrics"] == settings.metrics_port == 8000

    def target(probe: dict[str, Any]) -> tuple[str, int]:
        get = probe["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert target(c["livenessProbe"]) == ("/healthz", 8000)
    assert target(c["readinessProbe"]) == ("/readyz", 8000)
    assert target(c["startupProbe"]) == ("/healthz", 8000)


def test_graceful_termination(docs: list[dict[str, Any]]) -> None:
    pod = worker_pod(docs)["spec"]
    c = container(docs)
    pre_stop = c["lifecycle"]["preStop"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    grace = pod["terminationGracePeriodSeconds"]
    # The pause counts against the grace period; after it the worker needs its shutdown
    # (3.6 s measured idle) plus a Redis command that may time out (socket timeout 10 s).
    assert grace >= pause + 3.6 + 10 + 10, f"{grace} s leaves too little after a {pause} s pause"


def test_security_context_agrees_with_the_image(docs: list[dict[str, Any]]) -> None:
    stages, _ = _stages()
    final = stages[-1]
    uid = int(final.one("USER").value[0].split(":")[0])
    workdir = final.all("WORKDIR")[-1].value[0]
    pod = worker_pod(docs)["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == uid, "the image's UID"
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden)
    csc = container(docs)["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert not csc["capabilities"].get("add")
    assert not csc.get("privileged")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container(docs)["volumeMounts"]}
    for path in ("/tmp", workdir):
        assert path in mounts and "emptyDir" in mounts[path], f"{path} must be writable"
    assert not any("hostPath" in v for v in volumes.values())
    assert pod["automountServiceAccountToken"] is False


def test_spread_across_nodes(docs: list[dict[str, Any]], overlay: str) -> None:
    pod = worker_pod(docs)
    constraints = pod["spec"]["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    node = by_key["kubernetes.io/hostname"]
    assert node["maxSkew"] == 1
    assert selects(node["labelSelector"]["matchLabels"], pod["metadata"]["labels"])
    if overlay == "prod":
        assert node["whenUnsatisfiable"] == "DoNotSchedule"
        assert len(constraints) == len(by_key), "one constraint per topology key"


def test_rolling_update_never_surges(docs: list[dict[str, Any]]) -> None:
    strategy = one(docs, "Deployment", WORKER)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_disruption_budget(docs: list[dict[str, Any]]) -> None:
    pdb = one(docs, "PodDisruptionBudget", WORKER)["spec"]
    assert selects(pdb["selector"]["matchLabels"], worker_pod(docs)["metadata"]["labels"])
    assert pdb.get("maxUnavailable") == 1 and "minAvailable" not in pdb


# ------------------------------------------------------------------- network and scrape


def test_network_policy_admits_only_prometheus_to_the_metrics_port(
    docs: list[dict[str, Any]],
) -> None:
    policy = one(docs, "NetworkPolicy", WORKER)["spec"]
    assert selects(policy["podSelector"]["matchLabels"], worker_pod(docs)["metadata"]["labels"])
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert rule["from"], "an empty `from` would admit everyone"
    for peer in rule["from"]:
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        assert "ipBlock" not in peer
    egress_ports = {(p["port"], p["protocol"]) for r in policy["egress"] for p in r["ports"]}
    assert {(9092, "TCP"), (6379, "TCP"), (53, "UDP")} <= egress_ports
    kafka_port = int(config(docs)["UNDERTOW_KAFKA"].rsplit(":", 1)[1])
    assert (kafka_port, "TCP") in egress_ports


def test_service_and_service_monitor(docs: list[dict[str, Any]]) -> None:
    labels = worker_pod(docs)["metadata"]["labels"]
    service = one(docs, "Service", WORKER)
    assert selects(service["spec"]["selector"], labels)
    [port] = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["port"] == 8000
    monitor = one(docs, "ServiceMonitor", WORKER)["spec"]
    assert selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert endpoint["interval"] == prometheus["global"]["scrape_interval"]
    # The rules and dashboards read job="undertow".
    relabel = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
    assert relabel["job"] == "undertow"
    rules = (ROOT / "deploy/prometheus/rules/worker-down.yml").read_text()
    assert 'up{job="undertow"}' in rules


# ----------------------------------------------------------------------------- secrets


def test_no_inline_secrets(docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band"
    for name, value in config(docs).items():
        assert not SENSITIVE.search(name), f"{name} belongs in a Secret"
        assert not re.search(r"://[^/@\s]*:[^/@\s]+@", value), f"{name} carries credentials"
    env = {e["name"]: e for e in container(docs).get("env", [])}
    redis = env["UNDERTOW_REDIS_URL"]
    assert "value" not in redis and redis["valueFrom"]["secretKeyRef"]["name"]
    for name, entry in env.items():
        if SENSITIVE.search(name):
            assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name} is not from a Secret"


def test_the_repository_holds_no_secret_objects() -> None:
    for path in [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path} defines a Secret"
                assert "secretGenerator" not in doc, f"{path} generates a Secret"


# ------------------------------------------------------------------------- autoscaling


def test_one_autoscaler_capped_at_the_partition_count(docs: list[dict[str, Any]]) -> None:
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    keda = [d for d in docs if d["kind"] == "ScaledObject"]
    assert len(hpas) + len(keda) == 1, "KEDA drives an HPA of its own: never both"
    partitions = Settings.from_env(config(docs)).partitions
    replicas = one(docs, "Deployment", WORKER)["spec"]["replicas"]
    if hpas:
        spec = hpas[0]["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": WORKER,
        }
        low, high = spec["minReplicas"], spec["maxReplicas"]
    else:
        spec = keda[0]["spec"]
        assert spec["scaleTargetRef"]["name"] == WORKER
        low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
    assert high == partitions, "more workers than partitions do nothing"
    assert 1 <= low <= replicas <= high


def test_keda_reads_the_workers_consumer_group(kubectl: str) -> None:
    docs = objects(kubectl, "prod")
    [trigger] = one(docs, "ScaledObject", WORKER)["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    settings = Settings.from_env(config(docs))
    # agents/ingest.py: group_id=f"{self.store.ns}.ingest", ns = agents.app.namespace(settings)
    assert meta["consumerGroup"] == f"{app_namespace(settings)}.ingest" == "undertow.ingest"
    assert meta["topic"] == settings.topics.predictions
    assert meta["bootstrapServers"] == settings.kafka
    assert meta["allowIdleConsumers"] == "false"
    assert int(meta["lagThreshold"]) > 0


def test_autoscalers_say_why_they_stop_at_the_partition_count() -> None:
    for name in ("keda/scaledobject.yaml", "hpa/horizontalpodautoscaler.yaml"):
        lines = (K8S / "components" / name).read_text().splitlines()
        prose = " ".join(x.strip().lstrip("#").strip() for x in lines if x.strip().startswith("#"))
        assert "more workers than partitions do nothing" in prose, name


# ------------------------------------------------------------ rules and dashboards


def test_prometheus_rule_is_in_sync_with_the_rule_files() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-k8s-rules.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _rule_groups() -> Iterator[dict[str, Any]]:
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        yield from yaml.safe_load(path.read_text())["groups"]


def test_rendered_prometheus_rule_has_every_group(docs: list[dict[str, Any]]) -> None:
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == list(_rule_groups())
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique in one PrometheusRule"


def test_every_dashboard_is_a_labelled_config_map(docs: list[dict[str, Any]]) -> None:
    dashboards = {
        p.name: p.read_text() for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")
    }
    assert dashboards
    found: dict[str, str] = {}
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] == "ConfigMap" and labels.get("grafana_dashboard") == "1":
            assert len(doc["data"]) == 1, "one dashboard per ConfigMap"
            found.update(doc["data"])
    assert found == dashboards, "every JSON file, byte for byte, and nothing else"
    uids = [json.loads(text)["uid"] for text in found.values()]
    assert len(uids) == len(set(uids))
