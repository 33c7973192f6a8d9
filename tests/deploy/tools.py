"""Helpers for the deployment checks: finding the validators, compose interpolation.

The validators (check-jsonschema, kubectl) are external programs. Without them a check
skips on a developer machine and fails on CI, through the one policy of tests/conftest.py
(``service_unavailable`` / ``skip_or_fail``).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]


def venv_tool(name: str, unavailable: Callable[[str], NoReturn], hint: str) -> str:
    """A console script of the running venv (beside sys.executable), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    unavailable(f"{name} is not installed: {hint}")


_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``$$`` → ``$``, ``${VAR:-default}``, ``$VAR``.

    >>> interpolate("a ${X:-8} $${Y} $Z", {"Z": "z"})
    'a 8 ${Y} z'
    >>> interpolate("${X-d}|${X:-d}", {"X": ""})
    '|d'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        value = environ.get(name)
        op = match.group("op")
        if op == ":-" and not value:
            return match.group("default")
        if op == "-" and value is None:
            return match.group("default")
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate_all(node: object, environ: Mapping[str, str]) -> object:
    """`interpolate` over every string of a loaded compose file (keys are left alone)."""
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [interpolate_all(v, environ) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_all(v, environ) for k, v in node.items()}
    return node
