"""Fixtures of the store tests: a faust app and table that never touch a broker, and the
``backend`` parameter the contract suite runs over (``redis`` uses the real Redis of the
root ``redis_url`` fixture and is marked integration).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from store_helpers import Backend


@pytest.fixture
def app() -> Any:
    """A faust App that is never started: building tables and stores needs no broker."""
    import faust

    return faust.App(
        f"store-test-{uuid.uuid4().hex[:12]}",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        autodiscover=False,
    )


@pytest.fixture
def table(app: Any) -> Any:
    return app.Table("state", partitions=8)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, table: Any) -> Backend:
    if request.param == "memory":
        return Backend("memory", lambda: table._new_store_by_url("memory://"), durable=False)
    from agents.stores import register

    register()
    url = request.getfixturevalue("redis_url")
    request.getfixturevalue("redis_client")  # flushes the database after the test
    return Backend("redis", lambda: table._new_store_by_url(url), durable=True)
