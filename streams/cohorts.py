"""Outcome counts per segment attribute and value (cohorts), with bounded cardinality.

Predictions carry ``segments`` such as ``{"device_type": "mobile", "gender": "f"}``. A
pane keeps, for each attribute and value, a short record of counts (which counts depends on
the task, see `COLUMNS`) and, for regression, the exact sum of absolute errors. Records
add up, so panes merge by adding them.

Cardinality is capped, so that state size and metric label sets stay bounded:
``max_values`` values per attribute (the rest fold into `OTHER_SEGMENT`) and
``max_attributes`` attributes (the rest are dropped, and the pane says so: ``truncated``).
Which values are kept must not depend on how events were split into panes and partitions
or on the order partials are merged, or two workers would report different figures for
the same window. So the rule looks at names, never at counts:

* pinned values are always kept: a protected attribute's groups from the baseline's
  fairness reference (the most frequent ones in the training data);
* the other slots go to the values whose names sort first; a later, smaller name evicts
  the largest kept one, whose counts move to `OTHER_SEGMENT`.

Keeping "the busiest values" instead is not associative: with one slot, panes A = {x: 5},
B = {y: 3}, C = {y: 3} give (A + B) + C = {x: 5, other: 6} but A + (B + C) = {y: 6,
other: 5}. Keeping the first names in sort order is: a value among the first names of the
union is among the first names of every partial that saw it, so each partial kept all of its
counts, and any split and merge order give what one pane fed every event would hold.
Attributes follow the same rule (protected attributes are pinned). Only rows with counts
take a slot: a row that counts nothing (an unscorable label) cannot push anything out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.exact_sum import exact_add, exact_sum

CountArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: The value that every value past an attribute's cap is folded into.
OTHER_SEGMENT = "__other__"
#: Default caps: attributes per pane, values per attribute (`OTHER_SEGMENT` not counted).
MAX_ATTRIBUTES = 10
MAX_VALUES = 20

#: The counts kept per (attribute, value), by task. ``scored``: predictions with a score;
#: ``positive``: scored at or above the threshold; ``tp`` … ``fn``: joined labels.
COLUMNS: dict[str | None, tuple[str, ...]] = {
    "binary": ("predictions", "scored", "positive", "tp", "fp", "tn", "fn"),
    "multiclass": ("predictions", "labelled", "correct"),
    "regression": ("predictions", "labelled"),
    None: ("predictions",),
}


class Cohorts:
    """Per attribute, per value count records of one pane; capped, mergeable, JSON state.

    ``add`` takes one row of counts per event (``n × len(COLUMNS[task])``) with the events'
    segments, and adds each row into the record of every (attribute, value) of its event.

    Examples
    --------
    >>> c = Cohorts("multiclass", max_values=1)
    >>> rows = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    >>> c.add([{"g": "b"}, {"g": "a"}, {"g": "c", "h": "x"}], rows)
    >>> {a: {v: r.tolist() for v, r in t.items()} for a, t in c.counts.items()}
    {'g': {'a': [1, 0, 0], '__other__': [2, 0, 0]}, 'h': {'x': [1, 0, 0]}}
    """

    __slots__ = ("counts", "errors", "max_attributes", "max_values", "pinned", "task", "truncated")

    def __init__(
        self,
        task: str | None,
        *,
        max_attributes: int = MAX_ATTRIBUTES,
        max_values: int = MAX_VALUES,
        pinned: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if task not in COLUMNS:
            raise ValueError(f"unknown task {task!r}")
        self.task = task
        self.max_attributes = int(max_attributes)
        self.max_values = int(max_values)
        # attribute -> values always kept (the attribute itself always kept too).
        self.pinned: dict[str, frozenset[str]] = {
            a: frozenset(v for v in values if v != OTHER_SEGMENT)
            for a, values in (pinned or {}).items()
        }
        self.counts: dict[str, dict[str, CountArray]] = {}
        # Regression: exact sums of |error| per attribute and value (absent when zero).
        self.errors: dict[str, dict[str, list[float]]] = {}
        self.truncated = False

    @property
    def width(self) -> int:
        return len(COLUMNS[self.task])

    # -- counting ---------------------------------------------------------------------------

    def add(
        self,
        segments: Sequence[Mapping[str, str]],
        rows: CountArray,
        errors: FloatArray | None = None,
    ) -> None:
        """Add ``rows[i]`` (and ``errors[i]``, regression) to each segment of event ``i``."""
        n = len(segments)
        if rows.shape != (n, self.width):
            raise ValueError(f"expected {n} rows of {self.width} counts, got {rows.shape}")
        if errors is not None and errors.shape != (n,):
            raise ValueError(f"expected {n} errors, got {errors.shape}")
        names: set[str] = set()
        for m in segments:
            names.update(m)
        # An attribute or value takes a slot only once it has counts (`_add_record`): what
        # a pane keeps must not depend on rows that count nothing (an unscorable label).
        # str(): a subclass such as numpy's str_ would not serialise as a JSON key.
        for attr in sorted(map(str, names)):
            if attr not in self.counts and not self._admits(attr):
                self.truncated |= bool(rows[[attr in m for m in segments]].any())
                continue
            column = [m.get(attr) for m in segments]
            distinct = sorted({str(v) for v in column if v is not None})
            local: dict[str | None, int] = {v: i for i, v in enumerate(distinct)}
            codes = np.fromiter((local.get(v, -1) for v in column), np.intp, n)
            present = codes >= 0
            codes = codes[present]
            sums = np.zeros((len(distinct), self.width), dtype=np.int64)
            np.add.at(sums, codes, rows[present])
            totals = (
                self._error_sums(codes, errors[present], len(distinct))
                if errors is not None
                else None
            )
            for i, value in enumerate(distinct):
                terms = totals[i] if totals is not None else []
                if sums[i].any() or terms:
                    self._add_record(attr, value, sums[i], terms)

    @staticmethod
    def _error_sums(codes: npt.NDArray[np.intp], errors: FloatArray, k: int) -> list[list[float]]:
        order = np.argsort(codes, kind="stable")
        ordered, by_code = errors[order], codes[order]
        bounds = np.searchsorted(by_code, np.arange(k + 1))
        return [exact_add(ordered[bounds[i] : bounds[i + 1]], []) for i in range(k)]

    def _add_record(self, attr: str, value: str, record: CountArray, terms: list[float]) -> None:
        table = self._table(attr)
        if table is None:
            return
        key = self._slot(attr, value)
        table[key] = table[key] + record if key in table else record.copy()
        if terms:
            errors = self.errors.setdefault(attr, {})
            errors[key] = exact_sum(terms, errors.get(key, []))

    # -- the caps ---------------------------------------------------------------------------

    def _admits(self, attr: str) -> bool:
        """Whether a new attribute would get a slot (perhaps evicting another)."""
        if attr in self.pinned:
            return True
        others = [a for a in self.counts if a not in self.pinned]
        if len(others) < self.max_attributes - len(self.pinned):
            return True
        return bool(others) and attr < max(others)

    def _table(self, attr: str) -> dict[str, CountArray] | None:
        """The records of ``attr``, admitting it if the cap allows; None when it is out."""
        table = self.counts.get(attr)
        if table is not None:
            return table
        if attr not in self.pinned:
            free = self.max_attributes - len(self.pinned)
            others = [a for a in self.counts if a not in self.pinned]
            if len(others) >= free:
                self.truncated = True
                largest = max(others, default=None)
                if largest is None or attr > largest:
                    return None
                del self.counts[largest]
                self.errors.pop(largest, None)
        table = self.counts[attr] = {}
        return table

    def _slot(self, attr: str, value: str) -> str:
        """The key ``value`` counts under: itself, or `OTHER_SEGMENT` past the cap."""
        table = self.counts[attr]
        pinned = self.pinned.get(attr, frozenset())
        if value in table or value in pinned or value == OTHER_SEGMENT:
            return value
        free = self.max_values - len(pinned)
        kept = [v for v in table if v != OTHER_SEGMENT and v not in pinned]
        if len(kept) < free:
            return value
        largest = max(kept, default=None)
        if largest is None or value > largest:
            return OTHER_SEGMENT
        self._fold(attr, largest)
        return value

    def _fold(self, attr: str, value: str) -> None:
        """Move ``value``'s counts into `OTHER_SEGMENT`."""
        table = self.counts[attr]
        record = table.pop(value)
        table[OTHER_SEGMENT] = table[OTHER_SEGMENT] + record if OTHER_SEGMENT in table else record
        errors = self.errors.get(attr)
        if errors is not None and value in errors:
            errors[OTHER_SEGMENT] = exact_sum(errors.pop(value), errors.get(OTHER_SEGMENT, []))

    # -- merging ----------------------------------------------------------------------------

    def merge(self, other: Cohorts) -> None:
        if (self.task, self.max_attributes, self.max_values, self.pinned) != (
            other.task,
            other.max_attributes,
            other.max_values,
            other.pinned,
        ):
            raise ValueError("cannot merge cohorts of another task, caps or pinned values")
        self.truncated |= other.truncated
        for attr in sorted(other.counts):
            errors = other.errors.get(attr, {})
            for value in sorted(other.counts[attr]):
                self._add_record(attr, value, other.counts[attr][value], errors.get(value, []))

    def copy(self) -> Cohorts:
        c = self.empty_like()
        c.merge(self)
        return c

    def empty_like(self) -> Cohorts:
        c = Cohorts(self.task, max_attributes=self.max_attributes, max_values=self.max_values)
        c.pinned = self.pinned
        return c

    # -- reading ----------------------------------------------------------------------------

    def records(self, attr: str) -> Iterator[tuple[str, dict[str, int], float]]:
        """``(value, {column: count}, sum of |error|)`` of ``attr``, by name, other last."""
        table = self.counts.get(attr, {})
        errors = self.errors.get(attr, {})
        names = COLUMNS[self.task]
        for value in sorted(table, key=lambda v: (v == OTHER_SEGMENT, v)):
            terms = errors.get(value, [])
            record = dict(zip(names, table[value].tolist(), strict=True))
            yield value, record, terms[0] if terms else 0.0

    def section(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The snapshot's ``segments``: figures per attribute and value (see `figures`)."""
        return {
            attr: {value: figures(self.task, r, e) for value, r, e in self.records(attr)}
            for attr in sorted(self.counts)
        }

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """``{"a": {attr: {value: [counts]}}, "e": {attr: {value: sum}}, "t": true}``."""
        state: dict[str, Any] = {}
        if self.counts:
            state["a"] = {
                a: {v: t[v].tolist() for v in sorted(t)} for a, t in sorted(self.counts.items())
            }
        errors = {
            a: {v: list(e[v]) for v in sorted(e)} for a, e in sorted(self.errors.items()) if e
        }
        if errors:
            state["e"] = errors
        if self.truncated:
            state["t"] = True
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with a `to_state` dict (of the same task).

        The records go through the caps again, so a state written under other caps or other
        pinned values (a baseline registered again) still obeys this one's.
        """
        self.counts, self.errors = {}, {}
        self.truncated = bool(state.get("t", False))
        errors = state.get("e", {})
        for attr, table in sorted(state.get("a", {}).items()):
            for value, record in sorted(table.items()):
                terms = [float(t) for t in errors.get(attr, {}).get(value, ())]
                self._add_record(str(attr), str(value), _record(record, self.width), terms)

    def __repr__(self) -> str:
        sizes = {a: len(t) for a, t in self.counts.items()}
        return f"Cohorts({self.task}, values={sizes}, truncated={self.truncated})"


def figures(task: str | None, r: Mapping[str, int], abs_error: float = 0.0) -> dict[str, Any]:
    """What a snapshot reports for one cohort, from its counts (NaN where undefined).

    >>> figures("binary", dict(predictions=4, scored=4, positive=1, tp=1, fp=0, tn=1, fn=1))
    {'predictions': 4, 'labelled': 3, 'accuracy': 0.6666666666666666, 'fpr': 0.0, \
'fnr': 0.5, 'positive_rate': 0.25}
    """
    out: dict[str, Any] = {"predictions": r["predictions"]}
    if task == "binary":
        tp, fp, tn, fn = r["tp"], r["fp"], r["tn"], r["fn"]
        labelled = tp + fp + tn + fn
        out["labelled"] = labelled
        out["accuracy"] = ratio(tp + tn, labelled)
        out["fpr"] = ratio(fp, fp + tn)
        out["fnr"] = ratio(fn, fn + tp)
        out["positive_rate"] = ratio(r["positive"], r["scored"])
    elif task == "multiclass":
        out["labelled"] = r["labelled"]
        out["accuracy"] = ratio(r["correct"], r["labelled"])
    elif task == "regression":
        out["labelled"] = r["labelled"]
        out["mae"] = ratio(abs_error, r["labelled"])
    return out


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _record(values: Sequence[int], width: int) -> CountArray:
    record = np.asarray(values, dtype=np.int64)
    if record.shape != (width,):
        raise ValueError(f"a cohort record has {width} counts, not {len(values)}")
    return record
