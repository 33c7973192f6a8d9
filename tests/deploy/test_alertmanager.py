"""deploy/alertmanager: routing, grouping, inhibition and secrets, against a real Alertmanager.

Alertmanager and amtool come from the Debian package ``prometheus-alertmanager`` (Debian
names the server binary ``prometheus-alertmanager``; upstream calls it ``alertmanager``).
Without them these tests skip on a developer machine and fail on CI (the ``skip_or_fail``
policy of tests/conftest.py).

The live tests start Alertmanager on a free loopback port with clustering off and a temporary
storage directory, post alerts through its v2 API and watch what an HTTP server run by the test
receives. Two configurations are used, both derived from the repository's file:

- the routing tree and inhibition rules unchanged, every receiver's integrations replaced by a
  webhook to the test server (path = receiver name), so the test sees which receiver got which
  group;
- the file itself, receivers and templates included, with only the secret-file paths and the
  PagerDuty endpoint pointed at the test: Alertmanager must read the Slack URL and the
  PagerDuty routing key from the files and render the repository's templates.

Timers are shortened (group_wait 200 ms), every wait is bounded, and Alertmanager is always
terminated.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AM_DIR = ROOT / "deploy" / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"
START_TIMEOUT_S = 20.0
DELIVERY_TIMEOUT_S = 15.0
# Long enough for several group_interval rounds of the test configuration.
QUIET_PERIOD_S = 2.5


# --------------------------------------------------------------------------- tools


def _binary(names: tuple[str, ...], unavailable: Callable[[str], NoReturn]) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    unavailable(
        f"{' / '.join(names)} is not installed: it ships with the Debian package "
        "'prometheus-alertmanager' (apt-get install --no-install-recommends "
        "prometheus-alertmanager)"
    )


@pytest.fixture
def amtool(service_unavailable: Callable[[str], NoReturn]) -> str:
    return _binary(("amtool",), service_unavailable)


@pytest.fixture
def alertmanager_bin(service_unavailable: Callable[[str], NoReturn]) -> str:
    return _binary(("alertmanager", "prometheus-alertmanager"), service_unavailable)


def _config() -> dict[str, Any]:
    with AM_CONFIG.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


# ------------------------------------------------------------------ static checks


def test_amtool_check_config_passes(amtool: str) -> None:
    result = subprocess.run(
        [amtool, "check-config", str(AM_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 templates" in result.stdout  # templates/*.tmpl resolved next to the file


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            {"severity": "critical", "alertname": "DataDriftDetected", "model_name": "fraud"},
            "pagerduty-critical",
        ),
        (
            {"severity": "warning", "alertname": "DataDriftDetected", "model_name": "fraud"},
            "slack-warnings",
        ),
        ({"severity": "info", "alertname": "DataDriftDetected", "model_name": "fraud"}, "null"),
        # A rule without a known severity is seen in Slack rather than lost.
        ({"alertname": "SomethingNew"}, "slack-warnings"),
    ],
    ids=["critical", "warning", "info", "no-severity"],
)
def test_amtool_routes_by_severity(amtool: str, labels: dict[str, str], receiver: str) -> None:
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={AM_CONFIG}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_groups_by_alert_and_model() -> None:
    route = _config()["route"]
    assert route["group_by"] == ["alertname", "model_name"]
    for child in _routes(route):
        assert child.get("group_by", route["group_by"]) == route["group_by"]


def test_receivers_read_secrets_from_files_only() -> None:
    config = _config()
    text = AM_CONFIG.read_text(encoding="utf-8")
    literal = {"api_url", "routing_key", "service_key", "url", "api_key", "auth_password"}
    global_literals = {"slack_api_url", "pagerduty_url", "opsgenie_api_key", "smtp_auth_password"}
    assert not global_literals & set(config.get("global", {}))
    kinds: set[str] = set()
    for receiver in config["receivers"]:
        for kind, integrations in receiver.items():
            if kind == "name":
                continue
            kinds.add(kind)
            for integration in integrations:
                assert not literal & set(integration), f"{receiver['name']}: literal secret"
                files = [v for k, v in integration.items() if k.endswith("_file")]
                assert files, f"{receiver['name']}: no secret file"
                for path in files:
                    assert path.startswith(SECRETS_DIR), path
    assert kinds == {"pagerduty_configs", "slack_configs"}
    assert "hooks.slack.com" not in text
    assert not re.search(r"\b[0-9a-f]{32}\b", text), "something that looks like a key"
    null = next(r for r in config["receivers"] if r["name"] == "null")
    assert set(null) == {"name"}, "info alerts must reach nobody"


# ------------------------------------------------------------------ live harness


@dataclass
class Request:
    path: str
    body: Any


@dataclass
class Recorder:
    """What the test's HTTP server received, with a condition to wait on."""

    requests: list[Request] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, request: Request) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()

    def wait_for(self, what: str, match: Callable[[Request], bool]) -> Request:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        with self.cond:
            while True:
                for request in self.requests:
                    if match(request):
                        return request
                left = deadline - time.monotonic()
                if left <= 0:
                    paths = [r.path for r in self.requests]
                    pytest.fail(f"{what} did not arrive in {DELIVERY_TIMEOUT_S}s; got {paths}")
                self.cond.wait(left)

    def snapshot(self) -> list[Request]:
        with self.cond:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Recorder]]:
    """An HTTP server on loopback that records every POST (webhook, Slack, PagerDuty)."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            recorder.add(Request(self.path, body))
            if self.path.startswith("/pagerduty"):
                reply, status = b'{"status":"success","message":"Event processed"}', 202
            else:
                reply, status = b"ok", 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveAlertmanager:
    url: str
    log: Path

    def post(self, *alerts: dict[str, str]) -> None:
        """POST alerts (given as labels; annotations added) to /api/v2/alerts."""
        now = datetime.now(UTC)
        payload = [
            {
                "labels": labels,
                "annotations": {
                    "summary": f"{labels['alertname']} summary",
                    "description": f"{labels['alertname']} of {labels.get('model_name')}",
                    "runbook_url": "docs/runbooks/data-drift.md",
                },
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }
            for labels in alerts
        ]
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        query = urllib.parse.quote(f'alertname="{alertname}"')
        with urllib.request.urlopen(
            f"{self.url}/api/v2/alerts?filter={query}", timeout=10
        ) as response:
            return json.loads(response.read())

    def groups(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts/groups", timeout=10) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def run_alertmanager(binary: str, config: dict[str, Any], tmp: Path) -> Iterator[LiveAlertmanager]:
    """A real Alertmanager on a free loopback port; always terminated."""
    config_path = tmp / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log_path = tmp / "alertmanager.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited ({process.returncode}):\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"alertmanager not ready in {START_TIMEOUT_S}s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield LiveAlertmanager(url, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _fast(config: dict[str, Any]) -> dict[str, Any]:
    """The same tree with timers short enough for a test."""
    config = copy.deepcopy(config)
    for route in _routes(config["route"]):
        route["group_wait"] = "200ms"
        route["group_interval"] = "500ms"
        route["repeat_interval"] = "1h"
    return config


def _webhook_config(hook: str) -> dict[str, Any]:
    """Routing and inhibition unchanged; each receiver posts to <hook>/<receiver name>."""
    config = _fast(_config())
    config.pop("templates", None)
    receivers = []
    for receiver in config["receivers"]:
        if len(receiver) == 1:  # no integration: the null receiver stays silent
            receivers.append(receiver)
        else:
            receivers.append(
                {
                    "name": receiver["name"],
                    "webhook_configs": [
                        {"url": f"{hook}/{receiver['name']}", "send_resolved": False}
                    ],
                }
            )
    config["receivers"] = receivers
    return config


def _alertnames(request: Request) -> list[str]:
    return [a["labels"]["alertname"] for a in request.body.get("alerts", [])]


# ------------------------------------------------------------------------ live tests


def test_critical_alert_is_routed_to_pagerduty_grouped_by_model_and_info_reaches_nobody(
    alertmanager_bin: str, receiver: tuple[str, Recorder], tmp_path: Path
) -> None:
    hook, recorder = receiver
    with run_alertmanager(alertmanager_bin, _webhook_config(hook), tmp_path) as am:
        drift = {
            "alertname": "DataDriftDetected",
            "severity": "critical",
            "job": "undertow",
            "model_name": "fraud",
        }
        am.post(
            {**drift, "feature_name": "amount"},
            {**drift, "feature_name": "age"},
            # Another model: its own group, its own notification.
            {**drift, "model_name": "credit", "feature_name": "income"},
            # info: recorded by Alertmanager, sent to nobody.
            {
                "alertname": "DataDriftDetected",
                "severity": "info",
                "job": "undertow",
                "model_name": "ads",
                "feature_name": "clicks",
            },
        )
        fraud = recorder.wait_for(
            "the fraud drift group",
            lambda r: (
                isinstance(r.body, dict)
                and r.body.get("groupLabels", {}).get("model_name") == "fraud"
            ),
        )
        assert fraud.path == "/pagerduty-critical"
        assert fraud.body["receiver"] == "pagerduty-critical"
        assert fraud.body["status"] == "firing"
        assert fraud.body["groupLabels"] == {
            "alertname": "DataDriftDetected",
            "model_name": "fraud",
        }
        features = sorted(a["labels"]["feature_name"] for a in fraud.body["alerts"])
        assert features == ["age", "amount"], "both features of fraud in one notification"
        credit = recorder.wait_for(
            "the credit drift group",
            lambda r: (
                isinstance(r.body, dict)
                and r.body.get("groupLabels", {}).get("model_name") == "credit"
            ),
        )
        assert credit.body["receiver"] == "pagerduty-critical"
        assert [a["labels"]["feature_name"] for a in credit.body["alerts"]] == ["income"]

        time.sleep(QUIET_PERIOD_S)
        received = recorder.snapshot()
        assert all(a["labels"]["severity"] != "info" for r in received for a in r.body["alerts"]), (
            "an info alert was notified"
        )
        assert {r.path for r in received} == {"/pagerduty-critical"}
        # Alertmanager holds the info alert, in a group of the null receiver.
        info_groups = [
            g
            for g in am.groups()
            if any(a["labels"].get("severity") == "info" for a in g["alerts"])
        ]
        assert [g["receiver"]["name"] for g in info_groups] == ["null"]


def test_worker_down_inhibits_the_drift_alert_it_causes(
    alertmanager_bin: str, receiver: tuple[str, Recorder], tmp_path: Path
) -> None:
    hook, recorder = receiver
    with run_alertmanager(alertmanager_bin, _webhook_config(hook), tmp_path) as am:
        am.post(
            {
                "alertname": "WorkerDown",
                "severity": "critical",
                "scope": "worker",
                "job": "undertow",
                "instance": "w1:8000",
            }
        )
        down = recorder.wait_for("WorkerDown", lambda r: "WorkerDown" in _alertnames(r))
        assert down.body["receiver"] == "pagerduty-critical"

        same = {
            "job": "undertow",
            "instance": "w1:8000",
            "model_name": "fraud",
            "feature_name": "amount",
        }
        am.post(
            {"alertname": "DataDriftDetected", "severity": "warning", **same},
            # Not caused by an outage: still delivered, and proves warnings flow meanwhile.
            {
                "alertname": "DataQualityDegraded",
                "severity": "warning",
                "check": "missing_rate",
                **same,
            },
        )
        control = recorder.wait_for(
            "DataQualityDegraded", lambda r: "DataQualityDegraded" in _alertnames(r)
        )
        assert control.body["receiver"] == "slack-warnings"
        time.sleep(QUIET_PERIOD_S)
        delivered = {n for r in recorder.snapshot() for n in _alertnames(r)}
        assert "DataDriftDetected" not in delivered
        (drift,) = am.alerts("DataDriftDetected")
        assert drift["status"]["state"] == "suppressed"
        assert drift["status"]["inhibitedBy"], "suppressed by inhibition, not by a silence"


def test_critical_inhibits_the_warning_of_the_same_alert(
    alertmanager_bin: str, receiver: tuple[str, Recorder], tmp_path: Path
) -> None:
    """Above 0.25 the rules fire warning and critical; only the page goes out."""
    hook, recorder = receiver
    with run_alertmanager(alertmanager_bin, _webhook_config(hook), tmp_path) as am:
        same = {
            "alertname": "PredictionDriftDetected",
            "job": "undertow",
            "model_name": "fraud",
            "model_version": "v1",
        }
        am.post({**same, "severity": "critical"})
        recorder.wait_for("the critical alert", lambda r: r.path == "/pagerduty-critical")
        am.post(
            {**same, "severity": "warning"},
            # Same alert for another version: a different alert, not inhibited.
            {**same, "model_version": "v2", "severity": "warning"},
        )
        other = recorder.wait_for("the v2 warning", lambda r: r.path == "/slack-warnings")
        versions = [a["labels"]["model_version"] for a in other.body["alerts"]]
        assert versions == ["v2"]
        time.sleep(QUIET_PERIOD_S)
        for request in recorder.snapshot():
            if request.path == "/slack-warnings":
                assert all(a["labels"]["model_version"] == "v2" for a in request.body["alerts"])


def test_receivers_read_secret_files_and_render_templates(
    alertmanager_bin: str, receiver: tuple[str, Recorder], tmp_path: Path
) -> None:
    """The repository's receivers and templates, with the secrets in temporary files."""
    hook, recorder = receiver
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    routing_key = "test-routing-key-not-a-secret"
    written = {
        "slack-webhook-url": f"{hook}/slack/T000/B000/XXXX",
        "pagerduty-routing-key": routing_key,
    }
    for name, value in written.items():
        (secrets / name).write_text(value + "\n", encoding="utf-8")

    config = _fast(_config())
    config["templates"] = [str(AM_DIR / t) for t in config["templates"]]
    used: set[str] = set()
    for rcv in config["receivers"]:
        for integration in [i for k, v in rcv.items() if k != "name" for i in v]:
            for key, path in list(integration.items()):
                if key.endswith("_file"):
                    name = path.removeprefix(SECRETS_DIR)
                    assert name in written, f"unexpected secret file {path}"
                    integration[key] = str(secrets / name)
                    used.add(name)
            if "routing_key_file" in integration or "service_key_file" in integration:
                integration["url"] = f"{hook}/pagerduty"  # the Events API endpoint
    assert used == set(written)

    with run_alertmanager(alertmanager_bin, config, tmp_path) as am:
        am.post(
            {
                "alertname": "ModelAccuracyDrop",
                "severity": "critical",
                "job": "undertow",
                "model_name": "fraud",
                "model_version": "v1",
            },
            {
                "alertname": "DataDriftDetected",
                "severity": "warning",
                "job": "undertow",
                "model_name": "credit",
                "feature_name": "income",
            },
        )
        page = recorder.wait_for("the PagerDuty event", lambda r: r.path == "/pagerduty")
        assert page.body["routing_key"] == routing_key  # read from the file, newline trimmed
        assert page.body["event_action"] == "trigger"
        summary = page.body["payload"]["summary"]
        assert "ModelAccuracyDrop" in summary and "fraud" in summary, summary
        assert page.body["payload"]["severity"] == "critical"
        details = page.body["payload"]["custom_details"]
        assert "docs/runbooks/data-drift.md" in details["runbook"]
        assert "ModelAccuracyDrop of fraud" in details["description"]

        slack = recorder.wait_for("the Slack message", lambda r: r.path.startswith("/slack/"))
        assert slack.path == "/slack/T000/B000/XXXX"  # the URL from the file, path included
        assert slack.body["channel"] == "#undertow-alerts"
        (attachment,) = slack.body["attachments"]
        assert "DataDriftDetected" in attachment["title"] and "credit" in attachment["title"]
        assert "DataDriftDetected of credit" in attachment["text"]
        assert "Runbook: docs/runbooks/data-drift.md" in attachment["text"]
        log = am.log.read_text(errors="replace")
        assert "Notify for alerts failed" not in log, _tail(am.log)
