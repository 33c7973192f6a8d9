"""A real faust worker keeps its table in Redis, and a second worker carries on from it.

Worker processes are started with faust's own CLI against the session broker and Redis;
the table is read back with a plain redis-py client, so the test checks the layout other
tools will rely on, not the store's own view of itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

pytestmark = [
    pytest.mark.integration,
    # kafka-python 3 loads its protocol schemas with a deprecated importlib API.
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
]

PARTITIONS = 2
KEYS = [f"k{i}" for i in range(10)]
DEADLINE_S = 150.0
REPO_ROOT = Path(__file__).resolve().parents[2]

APP_MODULE = textwrap.dedent(
    """
    import os

    import faust

    from agents.stores import register

    register()  # until the faust.stores entry point is installed

    app = faust.App(
        os.environ["TEST_APP_ID"],
        broker="kafka://" + os.environ["TEST_KAFKA"],
        store=os.environ["TEST_REDIS"],
        topic_partitions=2,
        table_standby_replicas=0,
        broker_commit_interval=1.0,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=15,
        # Tansu 0.6 reports a partition's end offset as the last batch's base offset + 1,
        # so a correct persisted offset can exceed its "highwater" and trip this check.
        recovery_consistency_check=False,
        autodiscover=False,
    )
    source = app.topic(os.environ["TEST_TOPIC"], key_type=str, value_type=str, partitions=2)
    counts = app.Table("counts", default=int, partitions=2)


    @app.agent(source)
    async def count(stream):
        async for key, _ in stream.items():
            counts[key] += 1
    """
)


def _produce(bootstrap: str, topic: str, per_key: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for _ in range(per_key):
            for key in KEYS:
                producer.send(topic, key=key.encode(), value=b'"seen"')
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _counts(client: redis.Redis, app_id: str) -> dict[str, int]:
    """The table as any Redis client sees it: JSON fields and values, one hash per partition."""
    found: dict[str, int] = {}
    for partition in range(PARTITIONS):
        raw = client.hgetall(f"undertow:table:{{{app_id}:counts}}:{partition}")
        found.update({json.loads(k): json.loads(v) for k, v in raw.items()})
    return found


class Worker:
    """``faust worker`` in a subprocess with its own web port; stopped with SIGTERM."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str) -> None:
        from agents.devstack import free_port

        self.log_path = workdir / f"{name}.log"
        argv = [sys.executable, "-m", "faust", "-A", "redis_store_app", "worker", "-l", "info"]
        argv += ["--web-host", "127.0.0.1", "--web-port", str(free_port())]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not done():
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {DEADLINE_S:g} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.mark.timeout(2 * DEADLINE_S + 120)
def test_worker_table_lands_in_redis_and_survives_the_worker(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    workers: list[Worker],
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    app_id, topic = unique_name("store-app"), unique_name("store-src")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="undertow-test")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        admin.close()
    (tmp_path / "redis_store_app.py").write_text(APP_MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        "TEST_APP_ID": app_id,
        "TEST_KAFKA": kafka_bootstrap,
        "TEST_REDIS": redis_url,
        "TEST_TOPIC": topic,
    }

    _produce(kafka_bootstrap, topic, per_key=20)
    first = Worker(tmp_path, env, "worker-1")
    workers.append(first)
    first.wait_for(
        "200 counts in Redis", lambda: _counts(redis_client, app_id) == dict.fromkeys(KEYS, 20)
    )
    offsets = redis_client.hgetall(f"undertow:table:{{{app_id}:counts}}:offsets")
    assert {int(p) for p in offsets} == set(range(PARTITIONS))  # written with the data
    first.stop()
    assert _counts(redis_client, app_id) == dict.fromkeys(KEYS, 20)

    # A new worker process owns the partitions and counts on from what Redis holds.
    _produce(kafka_bootstrap, topic, per_key=10)
    second = Worker(tmp_path, env, "worker-2")
    workers.append(second)
    second.wait_for(
        "300 counts in Redis", lambda: _counts(redis_client, app_id) == dict.fromkeys(KEYS, 30)
    )
    second.stop()
    assert _counts(redis_client, app_id) == dict.fromkeys(KEYS, 30)
