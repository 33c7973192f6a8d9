"""The two services of the embedded stack: a Tansu broker and a redis-server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from agents.devstack.environment import (
    DEFAULT_STARTUP_TIMEOUT,
    LOOPBACK,
    PortTakenError,
    resolve_redis_server_bin,
    resolve_tansu_bin,
)
from agents.devstack.process import (
    ManagedProcess,
)


class TansuBroker(ManagedProcess):
    """The Tansu Kafka-compatible broker with in-memory storage (data dies with it)."""

    name = "tansu"
    #: Prefix of the cluster id of every embedded broker (tests use it to spot Tansu).
    CLUSTER_ID_PREFIX: ClassVar[str] = "undertow-dev-"

    # Tansu reads these from the environment too; a SCHEMA_REGISTRY or OTLP endpoint
    # inherited from the user's shell would change its behaviour, so they are dropped.
    _SCRUBBED_ENV = (
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )

    def __init__(
        self,
        binary: str | None = None,
        *,
        workdir: str | Path | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(binary, workdir=workdir, startup_timeout=startup_timeout, environ=environ)
        # A cluster id of our own lets the readiness probe tell our broker from any
        # other Kafka that might answer on the same port.
        self.cluster_id = f"{self.CLUSTER_ID_PREFIX}{uuid.uuid4().hex[:12]}"

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    def _find_binary(self) -> str:
        return resolve_tansu_bin(self._environ)

    def _argv(self, binary: str, port: int, workdir: Path) -> list[str]:
        url = f"tcp://{LOOPBACK}:{port}"
        return [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in self._environ.items() if k not in self._SCRUBBED_ENV}
        env["NO_COLOR"] = "1"  # plain log file instead of ANSI escapes
        return env

    def _probe(self, port: int, pid: int) -> None:
        # A cheap TCP check first: kafka-python logs an error per refused connection.
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            pass
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=f"{LOOPBACK}:{port}",
            client_id="undertow-devstack-probe",
            request_timeout_ms=5000,
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        if cluster.get("cluster_id") != self.cluster_id:
            raise PortTakenError(
                f"{self.name}: another Kafka (cluster {cluster.get('cluster_id')!r}) "
                f"answers on port {port}"
            )


class RedisServer(ManagedProcess):
    """A throw-away ``redis-server``: loopback only, no RDB snapshots, no AOF."""

    name = "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _find_binary(self) -> str:
        return resolve_redis_server_bin(self._environ)

    def _argv(self, binary: str, port: int, workdir: Path) -> list[str]:
        return [
            binary,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
            "--logfile", "",  # to stdout, i.e. our log file
            # Keep the original argv in /proc/PID/cmdline: stop_recorded compares it.
            "--set-proc-title", "no",
        ]  # fmt: skip

    def _probe(self, port: int, pid: int) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # redis-py retries a refused connection with backoff for ~4 s by default; the
        # readiness loop does its own retrying, so each probe is a single attempt.
        client = redis.Redis(
            host=LOOPBACK,
            port=port,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.ping()
            server_pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        if server_pid != pid:
            raise PortTakenError(
                f"{self.name}: another redis-server (pid {server_pid}) answers on port {port}"
            )
