r"""The error raised for bad input data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class DataError(ValueError):
    r"""Bad input data. The message names the file, the line (text files, 1-based, header
    included) or row (arrays, 0-based) and what is wrong, e.g.::

        ratings.csv, line 7: column 'item': 'abc' is not an integer id

    Args:
        what (str): What is wrong.
        file (str or Path, optional): The offending file.
        line (int, optional): 1-based line number in a text file (the header is line 1).
        row (int, optional): 0-based row of an array (e.g. a feature matrix).

    Attributes ``file``, ``line``, ``row`` and ``what`` keep the parts.
    """

    def __init__(
        self,
        what: str,
        file: Optional[Union[str, Path]] = None,
        line: Optional[int] = None,
        row: Optional[int] = None,
    ) -> None:
        self.what = what
        self.file = None if file is None else str(file)
        self.line = line
        self.row = row
        where = []
        if self.file is not None:
            where.append(self.file)
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {what}" if where else what)


class DataWarning(UserWarning):
    r"""A notice about input data that was accepted as it is, or repaired (duplicated
    interactions merged, cold-start users/items kept, all-zero or repeated feature rows, ...).

    Programs can filter or record it like any warning
    (``warnings.simplefilter("error", DataWarning)`` makes every notice an error); the
    ``stair-pyg`` command shows each one as a plain ``note: ...`` line.
    """


def warn_data(message: str, stacklevel: int = 2) -> None:
    r"""Emits :obj:`message` as a :class:`DataWarning` (:obj:`stacklevel` as in
    :func:`warnings.warn`, counted from the caller of this function)."""
    import warnings

    warnings.warn(message, DataWarning, stacklevel=stacklevel + 1)


def shown(value: object, limit: int = 40) -> str:
    r"""``repr(str(value))`` cut to about :obj:`limit` characters, so that a message never
    repeats a huge field back (``'12345678901234567890...' (20,000,000 characters)``)."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
