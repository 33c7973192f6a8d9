"""`undertow dev up|status|down` without services: arguments, the record, stale records.

Live processes in the records are `sleep` commands this test starts in their own session,
standing in for workers and services; nothing here needs Kafka or Redis.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.cli import build_parser, main
from agents.cli import dev as dev_cmd
from agents.devstack import ProcessRecord

Spawn = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start `sleep 60` in its own session; every one is killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def make() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def worker_entry(proc: subprocess.Popen[bytes], name: str, port: int) -> dict[str, Any]:
    return dev_cmd.WorkerRecord.for_pid(name, proc.pid, argv=["sleep", "60"], port=port).to_dict()


def service_entry(name: str, pid: int) -> dict[str, Any]:
    return ProcessRecord(name=name, pid=pid, pgid=pid, cmdline=("sleep", "60")).to_dict()


def write(state: Path, record: dict[str, Any]) -> Path:
    path = dev_cmd.record_path(state)
    dev_cmd.write_record(path, record)
    return path


def a_record(state: Path, processes: list[dict[str, Any]], workers: list[dict[str, Any]]):
    return {
        "version": 1,
        "kafka": "127.0.0.1:9092",
        "redis": "redis://127.0.0.1:6379/0",
        "state_dir": str(state),
        "processes": processes,
        "workers": workers,
    }


# ---------------------------------------------------------------------------- arguments


def test_up_arguments() -> None:
    args = build_parser().parse_args(
        ["dev", "up", "--workers", "3", "--state-dir", "/tmp/s", "--timeout", "2m"]
    )
    assert (args.workers, args.state_dir, args.timeout) == (3, "/tmp/s", 120.0)
    args = build_parser().parse_args(["dev", "up"])
    assert (args.workers, args.state_dir, args.timeout) == (1, ".undertow", 90.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["dev", "up", "--workers", "0"],
        ["dev", "up", "--timeout", "soon"],
        ["dev", "status", "--format", "yaml"],
        ["dev"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_more_workers_than_partitions_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("UNDERTOW_PARTITIONS", "2")
    code = main(["dev", "up", "--workers", "3", "--state-dir", str(tmp_path)])
    assert code == 2
    assert "more than the 2 partitions" in capsys.readouterr().err
    assert not dev_cmd.record_path(tmp_path).exists()


def test_bad_settings_are_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("UNDERTOW_KAFKA", "no-port-here")
    assert main(["dev", "up", "--state-dir", str(tmp_path)]) == 2
    assert "UNDERTOW_KAFKA" in capsys.readouterr().err


# ------------------------------------------------------------------------------- status


def test_status_json_with_nothing_running(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["dev", "status", "--format", "json", "--state-dir", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (doc["kafka"], doc["redis"], doc["workers"], doc["running"]) == (None, None, [], False)


def test_status_json_shape(tmp_path: Path, spawn: Spawn) -> None:
    tansu, redis, worker = spawn(), spawn(), spawn()
    record = a_record(
        tmp_path,
        [service_entry("tansu", tansu.pid), service_entry("redis", redis.pid)],
        [worker_entry(worker, "worker-1", 4711)],
    )
    doc = dev_cmd.status_document(record, tmp_path, ready=lambda port: port == 4711)
    assert list(doc)[:3] == ["kafka", "redis", "workers"]
    assert doc["kafka"] == "127.0.0.1:9092"
    assert doc["redis"] == "redis://127.0.0.1:6379/0"
    assert doc["workers"] == [
        {
            "pid": worker.pid,
            "metrics_url": "http://127.0.0.1:4711/metrics",
            "name": "worker-1",
            "alive": True,
            "ready": True,
            "log": None,
        }
    ]
    assert doc["running"] is True
    assert [s["alive"] for s in doc["services"]] == [True, True]
    json.dumps(doc)  # JSON-ready as it is


def test_status_reports_a_dead_worker_and_exits_1(
    tmp_path: Path, spawn: Spawn, capsys: pytest.CaptureFixture
) -> None:
    tansu, redis, worker = spawn(), spawn(), spawn()
    gone = ProcessRecord(name="worker-2", pid=dead_pid(), pgid=1, cmdline=("sleep", "60"))
    write(
        tmp_path,
        a_record(
            tmp_path,
            [service_entry("tansu", tansu.pid), service_entry("redis", redis.pid)],
            [worker_entry(worker, "worker-1", 1), {**gone.to_dict(), "port": 2}],
        ),
    )
    code = main(["dev", "status", "--format", "json", "--state-dir", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["running"] is False
    assert [(w["name"], w["alive"], w["ready"]) for w in doc["workers"]] == [
        ("worker-1", True, False),  # nothing answers /readyz on port 1
        ("worker-2", False, False),
    ]
    assert main(["dev", "status", "--state-dir", str(tmp_path)]) == 1
    table = capsys.readouterr().out
    assert "worker-2" in table and "NOT RUNNING" in table and "dev down" in table


def test_status_table_of_a_running_stack(tmp_path: Path, spawn: Spawn) -> None:
    worker = spawn()
    record = a_record(tmp_path, [], [worker_entry(worker, "worker-1", 4711)])
    doc = dev_cmd.status_document(record, tmp_path, ready=lambda port: True)
    text = dev_cmd.render_status(doc, dev_cmd.record_path(tmp_path), recorded=True)
    assert text.splitlines() == [
        "kafka     127.0.0.1:9092  (external)",
        "redis     redis://127.0.0.1:6379/0  (external)",
        f"worker-1  http://127.0.0.1:4711/metrics  (pid {worker.pid}, ready)",
    ]


def test_a_malformed_record_is_not_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = dev_cmd.record_path(tmp_path)
    path.write_text('{"processes": [{"name": "tansu"}]}')
    assert main(["dev", "status", "--format", "json", "--state-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["running"] is False
    assert "not a stack record" in captured.err
    assert main(["dev", "down", "--state-dir", str(tmp_path)]) == 0
    assert not path.exists()


# --------------------------------------------------------------------- stale and running


def test_up_refuses_while_a_recorded_process_is_alive(
    tmp_path: Path, spawn: Spawn, capsys: pytest.CaptureFixture
) -> None:
    worker = spawn()
    record = a_record(tmp_path, [], [worker_entry(worker, "worker-1", 4711)])
    path = write(tmp_path, record)
    assert main(["dev", "up", "--state-dir", str(tmp_path)]) == 1
    assert "already running" in capsys.readouterr().err
    assert json.loads(path.read_text()) == record
    assert worker.poll() is None


def test_a_stale_record_is_cleared(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gone = ProcessRecord(name="tansu", pid=dead_pid(), pgid=1, cmdline=("sleep", "60"))
    path = write(tmp_path, a_record(tmp_path, [gone.to_dict()], []))
    assert dev_cmd._clear_stale(path) is True
    assert not path.exists()
    assert "stale record" in capsys.readouterr().err


def test_down_with_nothing_recorded_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["dev", "down", "--state-dir", str(tmp_path)]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_down_stops_workers_then_services_and_removes_the_record(
    tmp_path: Path, spawn: Spawn, capsys: pytest.CaptureFixture
) -> None:
    tansu, worker = spawn(), spawn()
    gone = ProcessRecord(name="redis", pid=dead_pid(), pgid=1, cmdline=("sleep", "60"))
    path = write(
        tmp_path,
        a_record(
            tmp_path,
            [service_entry("tansu", tansu.pid), gone.to_dict()],
            [worker_entry(worker, "worker-1", 4711)],
        ),
    )
    assert main(["dev", "down", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"stopped worker-1 (pid {worker.pid})",
        f"redis (pid {gone.pid}) was not running",
        f"stopped tansu (pid {tansu.pid})",
        f"removed {path}",
    ]
    assert worker.wait(timeout=5) is not None and tansu.wait(timeout=5) is not None
    assert not path.exists()
    assert main(["dev", "down", "--state-dir", str(tmp_path)]) == 0  # idempotent


def test_a_retitled_worker_is_still_recognised(spawn: Spawn) -> None:
    """Faust retitles its process when setproctitle is installed: the start time decides."""
    worker = spawn()
    record = dev_cmd.WorkerRecord.for_pid("worker-1", worker.pid, argv=["sleep", "60"])
    retitled = dev_cmd.WorkerRecord(**{**record.__dict__, "cmdline": ("faust", "-running-")})
    assert retitled.is_running()
    assert not ProcessRecord(**retitled.__dict__).is_running()
    reused = dev_cmd.WorkerRecord(**{**retitled.__dict__, "start_ticks": record.start_ticks - 1})
    assert not reused.is_running()  # same pid, another process
    worker.kill()
    worker.wait()
    assert not retitled.is_running()


def test_records_round_trip_through_the_file(tmp_path: Path, spawn: Spawn) -> None:
    worker = spawn()
    record = a_record(tmp_path, [], [worker_entry(worker, "worker-1", 4711)])
    path = write(tmp_path, record)
    assert dev_cmd.load_record(path) == record
    assert dev_cmd.load_record(tmp_path / "missing.json") is None
    assert [w.pid for w in dev_cmd.workers_of(record)] == [worker.pid]
