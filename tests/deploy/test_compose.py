"""docker-compose.yml, checked without a Docker engine (none runs here or on CI).

- the file validates against the Compose specification (check-jsonschema's vendored
  ``vendor.compose-spec`` schema; without check-jsonschema this skips locally, fails on CI);
- the services the deployment promises exist, with the properties that matter: Kafka in
  KRaft mode on a named volume, Redis with AOF on a named volume, two workers, Prometheus,
  Alertmanager and Grafana wired to deploy/, healthchecks and depends_on conditions;
- the kafka-init script is RUN (bash, with a stand-in for kafka-topics.sh that records its
  arguments) and the topics it creates are compared with what the workers' own
  ``agents.topics.ensure_topics`` asks for under the same settings: predictions and labels
  must get equal partition counts, also when UNDERTOW_PARTITIONS is overridden;
- no literal secret: sensitive settings come from files under ./secrets/ (gitignored), and
  Alertmanager's *_file paths are exactly the secrets mounted into it;
- the demo's and the worker's commands parse with undertow's real argument parser, so no
  flag is invented; without overrides the stack runs the workers' own defaults, and
  deploy/compose-demo.env is the demo's own time scale (``DEMO_ENV``), under which its
  alerts can fire before it stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from agents.cli import build_parser
from agents.settings import Settings

from .tools import ROOT, interpolate_all, venv_tool

COMPOSE = ROOT / "docker-compose.yml"
DEMO_ENV_FILE = ROOT / "deploy" / "compose-demo.env"
REQUIRED = {"kafka", "redis", "worker", "prometheus", "alertmanager", "grafana"}
LONG_RUNNING = REQUIRED | {"kafka-exporter"}
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|WEBHOOK|ROUTING_KEY|CREDENTIAL", re.I)


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose sees it: anchors merged, ${VAR:-default} resolved."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate_all(raw, environ or {})  # type: ignore[return-value]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host source of a service's bind mounts and named volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host file behind ``container_path``, through the service's bind mounts."""
    for target, source in sorted(_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            assert source.startswith("./"), f"{container_path} is on a volume, not in the repo"
            return ROOT / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"nothing mounted at {container_path}")


def _flag(argv: list[str], name: str) -> str:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


# ---------------------------------------------------------------------------- the schema


def test_validates_against_the_compose_spec(
    service_unavailable: Callable[[str], NoReturn],
) -> None:
    tool = venv_tool("check-jsonschema", service_unavailable, "it is in the dev extra (make setup)")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------------- the services


def test_required_services(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert compose["services"].keys() >= REQUIRED
    for name in REQUIRED:
        assert "profiles" not in services[name], f"{name} must start with a plain `up`"
    assert services["demo"]["profiles"] == ["demo"]


def test_two_workers(services: dict[str, Any]) -> None:
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "container_name" not in services["worker"], "replicas need generated names"
    assert "ports" not in services["worker"], "two replicas cannot publish one host port"


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any], services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert not kafka["image"].endswith(":latest")
    env = kafka["environment"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert f"{node}@kafka:9093" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://:9093" in env["KAFKA_LISTENERS"]
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")}
    assert listeners <= protocols.keys()
    advertised = dict(a.split("://") for a in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    # In-network clients (the workers) use the advertised in-network listener.
    assert advertised["PLAINTEXT"] == services["worker"]["environment"]["UNDERTOW_KAFKA"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    log_dir = env["KAFKA_LOG_DIRS"]
    volume = _mounts(kafka)[log_dir]
    assert volume in compose["volumes"], "the log directory is on a named volume"


def test_redis_keeps_an_append_only_file_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    redis = services["redis"]
    argv = redis["command"]
    assert argv[0] == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--maxmemory-policy"] == "noeviction", "window state must never be evicted"
    volume = _mounts(redis)[options["--dir"]]
    assert volume in compose["volumes"]
    assert "ports" not in redis, "Redis has no password here: never publish it"
    worker_url = services["worker"]["environment"]["UNDERTOW_REDIS_URL"]
    assert worker_url.startswith("redis://redis:6379/")


def test_healthchecks_and_start_order(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING - {"kafka-exporter"}:
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, which it never reports"
                )
    worker = services["worker"]["depends_on"]
    assert worker["kafka"]["condition"] == "service_healthy"
    assert worker["redis"]["condition"] == "service_healthy"
    assert worker["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["demo"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_worker_healthcheck_probes_healthz(services: dict[str, Any]) -> None:
    test = services["worker"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and "/healthz" in test[-1]
    assert services["worker"]["environment"]["UNDERTOW_METRICS_PORT"] == "8000"


def test_published_ports_are_on_loopback_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_commands_are_real_undertow_invocations(services: dict[str, Any]) -> None:
    parser = build_parser()
    for name in ("worker", "demo"):
        argv = services[name]["command"]
        args = parser.parse_args(argv)  # SystemExit on an invented flag
        assert args.command == argv[0]


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_compose_defaults_are_the_workers_own_defaults(services: dict[str, Any]) -> None:
    env = services["worker"]["environment"]
    settings = Settings.from_env(env)
    expected = dataclasses.replace(
        Settings(), kafka="kafka:9092", redis_url=env["UNDERTOW_REDIS_URL"]
    )
    assert settings == expected, "without overrides the stack runs the production defaults"


def test_demo_env_file_is_the_demos_own_time_scale(services: dict[str, Any]) -> None:
    from agents.cli.demo import DEMO_ENV

    demo_env = _env_file(DEMO_ENV_FILE)
    for key, value in DEMO_ENV.items():
        # Every variable the demo would set for itself (os.environ.setdefault) is set for
        # the whole stack, or its own worker would disagree with the compose workers.
        assert key in services["worker"]["environment"], f"{key} is not in x-undertow-env"
        if key != "UNDERTOW_PARTITIONS":  # the topics already exist with the stack's count
            assert demo_env.get(key) == value, f"{DEMO_ENV_FILE.name}: {key} != {value}"
    assert set(demo_env) <= set(services["worker"]["environment"]), "unknown variables"


def test_demo_alerts_can_fire_before_the_demo_ends() -> None:
    services = load(_env_file(DEMO_ENV_FILE))["services"]
    demo = build_parser().parse_args(services["demo"]["command"])
    settings = Settings.from_env(services["demo"]["environment"])
    assert settings == Settings.from_env(services["worker"]["environment"])
    # Drift must fill a window, and the changed concept a performance window, that closes
    # before the demo stops publishing.
    assert demo.drift_after + settings.window_s + settings.grace_s < demo.duration
    assert demo.concept_after + settings.performance_window_ms / 1000 < demo.duration


def test_demo_and_kafka_init_share_the_workers_settings(services: dict[str, Any]) -> None:
    worker = services["worker"]["environment"]
    for name in ("demo", "kafka-init"):
        env = services[name]["environment"]
        shared = {k: v for k, v in env.items() if k.startswith("UNDERTOW_")}
        assert shared == worker, f"{name} must see the workers' UNDERTOW_* settings"


# ----------------------------------------------------------------------------- topics


def _kafka_init_topics(services: dict[str, Any], tmp_path: Path) -> dict[str, int]:
    """Run kafka-init's script with a recording kafka-topics.sh; topic -> partitions."""
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"], "the broker's own CLI tools"
    assert init["entrypoint"] == ["/bin/bash", "-c"]
    script = init["command"][0]
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n')
    stub.chmod(0o755)
    env = {**{k: str(v) for k, v in init["environment"].items()}, "KAFKA_TOPICS_SH": str(stub)}
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(
        ["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    topics: dict[str, int] = {}
    for call in log.read_text().splitlines():
        argv = call.split()
        assert "--create" in argv and "--if-not-exists" in argv, call
        assert argv[argv.index("--bootstrap-server") + 1] == env["UNDERTOW_KAFKA"]
        topic = argv[argv.index("--topic") + 1]
        topics[topic] = int(argv[argv.index("--partitions") + 1])
    return topics


def _workers_topics(environ: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What agents.topics.ensure_topics creates on an empty broker for these settings."""
    import agents.topics

    created: dict[str, int] = {}

    class Admin:
        def __init__(self, **kwargs: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, topics: list[Any]) -> None:
            created.update({t.name: t.num_partitions for t in topics})

        async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
            return [{"topic": n, "partitions": [{}] * created[n]} for n in names]

    monkeypatch.setattr(agents.topics, "AIOKafkaAdminClient", Admin)
    settings = Settings.from_env({k: str(v) for k, v in environ.items()})
    asyncio.run(agents.topics.ensure_topics(settings))
    return created


@pytest.mark.parametrize("override", [{}, {"UNDERTOW_PARTITIONS": "12"}])
def test_kafka_init_creates_the_workers_topic_layout(
    override: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = load(override)["services"]
    made = _kafka_init_topics(services, tmp_path)
    wanted = _workers_topics(services["worker"]["environment"], monkeypatch)
    assert made == wanted
    prefix = services["worker"]["environment"]["UNDERTOW_TOPIC_PREFIX"]
    partitions = int(override.get("UNDERTOW_PARTITIONS", Settings().partitions))
    assert made[f"{prefix}predictions"] == made[f"{prefix}labels"] == partitions
    assert made[f"{prefix}alerts"] == 1
    assert {f"{prefix}metrics", f"{prefix}deadletter"} <= made.keys()


def test_topic_prefix_matches_the_alert_rules(services: dict[str, Any]) -> None:
    # deploy/prometheus/rules and alertmanager.yml name the group undertow.ingest.
    prefix = services["worker"]["environment"]["UNDERTOW_TOPIC_PREFIX"]
    assert prefix.rstrip(".") + ".ingest" == "undertow.ingest"
    rules = "".join(p.read_text() for p in (ROOT / "deploy/prometheus/rules").glob("*.yml"))
    assert "undertow.ingest" in rules


# ------------------------------------------------------------------- Prometheus and co.


def test_prometheus_loads_the_repository_rules(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_path = _host_path(prometheus, _flag(prometheus["command"], "--config.file"))
    assert config_path == ROOT / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    loaded = set()
    for pattern in config["rule_files"]:
        matched = sorted(config_path.parent.glob(pattern))
        assert matched, f"rule_files {pattern} matches nothing in the mounted directory"
        loaded.update(matched)
    assert loaded == set((ROOT / "deploy/prometheus/rules").glob("*.yml"))
    assert _mounts(prometheus)["/prometheus"] in load()["volumes"]


def test_prometheus_scrapes_the_services_that_exist(services: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["undertow"]["dns_sd_configs"][0]
    assert workers["names"] == ["worker"]
    assert str(workers["port"]) == services["worker"]["environment"]["UNDERTOW_METRICS_PORT"]
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.split(":")[0]
                assert host == "localhost" or host in services, f"{target}: no such service"
    for am in config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        assert am.split(":")[0] in services


def test_alertmanager_uses_the_repository_config_and_secret_files(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    am = services["alertmanager"]
    config_path = _host_path(am, _flag(am["command"], "--config.file"))
    assert config_path == ROOT / "deploy/alertmanager/alertmanager.yml"
    config = yaml.safe_load(config_path.read_text())
    for pattern in config["templates"]:
        assert list(config_path.parent.glob(pattern)), f"template {pattern} matches nothing"
    wanted = set()
    for receiver in config["receivers"]:
        for key, integrations in receiver.items():
            if key.endswith("_configs"):
                for integration in integrations:
                    wanted |= {v for k, v in integration.items() if k.endswith("_file")}
    mounted = {s["target"]: s["source"] for s in am["secrets"]}
    assert wanted and wanted == set(mounted), "every *_file the receivers read is mounted"
    for source in mounted.values():
        assert compose["secrets"][source]["file"].startswith("./secrets/")


def test_grafana_is_provisioned_from_the_repository(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy/grafana/provisioning"
    provider = yaml.safe_load((provisioning / "dashboards/undertow.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    dashboards = _host_path(grafana, path)
    assert sorted(p.name for p in dashboards.glob("*.json")) == sorted(
        p.name for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")
    )
    assert dashboards.glob("*.json")
    source = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    url = source["datasources"][0]["url"]
    assert re.fullmatch(r"http://prometheus:9090/?", url)


# ------------------------------------------------------------------------------ secrets


def test_no_literal_secrets(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, service in services.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        mounted = {
            f"/run/secrets/{s}" if isinstance(s, str) else s.get("target", s["source"])
            for s in service.get("secrets", [])
        }
        for key, value in env.items():
            if SENSITIVE.search(key):
                assert key.endswith("__FILE") or key.endswith("_FILE"), (
                    f"{name}: {key} is given inline; read it from a secret file"
                )
                assert value in mounted, f"{name}: {key} points at {value}, not a mounted secret"
            assert not re.search(r"://[^/@\s]*:[^/@\s]+@", str(value)), (
                f"{name}: {key} has credentials in a URL"
            )
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name} must come from a file"
        path = secret["file"]
        assert path.startswith("./secrets/")
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", path], cwd=ROOT, capture_output=True, timeout=30
        )
        assert ignored.returncode == 0, f"{path} is not gitignored"
    text = COMPOSE.read_text()
    for leak in (r"hooks\.slack\.com/services/\w", r"xox[abp]-", r"events\.pagerduty\.com"):
        assert not re.search(leak, text)


def test_secrets_script_makes_every_secret_file(tmp_path: Path, compose: dict[str, Any]) -> None:
    script = ROOT / "scripts/compose-secrets.sh"
    copy = tmp_path / "scripts"
    copy.mkdir()
    (copy / "compose-secrets.sh").write_text(script.read_text())
    result = subprocess.run(
        ["bash", str(copy / "compose-secrets.sh")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for secret in compose["secrets"].values():
        made = tmp_path / secret["file"]
        assert made.is_file(), f"{secret['file']} is not created by compose-secrets.sh"
        assert made.stat().st_mode & 0o044, "readable by the containers' unprivileged users"
    password = (tmp_path / "secrets/grafana-admin-password").read_text()
    assert len(password) >= 24
    again = subprocess.run(
        ["bash", str(copy / "compose-secrets.sh")], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0
    assert (tmp_path / "secrets/grafana-admin-password").read_text() == password, "kept"
