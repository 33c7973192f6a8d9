"""Read a CSV or JSON Lines file in bounded blocks, column-wise, counting bad rows.

A file is never loaded whole: it is read in blocks of ``block_bytes`` cut at a line end,
and each block is parsed into numpy columns. CSV blocks go through pyarrow's multi-threaded
parser with the column types fixed up front; a block with a value that does not convert is
parsed again on a slow path that finds the offending rows, drops them and reports them.
JSON Lines are parsed with orjson, one object per line; a ``features`` object is flattened
so files in the prediction wire format can be read as tables.

Newlines inside quoted CSV fields are not supported (each line is one row).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from streams.errors import InputError
from streams.histogram import MISSING_TOKENS
from streams.prefetch import prefetch

FloatArray = npt.NDArray[np.float64]
ColumnType = Literal["numeric", "categorical"]
Progress = Callable[[int], None]

DEFAULT_BLOCK_BYTES = 16 << 20
#: Rows read to decide whether a column is numeric or categorical.
INFER_ROWS = 10_000
#: Share of sampled values that may fail to parse and still leave a column numeric.
INFER_TOLERANCE = 0.05

_NULLS = sorted({*MISSING_TOKENS, *(t.upper() for t in MISSING_TOKENS), "NaN", "None", "Null"})


@dataclass(frozen=True)
class BadRow:
    """A row left out of every statistic, and why."""

    row: int | None
    reason: str
    column: str | None = None
    value: str | None = None

    def describe(self) -> str:
        where = f"row {self.row}" if self.row is not None else "a row"
        col = f", column {self.column!r}" if self.column else ""
        val = f" ({self.value!r})" if self.value is not None else ""
        return f"{where}{col}: {self.reason}{val}"


@dataclass
class Chunk:
    """The good rows of one block, column by column, aligned by position."""

    n_rows: int
    numeric: dict[str, FloatArray]
    text: dict[str, list[str | None]]
    bad_rows: list[BadRow] = field(default_factory=list)


class TableFile:
    """A CSV or JSON Lines file read as a table of named columns.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.csv")
    >>> _ = open(p, "w").write("a,b\\n1,x\\n2,y\\n")
    >>> t = TableFile(p); t.columns, t.infer_types()
    (['a', 'b'], {'a': 'numeric', 'b': 'categorical'})
    >>> c = next(t.chunks(numeric={"a"})); c.numeric["a"].tolist(), c.text["b"]
    ([1.0, 2.0], ['x', 'y'])
    """

    def __init__(self, path: str | os.PathLike[str], *, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.path = os.fspath(path)
        self.block_bytes = block_bytes
        if not os.path.exists(self.path):
            raise InputError("no such file", path=self.path)
        if os.path.isdir(self.path):
            raise InputError("is a directory, not a CSV or JSON Lines file", path=self.path)
        self.size = os.path.getsize(self.path)
        self.format = _detect_format(self.path)
        self.columns = self._read_columns()

    # -- public -------------------------------------------------------------------------

    def infer_types(self, rows: int = INFER_ROWS) -> dict[str, ColumnType]:
        """numeric when ≥ 95 % of the first ``rows`` non-missing values parse as numbers."""
        sample: dict[str, list[Any]] = {c: [] for c in self.columns}
        for chunk in self._blocks(numeric=(), columns=None, limit_rows=rows):
            for name, values in chunk.text.items():
                sample[name].extend(values)
        return {name: _infer(values) for name, values in sample.items()}

    def chunks(
        self,
        numeric: Collection[str],
        columns: Collection[str] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Chunk]:
        """Blocks of good rows; ``numeric`` columns as float arrays, the rest as strings.

        The next block is parsed in the background while the caller works on this one.
        """
        return prefetch(self._blocks(numeric=numeric, columns=columns, progress=progress))

    # -- reading --------------------------------------------------------------------------

    def _read_columns(self) -> list[str]:
        if self.size == 0:
            raise InputError("file is empty", path=self.path)
        if self.format == "csv":
            with open(self.path, "rb") as f:
                header = f.readline()
            try:
                names = next(csv.reader([header.decode("utf-8-sig")]))
            except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
                raise InputError(f"cannot read the CSV header: {exc}", path=self.path) from None
            names = [n.strip() for n in names]
            if not any(names):
                raise InputError("the CSV header is empty", path=self.path, row=1)
        else:
            names = []
            seen: set[str] = set()
            for chunk in self._json_blocks(numeric=(), columns=None, limit_rows=INFER_ROWS):
                for n in chunk.text:
                    if n not in seen:
                        seen.add(n)
                        names.append(n)
            if not names:
                raise InputError("no JSON object with fields in the first rows", path=self.path)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"duplicate column name(s): {', '.join(dupes)}", path=self.path)
        return names

    def _blocks(
        self,
        numeric: Collection[str],
        columns: Collection[str] | None,
        progress: Progress | None = None,
        limit_rows: int | None = None,
    ) -> Iterator[Chunk]:
        if self.format == "csv":
            return self._csv_blocks(numeric, columns, progress, limit_rows)
        return self._json_blocks(numeric, columns, progress, limit_rows)

    def _raw_blocks(
        self, skip_header: bool, progress: Progress | None
    ) -> Iterator[tuple[int, bytes]]:
        """(line number of the block's first line, bytes ending at a newline)."""
        with open(self.path, "rb") as f:
            line = 1
            if skip_header:
                f.readline()
                line = 2
                if progress:
                    progress(f.tell())
            rest = b""
            while True:
                data = f.read(self.block_bytes)
                if progress and data:
                    progress(len(data))
                if not data:
                    if rest.strip():
                        yield line, rest if rest.endswith(b"\n") else rest + b"\n"
                    return
                data = rest + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                block, rest = data[: cut + 1], data[cut + 1 :]
                yield line, block
                line += block.count(b"\n")

    # -- CSV ------------------------------------------------------------------------------

    def _csv_blocks(
        self,
        numeric: Collection[str],
        columns: Collection[str] | None,
        progress: Progress | None,
        limit_rows: int | None,
    ) -> Iterator[Chunk]:
        wanted = list(self.columns if columns is None else columns)
        numeric = set(numeric)
        produced = 0
        for first_line, block in self._raw_blocks(skip_header=True, progress=progress):
            if limit_rows is not None:
                block = _first_lines(block, limit_rows - produced)
            try:
                chunk = self._csv_fast(block, first_line, wanted, numeric)
            except pa.ArrowInvalid:
                chunk = self._csv_slow(block, first_line, wanted, numeric)
            produced += chunk.n_rows + len(chunk.bad_rows)
            yield chunk
            if limit_rows is not None and produced >= limit_rows:
                return

    def _csv_options(
        self, wanted: list[str], types: dict[str, pa.DataType], threads: bool
    ) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
        read = pacsv.ReadOptions(column_names=self.columns, use_threads=threads)
        convert = pacsv.ConvertOptions(
            column_types=types,
            include_columns=wanted,
            null_values=_NULLS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        return read, convert

    def _csv_fast(
        self, block: bytes, first_line: int, wanted: list[str], numeric: set[str]
    ) -> Chunk:
        types = {c: (pa.float64() if c in numeric else pa.string()) for c in wanted}
        bad: list[BadRow] = []
        read, convert = self._csv_options(wanted, types, threads=True)
        parse = pacsv.ParseOptions(invalid_row_handler=_field_count_handler(bad, first_line))
        table = pacsv.read_csv(
            io.BytesIO(block), read_options=read, parse_options=parse, convert_options=convert
        )
        return Chunk(
            n_rows=table.num_rows,
            numeric={c: _float_column(table.column(c)) for c in wanted if c in numeric},
            text={c: table.column(c).to_pylist() for c in wanted if c not in numeric},
            bad_rows=bad,
        )

    def _csv_slow(
        self, block: bytes, first_line: int, wanted: list[str], numeric: set[str]
    ) -> Chunk:
        """Find the rows that broke the fast path; single-threaded so row numbers are known."""
        bad: list[BadRow] = []
        read, convert = self._csv_options(wanted, dict.fromkeys(wanted, pa.string()), False)
        parse = pacsv.ParseOptions(invalid_row_handler=_field_count_handler(bad, first_line))
        try:
            table = pacsv.read_csv(
                io.BytesIO(block), read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as exc:
            n = block.count(b"\n")
            reason = f"block of {n} rows could not be parsed: {_arrow_reason(exc)}"
            return Chunk(0, {}, {}, [BadRow(first_line + i, reason) for i in range(n)])
        # The handler's row numbers count from the block start; map kept rows to lines.
        skipped = sorted(b.row for b in bad if b.row is not None)
        lines = _kept_line_numbers(first_line, table.num_rows, skipped)
        keep = np.ones(table.num_rows, dtype=bool)
        parsed: dict[str, FloatArray] = {}
        for c in wanted:
            if c not in numeric:
                continue
            values = table.column(c).to_pylist()
            arr = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                x = _to_float(v)
                if x is None:
                    keep[i] = False
                    arr[i] = np.nan
                    bad.append(BadRow(int(lines[i]), "not a number", c, v))
                else:
                    arr[i] = x
            parsed[c] = arr
        return Chunk(
            n_rows=int(keep.sum()),
            numeric={c: a[keep] for c, a in parsed.items()},
            text={
                c: [v for v, k in zip(table.column(c).to_pylist(), keep, strict=True) if k]
                for c in wanted
                if c not in numeric
            },
            bad_rows=_one_per_row(bad),
        )

    # -- JSON Lines -----------------------------------------------------------------------

    def _json_blocks(
        self,
        numeric: Collection[str],
        columns: Collection[str] | None,
        progress: Progress | None = None,
        limit_rows: int | None = None,
    ) -> Iterator[Chunk]:
        numeric = set(numeric)
        produced = 0
        for first_line, block in self._raw_blocks(skip_header=False, progress=progress):
            if limit_rows is not None:
                block = _first_lines(block, limit_rows - produced)
            records: list[dict[str, Any]] = []
            bad: list[BadRow] = []
            for i, line in enumerate(block.splitlines()):
                if not line.strip():
                    continue
                rec = _json_record(line, first_line + i, bad)
                if rec is not None:
                    records.append(rec)
            names = list(columns) if columns is not None else self._json_columns
            chunk = _json_chunk(records, first_line, bad, numeric, names)
            produced += chunk.n_rows + len(chunk.bad_rows)
            yield chunk
            if limit_rows is not None and produced >= limit_rows:
                return

    @property
    def _json_columns(self) -> list[str]:
        # During header discovery `columns` does not exist yet: every key is a column.
        return getattr(self, "columns", [])


def _json_record(line: bytes, number: int, bad: list[BadRow]) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        bad.append(BadRow(number, f"not valid JSON ({exc.msg})"))
        return None
    if not isinstance(obj, dict):
        bad.append(BadRow(number, f"expected a JSON object, got {type(obj).__name__}"))
        return None
    features = obj.pop("features", None)
    if isinstance(features, dict):
        obj.update(features)
    obj["__line__"] = number
    return obj


def _json_chunk(
    records: list[dict[str, Any]],
    first_line: int,
    bad: list[BadRow],
    numeric: set[str],
    columns: list[str],
) -> Chunk:
    if not columns:  # header discovery: keys in order of first appearance, as text
        seen: dict[str, None] = {}
        for r in records:
            seen.update(dict.fromkeys(k for k in r if k != "__line__"))
        columns = list(seen)
    keep = np.ones(len(records), dtype=bool)
    num: dict[str, FloatArray] = {}
    txt: dict[str, list[str | None]] = {}
    for c in columns:
        if c in numeric:
            arr = np.empty(len(records), dtype=np.float64)
            for i, r in enumerate(records):
                v = r.get(c)
                x = _json_float(v)
                if x is None:
                    keep[i] = False
                    arr[i] = np.nan
                    bad.append(BadRow(r["__line__"], "not a number", c, _short(v)))
                else:
                    arr[i] = x
            num[c] = arr
        else:
            values: list[str | None] = []
            for i, r in enumerate(records):
                v = r.get(c)
                if isinstance(v, dict | list):
                    keep[i] = False
                    bad.append(BadRow(r["__line__"], "nested value where a scalar belongs", c))
                    values.append(None)
                else:
                    values.append(_json_text(v))
            txt[c] = values
    return Chunk(
        n_rows=int(keep.sum()),
        numeric={c: a[keep] for c, a in num.items()},
        text={c: [v for v, k in zip(vs, keep, strict=True) if k] for c, vs in txt.items()},
        bad_rows=_one_per_row(bad),
    )


# -- helpers ------------------------------------------------------------------------------


def _detect_format(path: str) -> Literal["csv", "jsonl"]:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\0" in head:
        raise InputError("is a binary file, not CSV or JSON Lines", path=path)
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        return "jsonl"
    first = stripped.split(b"\n", 1)[0]
    if b"," in first:
        return "csv"
    raise InputError(
        "cannot tell the format: expected CSV (a header row with commas) or JSON Lines "
        "(one JSON object per line); name the file .csv or .jsonl",
        path=path,
    )


def _field_count_handler(bad: list[BadRow], first_line: int) -> Callable[[Any], str]:
    def handle(row: Any) -> str:
        line = None if row.number is None else first_line + int(row.number) - 1
        bad.append(
            BadRow(line, f"expected {row.expected_columns} fields, got {row.actual_columns}")
        )
        return "skip"

    return handle


def _kept_line_numbers(first_line: int, n_kept: int, skipped: list[int]) -> FloatArray:
    lines = np.arange(first_line, first_line + n_kept + len(skipped), dtype=np.int64)
    if skipped:
        lines = lines[~np.isin(lines, np.asarray(skipped))]
    return lines[:n_kept].astype(np.float64)


def _float_column(col: pa.ChunkedArray) -> FloatArray:
    return np.asarray(col.to_numpy(), dtype=np.float64)


def _to_float(v: str | None) -> float | None:
    if v is None:
        return math.nan
    try:
        return float(v)
    except ValueError:
        return None


def _json_float(v: Any) -> float | None:
    if v is None:
        return math.nan
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        if v.strip().lower() in MISSING_TOKENS:
            return math.nan
        return _to_float(v)
    return None


def _json_text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _infer(values: list[Any]) -> ColumnType:
    present = [v for v in values if v is not None and v.strip().lower() not in MISSING_TOKENS]
    if not present:
        return "categorical"
    failures = sum(_to_float(v) is None for v in present)
    return "numeric" if failures <= INFER_TOLERANCE * len(present) else "categorical"


def _first_lines(block: bytes, n: int) -> bytes:
    pos = 0
    for _ in range(max(n, 0)):
        nxt = block.find(b"\n", pos)
        if nxt < 0:
            return block
        pos = nxt + 1
    return block[:pos]


def _one_per_row(bad: list[BadRow]) -> list[BadRow]:
    """A row with several bad values is still one bad row."""
    seen: set[int] = set()
    out = []
    for b in bad:
        if b.row is None or b.row not in seen:
            out.append(b)
            if b.row is not None:
                seen.add(b.row)
    return out


def _arrow_reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def _short(v: Any) -> str | None:
    return None if v is None else str(v)[:80]
