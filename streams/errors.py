"""Errors a user can fix, with the place they come from.

The command line prints these as one line and exits non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input, located as precisely as it can be: file, then row, then column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.row = row
        self.column = column

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class BaselineFormatError(InputError):
    """A baseline file this version cannot read."""
