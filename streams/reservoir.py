"""A uniform random sample of rows of a stream too large to keep (Vitter's algorithm R)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class RowReservoir:
    """Keeps up to ``capacity`` rows of a 2-D float stream, each row equally likely.

    Until the stream exceeds the capacity the sample *is* the stream, so statistics taken
    from it are exact; past it, every row seen so far has the same chance to be kept.

    >>> r = RowReservoir(capacity=3, width=1, seed=0)
    >>> r.add(np.arange(2.0).reshape(-1, 1)); r.sample.ravel().tolist(), r.exact
    ([0.0, 1.0], True)
    >>> r.add(np.arange(2.0, 10.0).reshape(-1, 1)); r.sample.shape, r.exact, r.seen
    ((3, 1), False, 10)
    """

    def __init__(self, capacity: int, width: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.seen = 0
        self._filled = 0
        self._data = np.empty((min(capacity, 1024), width), dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    @property
    def exact(self) -> bool:
        return self.seen <= self.capacity

    @property
    def sample(self) -> npt.NDArray[np.float64]:
        return self._data[: self._filled]

    def add(self, rows: npt.NDArray[np.float64]) -> None:
        take = min(self.capacity - self._filled, len(rows))
        if take > 0:
            self._grow(self._filled + take)
            self._data[self._filled : self._filled + take] = rows[:take]
            self._filled += take
        rest = rows[take:]
        if len(rest):
            # Row i of the stream (0-based) replaces a random slot with chance capacity/(i+1).
            index = self.seen + take + np.arange(len(rest))
            slot = self._rng.integers(0, index + 1)
            hit = slot < self.capacity
            # Later rows overwrite earlier ones on a shared slot, as the sequential algorithm.
            self._data[slot[hit]] = rest[hit]
        self.seen += len(rows)

    def _grow(self, needed: int) -> None:
        if needed <= len(self._data):
            return
        size = min(self.capacity, max(needed, 2 * len(self._data)))
        grown = np.empty((size, self._data.shape[1]), dtype=np.float64)
        grown[: self._filled] = self._data[: self._filled]
        self._data = grown
