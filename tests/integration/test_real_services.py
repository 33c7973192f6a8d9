"""The services behind the suite are real: a Kafka-protocol broker and a Redis server.

These run against ``UNDERTOW_KAFKA`` / ``UNDERTOW_REDIS_URL`` when set (Apache Kafka,
a real Redis) and against the embedded Tansu + redis-server otherwise. The last tests
exercise the embedded stack's own lifecycle: it comes up, answers, and leaves no
process behind when stopped, in-process or from another process (``dev down``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.integration

N_MESSAGES = 10_000
PARTITIONS = 4
CONSUME_DEADLINE_S = 90.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_kafka_topic_produce_and_consume_in_a_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    """10,000 keyed JSON messages go through a 4-partition topic and a consumer group."""
    import orjson
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic, group = unique_name("roundtrip"), unique_name("group")

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="undertow-test")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    # Values are serialised by hand: kafka-python 3 deprecates plain-callable
    # serializers and 2.x lacks the new Serializer signature, so bytes work on both.
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20, client_id="undertow-test"
    )
    try:
        futures = [
            producer.send(
                topic,
                key=f"pred-{i}".encode(),
                value=orjson.dumps({"id": i, "model": "fraud", "features": {"amount": i / 2}}),
            )
            for i in range(N_MESSAGES)
        ]
        producer.flush(timeout=60)
        produced_partition = {i: f.get(timeout=10).partition for i, f in enumerate(futures)}
    finally:
        producer.close(timeout=10)
    assert set(produced_partition.values()) == set(range(PARTITIONS))

    # FACTS.md: a new group's first join waits about half the session timeout on Tansu
    # (~23 s with kafka-python's 45 s default). 6 s is the smallest value Apache Kafka's
    # default group.min.session.timeout.ms accepts, so the suite runs on both.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        client_id="undertow-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=5000,
    )
    seen: list[int] = []
    last_offset: dict[int, int] = {}
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        for _ in range(10_000):  # bounded in count as well as in time
            if len(seen) >= N_MESSAGES or time.monotonic() > deadline:
                break
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    payload = orjson.loads(record.value)
                    assert record.key == f"pred-{payload['id']}".encode()
                    assert payload["features"] == {"amount": payload["id"] / 2}
                    assert record.partition == produced_partition[payload["id"]]
                    assert record.offset > last_offset.get(tp.partition, -1)
                    last_offset[tp.partition] = record.offset
                    seen.append(payload["id"])
        # One more poll: a duplicate delivered after the 10,000th message shows up here.
        for records in consumer.poll(timeout_ms=1000).values():
            seen.extend(orjson.loads(r.value)["id"] for r in records)

        assert len(seen) == N_MESSAGES, f"got {len(seen)} of {N_MESSAGES} before the deadline"
        assert set(seen) == set(range(N_MESSAGES))

        # The group's offsets really are stored by the broker. (end_offsets() is not
        # used here: see test_list_offsets_latest_is_the_log_end for Tansu's quirk.)
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert consumer.assignment() == set(partitions)
        positions = {tp: consumer.position(tp) for tp in partitions}
        assert sum(positions.values()) == N_MESSAGES
        assert {tp: consumer.highwater(tp) for tp in partitions} == positions
        consumer.commit()
        assert {tp: consumer.committed(tp) for tp in partitions} == positions
    finally:
        consumer.close()


def _is_embedded_tansu(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    from agents.devstack import TansuBroker

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="undertow-test")
    try:
        cluster_id = str(admin.describe_cluster()["cluster_id"])
    finally:
        admin.close()
    return cluster_id.startswith(TansuBroker.CLUSTER_ID_PREFIX)


def test_list_offsets_latest_is_the_log_end(
    kafka_bootstrap: str, unique_name: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    """ListOffsets(latest) must be the offset after the last record, as on Apache Kafka.

    Tansu 0.6 (memory storage) answers with the base offset of the last record *batch*
    plus one, so end_offsets() undercounts whenever a batch holds more than one record,
    while the high watermark in fetch responses is right. Code that needs the end of a
    partition (``alerts tail`` without --follow, lag) must not trust end_offsets() on the
    embedded broker. Strict xfail: when Tansu is fixed this turns into a failure that
    says the workaround can go.
    """
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    request.applymarker(
        pytest.mark.xfail(
            _is_embedded_tansu(kafka_bootstrap),
            reason="Tansu 0.6: ListOffsets(latest) = last batch base offset + 1",
            strict=True,
        )
    )
    topic = unique_name("offsets")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="undertow-test")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    try:
        for _ in range(3):  # three batches of ten records each
            for _ in range(10):
                producer.send(topic, partition=0, value=b"x")
            producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, client_id="undertow-test")
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        received = 0
        deadline = time.monotonic() + 30
        while received < 30 and time.monotonic() < deadline:
            received += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
        assert received == 30
        assert consumer.highwater(tp) == 30  # right on both brokers
        assert consumer.end_offsets([tp]) == {tp: 30}
    finally:
        consumer.close()


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    """Strings, hashes, a MULTI/EXEC transaction and WATCH conflict detection."""
    import redis

    assert redis_client.info("server")["redis_version"]

    redis_client.set("undertow:test:string", "value")
    assert redis_client.get("undertow:test:string") == b"value"

    redis_client.hset("undertow:test:hash", mapping={"psi": "0.41", "status": "critical"})
    assert redis_client.hgetall("undertow:test:hash") == {
        b"psi": b"0.41",
        b"status": b"critical",
    }

    with redis_client.pipeline(transaction=True) as pipe:  # MULTI … EXEC
        pipe.incr("undertow:test:counter")
        pipe.incrby("undertow:test:counter", 41)
        pipe.expire("undertow:test:counter", 60)
        assert pipe.execute() == [1, 42, True]
    assert redis_client.get("undertow:test:counter") == b"42"

    # A real server aborts EXEC when a WATCHed key changed in between.
    other = redis.Redis(connection_pool=redis_client.connection_pool)
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.watch("undertow:test:counter")
        other.set("undertow:test:counter", 0)
        pipe.multi()
        pipe.incr("undertow:test:counter")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert redis_client.get("undertow:test:counter") == b"0"


# ------------------------------------------------------------ the embedded stack itself


def _process_gone(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it runs nothing and holds no port)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def _live_children() -> set[int]:
    """Pids of our own non-zombie child processes."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(entry.name))
    return children


def test_devstack_stop_leaves_no_process(
    tmp_path: Path, service_unavailable: Callable[[str], NoReturn]
) -> None:
    import redis
    from kafka import KafkaAdminClient

    from agents.devstack import BinaryNotFoundError, DevStack

    stack = DevStack(state_dir=tmp_path / "state")
    try:
        stack.start()
    except BinaryNotFoundError as exc:
        service_unavailable(str(exc))
    try:
        record = stack.to_record()
        pids = [p["pid"] for p in record["processes"]]
        ports = [p["port"] for p in record["processes"]]
        assert not any(_process_gone(pid) for pid in pids)
        admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
        try:
            assert admin.describe_cluster()["cluster_id"] == stack.broker.cluster_id
        finally:
            admin.close()
        client = redis.Redis.from_url(stack.redis_url)
        assert client.ping()
        client.close()
    finally:
        stack.stop()

    assert stack.running is False
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # stopped *and* reaped
            os.kill(pid, 0)
    assert all(_port_closed(port) for port in ports)
    # With a state_dir the logs stay for inspection.
    assert (tmp_path / "state" / "kafka" / "tansu.log").is_file()
    assert (tmp_path / "state" / "redis" / "redis.log").is_file()
    stack.stop()  # idempotent


_LAUNCHER = """
import json, sys
from agents.devstack import DevStack
stack = DevStack(state_dir=sys.argv[1]).start()
print(json.dumps(stack.detach()))
"""


def test_detached_stack_outlives_launcher_and_stops_from_another_process(
    tmp_path: Path, service_unavailable: Callable[[str], NoReturn]
) -> None:
    """What ``undertow dev up`` / ``dev down`` will do: start, exit, stop from elsewhere."""
    import redis

    from agents.devstack import recorded_status, stop_recorded

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if launched.returncode != 0 and "BinaryNotFoundError" in launched.stderr:
        service_unavailable(launched.stderr.strip().splitlines()[-1].split(": ", 1)[-1])
    assert launched.returncode == 0, launched.stderr
    record = json.loads(launched.stdout)
    try:
        assert recorded_status(record) == {"tansu": True, "redis": True}
        client = redis.Redis.from_url(record["redis"])
        assert client.ping()
        client.close()

        stopper = subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, sys; from agents.devstack import stop_recorded; "
                "print(json.dumps(stop_recorded(json.loads(sys.argv[1]))))",
                json.dumps(record),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert stopper.returncode == 0, stopper.stderr
        assert json.loads(stopper.stdout) == {"redis": "stopped", "tansu": "stopped"}
    finally:
        stop_recorded(record)  # no-op when the stop above worked

    for proc in record["processes"]:
        assert _process_gone(proc["pid"])
        assert _port_closed(proc["port"])
    assert recorded_status(record) == {"tansu": False, "redis": False}
    assert stop_recorded(record) == {"redis": "not running", "tansu": "not running"}


def test_failed_redis_start_stops_the_broker_too(
    tmp_path: Path, service_unavailable: Callable[[str], NoReturn]
) -> None:
    from agents.devstack import BinaryNotFoundError, DevStack, DevStackError, resolve_tansu_bin

    try:
        resolve_tansu_bin()
    except BinaryNotFoundError as exc:
        service_unavailable(str(exc))
    fake_redis = tmp_path / "redis-server"
    fake_redis.write_text("#!/bin/sh\necho 'boom: cannot start'\nexit 3\n")
    fake_redis.chmod(0o755)

    before = _live_children()
    stack = DevStack(redis_bin=str(fake_redis))
    with pytest.raises(DevStackError) as failure:
        stack.start()
    message = str(failure.value)
    assert "redis exited during startup with status 3" in message
    assert "boom: cannot start" in message
    assert _live_children() <= before  # the broker that did start was stopped


def test_missing_binaries_give_a_clear_error_and_start_nothing(tmp_path: Path) -> None:
    from agents.devstack import BinaryNotFoundError, DevStack

    before = _live_children()
    missing = str(tmp_path / "no-such-binary")

    stack = DevStack(environ={"PATH": str(tmp_path), "UNDERTOW_TANSU_BIN": missing})
    with pytest.raises(BinaryNotFoundError, match=r"UNDERTOW_TANSU_BIN=.*not an executable"):
        stack.start()

    # Tansu is found, redis-server is not: the broker must not even be started.
    stack = DevStack(environ={"PATH": str(tmp_path)}, tansu_bin="/bin/true")
    with pytest.raises(BinaryNotFoundError) as failure:
        stack.start()
    assert "`redis-server`" in str(failure.value)
    assert "UNDERTOW_REDIS_URL" in str(failure.value)
    assert _live_children() <= before
