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
