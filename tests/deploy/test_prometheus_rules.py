"""The Prometheus alert rules in deploy/prometheus, checked with the real promtool.

promtool comes from the Debian package ``prometheus``. Without it these tests skip on a
developer machine and fail on CI (the ``skip_or_fail`` policy of tests/conftest.py). The
structural tests need only PyYAML:

- every alerting rule has a severity (info|warning|critical), a summary, a description that
  shows labels and ``$value``, and a ``runbook_url`` naming a file that exists, with the
  sections an on-call engineer needs;
- every rule is exercised by a promtool unit test that expects it to fire AND by one where
  it must stay quiet (a rule is told apart from its siblings by its static labels);
- every metric a rule or a test reads is exported by a worker today (agents/metrics.py,
  agents/performance_metrics.py), or is one of the planned metrics listed here (the
  proposals of deploy/prometheus, external);
- the promtool tests feed the series shapes a worker really exports: the label names of each
  input series are the exported ones plus ``job`` and ``instance``, histogram buckets use the
  exporter's ``le`` values, and the label matchers of rules name labels the metric has.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules"
UNIT_TESTS = PROM / "tests"
SEVERITIES = {"info", "warning", "critical"}
PROMTOOL_TIMEOUT_S = 120

# One rule file per concern (issue 5), plus evaluator.yml (the recording rule the window
# gauges are read through).
CONCERNS = {
    "model-quality",
    "latency",
    "data-drift",
    "prediction-drift",
    "volume",
    "fairness",
    "label-delay",
    "data-quality",
    "dead-letters",
    "consumer-lag",
    "worker-down",
    "monitor-health",
}
REQUIRED_ALERTS = {
    # the classic four
    "ModelAccuracyDrop",
    "HighPredictionLatency",
    "DataDriftDetected",
    "PredictionVolumeAnomaly",
    # and the rest of issue 5
    "PredictionDriftDetected",
    "FairnessViolation",
    "LabelDelayHigh",
    "DataQualityDegraded",
    "DeadLetterRateHigh",
    "ConsumerLagHigh",
    "WorkerDown",
    "MonitorWindowStalled",
}
# Metrics that rules may read although no worker exports them yet.
PLANNED_METRICS = {
    # proposed by deploy/prometheus/rules
    "ml_feature_baseline_missing_rate": "proposed: the reference's missing rate per feature",
    # outside undertow
    "kafka_consumergroup_lag": "kafka-exporter",
    "up": "Prometheus",
}
# Input series of promtool tests that deliberately do not have an exported shape:
# (test file, test name) -> why.
HYPOTHETICAL_SHAPES = {
    (
        "data-drift.yml",
        "with a model_version label on the feature gauges, alerts are per version",
    ): "the feature gauges may gain model_version; the rules group by it already",
}
RUNBOOK_SECTIONS = (
    "What it means",
    "Immediate actions",
    "Investigation",
    "Remediation",
    "Escalation",
)


# --------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class Rule:
    file: str
    alert: str
    static_labels: tuple[tuple[str, str], ...]
    body: dict[str, Any]

    @property
    def id(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.static_labels)
        return f"{self.file}:{self.alert}{{{labels}}}"


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def _unit_test_files() -> list[Path]:
    return sorted(UNIT_TESTS.glob("*.yml"))


def _all_rules() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in _rule_files():
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


def _alerting_rules() -> list[Rule]:
    return [
        Rule(
            file=name,
            alert=rule["alert"],
            static_labels=tuple(sorted((rule.get("labels") or {}).items())),
            body=rule,
        )
        for name, rule in _all_rules()
        if "alert" in rule
    ]


ALERTING_RULES = _alerting_rules()


def _loaded_rule_files(test_path: Path) -> set[str]:
    """Names of the rule files a promtool test file loads (paths relative to the file)."""
    doc = _load(test_path)
    return {(test_path.parent / p).resolve().name for p in doc.get("rule_files", [])}


def _alert_cases() -> list[tuple[set[str], str, list[dict[str, str]]]]:
    """Every alert_rule_test: (rule files loaded, alertname, expected alerts' labels)."""
    cases = []
    for path in _unit_test_files():
        loaded = _loaded_rule_files(path)
        for group in _load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                expected = [
                    {str(k): str(v) for k, v in (a.get("exp_labels") or {}).items()}
                    for a in case.get("exp_alerts") or []
                ]
                cases.append((loaded, case["alertname"], expected))
    return cases


# ------------------------------------------------------------------------- promtool


@pytest.fixture
def promtool(service_unavailable: Callable[[str], NoReturn]) -> str:
    path = shutil.which("promtool")
    if path is None:
        service_unavailable(
            "promtool is not installed: it ships with the Debian package 'prometheus' "
            "(apt-get install --no-install-recommends prometheus)"
        )
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        cwd=ROOT,
        check=False,
    )


def test_promtool_check_rules_passes(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *_rule_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(_rule_files())


def test_promtool_check_config_passes_and_loads_every_rule_file(promtool: str) -> None:
    """deploy/prometheus/prometheus.yml is valid and its rule_files glob finds every file."""
    result = _run(promtool, "check", "config", PROM / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rule_files())} rule files found" in result.stdout


@pytest.mark.parametrize("test_file", _unit_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = _run(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """A wrong expectation (drift alert on a stationary feature) makes promtool fail."""
    wrong = {
        "rule_files": [str(RULES / "evaluator.yml"), str(RULES / "data-drift.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'ml_window_end_timestamp_seconds{job="undertow",'
                        'instance="w1:8000",model_name="fraud",model_version="v1"}',
                        "values": "0+60x60",
                    },
                    {
                        "series": 'ml_drift_score{job="undertow",instance="w1:8000",'
                        'model_name="fraud",feature_name="amount"}',
                        "values": "0.01x60",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": "DataDriftDetected",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "undertow",
                                    "model_name": "fraud",
                                    "feature_name": "amount",
                                }
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong.yml"
    path.write_text(yaml.safe_dump(wrong), encoding="utf-8")
    result = _run(promtool, "test", "rules", path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


# ------------------------------------------------------------------------ structure


def test_one_rule_file_per_concern() -> None:
    names = {p.stem for p in _rule_files()}
    assert names >= CONCERNS, f"missing rule files: {sorted(CONCERNS - names)}"


def test_required_alerts_exist() -> None:
    defined = {r.alert for r in ALERTING_RULES}
    assert defined >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - defined)}"


@pytest.mark.parametrize("rule", ALERTING_RULES, ids=lambda r: r.id)
def test_alert_is_documented(rule: Rule) -> None:
    labels = dict(rule.static_labels)
    annotations = rule.body.get("annotations") or {}
    assert labels.get("severity") in SEVERITIES, f"severity must be one of {sorted(SEVERITIES)}"
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"annotation {key} is missing"
    description = annotations["description"]
    assert "$value" in description, "the description must show the value ({{ $value }})"
    assert "$labels." in description, "the description must show the alert's labels"
    url = annotations["runbook_url"]
    assert url.startswith("docs/runbooks/") and url.endswith(".md"), url
    runbook = ROOT / url
    assert runbook.is_file(), f"runbook {url} does not exist"
    text = runbook.read_text(encoding="utf-8")
    assert rule.alert in text, f"{url} does not name the alert {rule.alert}"
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("## ")]
    for section in RUNBOOK_SECTIONS:
        assert any(h.startswith(section) for h in headings), f"{url}: no '## {section}' section"


def test_each_alert_has_its_own_runbook() -> None:
    by_alert: dict[str, set[str]] = {}
    for rule in ALERTING_RULES:
        by_alert.setdefault(rule.alert, set()).add(rule.body["annotations"]["runbook_url"])
    for alert, urls in by_alert.items():
        assert len(urls) == 1, f"{alert} points at several runbooks: {sorted(urls)}"
    owners: dict[str, str] = {}
    for alert, (url,) in by_alert.items():
        assert url not in owners, f"{alert} and {owners.get(url)} share the runbook {url}"
        owners[url] = alert


def test_rules_of_one_alert_differ_in_their_static_labels() -> None:
    """Otherwise two rules are indistinguishable, in Alertmanager and in the tests below."""
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    for rule in ALERTING_RULES:
        key = (rule.alert, rule.static_labels)
        assert key not in seen, f"{rule.id} has the same labels as {seen[key]}"
        seen[key] = rule.id


@pytest.mark.parametrize("rule", ALERTING_RULES, ids=lambda r: r.id)
def test_rule_is_tested_firing_and_quiet(rule: Rule) -> None:
    """Some promtool case expects this rule's alert, and some case expects it absent."""
    want = dict(rule.static_labels)
    fires = quiet = 0
    for loaded, alertname, expected in _alert_cases():
        if rule.file not in loaded or alertname != rule.alert:
            continue
        if any(want.items() <= labels.items() for labels in expected):
            fires += 1
        else:
            quiet += 1
    assert fires, f"no promtool test expects {rule.id} to fire"
    assert quiet, f"no promtool test expects {rule.id} to stay quiet"


def test_every_rule_file_is_loaded_by_a_unit_test() -> None:
    loaded = set().union(*(_loaded_rule_files(p) for p in _unit_test_files()))
    missing = {p.name for p in _rule_files()} - loaded
    assert not missing, f"rule files no promtool test loads: {sorted(missing)}"


# -------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Exported:
    """One exported sample name: its label names and, for a histogram bucket, its ``le``s."""

    labels: frozenset[str]
    le: frozenset[str]


@functools.cache
def _exposition() -> dict[str, Exported]:
    """Sample name -> its shape, as a worker exposes it (agents/metrics.py and
    agents/performance_metrics.py on a fresh registry, fed one of everything: a drift window,
    traffic, label outcomes and delays, and a performance window built by streams from a
    binary model with a protected attribute and an expected label delay)."""
    import numpy as np
    from prometheus_client import CollectorRegistry

    from agents.metrics import WorkerMetrics
    from streams.baseline import Baseline
    from streams.outcome_snapshot import evaluate_outcomes
    from streams.outcomes import OutcomePane

    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry=registry)
    metrics.traffic.record("m", "v1", 3, np.array([0.01, 0.2, 0.9]))
    figures = {
        "psi": 0.1,
        "ks": 0.1,
        "js": 0.1,
        "wasserstein": 0.1,
        "missing_rate": 0.1,
        "out_of_range_rate": 0.1,
        "unseen_rate": 0.1,
    }
    metrics.drift.update(
        {
            "model": "m",
            "model_version": "v1",
            "window_start": 0.0,
            "window_end": 60.0,
            "count": 3,
            "features": {"f": figures},
            "prediction": {"psi": 0.1, "positive_rate": 0.5},
        }
    )
    metrics.invalid.labels("not_json").inc()
    metrics.late.labels("m").inc()
    metrics.alerts.labels("data_drift", "warning").inc()
    metrics.evaluations.labels("m", "true").inc()
    metrics.labels.count("m", "joined", 2)
    metrics.labels.observe_delay("m", np.array([30.0, 7200.0]))

    baseline = Baseline(
        "m",
        "v1",
        {},
        task="binary",
        performance={"accuracy": 0.8},
        protected=["gender"],
        min_labelled=1,
        min_group_size=1,
        expected_label_delay_s=3600.0,
    )
    rng = np.random.default_rng(0)
    n = 400
    scores = rng.uniform(size=n).tolist()
    actual = (rng.uniform(size=n) < np.array(scores)).astype(float).tolist()
    segments = [{"gender": "fm"[i % 2], "region": "ns"[i % 3 % 2]} for i in range(n)]
    pane = OutcomePane.empty(baseline)
    pane.count_predictions(scores, segments)
    pane.join(scores, actual, np.full(n, 60.0), segments)
    snapshot = evaluate_outcomes(baseline, pane, 0.0, 3600.0, True, input_psi_max=0.01)
    metrics.performance.update(snapshot)

    out: dict[str, Exported] = {}
    for family in registry.collect():
        for sample in family.samples:
            old = out.get(sample.name)
            le = {sample.labels["le"]} if "le" in sample.labels else set()
            out[sample.name] = Exported(
                frozenset(sample.labels) | (old.labels if old else frozenset()),
                frozenset(le) | (old.le if old else frozenset()),
            )
    return out


def _exported_metric_names() -> set[str]:
    return set(_exposition())


_METRIC_TOKEN = re.compile(r"(?<![\w:.\"])((?:ml|kafka)_[a-zA-Z0-9_]+|up(?=\{)|undertow:[\w:]+)")


def _expressions() -> Iterator[tuple[str, str]]:
    for name, rule in _all_rules():
        yield f"{name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def _test_series() -> Iterator[tuple[str, str]]:
    for path in _unit_test_files():
        for group in _load(path)["tests"]:
            for series in group.get("input_series", []):
                yield path.name, series["series"]
            for case in group.get("promql_expr_test", []):
                yield path.name, case["expr"]


def test_rules_and_tests_read_only_known_metrics() -> None:
    """A typo shared by a rule and its test would pass promtool; it does not pass this."""
    known = _exported_metric_names() | set(PLANNED_METRICS)
    recorded = {rule["record"] for _, rule in _all_rules() if "record" in rule}
    assert "ml_drift_score" in known and "ml_prediction_latency_seconds_bucket" in known
    unknown = []
    for where, text in [*_expressions(), *_test_series()]:
        for name in _METRIC_TOKEN.findall(text):
            if name not in known and name not in recorded:
                unknown.append(f"{where}: {name}")
    assert not unknown, "metrics neither exported nor planned:\n" + "\n".join(unknown)


_SERIES = re.compile(r"^\s*([a-zA-Z_:][\w:]*)\s*(?:\{(.*)\})?\s*$", re.S)
_MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def _parse_series(text: str) -> tuple[str, dict[str, str]]:
    m = _SERIES.match(text)
    assert m is not None, f"not a series: {text!r}"
    return m.group(1), dict(_MATCHER.findall(m.group(2) or ""))


def test_unit_tests_feed_the_series_shapes_a_worker_exports() -> None:
    """A promtool test that feeds a label a worker does not export (or lacks one it does)
    can pass against a rule that never fires on real data."""
    exposition = _exposition()
    problems = []
    for path in _unit_test_files():
        for group in _load(path)["tests"]:
            if (path.name, group.get("name")) in HYPOTHETICAL_SHAPES:
                continue
            buckets: dict[tuple[str, tuple[tuple[str, str], ...]], set[str]] = {}
            for series in group.get("input_series", []):
                name, labels = _parse_series(series["series"])
                shape = exposition.get(name)
                if shape is None:
                    continue  # planned, recorded or external: not a worker's series
                if "le" in labels:
                    rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                    buckets.setdefault((name, rest), set()).add(labels["le"])
                want = shape.labels | TARGET_LABELS
                if set(labels) != want:
                    problems.append(
                        f"{path.name} [{group.get('name')}]: {name} with labels "
                        f"{sorted(labels)}, a worker exports {sorted(shape.labels)} "
                        "(plus job, instance)"
                    )
                if "le" in labels and labels["le"] not in shape.le:
                    problems.append(
                        f"{path.name} [{group.get('name')}]: {name} le={labels['le']!r} is "
                        f"not an exported bucket bound {sorted(shape.le, key=_le_key)}"
                    )
            for (name, rest), les in buckets.items():
                if les != exposition[name].le:
                    missing = sorted(exposition[name].le - les, key=_le_key)
                    problems.append(
                        f"{path.name} [{group.get('name')}]: {name}{dict(rest)} lacks the "
                        f"buckets {missing} a worker exports"
                    )
    assert not problems, "\n".join(problems)
    used = set(HYPOTHETICAL_SHAPES)
    names = {(p.name, group.get("name")) for p in _unit_test_files() for group in _load(p)["tests"]}
    assert used <= names, f"HYPOTHETICAL_SHAPES names tests that do not exist: {used - names}"


def _le_key(le: str) -> float:
    return float(le)


def test_rule_matchers_name_labels_the_metric_has() -> None:
    exposition = _exposition()
    problems = []
    for where, expr in _expressions():
        for name, body in re.findall(r"(?<![\w:])([a-zA-Z_][\w]*)\s*\{([^}]*)\}", expr):
            shape = exposition.get(name)
            if shape is None:
                continue
            for label, _ in _MATCHER.findall(body):
                if label not in shape.labels | TARGET_LABELS:
                    problems.append(f"{where}: {name} has no label {label!r}")
    assert not problems, "\n".join(problems)


def test_prometheus_config_scrapes_workers_and_sends_to_alertmanager() -> None:
    config = _load(PROM / "prometheus.yml")
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    undertow = jobs["undertow"]  # WorkerDown reads up{job="undertow"}
    ports = [sd["port"] for sd in undertow.get("dns_sd_configs", [])] + [
        int(t.rsplit(":", 1)[1]) for sc in undertow.get("static_configs", []) for t in sc["targets"]
    ]
    assert ports and set(ports) == {8000}
    assert undertow.get("metrics_path", "/metrics") == "/metrics"
    assert "kafka-exporter" in jobs  # ConsumerLagHigh and IngestStalled read its metric
    targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]


# Alert event types of DESIGN.md; streams/alert_state.py names their runbook
# docs/runbooks/<type with dashes>.md.
ALERT_EVENT_TYPES = (
    "data_drift",
    "prediction_drift",
    "accuracy_drop",
    "concept_drift",
    "fairness",
    "data_quality",
    "latency",
    "volume",
    "label_delay",
    "monitor_health",
)


@pytest.mark.parametrize("event_type", ALERT_EVENT_TYPES)
def test_alert_event_type_has_a_runbook(event_type: str) -> None:
    runbook = ROOT / "docs" / "runbooks" / f"{event_type.replace('_', '-')}.md"
    assert runbook.is_file(), f"alert events of type {event_type} point at a missing {runbook}"


def test_runbook_index_links_every_runbook() -> None:
    runbooks = ROOT / "docs" / "runbooks"
    index = (runbooks / "README.md").read_text(encoding="utf-8")
    for page in sorted(runbooks.glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"README.md does not link {page.name}"
