"""A real Prometheus for a test: Debian's ``prometheus`` on a free loopback port.

`PrometheusServer` writes a config that scrapes the given targets every second and loads the
given rule files, starts Prometheus in its own session with its TSDB and log in a temporary
directory, waits (bounded) for ``/-/ready``, and always stops it (SIGTERM, then SIGKILL).
`PrometheusServer.query` / `query_range` / `series` call the HTTP API and return a `Result`
whether the query is valid or not, so a test can tell "invalid" from "no series".
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.devstack.environment import LOOPBACK, free_port

from ..processes import LoggedProcess

#: Start attempts: a free port may be taken by someone else before Prometheus binds it.
PORT_ATTEMPTS = 3


class PrometheusError(RuntimeError):
    """Prometheus did not start, did not become ready, or died."""


@dataclass(frozen=True)
class Result:
    """The answer of a query: ``ok`` with ``series``, or not ``ok`` with ``error``."""

    ok: bool
    series: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    result_type: str = ""

    def __str__(self) -> str:
        if not self.ok:
            return f"error: {self.error}"
        return f"{len(self.series)} series ({self.result_type})"


class PrometheusServer(LoggedProcess):
    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        scrape_targets: Sequence[str],
        rule_files: Sequence[Path | str] = (),
        job: str = "undertow",
        interval_s: int = 1,
    ) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.scrape_targets = list(scrape_targets)
        self.rule_files = [str(p) for p in rule_files]
        self.job = job
        self.interval_s = interval_s
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # wall clock, for range queries

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, Any]:
        every = f"{self.interval_s}s"
        return {
            "global": {
                "scrape_interval": every,
                "scrape_timeout": every,
                "evaluation_interval": every,
            },
            "rule_files": self.rule_files,
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": self.scrape_targets}],
                }
            ],
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        last = ""
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port(LOOPBACK)
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except PrometheusError as exc:
                last = str(exc)
                self.stop()
                if "address already in use" not in self.log_text():
                    break
        raise PrometheusError(last)

    def _spawn(self) -> None:
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=info",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                close_fds=True,
            )
        self.started_at = time.time()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 1):
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise PrometheusError(f"prometheus exited with status {code}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready within {timeout:g} s\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise PrometheusError(f"prometheus is not running\n{self.log_tail()}")

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------------

    def api(
        self, path: str, params: dict[str, str], *, post: bool = True, timeout: float = 15.0
    ) -> Result:
        """Call ``/api/v1/{path}`` (POST by default: queries can be long); a 4xx with an error
        document is a Result too."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}"
        if post:
            request = urllib.request.Request(url, data=query.encode(), method="POST")
        else:
            request = urllib.request.Request(f"{url}?{query}" if query else url)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                doc = json.loads(body)
            except ValueError:
                return Result(False, error=f"HTTP {exc.code}: {body[:300]!r}")
        if doc.get("status") != "success":
            return Result(False, error=f"{doc.get('errorType')}: {doc.get('error')}")
        data_ = doc.get("data")
        if isinstance(data_, dict):
            return Result(True, list(data_.get("result") or []), result_type=data_["resultType"])
        return Result(True, list(data_ or []), result_type="list")

    def query(self, expr: str, at: float | None = None) -> Result:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", params)

    def query_range(self, expr: str, start: float, end: float, step: float) -> Result:
        return self.api(
            "query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )

    def series(self, match: str, start: float, end: float) -> Result:
        return self.api("series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})

    def rules(self) -> list[dict[str, Any]]:
        """Every rule Prometheus loaded, with its ``health`` and ``lastError`` (raises
        PrometheusError when the API does not answer with them)."""
        url = f"{self.url}/api/v1/rules"
        with urllib.request.urlopen(url, timeout=15) as response:
            doc = json.loads(response.read())
        if doc.get("status") != "success":
            raise PrometheusError(f"/api/v1/rules: {doc}")
        return [r for g in doc["data"]["groups"] for r in g["rules"]]

    def metric_names(self) -> set[str]:
        result = self.api("label/__name__/values", {}, post=False)
        return {str(n) for n in result.series} if result.ok else set()
