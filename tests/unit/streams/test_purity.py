"""streams/ is the pure library: importing all of it must not pull in a broker or store client."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import streams

FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "redis")


def test_streams_imports_no_runtime_library():
    modules = [
        f"streams.{m.name}" for m in pkgutil.iter_modules([str(Path(streams.__file__).parent)])
    ]
    assert len(modules) >= 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"streams/ pulled in: {out.stdout.strip()}"
