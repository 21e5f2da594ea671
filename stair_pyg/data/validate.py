r"""Checks of loaded data. Each raises :class:`~stair_pyg.data.errors.DataError` naming the file,
the line or row and what is wrong.

Cold start is *not* an error: users or items that occur in valid/test but never in train are kept,
counted by :func:`cold_start` and reported (a warning from the loaders, a line in
:func:`stair_pyg.data.summary.describe`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd
from torch import Tensor

from stair_pyg.data.errors import DataError
from stair_pyg.data.splits import SPLIT_NAMES

PathLike = Union[str, Path]


def find_data_file(path: Path, name: Optional[str], suffix: str) -> Path:
    r"""The ``<name><suffix>`` file that :obj:`path` designates: :obj:`path` itself if it is a
    file; in a folder ``<name><suffix>`` when :obj:`name` is given, else ``<folder
    name><suffix>``, else the only ``*<suffix>`` file there."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError("no such file or directory", file=path)
    if name is not None:
        found = path / f"{name}{suffix}"
        if not found.is_file():
            raise DataError(f"no '{name}{suffix}' in this folder", file=path)
        return found
    own = path / f"{path.name}{suffix}"
    if own.is_file():
        return own
    candidates = sorted(path.glob(f"*{suffix}"))
    if len(candidates) != 1:
        raise DataError(f"expected one '*{suffix}' file, found {[f.name for f in candidates]}; "
                        f"pass name=... to choose", file=path)
    return candidates[0]


def require_columns(columns: Iterable[str], required: Sequence[str], file: PathLike) -> None:
    r"""Raises if any of :obj:`required` is not among :obj:`columns` (the header of :obj:`file`)."""
    columns = list(columns)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; the header has {columns}", file=file,
                        line=1)


def integer_ids(values: pd.Series, column: str, file: PathLike, first_line: int = 2,
                non_negative: bool = True) -> np.ndarray:
    r"""Returns :obj:`values` as ``int64``, raising on the first value that is not an integer
    (or negative, when :obj:`non_negative`). ``first_line`` is the 1-based line of row 0
    (2 below a header)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        out = values.to_numpy(dtype=np.int64)
    else:
        num = pd.to_numeric(values, errors="coerce")
        num_np = num.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(num_np)
        bad[~bad] = num_np[~bad] != np.floor(num_np[~bad])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = values.iloc[row]
            shown = "an empty value" if pd.isna(value) else repr(str(value))
            raise DataError(f"column '{column}': {shown} is not an integer id "
                            f"({int(bad.sum())} such row(s))", file=file, line=row + first_line)
        out = num_np.astype(np.int64)
    if non_negative and out.shape[0] and out.min() < 0:
        row = int(np.flatnonzero(out < 0)[0])
        raise DataError(f"column '{column}': negative id {int(out[row])} "
                        f"({int((out < 0).sum())} such row(s))", file=file, line=row + first_line)
    return out


def check_labels(labels: np.ndarray, file: PathLike, first_line: int = 2,
                 column: str = "x_label") -> None:
    r"""Raises unless every split label is 0 (train), 1 (valid) or 2 (test)."""
    bad = (labels < 0) | (labels > 2)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"column '{column}': {int(labels[row])} is not a split label "
                        f"(0 = train, 1 = valid, 2 = test)", file=file, line=row + first_line)


def check_splits_not_empty(labels: np.ndarray, file: Optional[PathLike] = None) -> None:
    r"""Raises if train, valid or test is empty for every user (i.e. has no interaction)."""
    counts = np.bincount(labels, minlength=3)
    for name, count in zip(SPLIT_NAMES, counts.tolist()):
        if count == 0:
            raise DataError(f"the {name} split is empty for every user (split sizes: "
                            f"train {counts[0]}, valid {counts[1]}, test {counts[2]})", file=file)


def check_features(x: np.ndarray, num_items: int, file: PathLike, modality: str) -> np.ndarray:
    r"""Checks an item feature matrix: two-dimensional, at least one row per item, finite.

    A matrix with more rows than items raises as well: row ``i`` must hold item ``i``, so extra
    rows mean the ids and the features disagree.

    Returns:
        The features as ``float32``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"'{modality}' features must be a 2-d array [num_items, dim], got shape "
                        f"{tuple(x.shape)}", file=file)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"'{modality}' features have non-numeric dtype {x.dtype}", file=file)
    if x.shape[0] < num_items:
        raise DataError(f"'{modality}' features have {x.shape[0]} rows, fewer than the "
                        f"{num_items} items (row i must hold item i)", file=file)
    if x.shape[0] > num_items:
        raise DataError(f"'{modality}' features have {x.shape[0]} rows, more than the {num_items} "
                        f"items in the interactions (row i must hold item i)", file=file)
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if np.isnan(x[row]).any() else "Inf"
        raise DataError(f"'{modality}' features contain {kind} ({int((~finite).sum())} row(s) "
                        f"with NaN/Inf)", file=file, row=row)
    return x


def cold_start(train: Tensor, valid: Tensor, test: Tensor) -> Dict[str, int]:
    r"""Counts users and items that occur in valid / test but never in train.

    Returns:
        ``{"valid_users", "valid_items", "test_users", "test_items"}`` counts of such cold-start
        users and items, and ``"valid_interactions"`` / ``"test_interactions"``: how many
        valid/test interactions involve a cold user or a cold item.
    """
    train_np, valid_np, test_np = (t.cpu().numpy() for t in (train, valid, test))
    size = int(max([t.max() for t in (train_np, valid_np, test_np) if t.size], default=-1)) + 1
    seen_user = np.bincount(train_np[0], minlength=size) > 0
    seen_item = np.bincount(train_np[1], minlength=size) > 0
    report = {}
    for name, split in (("valid", valid_np), ("test", test_np)):
        cold_u = ~seen_user[split[0]]
        cold_i = ~seen_item[split[1]]
        report[f"{name}_users"] = int(np.unique(split[0][cold_u]).size)
        report[f"{name}_items"] = int(np.unique(split[1][cold_i]).size)
        report[f"{name}_interactions"] = int((cold_u | cold_i).sum())
    return report


def warn_cold_start(report: Dict[str, int], source: Optional[str] = None) -> None:
    r"""Warns (once) when :func:`cold_start` found cold users or items; they are kept."""
    if any(report[k] for k in ("valid_users", "valid_items", "test_users", "test_items")):
        where = f"{source}: " if source else ""
        warnings.warn(
            f"{where}cold start kept: valid has {report['valid_users']} user(s) and "
            f"{report['valid_items']} item(s), test has {report['test_users']} user(s) and "
            f"{report['test_items']} item(s) that never occur in train", stacklevel=3)
