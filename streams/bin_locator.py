"""Finding the bin of each value, several times faster than binary search on unsorted data."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class BinLocator:
    """``np.searchsorted(edges, x, side="right")``, several times faster on unsorted data.

    Binary search over ~200 edges costs a cache miss and a mispredicted branch per step.
    Instead the edge range is cut into equal cells; a table gives, for each cell, a bin at
    or just below the right one, and a few vectorised passes of ``x >= edge`` step up to
    it. Quantile edges put few edges in any one cell; when a heavy tail crowds too many
    into one, this falls back to binary search, so the answer is always exact.
    """

    MAX_PASSES = 6

    def __init__(self, edges: FloatArray, cells: int | None = None) -> None:
        self.edges = edges
        k = edges.size
        self.cells = cells or int(min(max(16 * k, 1024), 1 << 16))
        lo, hi = float(edges[0]), float(edges[-1])
        self.lo = lo
        with np.errstate(over="ignore", divide="ignore"):
            scale = self.cells / (hi - lo) if hi > lo else 0.0
        # A range so narrow the cell width underflows gets plain binary search.
        self.scale = scale if math.isfinite(scale) and (hi - lo) * scale > 0 else 0.0
        starts = lo + np.arange(self.cells) / self.scale if self.scale else np.full(1, lo)
        # One bin low on purpose: a value rounded into the next cell still starts at or
        # below its bin, and the passes below only ever step up.
        below = np.maximum(np.searchsorted(edges, starts, side="left") - 1, 0)
        self.table = np.concatenate(([0], below, [k - 1])).astype(np.intp)
        per_cell = np.diff(np.concatenate((below, [k])))
        self.passes = int(per_cell.max(initial=0)) + 2
        # NaN compares false, so nothing steps past the overflow bin (not even +inf).
        self.padded = np.concatenate((edges, [np.nan]))
        self.lower = np.concatenate(([-np.inf], edges))

    def locate(self, values: FloatArray) -> npt.NDArray[np.intp]:
        if not self.scale or self.passes > self.MAX_PASSES:
            return np.searchsorted(self.edges, values, side="right")
        cell = np.clip((values - self.lo) * self.scale, -1, self.cells).astype(np.intp)
        idx = self.table[cell + 1]
        padded = self.padded
        for _ in range(self.passes):
            idx += values >= padded[idx]
        # Check every answer against its two edges; float rounding near tiny or crowded
        # edges can defeat the table, and those few values get binary search instead.
        wrong = (values < self.lower[idx]) | (values >= padded[idx])
        if wrong.any():
            idx[wrong] = np.searchsorted(self.edges, values[wrong], side="right")
        return idx
