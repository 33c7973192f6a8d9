"""The command line against real services: `dev up/status/down`, `publish`, `alerts tail`.

Every command runs as a user would run it: the console script in a subprocess, in a
temporary working directory (so ``.undertow/`` belongs to the test). The topic prefix is
unique per test, which keeps topics and consumer groups apart on the shared session broker.
Whatever `dev up` starts is stopped in ``finally`` through `dev down`, and any pid that
survives that is killed by the test and reported as a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("undertow")
UNDERTOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "agents"]


def undertow(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*UNDERTOW, *args],
        cwd=cwd,
        env=env,
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli_env(unique_name: Callable[[str], str]) -> dict[str, str]:
    """The environment of the user's shell, with a topic prefix of this test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERTOW_")}
    env["UNDERTOW_TOPIC_PREFIX"] = unique_name("cli") + "."
    env["UNDERTOW_PARTITIONS"] = "2"
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture
def external_env(cli_env: dict[str, str], kafka_bootstrap: str, redis_url: str) -> dict[str, str]:
    return {**cli_env, "UNDERTOW_KAFKA": kafka_bootstrap, "UNDERTOW_REDIS_URL": redis_url}


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def recorded_pids(cwd: Path) -> list[int]:
    try:
        record = json.loads((cwd / ".undertow" / "stack.json").read_text())
    except FileNotFoundError:
        return []
    return [p["pid"] for p in record.get("processes", []) + record.get("workers", [])]


@pytest.fixture
def stack_cleanup(tmp_path: Path) -> Iterator[list[int]]:
    """Pids the test saw; after it, `dev down`, then kill and fail on any survivor."""
    seen: list[int] = []
    yield seen
    seen.extend(recorded_pids(tmp_path))
    undertow("dev", "down", cwd=tmp_path, env=dict(os.environ), timeout=120)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in seen if alive(pid)]
    for pid in survivors:
        os.killpg(pid, signal.SIGKILL)
    assert not survivors, f"processes left behind: {survivors}"


def check_status_and_metrics(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    status = undertow("dev", "status", "--format", "json", cwd=cwd, env=env)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert list(doc)[:3] == ["kafka", "redis", "workers"]
    assert doc["running"] is True
    (worker,) = doc["workers"]
    assert isinstance(worker["pid"], int) and worker["ready"] is True
    with urllib.request.urlopen(worker["metrics_url"], timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
    return doc


def check_down(cwd: Path, env: dict[str, str], pids: list[int]) -> None:
    down = undertow("dev", "down", cwd=cwd, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[-1] == "removed .undertow/stack.json"
    assert not (cwd / ".undertow" / "stack.json").exists()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)]
    after = undertow("dev", "status", "--format", "json", cwd=cwd, env=env)
    assert after.returncode == 1
    assert json.loads(after.stdout)["workers"] == []


def test_dev_up_with_external_services_starts_only_workers(
    tmp_path: Path,
    external_env: dict[str, str],
    kafka_bootstrap: str,
    redis_url: str,
    stack_cleanup: list[int],
) -> None:
    up = undertow("dev", "up", "--workers", "1", cwd=tmp_path, env=external_env, timeout=150)
    stack_cleanup.extend(recorded_pids(tmp_path))
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert lines[0] == f"kafka     {kafka_bootstrap}"
    assert lines[1] == f"redis     {redis_url}"
    assert lines[2].startswith("worker-1  http://127.0.0.1:")

    doc = check_status_and_metrics(tmp_path, external_env)
    assert (doc["kafka"], doc["redis"], doc["services"]) == (kafka_bootstrap, redis_url, [])
    assert (tmp_path / ".undertow" / "worker-1.log").stat().st_size > 0
    check_down(tmp_path, external_env, stack_cleanup)


def test_dev_up_embedded_stack_and_a_second_up_is_refused(
    tmp_path: Path, cli_env: dict[str, str], stack_cleanup: list[int]
) -> None:
    from agents.devstack import BinaryNotFoundError, resolve_redis_server_bin, resolve_tansu_bin

    try:
        resolve_tansu_bin(cli_env)
        resolve_redis_server_bin(cli_env)
    except BinaryNotFoundError as exc:
        pytest.skip(str(exc))
    up = undertow("dev", "up", cwd=tmp_path, env=cli_env, timeout=150)
    stack_cleanup.extend(recorded_pids(tmp_path))
    assert up.returncode == 0, up.stderr
    doc = check_status_and_metrics(tmp_path, cli_env)
    assert [s["name"] for s in doc["services"]] == ["tansu", "redis"]
    assert all(s["alive"] for s in doc["services"])
    assert doc["redis"].startswith("redis://127.0.0.1:")

    again = undertow("dev", "up", cwd=tmp_path, env=cli_env)
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert recorded_pids(tmp_path) == stack_cleanup  # the record is untouched

    # The other commands find the embedded broker through .undertow/stack.json.
    empty = undertow("alerts", "tail", "--format", "json", cwd=tmp_path, env=cli_env)
    assert (empty.returncode, empty.stdout) == (0, ""), empty.stderr
    check_down(tmp_path, cli_env, stack_cleanup)


def processes_in(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is ``directory`` (the workers')."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if alive(pid)]


def test_dev_up_that_fails_or_is_interrupted_leaves_nothing_behind(
    tmp_path: Path, external_env: dict[str, str], stack_cleanup: list[int]
) -> None:
    state = tmp_path / ".undertow"
    late = undertow("dev", "up", "--timeout", "1s", cwd=tmp_path, env=external_env, timeout=60)
    assert late.returncode == 1
    assert "worker-1 not ready within 1 s" in late.stderr
    assert f"Last lines of {state / 'worker-1.log'}:" in late.stderr
    assert not (state / "stack.json").exists()
    assert processes_in(state) == []

    proc = subprocess.Popen(
        [*UNDERTOW, "dev", "up"], cwd=tmp_path, env=external_env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not recorded_pids(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        stack_cleanup.extend(recorded_pids(tmp_path))
        assert stack_cleanup, "dev up recorded no worker"
        assert processes_in(state) == stack_cleanup  # the check below can see a worker
        proc.send_signal(signal.SIGINT)  # Ctrl-C while waiting for the workers
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
    assert "stopping what was started" in err and "interrupted" in err
    assert not (state / "stack.json").exists()
    assert processes_in(state) == []


def predictions(n: int, run: str) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "prediction_id": f"{run}-{i}",
            "model": "fraud",
            "model_version": "v1",
            "timestamp": now + i / 1000,
            "features": {"amount": 10.5 * i, "merchant": "grocery" if i % 2 else "fuel"},
            "prediction": (i % 10) / 10,
            "segments": {"device_type": "mobile"},
        }
        for i in range(n)
    ]


def read_topic(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Every message value of ``topic`` (from the beginning), once ``expected`` have come."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            values.extend(r.value for rs in batch.values() for r in rs)
        return values
    finally:
        consumer.close()


def test_publish_predictions_reaches_the_topic(
    tmp_path: Path, external_env: dict[str, str], kafka_bootstrap: str
) -> None:
    events = predictions(25, "pub")
    lines = [json.dumps(e) for e in events]
    lines.insert(10, '{"prediction_id": "broken", "model": "fraud"}')
    lines.insert(3, "")
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(lines) + "\n")

    result = undertow("publish", "predictions", str(path), "--batch-size", "4", cwd=tmp_path,
                      env=external_env)  # fmt: skip
    topic = external_env["UNDERTOW_TOPIC_PREFIX"] + "predictions"
    assert result.returncode == 1  # one line rejected, the rest sent
    assert result.stdout == f"sent 25 predictions to {topic}; rejected 1\n"
    assert "line 12: missing_field" in result.stderr

    messages = [json.loads(v) for v in read_topic(kafka_bootstrap, topic, expected=7)]
    received = [e for m in messages for e in m["predictions"]]
    assert all(len(m["predictions"]) <= 4 for m in messages)
    assert sorted(received, key=lambda e: e["prediction_id"]) == sorted(
        events, key=lambda e: e["prediction_id"]
    )


def test_publish_labels_from_stdin(
    tmp_path: Path, external_env: dict[str, str], kafka_bootstrap: str
) -> None:
    label = {"prediction_id": "p1", "model": "fraud", "actual": 1, "timestamp": 1766743200.0}
    result = undertow(
        "publish", "labels", "-", cwd=tmp_path, env=external_env, stdin=json.dumps(label).encode()
    )
    assert result.returncode == 0, result.stderr
    topic = external_env["UNDERTOW_TOPIC_PREFIX"] + "labels"
    (value,) = read_topic(kafka_bootstrap, topic, expected=1)
    assert json.loads(value) == {"labels": [label]}


def produce_alerts(bootstrap: str, topic: str, batches: int, per_batch: int) -> list[bytes]:
    """Alert-shaped events, several per record batch (where Tansu's end_offsets() is short)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=100)
    values: list[bytes] = []
    try:
        for b in range(batches):
            for i in range(per_batch):
                n = b * per_batch + i
                alert = {
                    "alert_id": f"alert-{n}",
                    "type": "data_drift",
                    "severity": ("info", "warning", "critical")[n % 3],
                    "status": "firing",
                    "model": "fraud",
                    "model_version": "v1",
                    "feature": "amount",
                    "segment": None,
                    "metric": "psi",
                    "value": 0.1 + n / 100,
                    "threshold": 0.25,
                    "window_start": 1764151200.0,
                    "window_end": 1764151500.0,
                    "message": f"amount drifted ({n})",
                    "runbook_url": "docs/runbooks/data-drift.md",
                    "emitted_at": 1764151502.0 + n,
                }
                # Spacing of its own, so "exactly as on the topic" is really tested.
                value = json.dumps(alert, indent=None, separators=(", ", ":")).encode()
                values.append(value)
                producer.send(topic, key=b"fraud", value=value)
            producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return values


def test_alerts_tail_prints_exactly_the_topic(
    tmp_path: Path, external_env: dict[str, str], kafka_bootstrap: str
) -> None:
    topic = external_env["UNDERTOW_TOPIC_PREFIX"] + "alerts"
    missing = undertow("alerts", "tail", cwd=tmp_path, env=external_env)
    assert (missing.returncode, missing.stdout) == (0, "")
    assert "does not exist" in missing.stderr

    values = produce_alerts(kafka_bootstrap, topic, batches=3, per_batch=5)
    everything = undertow(
        "alerts", "tail", "--from-beginning", "--format", "json", cwd=tmp_path, env=external_env
    )
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.encode().splitlines() == values

    last = undertow("alerts", "tail", "--format", "json", cwd=tmp_path, env=external_env)
    assert last.stdout.encode().splitlines() == values[-10:]
    three = undertow(
        "alerts", "tail", "-n", "3", "--format", "json", cwd=tmp_path, env=external_env
    )
    assert three.stdout.encode().splitlines() == values[-3:]
    none = undertow("alerts", "tail", "-n", "0", cwd=tmp_path, env=external_env)
    assert (none.returncode, none.stdout) == (0, "")

    table = undertow("alerts", "tail", "-n", "2", cwd=tmp_path, env=external_env)
    assert table.stdout.splitlines() == [
        "2025-11-26 10:05:15Z  warning   firing    fraud v1  data_drift  amount  "
        "psi=0.23 vs 0.25  amount drifted (13)",
        "2025-11-26 10:05:16Z  critical  firing    fraud v1  data_drift  amount  "
        "psi=0.24 vs 0.25  amount drifted (14)",
    ]


def test_alerts_tail_follow_prints_new_alerts_until_interrupted(
    tmp_path: Path, external_env: dict[str, str], kafka_bootstrap: str
) -> None:
    from kafka import KafkaProducer

    topic = external_env["UNDERTOW_TOPIC_PREFIX"] + "alerts"
    old = produce_alerts(kafka_bootstrap, topic, batches=1, per_batch=3)
    proc = subprocess.Popen(
        [*UNDERTOW, "alerts", "tail", "--follow", "-n", "1", "--format", "json"],
        cwd=tmp_path,
        env=external_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")))
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not lines and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lines == [old[-1] + b"\n"]
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        try:
            producer.send(topic, value=b'{"alert_id":"new"}').get(timeout=30)
        finally:
            producer.close(timeout=10)
        while len(lines) < 2 and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        assert lines[1:] == [b'{"alert_id":"new"}\n']
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()


def test_worker_refuses_labels_not_co_partitioned_with_predictions(
    external_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A label is joined in the partition its key hashes to: unequal counts join nothing."""
    from kafka.admin import KafkaAdminClient, NewTopic

    prefix = external_env["UNDERTOW_TOPIC_PREFIX"]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=15_000)
    try:
        admin.create_topics(
            [NewTopic(prefix + "predictions", 2, 1), NewTopic(prefix + "labels", 3, 1)]
        )
    finally:
        admin.close()
    result = undertow("worker", cwd=tmp_path, env=external_env, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "has 2 partitions but" in lines[0] and "labels has 3" in lines[0]
    assert "same partition count" in lines[0]
