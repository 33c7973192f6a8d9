"""The Grafana dashboards of deploy/grafana, checked without Grafana but against real data.

Structure (no service needed): the three dashboards load, panel ids are unique, every panel
has a title, a unit and at least one query through the ``datasource`` template variable,
the variables are defined and used the way Grafana expands them, the panels that
docs/runbooks/README.md names exist, every metric a panel reads is exported by the workers,
recorded by deploy/prometheus/rules, produced by Prometheus itself or explicitly PLANNED,
the provisioning files point Grafana at the dashboards and Prometheus, and every query
parses (promtool).

For real (integration): a real ``undertow worker`` (tests/integration/streaming/harness.py)
consumes a real stream — a registered baseline, ~24 s of events ending in drift, a few
invalid messages and a late event — while Debian's Prometheus scrapes its /metrics every
second and evaluates deploy/prometheus/rules (the recording rule the window panels read
through, and the alerts the "Firing alerts" panel lists). Then every target of every panel
is evaluated through the Prometheus HTTP API with the template variables substituted, once
with the test's model, version and features selected and once with "All": a query that is
invalid, or that returns no series, fails the test — unless it reads a PLANNED metric, in
which case it must still parse (a valid query on missing series succeeds with an empty
result) and must still be empty (when a planned metric appears, move it out of PLANNED so
its panels are checked for data). The variables' own ``label_values`` queries must return
the test's model, version and features.

Prometheus comes from the Debian package ``prometheus``; without it (or without promtool)
these tests skip on a developer machine and fail on CI (tests/conftest.py ``skip_or_fail``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from .dashboards import grafana
from .dashboards.grafana import Target
from .dashboards.prometheus import PrometheusServer, Result

ROOT = grafana.ROOT
DASHBOARDS = grafana.load_dashboards()
TARGETS = grafana.targets(DASHBOARDS)

#: Metrics panels may read although nothing in the test stack exports them yet. Their queries
#: must parse, and must come back empty (see the module docstring).
PLANNED: dict[str, str] = {
    "ml_model_accuracy": "issue 4 (ground truth): accuracy per model version, not exported yet",
    "ml_model_baseline_accuracy": (
        "proposed in deploy/prometheus/rules/model-quality.yml: the baseline's accuracy"
    ),
    "ml_label_delay_seconds_bucket": "issue 4: label delay histogram, not exported yet",
    "ml_label_delay_seconds_count": "issue 4: label delay histogram, not exported yet",
    "ml_segment_accuracy": "issue 4: accuracy per segment, not exported yet",
    "ml_demographic_parity_ratio": "issue 4: parity ratio per protected attribute, not exported",
    "kafka_consumergroup_lag": (
        "a kafka-exporter (job kafka-exporter of deploy/prometheus/prometheus.yml), not part "
        "of the test stack"
    ),
}
#: Series Prometheus produces itself.
PROMETHEUS_SERIES = {
    "up": "scrape health per target",
    "scrape_duration_seconds": "scrape time per target",
    "ALERTS": "alerting rules' state",
}
#: Panels docs/runbooks/README.md names that deliberately do not exist, with the reason.
NOT_BUILT: dict[tuple[str, str], str] = {
    ("undertow / Operations", "Redis latency"): (
        "no worker exports a Redis latency metric (agents/metrics.py); the panel comes with "
        "one, e.g. a histogram ml_redis_operation_duration_seconds{operation} around the "
        "flush MULTI/EXEC, state loads and the evaluator's window reads"
    ),
}

#: What Grafana would put in for its own variables; 1 s scrapes, a few minutes of data.
BUILTIN_VALUES = {
    "__rate_interval": "20s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
STEP_S = 2.0  # query_range step

#: The drifted features of the test stream (harness.make_events): one numeric, one
#: categorical, so that per-type figures (out of range, unseen) are selected too.
SELECTED_FEATURES = ("amount", "merchant")

DATA_TIMEOUT_S = 120.0  # bound on waiting until every panel has data (~25 s here)
PROMETHEUS_START_S = 30.0


def planned_metrics(target: Target) -> set[str]:
    return grafana.metric_names(target.expr) & PLANNED.keys()


# ------------------------------------------------------------------------ structure


def test_the_three_dashboards_load_with_unique_uids_and_panel_ids() -> None:
    assert sorted(DASHBOARDS) == sorted(grafana.DASHBOARD_FILES)
    uids = [d.get("uid") for d in DASHBOARDS.values()]
    assert all(uids) and len(set(uids)) == len(uids), uids
    titles = [d.get("title") for d in DASHBOARDS.values()]
    assert all(titles) and len(set(titles)) == len(titles), titles
    for file, dashboard in DASHBOARDS.items():
        raw_ids = [p.get("id") for p in grafana.panels(dashboard)]
        assert all(isinstance(i, int) for i in raw_ids), (file, raw_ids)
        ids = [i for i in raw_ids if isinstance(i, int)]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        assert not duplicates, f"{file}: duplicate panel ids {duplicates}"
        for panel in grafana.panels(dashboard):
            pos = panel.get("gridPos") or {}
            assert {"h", "w", "x", "y"} <= pos.keys(), (file, panel.get("title"))
            assert pos["x"] + pos["w"] <= 24, (file, panel.get("title"), pos)


def test_every_panel_has_a_title_a_unit_and_queries_through_the_datasource_variable() -> None:
    problems = []
    for file, dashboard in DASHBOARDS.items():
        titles = []
        for panel in grafana.panels(dashboard):
            where = f"{file} panel {panel.get('id')} {panel.get('title')!r}"
            title = str(panel.get("title") or "").strip()
            if not title:
                problems.append(f"{where}: no title")
            titles.append(title)
            if not panel.get("description"):
                problems.append(f"{where}: no description")
            if panel.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"{where}: panel datasource is {panel.get('datasource')}")
            targets = panel.get("targets") or []
            if not targets:
                problems.append(f"{where}: no target")
            refs = [t.get("refId") for t in targets]
            if len(set(refs)) != len(refs) or not all(refs):
                problems.append(f"{where}: refIds {refs}")
            for t in targets:
                ds = t.get("datasource") or {}
                if ds.get("uid") != "${datasource}" or ds.get("type") != "prometheus":
                    problems.append(f"{where} [{t.get('refId')}]: target datasource {ds}")
                if not str(t.get("expr", "")).strip():
                    problems.append(f"{where} [{t.get('refId')}]: empty expr")
            if panel.get("type") != "table" and not panel["fieldConfig"]["defaults"].get("unit"):
                problems.append(f"{where}: no unit")
        duplicates = sorted({t for t in titles if titles.count(t) > 1})
        if duplicates:
            problems.append(f"{file}: duplicate panel titles {duplicates}")
    assert not problems, "\n".join(problems)


def test_template_variables_are_defined_and_used_as_grafana_expands_them() -> None:
    problems = []
    required = {
        "undertow-overview.json": {"datasource", "model", "version"},
        "undertow-model.json": {"datasource", "model", "version", "feature"},
        "undertow-operations.json": {"datasource", "model", "version"},
    }
    for file, dashboard in DASHBOARDS.items():
        defined = grafana.variables(dashboard)
        missing = required[file] - defined.keys()
        if missing:
            problems.append(f"{file}: variables {sorted(missing)} missing")
        ds = defined.get("datasource", {})
        if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{file}: datasource variable {ds}")
        multi = {n for n, v in defined.items() if v.get("multi") or v.get("includeAll")}
        texts = [t.expr for t in grafana.targets({file: dashboard})]
        for name, var in defined.items():
            if var.get("type") != "query":
                continue
            if var.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"{file}: variable {name} datasource {var.get('datasource')}")
            try:
                grafana.label_values_query(str(var.get("query")))
            except ValueError as exc:
                problems.append(f"{file}: variable {name}: {exc}")
            texts.append(str(var.get("query")))
        for text in texts:
            unknown = grafana.used_variables(text) - defined.keys() - grafana.BUILTIN_VARIABLES
            if unknown:
                problems.append(f"{file}: undefined variables {sorted(unknown)} in {text!r}")
            # A multi-value or "All" selection expands to a regex: only =~ / !~ can take it.
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', text):
                used = grafana.used_variables(value) & multi
                if used and op not in ("=~", "!~"):
                    problems.append(f"{file}: {label}{op}{value!r} with multi-value {used}")
    assert not problems, "\n".join(problems)


def test_the_panels_the_runbooks_name_exist() -> None:
    named = grafana.runbook_panels()
    assert named, "docs/runbooks/README.md names no dashboard panel"
    by_title = {d["title"]: {p["title"] for p in grafana.panels(d)} for d in DASHBOARDS.values()}
    problems = []
    for dashboard, titles in named.items():
        if dashboard not in by_title:
            problems.append(f"dashboard {dashboard!r} named by the runbooks does not exist")
            continue
        for title in titles:
            exempt = (dashboard, title) in NOT_BUILT
            if title in by_title[dashboard] and exempt:
                problems.append(f"{dashboard} → {title!r} exists now: drop it from NOT_BUILT")
            elif title not in by_title[dashboard] and not exempt:
                problems.append(f"{dashboard} → panel {title!r} named by the runbooks is missing")
    # The runbooks' own "**undertow / Dashboard → Panel**" pointers; "Data quality" stands
    # for "Data quality: missing / out of range / unseen".
    references = grafana.runbook_references()
    assert references, "no runbook points at a dashboard panel"
    for runbook, dashboard, title in references:
        found = {t for t in by_title.get(dashboard, ()) if t == title or t.startswith(title + ":")}
        if not found and (dashboard, title) not in NOT_BUILT:
            problems.append(f"{runbook}: {dashboard} → {title!r} does not exist")
    stale = {k for k in NOT_BUILT if k[1] not in named.get(k[0], [])}
    assert not stale, f"NOT_BUILT entries the runbooks no longer name: {stale}"
    assert not problems, "\n".join(problems)


def test_every_metric_a_panel_reads_is_exported_recorded_or_planned() -> None:
    exported = grafana.exported_metrics()
    recorded = grafana.recording_rules()
    known = exported | recorded | PROMETHEUS_SERIES.keys() | PLANNED.keys()
    used: set[str] = set()
    problems = []
    for t in TARGETS:
        names = grafana.metric_names(t.expr)
        if not names:
            problems.append(f"{t.id}: reads no metric? {t.expr!r}")
        for name in sorted(names - known):
            problems.append(f"{t.id}: {name} is neither exported, recorded, nor PLANNED")
        used |= names
    assert not problems, "\n".join(problems)
    assert not (PLANNED.keys() - used), f"PLANNED but unused: {PLANNED.keys() - used}"
    assert not (PLANNED.keys() & exported), "exported now, not planned any more"
    # Every metric a worker exports is on some dashboard (histograms by their buckets).
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    families = {n for n in exported if not re.search(r"_(bucket|count|sum)$", n)}
    assert not (families - shown), f"exported but on no dashboard: {families - shown}"


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    with (grafana.PROVISIONING / "datasources" / "prometheus.yml").open() as f:
        sources = yaml.safe_load(f)
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"].startswith("http") and source.get("isDefault") is True
    # $__rate_interval is derived from it: it must be the scrape interval of prometheus.yml.
    with (ROOT / "deploy" / "prometheus" / "prometheus.yml").open() as f:
        prometheus = yaml.safe_load(f)
    assert source["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]

    with (grafana.PROVISIONING / "dashboards" / "undertow.yml").open() as f:
        providers = yaml.safe_load(f)
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")


@pytest.fixture
def promtool(service_unavailable: Callable[[str], NoReturn]) -> str:
    path = shutil.which("promtool")
    if path is None:
        service_unavailable(
            "promtool is not installed: it ships with the Debian package 'prometheus'"
        )
    return path


def test_every_panel_query_parses_with_promtool(promtool: str, tmp_path: Path) -> None:
    """Each target (variables substituted) as a recording rule of its own group, so that
    promtool names the offending query."""
    groups = []
    for i, t in enumerate(TARGETS):
        values = _values(DASHBOARDS[t.file], all_values=False, consumer_group="undertow.ingest")
        groups.append(
            {
                "name": f"{i:03d} {t.id}",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana.substitute(t.expr, values)}
                ],
            }
        )
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------ for real


def _values(
    dashboard: Mapping[str, Any], *, all_values: bool, consumer_group: str
) -> dict[str, str]:
    """Template variable → what Grafana puts in the query, for the test's selection (model
    credit, version v1, features amount and merchant) or with "All" where a variable has it."""
    from .streaming.harness import MODEL, VERSION

    chosen = {
        "model": [MODEL],
        "version": [VERSION],
        "feature": list(SELECTED_FEATURES),
        "consumer_group": [consumer_group],
    }
    out = dict(BUILTIN_VALUES)
    for name, var in grafana.variables(dashboard).items():
        if name == "datasource":
            continue
        if all_values and var.get("includeAll"):
            out[name] = var.get("allValue") or ".*"
        elif var.get("multi") or var.get("includeAll"):
            out[name] = grafana.regex_value(chosen[name])
        else:
            out[name] = chosen[name][0]
    return out


@pytest.fixture
def prometheus_bin(service_unavailable: Callable[[str], NoReturn]) -> str:
    path = shutil.which("prometheus")
    if path is None:
        service_unavailable(
            "prometheus is not installed: apt-get install --no-install-recommends prometheus"
        )
    return path


class Stack:
    """A worker, the Prometheus that scrapes it, and what the checks need to know."""

    def __init__(self, worker: Any, prometheus: PrometheusServer, prefix: str) -> None:
        self.worker = worker
        self.prometheus = prometheus
        self.prefix = prefix

    @property
    def consumer_group(self) -> str:
        return f"{self.prefix.rstrip('.')}.ingest"

    def check_alive(self) -> None:
        self.worker.check_alive()
        self.prometheus.check_alive()

    def logs(self) -> str:
        return f"{self.worker.log_tail(40)}\n{self.prometheus.log_tail(20)}"

    def run(self, target: Target, values: Mapping[str, str], end: float) -> Result:
        expr = grafana.substitute(target.expr, values)
        if target.instant:
            return self.prometheus.query(expr, at=end)
        start = self.prometheus.started_at or end - 300
        return self.prometheus.query_range(expr, start, end, STEP_S)


@pytest.fixture
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    prometheus_bin: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[Stack]:
    """A worker with the synthetic credit model's baseline registered, scraped every second
    by a Prometheus that loads deploy/prometheus/rules. Both always stopped."""
    from .streaming.harness import WorkerProcess, make_baseline, register_baseline

    prefix = unique_name("dash") + "."
    baseline, _ = make_baseline(tmp_path)
    register_baseline(redis_url, prefix, baseline)
    worker = WorkerProcess(
        kafka=kafka_bootstrap,
        redis_url=redis_url,
        prefix=prefix,
        log_path=tmp_path / "worker.log",
        # Faust's data directory, which defaults to the working directory (the repo root).
        settings={"FAUST_DATADIR": str(tmp_path / "faust-data")},
        name="dash-w0",
    )
    prometheus: PrometheusServer | None = None
    try:
        worker.start()
        prometheus = PrometheusServer(
            prometheus_bin,
            tmp_path / "prometheus",
            scrape_targets=[f"127.0.0.1:{worker.port}"],
            rule_files=[grafana.RULES / "*.yml"],
        )
        prometheus.start(timeout=PROMETHEUS_START_S)
        yield Stack(worker, prometheus, prefix)
    finally:
        try:
            if prometheus is not None:
                prometheus.stop()
        finally:
            worker.stop()


def feed(bootstrap: str, prefix: str) -> None:
    """~24 s of event time for the credit model ending in drift (amount x2.5, a new merchant
    category), published at 4x real time; then invalid messages and one late event."""
    import orjson
    from kafka import KafkaProducer

    from .streaming.harness import drift_stream, make_events, publish

    stream = drift_stream(n=4_800, span_s=24, speed=4.0, drift_s=(10, 24), seed=11)
    publish(bootstrap, prefix, stream)
    now_ms = round(time.time() * 1000)
    extra = make_events([now_ms - 1_000, now_ms - 1_000], seed=12, id_prefix="bad-")
    bad = [
        b'{"prediction_id": "broken", "model": ',  # not_json
        b"[1, 2, 3]",  # not_object
        orjson.dumps({**extra[0], "model_version": "v999"}),  # unknown_model
        orjson.dumps({**extra[1], "timestamp": "yesterday at noon"}),  # bad_timestamp
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i, raw in enumerate(bad):
            producer.send(prefix + "predictions", key=f"bad-{i}".encode(), value=raw)
        producer.flush(timeout=30)
        # Older than every window still open: dead-lettered as late (windows are 10 s).
        time.sleep(2.0)
        [late] = make_events([now_ms - 120_000], seed=13, id_prefix="late-")
        producer.send(prefix + "predictions", key=b"late", value=orjson.dumps(late))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def wait_for_every_panel(stack: Stack, live: list[Target], timeout: float) -> list[str]:
    """Poll until every non-planned target has series (bounded): the ones that still have
    none. An invalid query ends the wait at once: waiting cannot fix it."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    for _ in range(int(timeout) + 1):
        stack.check_alive()
        end = time.time()
        missing, invalid = [], False
        for t in live:
            values = _values(DASHBOARDS[t.file], all_values=False, consumer_group="-")
            result = stack.run(t, values, end)
            if not result.ok or not result.series:
                missing.append(f"{t.id}: {result}")
                invalid |= not result.ok
        if not missing or invalid or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    return missing


@pytest.mark.integration
def test_every_panel_query_returns_series_from_a_real_worker(
    stack: Stack, kafka_bootstrap: str
) -> None:
    from .streaming.harness import MODEL, VERSION, wait_assignment

    started = time.monotonic()
    wait_assignment([stack.worker])
    feed(kafka_bootstrap, stack.prefix)
    live = [t for t in TARGETS if not planned_metrics(t)]
    planned = [t for t in TARGETS if planned_metrics(t)]
    assert live and planned
    missing = wait_for_every_panel(stack, live, DATA_TIMEOUT_S)
    waited = time.monotonic() - started
    assert not missing, (
        f"after {waited:.0f} s, panels without data:\n" + "\n".join(missing) + "\n" + stack.logs()
    )

    failures = []
    end = time.time()
    for all_values in (False, True):
        selection = "All" if all_values else f"{MODEL} {VERSION} {','.join(SELECTED_FEATURES)}"
        for t in TARGETS:
            values = _values(
                DASHBOARDS[t.file], all_values=all_values, consumer_group=stack.consumer_group
            )
            result = stack.run(t, values, end)
            planned_here = planned_metrics(t)
            if not result.ok:
                failures.append(f"[{selection}] {t.id}: invalid query: {result.error}")
            elif not planned_here and not result.series:
                failures.append(f"[{selection}] {t.id}: no series")
            elif planned_here and result.series:
                failures.append(
                    f"[{selection}] {t.id}: reads {sorted(planned_here)}, PLANNED, but returns "
                    "data: move them out of PLANNED"
                )

    # The variables' own queries list what the panels were evaluated with.
    chosen = {"model": {MODEL}, "version": {VERSION}, "feature": set(SELECTED_FEATURES)}
    for file, dashboard in DASHBOARDS.items():
        values = _values(dashboard, all_values=False, consumer_group=stack.consumer_group)
        for name, var in grafana.variables(dashboard).items():
            if var.get("type") != "query":
                continue
            selector, label = grafana.label_values_query(str(var["query"]))
            assert selector is not None
            result = stack.prometheus.series(
                grafana.substitute(selector, values), stack.prometheus.started_at or 0, end
            )
            found = {s.get(label) for s in result.series} if result.ok else set()
            if not result.ok or not chosen[name] <= found:
                failures.append(f"{file} variable {name}: {result} → {sorted(map(str, found))}")

    # NOT_BUILT: the Redis latency panel waits for a metric; say so when one appears.
    redis_metrics = {n for n in stack.prometheus.metric_names() if "redis" in n.lower()}
    if redis_metrics:
        failures.append(f"the worker exports {sorted(redis_metrics)}: build 'Redis latency'")

    assert not failures, "\n".join(failures) + "\n" + stack.logs()
    print(
        f"\n{len(live)} targets with data, {len(planned)} planned targets parsed, "
        f"data after {waited:.0f} s"
    )
