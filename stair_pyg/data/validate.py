r"""Checks of loaded data. Each raises :class:`~stair_pyg.data.errors.DataError` naming the file,
the line or row and what is wrong.

Cold start is *not* an error: users or items that occur in valid/test but never in train are kept,
counted by :func:`cold_start` and reported (a warning from the loaders, a line in
:func:`stair_pyg.data.summary.describe`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd
from torch import Tensor

from stair_pyg.data.errors import DataError, shown, warn_data
from stair_pyg.data.files import check_file
from stair_pyg.data.splits import SPLIT_NAMES

PathLike = Union[str, Path]


def find_data_file(path: Path, name: Optional[str], suffix: str) -> Path:
    r"""The ``<name><suffix>`` file that :obj:`path` designates: :obj:`path` itself if it is a
    file; in a folder ``<name><suffix>`` when :obj:`name` is given, else ``<folder
    name><suffix>``, else the only ``*<suffix>`` file there. The file is checked to be a
    readable regular file (:func:`~stair_pyg.data.files.check_file`)."""
    if path.is_file():
        return check_file(path)
    if not path.is_dir():
        if path.is_symlink() or path.exists():
            check_file(path)  # raises: link loop, broken link, unreadable, ...
        raise DataError("no such file or directory", file=path)
    if name is not None:
        found = path / f"{name}{suffix}"
        if not found.exists() and not found.is_symlink():
            raise DataError(f"no '{name}{suffix}' in this folder", file=path)
        return check_file(found)
    own = path / f"{path.name}{suffix}"
    if own.exists() or own.is_symlink():
        return check_file(own)
    candidates = sorted(path.glob(f"*{suffix}"))
    if len(candidates) != 1:
        raise DataError(f"expected one '*{suffix}' file, found {[f.name for f in candidates]}; "
                        f"pass name=... to choose", file=path)
    return check_file(candidates[0])


def require_columns(columns: Iterable[str], required: Sequence[str], file: PathLike) -> None:
    r"""Raises if any of :obj:`required` is not among :obj:`columns` (the header of :obj:`file`)."""
    columns = list(columns)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; the header has {columns}", file=file,
                        line=1)


INT64_MAX = np.iinfo(np.int64).max
_EXACT = 2 ** 53  # floats represent every integer below this exactly


def integer_ids(values: pd.Series, column: str, file: PathLike, first_line: int = 2,
                non_negative: bool = True) -> np.ndarray:
    r"""Returns :obj:`values` as ``int64``, raising on the first value that is not an integer
    (or negative, when :obj:`non_negative`), or that ``int64`` cannot hold exactly. ``first_line``
    is the 1-based line of row 0 (2 below a header). Values in messages are cut short."""
    def fail(bad: np.ndarray, what: str) -> DataError:
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        shown_value = "an empty value" if pd.isna(value) or str(value).strip() == "" \
            else shown(value)
        return DataError(f"column '{column}': {shown_value} {what} ({int(bad.sum())} such "
                         f"row(s))", file=file, line=row + first_line)

    kind = values.dtype.kind
    if kind == "u":
        num_np = values.to_numpy()
        too_big = num_np > INT64_MAX
        if too_big.any():
            raise fail(too_big, "is too large for an id (beyond int64)")
        out = num_np.astype(np.int64)
    elif kind == "i":
        out = values.to_numpy(dtype=np.int64)
    else:
        num = pd.to_numeric(values, errors="coerce")
        if num.dtype.kind == "u":
            num_np = num.to_numpy()
            too_big = num_np > INT64_MAX
            if too_big.any():
                raise fail(too_big, "is too large for an id (beyond int64)")
            return integer_ids(num, column, file, first_line, non_negative)
        if num.dtype.kind == "i":
            return integer_ids(num, column, file, first_line, non_negative)
        num_np = num.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(num_np)
        bad[~bad] = num_np[~bad] != np.floor(num_np[~bad])
        if bad.any():
            first = str(values.iloc[int(np.flatnonzero(bad)[0])]).strip().lstrip("+-")
            raise fail(bad, "is too large for an id (beyond int64)" if first.isdigit()
                       else "is not an integer id")
        too_big = np.abs(num_np) >= _EXACT
        if too_big.any():
            raise fail(too_big, "is too large for an id")
        out = num_np.astype(np.int64)
    if non_negative and out.shape[0] and out.min() < 0:
        row = int(np.flatnonzero(out < 0)[0])
        raise DataError(f"column '{column}': negative id {int(out[row])} "
                        f"({int((out < 0).sum())} such row(s))", file=file, line=row + first_line)
    return out


def check_id_bound(ids: np.ndarray, bound: int, column: str, file: PathLike, why: str,
                   first_line: int = 2) -> None:
    r"""Raises (before anything of size ``max(ids) + 1`` is allocated) when an id is
    ``>= bound``. MMRec ids are contiguous from 0, so the loaders bound them by the size of
    the input (:obj:`why` says by what)."""
    if ids.shape[0] == 0:
        return
    top = int(ids.max())
    if top >= bound:
        row = int(np.argmax(ids))
        raise DataError(f"column '{column}': id {top} is out of range ({int((ids >= bound).sum())} "
                        f"such row(s)): MMRec ids are contiguous from 0, so every {column} must "
                        f"be below {why} ({bound:,}); read other ids with the csv format, which "
                        f"remaps them", file=file, line=row + first_line)


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


def check_features(x: np.ndarray, num_items: int, file: PathLike, modality: str,
                   distinct: bool = True) -> np.ndarray:
    r"""Checks an item feature matrix: two-dimensional with at least one column, real numbers,
    exactly one row per item, finite, and not the same for every item.

    A matrix with more rows than items raises as well: row ``i`` must hold item ``i``, so extra
    rows mean the ids and the features disagree. A modality whose rows are all equal (all zero,
    say) cannot tell items apart and is refused: a model would learn nothing from it. All-zero
    rows and (for dense features, not 0/1 multi-hot ones, which repeat by nature) rows equal to
    another row are kept, with a :class:`~stair_pyg.data.errors.DataWarning` giving the count.

    :obj:`distinct=False` (new items added to a trained model, which may be few or alike) skips
    the all-rows-equal check and the repeated-row notice.

    Returns:
        The features as ``float32``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"'{modality}' features must be a 2-d array [num_items, dim], got shape "
                        f"{tuple(x.shape)}", file=file)
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"'{modality}' features are complex-valued (dtype {x.dtype}); item "
                        f"features must be real numbers", file=file)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"'{modality}' features have non-numeric dtype {x.dtype}", file=file)
    if x.shape[1] == 0:
        raise DataError(f"'{modality}' features have 0 columns (shape {tuple(x.shape)}); a "
                        f"modality needs at least one feature per item", file=file)
    if x.shape[0] < num_items:
        raise DataError(f"'{modality}' features have {x.shape[0]} rows, fewer than the "
                        f"{num_items} items (row i must hold item i)", file=file)
    if x.shape[0] > num_items:
        raise DataError(f"'{modality}' features have {x.shape[0]} rows, more than the {num_items} "
                        f"items in the interactions (row i must hold item i)", file=file)
    x = np.ascontiguousarray(x.astype(np.float32, copy=False))
    n = x.shape[0]
    step = max(1, _CHUNK // x.shape[1])  # row blocks: the checks need no [rows, dim] temporary
    finite = np.empty(n, dtype=bool)
    zero = np.empty(n, dtype=bool)
    like_first = np.empty(n, dtype=bool)
    binary = True
    for i in range(0, n, step):
        block = x[i:i + step]
        finite[i:i + step] = np.isfinite(block).all(axis=1)
        zero[i:i + step] = ~block.any(axis=1)
        like_first[i:i + step] = (block == x[0]).all(axis=1)
        binary = binary and bool(((block == 0) | (block == 1)).all())
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if np.isnan(x[row]).any() else "Inf"
        raise DataError(f"'{modality}' features contain {kind} ({int((~finite).sum())} row(s) "
                        f"with NaN/Inf)", file=file, row=row)
    if distinct and n > 1 and like_first.all():
        what = "all zero" if zero[0] else "the same row for every item"
        raise DataError(f"'{modality}' features are {what}: the modality cannot tell items "
                        f"apart, so a model learns nothing from it (its loss stays at ln 2); "
                        f"remove the file or fix the features", file=file)
    if zero.any():
        warn_data(f"{file}: '{modality}' features: {int(zero.sum()):,} of {n:,} rows are all zero "
                  f"(first: row {int(np.flatnonzero(zero)[0])}); those items carry no "
                  f"{modality} information", stacklevel=2)
    if distinct and not binary:
        repeated = repeated_rows(x)
        if repeated:
            warn_data(f"{file}: '{modality}' features: {repeated:,} of {n:,} rows repeat an "
                      f"earlier row (those items look the same in this modality)", stacklevel=2)
    return x


_CHUNK = 1 << 22  # elements per block in the feature checks


def repeated_rows(x: np.ndarray) -> int:
    r"""How many rows of the ``float32`` matrix :obj:`x` equal an earlier row (bit for bit),
    i.e. rows minus distinct rows. Rows are hashed block by block (a random linear hash of their
    bits, 64-bit), and only rows whose hashes collide are compared."""
    n, dim = x.shape
    bits = np.ascontiguousarray(x).view(np.uint32)
    weights = np.random.default_rng(0).integers(1, 2 ** 63, size=dim, dtype=np.uint64) | 1
    h = np.empty(n, dtype=np.uint64)
    step = max(1, _CHUNK // dim)
    with np.errstate(over="ignore"):
        for i in range(0, n, step):
            h[i:i + step] = (bits[i:i + step].astype(np.uint64) * weights).sum(axis=1)
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    starts = np.flatnonzero(np.r_[True, sorted_h[1:] != sorted_h[:-1]])
    sizes = np.diff(np.r_[starts, n])
    repeated = 0
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
        group = bits[order[start:start + size]]
        repeated += size - int(np.unique(group, axis=0).shape[0])
    return repeated


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
        warn_data(
            f"{where}cold start kept: valid has {report['valid_users']} user(s) and "
            f"{report['valid_items']} item(s), test has {report['test_users']} user(s) and "
            f"{report['test_items']} item(s) that never occur in train", stacklevel=3)
