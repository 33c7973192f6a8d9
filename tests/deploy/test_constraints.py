"""constraints.txt: the one set of pinned versions that `make setup`, CI and the image install.

- every dependency pyproject.toml declares (runtime and the ``dev`` extra) is pinned exactly
  once, and the pin satisfies pyproject.toml's range: a range changed without regenerating
  the file fails here instead of in a confusing pip resolution error;
- the project itself is not pinned (it is installed from the source tree);
- scripts/setup.sh and the Dockerfile both install with ``-c constraints.txt``;
- the environment running these tests has exactly the pinned versions of the direct
  dependencies (`make test` runs `make setup` first, which reinstalls when the file changes).
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .tools import ROOT

CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    return [
        Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    ]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, (
            f"{req.name} is not in constraints.txt: run scripts/freeze-constraints.sh"
        )
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]} outside pyproject.toml's "
            f"{req.specifier}: run scripts/freeze-constraints.sh"
        )


def test_the_project_itself_is_not_pinned() -> None:
    # _pins() also refuses any line that is not `name==version` (an `undertow @ file://`
    # line, say, which pip freeze writes for a non-editable install).
    assert canonicalize_name(PYPROJECT["project"]["name"]) not in _pins()


def test_header_says_how_to_regenerate() -> None:
    lines = CONSTRAINTS.read_text().splitlines()
    header = "\n".join(line for line in lines[: next(i for i, x in enumerate(lines) if "==" in x)])
    assert header and all(line.startswith("#") for line in header.splitlines())
    assert "scripts/freeze-constraints.sh" in header
    script = ROOT / "scripts" / "freeze-constraints.sh"
    assert script.is_file() and os.access(script, os.X_OK)


def test_setup_and_image_install_with_the_constraints() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r'pip install -q -c constraints\.txt -e "\.\[\$EXTRAS\]"', setup)
    assert "constraints.txt -nt $stamp" in setup, "a changed pin reinstalls"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip wheel --wheel-dir /wheels -c constraints.txt" in dockerfile
    assert "-c /tmp/constraints.txt undertow" in dockerfile


def test_this_environment_has_the_pinned_versions() -> None:
    pins = _pins()
    wrong = {}
    for req in _declared():
        name = canonicalize_name(req.name)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed: run make setup")
        if installed != pins[name]:
            wrong[req.name] = (installed, pins[name])
    assert not wrong, f"installed != pinned (run make setup): {wrong}"
