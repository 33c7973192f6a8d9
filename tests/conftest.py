"""Session fixtures for the services the integration tests need.

``kafka_bootstrap`` and ``redis_url`` use ``UNDERTOW_KAFKA`` / ``UNDERTOW_REDIS_URL``
when set (so the same suite runs against Apache Kafka and a real Redis), and otherwise
start the embedded stack (Tansu and redis-server on free loopback ports) for the session.

Nothing heavy is imported at module level: unit tests must not pay for kafka-python,
redis-py or faust, so those are imported inside the fixtures that use them. The fixtures
are lazy too: a run that requests neither service starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    import redis

    from agents.devstack import ManagedProcess


def skip_or_fail(reason: str, environ: Mapping[str, str] | None = None) -> NoReturn:
    """The one policy for a service that cannot be provided.

    On CI (``CI`` set to anything but empty/``false``/``0``) the missing service is a
    failure, so a broken CI image cannot turn the integration suite into silent skips;
    on a developer machine the tests that need it are skipped with the reason.
    """
    from agents.devstack import is_ci

    if is_ci(environ):
        pytest.fail(f"{reason} (CI is set, so this is an error rather than a skip)", pytrace=False)
    pytest.skip(reason)


def _external(variable: str) -> str | None:
    """The validated value of ``UNDERTOW_KAFKA`` or ``UNDERTOW_REDIS_URL``, None if unset.

    Each variable is read on its own, so a typo in one does not break the other's tests.
    """
    from agents.devstack import ENV_KAFKA, DevStackError, parse_bootstrap, parse_redis_url

    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    parse = parse_bootstrap if variable == ENV_KAFKA else parse_redis_url
    try:
        return parse(value)
    except DevStackError as exc:  # a typo in the environment is never a skip
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def _sigterm_runs_teardown() -> Iterator[None]:
    """Turn SIGTERM (a CI job being cancelled) into KeyboardInterrupt while services run.

    By default SIGTERM kills Python without running fixture teardown or atexit hooks,
    which would leave the embedded broker and redis-server behind; pytest handles
    KeyboardInterrupt by tearing fixtures down. Only installed over the default handler,
    and only from the main thread (the only place Python allows it).
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_embedded(service: ManagedProcess, value: Callable[[], str]) -> Iterator[str]:
    """Start an embedded service for the session, yield its address, always stop it."""
    from agents.devstack import BinaryNotFoundError

    try:
        service.start()
    except BinaryNotFoundError as exc:
        skip_or_fail(str(exc))
    # Any other start failure (the binary exists but does not come up) is a real error,
    # reported with the tail of the service's log by DevStackError itself.
    try:
        with _sigterm_runs_teardown():
            yield value()
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port[,…]`` of a Kafka-compatible broker for the whole session."""
    external = _external("UNDERTOW_KAFKA")
    if external is not None:
        yield external
        return
    from agents.devstack import TansuBroker

    broker = TansuBroker()
    yield from _run_embedded(broker, lambda: broker.bootstrap)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://…`` URL of a Redis for the whole session."""
    external = _external("UNDERTOW_REDIS_URL")
    if external is not None:
        yield external
        return
    from agents.devstack import RedisServer

    server = RedisServer()
    yield from _run_embedded(server, lambda: server.url)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client on ``redis_url`` whose database is flushed after the test.

    Against an external Redis it refuses to start on a non-empty database, so a
    mis-pointed ``UNDERTOW_REDIS_URL`` cannot wipe someone's data: use an empty DB,
    e.g. ``redis://host:6379/15``.
    """
    import redis as redis_py

    client = redis_py.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    if _external("UNDERTOW_REDIS_URL") is not None and client.dbsize() > 0:
        client.close()
        pytest.fail(
            f"refusing to use {redis_url}: the database is not empty and the test would "
            "flush it; point UNDERTOW_REDIS_URL at an empty database",
            pytrace=False,
        )
    try:
        yield client
    finally:
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of names unique to this test run, valid as Kafka topics and group ids.

    ``unique_name("orders")`` → ``orders-test_foo-3f9c0a1b2c3d``: the test name helps
    when reading broker state, the random suffix keeps reruns and parallel runs apart.
    Only ``[A-Za-z0-9-]`` is used (Kafka warns when topic names mix ``.`` and ``_``).
    """
    test = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:60]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def service_unavailable() -> Callable[[str], NoReturn]:
    """The :func:`skip_or_fail` policy, for tests that start services themselves."""
    return skip_or_fail
