"""What the integration tests' server wrappers share: stopping a subprocess for sure, and
reading its log file back.

A subclass sets ``proc`` (the `subprocess.Popen`, started in its own session so that its
process group holds only what it started) and ``log_path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


class LoggedProcess:
    """A subprocess started in its own session, its output in ``log_path``."""

    proc: subprocess.Popen[bytes] | None
    log_path: Path
    #: Seconds `stop` waits after SIGTERM, and lines `log_tail` shows, by default.
    stop_timeout = 15.0
    tail_lines = 30

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, SIGKILL after ``timeout``; idempotent; returns the exit status."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # Whatever is left of its process group: its own session, so only what it started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int | None = None) -> str:
        count = self.tail_lines if lines is None else lines
        tail = self.log_text().splitlines()[-count:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)
