"""The container image: Dockerfile and .dockerignore, checked without a Docker engine.

No engine runs on the development machine or on CI, so the image is never built here. What
is checked instead:

- the Dockerfile parses with BuildKit's own parser (the ``dockerfile`` package wraps it);
- the shape the deployment relies on: a builder stage that makes wheels pinned by
  constraints.txt, a slim Python 3.11 final stage that installs them offline with no build
  tools, a fixed non-root numeric UID, ``undertow worker`` as the default command, port 8000,
  OCI labels (version = pyproject.toml's);
- the HEALTHCHECK command itself, run against a real HTTP server: it must pass on a 200 from
  /healthz and fail on an error status or when nothing listens;
- the .dockerignore allowlist, evaluated with Docker's matching rules: everything the
  Dockerfile copies is in the build context, and virtual environments, .git, local state and
  ./secrets/ are not.
"""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass

import dockerfile
import pytest

from agents.cli import build_parser
from agents.settings import Settings

from .tools import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|cmake|curl|wget|git)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    commands: list[dockerfile.Command]

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]

    def one(self, cmd: str) -> dockerfile.Command:
        found = self.all(cmd)
        assert len(found) == 1, f"expected one {cmd} in the stage FROM {self.base}: {found}"
        return found[0]


def _global_args(commands: list[dockerfile.Command]) -> dict[str, str]:
    args = {}
    for c in commands:
        if c.cmd == "FROM":
            break
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            args[name] = default
    return args


def _stages() -> tuple[list[Stage], dict[str, str]]:
    commands = list(dockerfile.parse_file(str(DOCKERFILE)))
    args = _global_args(commands)
    stages: list[Stage] = []
    for c in commands:
        if c.cmd == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), c.value[0])
            name = c.value[2] if len(c.value) == 3 and c.value[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
        elif stages:
            stages[-1].commands.append(c)
    return stages, args


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages()[0]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _labels(stage: Stage) -> dict[str, str]:
    labels: dict[str, str] = {}
    for c in stage.all("LABEL"):
        values = list(c.value)
        for key, value in zip(values[::2], values[1::2], strict=True):
            labels[key] = value.strip('"')
    return labels


def _arg_defaults(stage: Stage) -> dict[str, str]:
    out = {}
    for c in stage.all("ARG"):
        name, _, default = c.value[0].partition("=")
        out[name] = default
    return out


# ------------------------------------------------------------------------------ the stages


def test_multi_stage_build_with_a_slim_python_311_final_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a builder stage and a final stage"
    assert stages[0].name == "builder"
    final = stages[-1]
    assert final.name is None or final.name != "builder"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", final.base), final.base
    assert stages[0].base == final.base, "build the wheels on the Python that runs them"


def test_builder_makes_wheels_pinned_by_constraints(stages: list[Stage]) -> None:
    runs = " ".join(" ".join(c.value) for c in stages[0].all("RUN"))
    assert re.search(r"pip wheel\b.*-c constraints\.txt", runs), runs
    copied = {src for c in stages[0].all("COPY") for src in c.value[:-1]}
    assert "constraints.txt" in copied


def test_final_stage_installs_the_wheels_offline_without_build_tools(final: Stage) -> None:
    runs = final.all("RUN")
    text = " ".join(" ".join(c.value) for c in runs)
    install = [c for c in runs if "pip install" in " ".join(c.value)]
    assert install, "the final stage installs undertow"
    line = " ".join(install[0].value)
    assert "--no-index" in line and "--find-links /wheels" in line
    assert re.search(r"-c \S*constraints\.txt", line), line
    flags = " ".join(install[0].flags)
    assert "from=builder" in flags and "target=/wheels" in flags, (
        "the wheels are bind-mounted from the builder, so no layer keeps them"
    )
    assert not BUILD_TOOLS.search(text), f"build tools in the final stage: {text}"
    assert not any("apt-get install" in " ".join(c.value) for c in runs)
    assert not any("--from=builder" in " ".join(c.flags) for c in final.all("COPY")), (
        "COPY --from=builder would keep the wheels in a layer"
    )


def test_runs_as_a_fixed_non_root_uid(final: Stage) -> None:
    user = final.one("USER").value[0]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, f"numeric non-root UID, got {user!r}"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    setup = " ".join(" ".join(c.value) for c in final.all("RUN"))
    assert f"--uid {uid}" in setup, "the user is created with that UID"


def test_default_command_is_undertow_worker(final: Stage) -> None:
    entrypoint = final.one("ENTRYPOINT")
    cmd = final.one("CMD")
    assert entrypoint.json and cmd.json, "exec form, so SIGTERM reaches undertow itself"
    argv = [*entrypoint.value, *cmd.value]
    assert argv == ["undertow", "worker"]
    build_parser().parse_args(argv[1:])  # a real subcommand, not an invented one


def test_exposes_the_metrics_port(final: Stage) -> None:
    exposed = {p for c in final.all("EXPOSE") for p in c.value}
    assert str(Settings().metrics_port) in exposed
    assert Settings().metrics_port == 8000


def test_working_directory_is_writable_by_the_user(final: Stage) -> None:
    workdir = final.all("WORKDIR")[-1].value[0]
    uid = final.one("USER").value[0].partition(":")[0]
    setup = " ".join(" ".join(c.value) for c in final.all("RUN"))
    assert re.search(rf"install -d -o {uid} -g \d+ -m \d+ {re.escape(workdir)}\b", setup), (
        "Faust writes its data directory into the working directory"
    )


def test_oci_labels(final: Stage) -> None:
    labels = _labels(final)
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert labels.get(prefix + key), f"missing label {prefix}{key}"
    args = _arg_defaults(final)
    assert labels[prefix + "version"] == "${VERSION}"
    assert args["VERSION"] == PYPROJECT["project"]["version"], (
        "the image's default VERSION must follow pyproject.toml"
    )
    assert labels[prefix + "licenses"] == PYPROJECT["project"]["license"]


# ------------------------------------------------------------------------ the healthcheck


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck_argv(final: Stage) -> list[str]:
    check = final.one("HEALTHCHECK")
    assert check.json and check.value[0] == "CMD", "exec form, no shell needed"
    argv = list(check.value[1:])
    assert argv[0] == "python", "the slim image has no curl: the check is Python"
    assert "127.0.0.1" in argv[-1] and "/healthz" in argv[-1]
    return [sys.executable, *argv[1:]]


def _run(argv: list[str], port: int) -> int:
    env = {**os.environ, "UNDERTOW_METRICS_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_passes_on_healthz_200(
    final: Stage, health_server: http.server.ThreadingHTTPServer
) -> None:
    _Health.status = 200
    assert _run(_healthcheck_argv(final), health_server.server_address[1]) == 0


def test_healthcheck_fails_on_an_error_status(
    final: Stage, health_server: http.server.ThreadingHTTPServer
) -> None:
    _Health.status = 503
    try:
        assert _run(_healthcheck_argv(final), health_server.server_address[1]) != 0
    finally:
        _Health.status = 200


def test_healthcheck_fails_when_nothing_listens(final: Stage) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    port = server.server_address[1]
    server.server_close()  # the port is now (almost certainly) closed
    assert _run(_healthcheck_argv(final), port) != 0


def test_healthcheck_flags_leave_time_to_start(final: Stage) -> None:
    flags = dict(f.lstrip("-").split("=", 1) for f in final.one("HEALTHCHECK").flags)
    assert {"interval", "timeout", "start-period", "retries"} <= flags.keys()


# ------------------------------------------------------------------------- .dockerignore


def _ignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories."""
    regex = (
        re.escape(pattern)
        .replace(r"\*\*/", "(.*/)?")
        .replace(r"\*\*", ".*")
        .replace(r"\*", "[^/]*")
    )
    regex = regex.replace(r"\?", "[^/]")
    parts = path.split("/")
    return any(
        re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)
    ) or fnmatch.fnmatchcase(path, pattern)


def ignored(path: str) -> bool:
    """Whether ``path`` (relative, with /) is left out of the build context; last match wins."""
    result = False
    for negated, pattern in _ignore_patterns():
        if _matches(pattern, path):
            result = not negated
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-bench/lib/x.py",
        ".git/HEAD",
        "secrets/grafana-admin-password",
        ".undertow/stack.json",
        "undertow-data/v1/tables",
        "bench/data/reference.csv",
        "agents/__pycache__/app.cpython-311.pyc",
        "docker-compose.yml",
        "tests/conftest.py",
    ],
)
def test_dockerignore_leaves_out(path: str) -> None:
    assert ignored(path), f"{path} would be sent to the builder"


def test_dockerignore_keeps_everything_the_dockerfile_copies(stages: list[Stage]) -> None:
    sources = [src for s in stages for c in s.all("COPY") if not c.flags for src in c.value[:-1]]
    sources += [
        m.group(1)
        for s in stages
        for c in s.all("RUN")
        for flag in c.flags
        if (m := re.search(r"type=bind,source=([^,]+)", flag)) and "from=" not in flag
    ]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files, source
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not ignored(rel), f"{rel} is needed by the build but .dockerignore drops it"


def test_dockerignore_matcher_is_not_vacuous() -> None:
    # The allowlist starts with "*": without the exceptions everything would be dropped.
    assert _ignore_patterns()[0] == (False, "*")
    assert not ignored("agents/app.py") and not ignored("constraints.txt")
    assert ignored("Makefile")
