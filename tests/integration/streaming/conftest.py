"""Fixtures of the streaming tests: workers that are always stopped, and one baseline.

The broker and Redis are the session fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .harness import WorkerProcess, make_baseline


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so `launch` knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


Launch = Callable[..., list[WorkerProcess]]


@pytest.fixture
def launch(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Launch]:
    """``launch(count, prefix, settings=None)`` starts ``count`` workers of a deployment
    (not waiting for them: see `harness.wait_assignment`). Every worker is stopped at the
    end of the test, pass or fail; on failure the tail of each one's log is printed."""
    started: list[WorkerProcess] = []

    def start(
        count: int, prefix: str, settings: Mapping[str, str] | None = None
    ) -> list[WorkerProcess]:
        group = []
        for i in range(count):
            name = f"{prefix.rstrip('.').rsplit('-', 1)[-1]}-w{i}"
            w = WorkerProcess(
                kafka=kafka_bootstrap,
                redis_url=redis_url,
                prefix=prefix,
                log_path=tmp_path / f"{name}.log",
                settings=settings,
                name=name,
            )
            started.append(w)
            group.append(w.start())
        return group

    try:
        yield start
    finally:
        for w in started:
            w.terminate()
        for w in started:
            w.stop()
        report: Any = getattr(request.node, "report_call", None)
        if report is None or report.failed:
            for w in started:
                print(w.log_tail(60))


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, list[Any]]]:
    """The baseline of the synthetic credit model, and the reference columns it was built from."""
    return make_baseline(tmp_path_factory.mktemp("reference"))
