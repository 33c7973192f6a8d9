"""docs/operations.md and the measurement behind its Redis figures.

scripts/measure-redis-state.py is run on a small configuration (a throw-away redis-server,
as the script starts it; without redis-server this skips locally and fails on CI), so the
procedure the document describes keeps working; the document must quote the measured
pending-prediction memory, and name only scripts that exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import NoReturn

from .tools import ROOT

DOC = ROOT / "docs" / "operations.md"


def test_measure_script_reports_bytes_per_pane(
    service_unavailable: Callable[[str], NoReturn],
) -> None:
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server is not installed (make setup installs it)")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "measure-redis-state.py"),
            "--numeric",
            "3",
            "--categorical",
            "1",
            "--reference-rows",
            "2000",
            "--events",
            "200",
            "--panes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s+200\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)$", result.stdout, re.M)
    assert len(rows) == 1, result.stdout
    json_bytes, redis_bytes, per_feature = (int(v.replace(",", "")) for v in rows[0])
    assert 0 < json_bytes <= redis_bytes and per_feature * 4 <= redis_bytes + 4
    assert re.search(r"claims: [\d,]+ keys .* use [\d,]+ B", result.stdout)


def test_operations_doc_quotes_the_measured_pending_memory() -> None:
    """The figure must be the benchmark's, and under the issue's 150-byte budget."""
    text = DOC.read_text()
    section = text.split("#### Pending predictions for the label join", 1)
    assert len(section) == 2
    body = section[1].split("###", 1)[0]
    assert "bench/bench_stream.py --skip-throughput --pending-memory" in body
    quoted = re.search(r"\*\*(\d+) bytes per pending prediction\*\*", body)
    assert quoted and int(quoted.group(1)) <= 150


def test_operations_doc_names_files_that_exist() -> None:
    text = DOC.read_text()
    for path in set(re.findall(r"`((?:scripts|agents|streams|k8s|deploy)/[\w./-]+)`", text)):
        assert (ROOT / path).exists(), f"docs/operations.md names {path}, which does not exist"
