"""A progress bar for reading large files: shown on a terminal once reading takes > 1 s."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def file_progress(path: str, size: int, verb: str = "reading") -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the bytes read since the last call."""
    with tqdm(
        total=size,
        desc=f"{verb} {path}",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        delay=1.0,
        leave=False,
        file=sys.stderr,
        # None: shown only when stderr is a terminal, so logs and pipes stay clean.
        disable=None,
    ) as bar:
        yield bar.update
