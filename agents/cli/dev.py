"""`undertow dev up|status|down`: the embedded stack and its workers, left in the background.

`dev up` starts a Tansu broker and a redis-server (unless ``UNDERTOW_KAFKA`` /
``UNDERTOW_REDIS_URL`` name existing ones), then N ``undertow worker`` processes, and returns
once every worker answers ``/readyz`` (it has joined the consumer group). Everything it
started is written to ``<state-dir>/stack.json`` as it goes, so `dev down` (from any shell)
can stop it, even after a `dev up` that was killed half-way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agents.cli.options import positive_int
from agents.devstack import (
    LOOPBACK,
    RECORD_VERSION,
    DevStackError,
    ProcessRecord,
    RedisServer,
    TansuBroker,
    external_services,
    free_port,
    stop_recorded,
)
from agents.settings import STACK_RECORD, Settings, SettingsError
from streams.durations import parse_duration
from streams.errors import InputError

DEFAULT_STATE_DIR = str(STACK_RECORD.parent)
RECORD_NAME = STACK_RECORD.name
DEFAULT_READY_TIMEOUT = 90.0
#: A worker gets this long after SIGTERM to leave the group cleanly before SIGKILL.
WORKER_STOP_TIMEOUT = 15.0
PROBE_TIMEOUT = 1.0
LOG_TAIL_LINES = 30

EXIT_NOT_RUNNING = 1
EXIT_FAILED = 1


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="the embedded stack: broker, Redis and workers")
    actions = dev.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up",
        help="start the stack and its workers in the background",
        description=(
            "Start a local Kafka-compatible broker (Tansu, in memory) and a redis-server on "
            "free loopback ports, unless UNDERTOW_KAFKA / UNDERTOW_REDIS_URL name existing "
            "ones, then N `undertow worker` processes. Returns once every worker is ready "
            "(joined the consumer group), and prints the bootstrap servers, the Redis URL and "
            "each worker's metrics URL. Workers inherit the UNDERTOW_* settings of this shell "
            "(UNDERTOW_WINDOW, UNDERTOW_SLIDE, UNDERTOW_PARTITIONS, ...); logs go to "
            "<state-dir>/worker-<i>.log. Exit status: 0 when everything is ready; 1 when a "
            "stack is already running (stop it with `undertow dev down` first) or something "
            "failed to start (whatever was started is stopped again); 2 on bad settings."
        ),
    )
    up.add_argument("--workers", type=positive_int, default=1, help="worker processes (1)")
    _state_dir_argument(up)
    up.add_argument(
        "--timeout",
        type=_duration,
        default=DEFAULT_READY_TIMEOUT,
        metavar="DURATION",
        help="how long the workers get to become ready, e.g. 90s or 2m (90s)",
    )
    up.set_defaults(run=run_up)

    status = actions.add_parser(
        "status",
        help="what is running, and where",
        description=(
            "Show the recorded stack. --format json prints one object: "
            '{"kafka": "host:port", "redis": "redis://...", "workers": [{"pid": ..., '
            '"metrics_url": ..., "name", "alive", "ready", "log"}], "running": bool, '
            '"services": [{"name", "pid", "alive"}], "state_dir": ...}; with nothing '
            'recorded it is {"kafka": null, "redis": null, "workers": [], "running": false, '
            '"services": [], ...}. Exit status: 0 when the broker, Redis and every worker '
            "are alive; 1 when nothing is running or a recorded process has died."
        ),
    )
    status.add_argument("--format", choices=("table", "json"), default="table")
    _state_dir_argument(status)
    status.set_defaults(run=run_status)

    down = actions.add_parser(
        "down",
        help="stop everything `dev up` started",
        description=(
            "Stop the workers (SIGTERM, so they leave the group at once; SIGKILL after "
            f"{WORKER_STOP_TIMEOUT:g} s), then Redis and the broker, and remove the record. "
            "Services named by UNDERTOW_KAFKA / UNDERTOW_REDIS_URL are never touched. "
            "Running it with nothing up is fine (exit 0)."
        ),
    )
    _state_dir_argument(down)
    down.set_defaults(run=run_down)


def _state_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=(
            f"where the record and the logs live ({DEFAULT_STATE_DIR}); other commands find "
            f"the stack through ./{STACK_RECORD} only"
        ),
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ------------------------------------------------------------------------------ the record


def record_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / RECORD_NAME


def load_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``; None when there is none. Raises DevStackError if malformed."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DevStackError(f"{path} is not a stack record: {exc}") from None
    if not isinstance(data, dict):
        raise DevStackError(f"{path} is not a stack record: expected a JSON object")
    try:
        for entry in [*data.get("processes", []), *data.get("workers", [])]:
            ProcessRecord.from_dict(entry)
    except (DevStackError, TypeError) as exc:
        raise DevStackError(f"{path} is not a stack record: {exc}") from None
    return data


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Replace the record atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


class WorkerRecord(ProcessRecord):
    """A worker process; it may retitle itself, so its start time identifies it too.

    Faust calls ``setproctitle`` when that package is installed, which rewrites
    ``/proc/PID/cmdline``: the cmdline check alone would then call a live worker dead, and
    `dev down` would leave it running. The pid plus its start time (in clock ticks since
    boot) is as unique as the cmdline check, and survives the retitling.
    """

    def is_running(self) -> bool:
        if super().is_running():
            return True
        if self.start_ticks is None:
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        # Field 2 (the command name) is in parentheses and may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp, start_ticks = fields[0], int(fields[2]), int(fields[19])
        return state != "Z" and pgrp == self.pgid and start_ticks == self.start_ticks


def services_of(record: Mapping[str, Any]) -> list[ProcessRecord]:
    return [ProcessRecord.from_dict(entry) for entry in record.get("processes", [])]


def workers_of(record: Mapping[str, Any]) -> list[ProcessRecord]:
    return [WorkerRecord.from_dict(entry) for entry in record.get("workers", [])]


def metrics_url(port: int | None) -> str | None:
    return None if port is None else f"http://{LOOPBACK}:{port}/metrics"


def probe_ready(port: int | None, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when the worker on ``port`` answers ``/readyz`` with 200."""
    if port is None:
        return False
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/readyz", timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def status_document(
    record: Mapping[str, Any] | None,
    state_dir: str | Path = DEFAULT_STATE_DIR,
    ready: Callable[[int | None], bool] = probe_ready,
) -> dict[str, Any]:
    """What `dev status --format json` prints (the first three keys are the contract)."""
    if record is None:
        return {
            "kafka": None,
            "redis": None,
            "workers": [],
            "running": False,
            "services": [],
            "state_dir": str(state_dir),
        }
    workers = []
    for proc in workers_of(record):
        alive = proc.is_running()
        workers.append(
            {
                "pid": proc.pid,
                "metrics_url": metrics_url(proc.port),
                "name": proc.name,
                "alive": alive,
                "ready": alive and ready(proc.port),
                "log": proc.log_path,
            }
        )
    services = [
        {"name": proc.name, "pid": proc.pid, "alive": proc.is_running()}
        for proc in services_of(record)
    ]
    everything = [w["alive"] for w in workers] + [s["alive"] for s in services]
    return {
        "kafka": record.get("kafka"),
        "redis": record.get("redis"),
        "workers": workers,
        "running": bool(everything) and all(everything),
        "services": services,
        "state_dir": str(record.get("state_dir") or state_dir),
    }


def anything_alive(record: Mapping[str, Any]) -> bool:
    return any(p.is_running() for p in [*services_of(record), *workers_of(record)])


# ---------------------------------------------------------------------------------- dev up


def run_up(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        external = external_services()
    except (SettingsError, DevStackError) as exc:
        raise InputError(str(exc)) from None
    if args.workers > settings.partitions:
        raise InputError(
            f"--workers {args.workers} is more than the {settings.partitions} partitions "
            "(UNDERTOW_PARTITIONS): a worker without a partition never becomes ready"
        )
    # Absolute: the services and workers run with their own working directories.
    state = Path(args.state_dir).resolve()
    path = record_path(args.state_dir)
    if not _clear_stale(path):
        return EXIT_FAILED

    started = time.monotonic()
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "kafka": external.kafka,
        "redis": external.redis_url,
        "state_dir": str(state),
        "processes": [],
        "workers": [],
    }
    children: list[subprocess.Popen[bytes]] = []
    try:
        state.mkdir(parents=True, exist_ok=True)
        _start_services(record, state, path)
        env = dict(os.environ, UNDERTOW_KAFKA=record["kafka"], UNDERTOW_REDIS_URL=record["redis"])
        env["PYTHONUNBUFFERED"] = "1"
        for index in range(1, args.workers + 1):
            proc, worker = _spawn_worker(index, env, state)
            children.append(proc)
            record["workers"].append(worker.to_dict())
            write_record(path, record)
        _note(f"waiting for {args.workers} worker(s) to join the consumer group ...")
        _wait_ready(children, workers_of(record), args.timeout)
    except BaseException as exc:
        _teardown(record, children)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if isinstance(exc, DevStackError):
            print(f"undertow: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise

    print(f"kafka     {record['kafka']}")
    print(f"redis     {record['redis']}")
    for worker in workers_of(record):
        print(f"{worker.name:<9} {metrics_url(worker.port)}  (pid {worker.pid})")
    sys.stdout.flush()
    _note(
        f"ready in {time.monotonic() - started:.1f} s; recorded in {path}; "
        "stop it with `undertow dev down`"
    )
    return 0


def _clear_stale(path: Path) -> bool:
    """False when a stack is running there; a dead or unreadable record is removed."""
    try:
        record = load_record(path)
    except DevStackError as exc:
        _note(f"replacing an unreadable record ({exc})")
        path.unlink()
        return True
    if record is None:
        return True
    if anything_alive(record):
        print(
            f"undertow: a stack is already running (recorded in {path}): see "
            "`undertow dev status`, or stop it with `undertow dev down` first",
            file=sys.stderr,
        )
        return False
    _note(f"replacing a stale record: the processes in {path} are gone")
    stop_recorded(record)  # signals nothing; removes temporary work directories
    path.unlink()
    return True


def _start_services(record: dict[str, Any], state: Path, path: Path) -> None:
    """Start the embedded services the environment does not replace, recording each."""
    wanted: list[TansuBroker | RedisServer] = []
    if record["kafka"] is None:
        wanted.append(TansuBroker(workdir=state / "kafka"))
    if record["redis"] is None:
        wanted.append(RedisServer(workdir=state / "redis"))
    for service in wanted:  # both binaries first: a missing one must not cost a start
        service.resolve_binary()
    for service in wanted:
        _note(f"starting {service.name} ...")
        service.start()
        if isinstance(service, TansuBroker):
            record["kafka"] = service.bootstrap
        else:
            record["redis"] = service.url
        record["processes"].append(service.detach().to_dict())
        write_record(path, record)


def _spawn_worker(
    index: int, env: Mapping[str, str], state: Path
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    port = free_port()
    log_path = state / f"worker-{index}.log"
    argv = [sys.executable, "-m", "agents", "worker"]
    with open(log_path, "wb") as log:
        # Own session: Ctrl-C in this shell does not reach it, and `dev down` can signal
        # the whole group. Its cwd is the state dir, where Faust keeps its data directory.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state,
            env={**env, "UNDERTOW_METRICS_PORT": str(port)},
            start_new_session=True,
            close_fds=True,
        )
    try:
        record = WorkerRecord.for_pid(
            f"worker-{index}", proc.pid, argv=argv, port=port, log_path=str(log_path)
        )
    except (DevStackError, ProcessLookupError):
        proc.wait()
        raise DevStackError(
            f"worker-{index} exited at once with status {proc.returncode}. "
            f"Last lines of {log_path}:\n{_log_tail(log_path)}"
        ) from None
    return proc, record


def _wait_ready(
    children: list[subprocess.Popen[bytes]], workers: list[ProcessRecord], timeout: float
) -> None:
    """Until one sweep finds every worker ready (a join rebalances the others)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc, worker in zip(children, workers, strict=True):
            if proc.poll() is not None:
                raise DevStackError(
                    f"{worker.name} (pid {worker.pid}) exited during startup with status "
                    f"{proc.returncode}. Last lines of {worker.log_path}:\n"
                    f"{_log_tail(Path(worker.log_path or ''))}"
                )
        waiting = [w for w in workers if not probe_ready(w.port)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            late = waiting[0]
            raise DevStackError(
                f"{', '.join(w.name for w in waiting)} not ready within {timeout:g} s "
                f"({metrics_url(late.port)} /readyz). Last lines of {late.log_path}:\n"
                f"{_log_tail(Path(late.log_path or ''))}"
            )
        time.sleep(0.5)


def _teardown(record: Mapping[str, Any], children: Iterable[subprocess.Popen[bytes]]) -> None:
    """Stop whatever a failed `dev up` started, workers first."""
    _note("stopping what was started ...")
    with contextlib.suppress(DevStackError):
        stop_workers(workers_of(record))
    for proc in children:  # reap our own children
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    with contextlib.suppress(DevStackError):
        stop_recorded(record)


# ----------------------------------------------------------------------------- dev status


def run_status(args: argparse.Namespace) -> int:
    path = record_path(args.state_dir)
    try:
        record = load_record(path)
    except DevStackError as exc:
        print(f"undertow: warning: {exc}", file=sys.stderr)
        record = None
    doc = status_document(record, args.state_dir)
    if args.format == "json":
        print(json.dumps(doc))
    else:
        print(render_status(doc, path, record is not None), end="")
    return 0 if doc["running"] else EXIT_NOT_RUNNING


def render_status(doc: Mapping[str, Any], path: Path, recorded: bool) -> str:
    if not recorded:
        return f"no stack is running (no {path}); start one with `undertow dev up`\n"
    pids = {s["name"]: s for s in doc["services"]}

    def service(name: str) -> str:
        s = pids.get(name)
        if s is None:
            return "(external)"
        return f"({name} pid {s['pid']}, {'running' if s['alive'] else 'NOT RUNNING'})"

    lines = [
        f"kafka     {doc['kafka']}  {service('tansu')}",
        f"redis     {doc['redis']}  {service('redis')}",
    ]
    for w in doc["workers"]:
        state = "ready" if w["ready"] else "starting" if w["alive"] else "NOT RUNNING"
        lines.append(f"{w['name']:<9} {w['metrics_url']}  (pid {w['pid']}, {state})")
    if not doc["running"]:
        lines.append("some processes have died: `undertow dev down`, then `undertow dev up`")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- dev down


def run_down(args: argparse.Namespace) -> int:
    path = record_path(args.state_dir)
    try:
        record = load_record(path)
    except DevStackError as exc:
        print(f"undertow: warning: {exc}; removing it", file=sys.stderr)
        path.unlink()
        return 0
    if record is None:
        print(f"nothing to stop: no stack recorded in {path}")
        return 0
    failed = False
    workers = workers_of(record)
    for proc, outcome in zip(workers, stop_workers(workers), strict=True):
        failed |= _report_stop(proc, outcome)
    for entry in reversed(record.get("processes", [])):
        proc = ProcessRecord.from_dict(entry)
        try:
            outcome = "stopped" if proc.stop() else "not running"
        except DevStackError as exc:
            outcome = str(exc)
        failed |= _report_stop(proc, outcome)
    if failed:
        print(f"undertow: error: some processes would not stop; {path} is kept", file=sys.stderr)
        return EXIT_FAILED
    path.unlink()
    print(f"removed {path}")
    return 0


def stop_workers(workers: list[ProcessRecord]) -> list[str]:
    """SIGTERM every worker at once (each leaves the group), SIGKILL the stragglers."""

    def stop(proc: ProcessRecord) -> str:
        try:
            return "stopped" if proc.stop(WORKER_STOP_TIMEOUT) else "not running"
        except DevStackError as exc:
            return str(exc)

    if not workers:
        return []
    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        return list(pool.map(stop, workers))


def _report_stop(proc: ProcessRecord, outcome: str) -> bool:
    if outcome == "stopped":
        print(f"stopped {proc.name} (pid {proc.pid})")
    elif outcome == "not running":
        print(f"{proc.name} (pid {proc.pid}) was not running")
    else:
        print(f"undertow: error: {outcome}", file=sys.stderr)
        return True
    return False


# -------------------------------------------------------------------------------- helpers


def _note(text: str) -> None:
    print(f"undertow: {text}", file=sys.stderr, flush=True)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join(tail) if tail else "(empty log)"
