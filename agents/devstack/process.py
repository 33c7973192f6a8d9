"""Processes the stack starts: identity checks, records that outlive the command, stopping."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from agents.devstack.environment import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    LOG_TAIL_LINES,
    LOOPBACK,
    POLL_INTERVAL,
    PORT_ATTEMPTS,
    DevStackError,
    PortTakenError,
    free_port,
)

# ------------------------------------------------------------- process identity (Linux)


def _proc_cmdline(pid: int) -> tuple[str, ...] | None:
    """The argv of a live process, or None if it is gone or a zombie (empty cmdline).

    A process still inside exec also shows an empty cmdline for a moment, so records are
    only taken once a service answers (or via :func:`_settled_cmdline`).
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if Path("/proc/self").exists():
            return None
        return _ps_cmdline(pid)
    if not raw:
        return None
    return tuple(part.decode(errors="replace") for part in raw[:-1].split(b"\0"))


def _settled_cmdline(pid: int, timeout: float = 2.0) -> tuple[str, ...] | None:
    """The cmdline of a process that may have been spawned a moment ago."""
    deadline = time.monotonic() + timeout
    while (cmdline := _proc_cmdline(pid)) is None and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL / 5)
    return cmdline


def _ps_cmdline(pid: int) -> tuple[str, ...] | None:
    """Fallback without /proc (macOS): the command line as one string from ps."""
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out,) if out else None


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).

    Together with the pid it identifies a process for good: a recycled pid has a later
    start time. None without /proc.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group; a group that no longer exists is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _child_exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for a child to exit *without reaping it*.

    While the exited child is an unreaped zombie its pid (and so its process-group id)
    cannot be given to a new process, which makes it safe to signal the group once more
    afterwards to catch anything the service forked.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return True  # already reaped
        if info is not None and info.si_pid == pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def _terminate_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``timeout``, then reap."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        if not _child_exited(proc.pid, timeout):
            _signal_group(proc.pid, signal.SIGKILL)
            _child_exited(proc.pid, timeout)
        # Stragglers the service may have forked (e.g. a redis save child).
        _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        raise DevStackError(f"pid {proc.pid} did not exit even after SIGKILL") from exc


def _cleanup_process(proc: subprocess.Popen[bytes], remove_dir: str | None) -> None:
    """Last-resort cleanup run by ``weakref.finalize`` (garbage collection or exit)."""
    with contextlib.suppress(Exception):
        _terminate_child(proc, timeout=2.0)
    if remove_dir is not None:
        shutil.rmtree(remove_dir, ignore_errors=True)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


@dataclass(frozen=True)
class ProcessRecord:
    """What another process needs to find, check and stop a started service.

    ``cmdline`` and ``start_ticks`` are read from /proc once the service answers, and are
    checked again before any signal, so that a pid recycled by an unrelated program is
    never signalled.
    """

    name: str
    pid: int
    pgid: int
    cmdline: tuple[str, ...]
    start_ticks: int | None = None
    port: int | None = None
    log_path: str | None = None
    workdir: str | None = None
    remove_workdir: bool = False

    @classmethod
    def for_pid(
        cls,
        name: str,
        pid: int,
        *,
        argv: Sequence[str] = (),
        port: int | None = None,
        log_path: str | None = None,
        workdir: str | None = None,
        remove_workdir: bool = False,
    ) -> ProcessRecord:
        """Record a running process (e.g. a worker the CLI started in its own session)."""
        cmdline = _settled_cmdline(pid) or tuple(argv)
        if not cmdline:
            raise DevStackError(f"pid {pid} ({name}) is not running")
        return cls(
            name=name,
            pid=pid,
            pgid=os.getpgid(pid),
            cmdline=cmdline,
            start_ticks=_proc_start_ticks(pid),
            port=port,
            log_path=log_path,
            workdir=workdir,
            remove_workdir=remove_workdir,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``.undertow/stack.json``)."""
        return {
            "name": self.name,
            "pid": self.pid,
            "pgid": self.pgid,
            "cmdline": list(self.cmdline),
            "start_ticks": self.start_ticks,
            "port": self.port,
            "log_path": self.log_path,
            "workdir": self.workdir,
            "remove_workdir": self.remove_workdir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        """Inverse of :meth:`to_dict`; raises :class:`DevStackError` on a malformed record."""
        try:
            return cls(
                name=str(data["name"]),
                pid=int(data["pid"]),
                pgid=int(data["pgid"]),
                cmdline=tuple(str(arg) for arg in data["cmdline"]),
                start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
                port=None if data.get("port") is None else int(data["port"]),
                log_path=data.get("log_path"),
                workdir=data.get("workdir"),
                remove_workdir=bool(data.get("remove_workdir", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevStackError(f"malformed process record {dict(data)!r}: {exc}") from exc

    def is_running(self) -> bool:
        """True if the recorded process is still alive *and* still the same program."""
        cmdline = _proc_cmdline(self.pid)
        if cmdline is None:
            return False
        if len(cmdline) == 1 and len(self.cmdline) > 1:  # the ps fallback joins argv
            if cmdline[0] != " ".join(self.cmdline):
                return False
        elif cmdline != self.cmdline:
            return False
        if self.start_ticks is not None and _proc_start_ticks(self.pid) != self.start_ticks:
            return False
        try:
            return os.getpgid(self.pid) == self.pgid
        except ProcessLookupError:
            return False

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> bool:
        """Stop the recorded process group (SIGTERM, then SIGKILL after ``timeout``).

        Returns False, and signals nothing, if the process is gone or the pid now belongs
        to another program. Works from any process, not only the one that started it.
        """
        if not self.is_running():
            self._remove_workdir()
            return False
        _signal_group(self.pgid, signal.SIGTERM)
        if not self._wait_gone(timeout):
            _signal_group(self.pgid, signal.SIGKILL)
            if not self._wait_gone(timeout):
                raise DevStackError(f"{self.name} (pid {self.pid}) survived SIGKILL")
        self._remove_workdir()
        return True

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():  # a zombie has an empty cmdline, so it counts as gone
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        return True

    def _remove_workdir(self) -> None:
        if self.remove_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def stop_recorded(
    record: Mapping[str, Any], timeout: float = DEFAULT_STOP_TIMEOUT
) -> dict[str, str]:
    """Stop every process of a :meth:`DevStack.to_record` dict, e.g. from ``dev down``.

    Processes are stopped in reverse order of the record (Redis before the broker, and
    anything appended after them first). Returns ``{name: "stopped" | "not running"}``.
    """
    results: dict[str, str] = {}
    for entry in reversed(list(record.get("processes", []))):
        proc = ProcessRecord.from_dict(entry)
        results[proc.name] = "stopped" if proc.stop(timeout) else "not running"
    return results


def recorded_status(record: Mapping[str, Any]) -> dict[str, bool]:
    """``{name: running}`` for every process of a :meth:`DevStack.to_record` dict."""
    return {
        proc.name: proc.is_running()
        for proc in (ProcessRecord.from_dict(entry) for entry in record.get("processes", []))
    }


# ------------------------------------------------------------------- managed processes


class ManagedProcess:
    """A service process on a free loopback port, in its own process group.

    Subclasses say how to find the binary, build the command line and check that the
    service answers. The process writes its output to ``<workdir>/<name>.log``; the
    workdir is a fresh temporary directory removed on :meth:`stop` unless one is given.
    A ``weakref.finalize`` hook stops the process if the object is dropped or the
    interpreter exits without :meth:`stop`, so an interrupted run leaves nothing behind.
    """

    name: ClassVar[str] = "process"

    def __init__(
        self,
        binary: str | None = None,
        *,
        workdir: str | Path | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._binary = binary
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self._startup_timeout = startup_timeout
        self._environ = dict(os.environ if environ is None else environ)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._last_argv: list[str] = []
        self._workdir: Path | None = None
        self._remove_workdir = False
        self._record: ProcessRecord | None = None
        self._finalizer: weakref.finalize[..., ManagedProcess] | None = None

    # -- subclass hooks

    def _find_binary(self) -> str:
        raise NotImplementedError

    def _argv(self, binary: str, port: int, workdir: Path) -> list[str]:
        raise NotImplementedError

    def _child_env(self) -> dict[str, str]:
        return dict(self._environ)

    def _probe(self, port: int, pid: int) -> None:
        """Raise unless the service on ``port`` answers; :class:`PortTakenError` if it
        is not ours (someone else won the race for the port)."""
        raise NotImplementedError

    # -- public API

    def resolve_binary(self) -> str:
        """The executable to run; raises :class:`BinaryNotFoundError` with advice."""
        if self._binary is None:
            self._binary = self._find_binary()
        return self._binary

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise DevStackError(f"{self.name} is not started")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise DevStackError(f"{self.name} is not started")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise DevStackError(f"{self.name} is not started")
        return self._workdir / f"{self.name}.log"

    def record(self) -> ProcessRecord:
        """Identity of the running process, for stopping it from another process."""
        if self._record is None:
            raise DevStackError(f"{self.name} is not started")
        return self._record

    def start(self) -> Self:
        """Start on a free port and return once the service answers (or raise)."""
        if self._proc is not None:
            raise DevStackError(f"{self.name} is already started")
        binary = self.resolve_binary()
        if self._workdir_arg is not None:
            self._workdir_arg.mkdir(parents=True, exist_ok=True)
            self._workdir, self._remove_workdir = self._workdir_arg, False
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"undertow-{self.name}-"))
            self._remove_workdir = True
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    self._launch(binary, free_port())
                    self._wait_ready()
                    self._take_record()
                    return self
                except PortTakenError:
                    self._kill()
                    if attempt == PORT_ATTEMPTS:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the process group (SIGTERM, SIGKILL after ``timeout``); idempotent."""
        self._kill(timeout)
        if self._remove_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None
        self._port = None

    def detach(self) -> ProcessRecord:
        """Leave the process running after this object and this interpreter are gone.

        For ``undertow dev up``: the returned record is what ``dev down`` needs.
        """
        record = self.record()
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._proc = None
        self._record = None
        self._workdir = None
        self._port = None
        return record

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals

    def _launch(self, binary: str, port: int) -> None:
        assert self._workdir is not None
        argv = self._argv(binary, port, self._workdir)
        with open(self.log_path, "wb") as log:
            # Own session: Ctrl-C in the terminal does not reach the service, and the whole
            # group can be signalled at once. The child keeps its own copy of the log fd.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                env=self._child_env(),
                start_new_session=True,
                close_fds=True,
            )
        self._proc, self._port, self._last_argv = proc, port, argv
        remove_dir = str(self._workdir) if self._remove_workdir else None
        self._finalizer = weakref.finalize(self, _cleanup_process, proc, remove_dir)

    def _take_record(self) -> None:
        # Taken once the service answers: by then exec is long done, and /proc shows the
        # service's own cmdline (a shebang script shows its interpreter, not argv[0]).
        assert self._proc is not None and self._workdir is not None
        pid = self._proc.pid
        self._record = ProcessRecord(
            name=self.name,
            pid=pid,
            pgid=pid,
            cmdline=_settled_cmdline(pid) or tuple(self._last_argv),
            start_ticks=_proc_start_ticks(pid),
            port=self._port,
            log_path=str(self.log_path),
            workdir=str(self._workdir),
            remove_workdir=self._remove_workdir,
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._port is not None
        proc, port = self._proc, self._port
        deadline = time.monotonic() + self._startup_timeout
        # Only the text of the last error: keeping the exception would keep its traceback,
        # whose frames reference self, alive in a cycle and delay the finalizer.
        last_error = "none"
        while True:
            if _child_exited(proc.pid, 0):
                self._raise_died()
            try:
                self._probe(port, proc.pid)
            except PortTakenError:
                raise
            except Exception as exc:  # not answering yet: refused, timeout, loading…
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                return
            if time.monotonic() >= deadline:
                raise DevStackError(
                    f"{self.name} (pid {proc.pid}) did not answer on {LOOPBACK}:{port} "
                    f"within {self._startup_timeout:g} s (last error: {last_error}). "
                    f"{self._log_heading()}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL * 2)

    def _raise_died(self) -> None:
        assert self._proc is not None
        proc = self._proc
        _terminate_child(proc, DEFAULT_STOP_TIMEOUT)
        tail = _log_tail(self.log_path)
        lowered = tail.lower()
        if "address in use" in lowered or "address already in use" in lowered:
            raise PortTakenError(f"{self.name}: port {self._port} was taken")
        # Tansu exits with status 0 even when it fails to start, so do not rely on it.
        raise DevStackError(
            f"{self.name} exited during startup with status {proc.returncode} "
            f"(command: {shlex.join(self._last_argv)}). "
            f"{self._log_heading()}:\n{tail}"
        )

    def _log_heading(self) -> str:
        # A temporary workdir is removed on stop, so its path would only mislead.
        if self._remove_workdir:
            return "Last lines of its log"
        return f"Last lines of {self.log_path}"

    def _kill(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        proc, finalizer = self._proc, self._finalizer
        self._proc, self._finalizer, self._record = None, None, None
        if finalizer is not None:
            finalizer.detach()
        if proc is not None:
            _terminate_child(proc, timeout)
