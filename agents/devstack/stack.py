"""The broker and Redis started and stopped together, for tests and `undertow dev`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from agents.devstack.environment import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    RECORD_VERSION,
    DevStackError,
)
from agents.devstack.services import (
    RedisServer,
    TansuBroker,
)

# ------------------------------------------------------------------------- the stack


class DevStack:
    """A Tansu broker and a redis-server, started and stopped together.

    With ``state_dir`` the services keep their logs (and Redis its working directory)
    under ``state_dir/kafka`` and ``state_dir/redis``, and those are left in place on
    stop; without it each uses a temporary directory that is removed on stop.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        tansu_bin: str | None = None,
        redis_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        sd = self.state_dir
        self.broker = TansuBroker(
            tansu_bin,
            workdir=sd / "kafka" if sd is not None else None,
            startup_timeout=startup_timeout,
            environ=environ,
        )
        self.redis = RedisServer(
            redis_bin,
            workdir=sd / "redis" if sd is not None else None,
            startup_timeout=startup_timeout,
            environ=environ,
        )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def running(self) -> bool:
        return self.broker.running and self.redis.running

    def start(self) -> Self:
        """Start both services; on any failure nothing is left running."""
        # Both binaries first, so a missing redis-server does not cost a broker start.
        self.broker.resolve_binary()
        self.redis.resolve_binary()
        try:
            self.broker.start()
            self.redis.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop both services (Redis first); idempotent."""
        errors: list[BaseException] = []
        for service in (self.redis, self.broker):
            try:
                service.stop(timeout)
            except DevStackError as exc:  # still try to stop the other one
                errors.append(exc)
        if errors:
            raise DevStackError("; ".join(str(e) for e in errors))

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready description of the running stack, for ``.undertow/stack.json``.

        ``{"version", "kafka", "redis", "state_dir", "processes": [ProcessRecord dicts]}``;
        :func:`stop_recorded` and :func:`recorded_status` take it back.
        """
        return {
            "version": RECORD_VERSION,
            "kafka": self.bootstrap,
            "redis": self.redis_url,
            "state_dir": str(self.state_dir) if self.state_dir is not None else None,
            "processes": [self.broker.record().to_dict(), self.redis.record().to_dict()],
        }

    def detach(self) -> dict[str, Any]:
        """Leave both services running after this process exits; returns the record."""
        record = self.to_record()
        self.broker.detach()
        self.redis.detach()
        return record

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
