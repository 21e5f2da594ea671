r"""Loader for plain interaction tables (CSV / TSV) of ``user, item[, rating, timestamp]``, and the
raw-interaction pipeline shared with the RecBole loader and ``stair-pyg prepare``:

1. optional rating threshold (keep ``rating >= rating_threshold``);
2. de-duplication of ``(user, item)`` pairs, keeping the first in ``(user, timestamp)`` order,
   with a warning;
3. optional k-core filtering (:func:`~stair_pyg.data.splits.k_core`);
4. contiguous ids: ``userID`` = rank of the raw user id among kept users, ``itemID`` = rank of the
   raw item id among items still occurring (numeric order when every raw id is an integer,
   lexicographic otherwise);
5. the split: ``"random"`` (per-user 8:1:1, the MMRec protocol, seeded), ``"loo"`` (per-user
   leave-one-out by timestamp) or ``"column"`` (a given label column: 0/1/2 or
   train/valid/test).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.errors import DataError
from stair_pyg.data.hetero import RecDataset
from stair_pyg.data.splits import (deduplicate, k_core, leave_one_out_split, random_split,
                                   rank_ids)

PathLike = Union[str, Path]
SPLITS = ("random", "loo", "column")
ALIASES = {
    "user": ("user", "user_id", "userid", "uid", "reviewerid"),
    "item": ("item", "item_id", "itemid", "iid", "asin", "movieid", "movie_id"),
    "rating": ("rating", "ratings", "score", "overall"),
    "timestamp": ("timestamp", "time", "ts", "unixreviewtime", "datetime", "date"),
    "label": ("x_label", "label", "split"),
}
LABEL_NAMES = {"train": 0, "valid": 1, "validation": 1, "val": 1, "test": 2}


class Interactions(NamedTuple):
    r"""Processed interactions, one entry per kept ``(user, item)`` pair, rows sorted by
    ``(user, timestamp, item)``. ``user_ids[u]`` / ``item_ids[i]`` are the raw ids of
    ``userID`` ``u`` / ``itemID`` ``i``. ``rating`` / ``timestamp`` are :obj:`None` when the input
    has no such column."""

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    rating: Optional[np.ndarray]
    timestamp: Optional[np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray


def _clean(name: str) -> str:
    return str(name).split(":")[0].strip().lower()


def _sniff_sep(first_line: str) -> str:
    for sep in ("\t", ",", ";", "|"):
        if sep in first_line:
            return sep
    return r"\s+"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_table(
    path: PathLike,
    sep: Optional[str] = None,
    header: Union[str, bool] = "infer",
    user_col: Optional[str] = None,
    item_col: Optional[str] = None,
    rating_col: Optional[str] = None,
    timestamp_col: Optional[str] = None,
    label_col: Optional[str] = None,
) -> pd.DataFrame:
    r"""Reads an interaction table into a frame with columns ``user``, ``item`` and, where
    present, ``rating``, ``timestamp``, ``label`` (raw values, types inferred). The frame's
    index is the 1-based line number in the file.

    Column names are matched case-insensitively, ignoring RecBole ``:type`` suffixes, against
    common names (``user``/``user_id``/``userID``/..., ``item``/``item_id``/``asin``/...,
    ``rating``, ``timestamp``, ``x_label``/``label``) unless given explicitly. Without a header
    (``header=False``, or ``"infer"`` when the first line is all numbers) the columns are
    positional: user, item, rating, timestamp.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=path)
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\r\n")
    if not first.strip():
        raise DataError("file is empty (or starts with an empty line)", file=path, line=1)
    sep = sep or _sniff_sep(first)
    fields = [c for c in pd.Series([first]).str.split(sep, regex=len(sep) > 1).iloc[0]]
    names = [_clean(c) for c in fields]
    explicit = {"user": user_col, "item": item_col, "rating": rating_col,
                "timestamp": timestamp_col, "label": label_col}
    if header == "infer":
        known = any(n in ALIASES["user"] or n in ALIASES["item"] for n in names)
        header = known or any(v is not None for v in explicit.values()) or \
            not all(_is_number(c) for c in fields)
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, keep_default_na=False,
                         engine="c" if len(sep) == 1 else "python", quoting=3,
                         skip_blank_lines=False)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse with separator {sep!r}: {e}", file=path) from None
    first_line = 2 if header else 1
    df.index = np.arange(first_line, first_line + len(df))
    if not header:
        if df.shape[1] < 2:
            raise DataError(f"expected at least 2 columns (user, item), found {df.shape[1]}",
                            file=path, line=1)
        positional = ["user", "item", "rating", "timestamp", "label"][: df.shape[1]]
        df = df.iloc[:, : len(positional)]
        df.columns = positional
        return df
    columns = list(df.columns)
    cleaned = [_clean(c) for c in columns]
    out = {}
    for key, given in explicit.items():
        if given is not None:
            if given not in columns and _clean(given) not in cleaned:
                raise DataError(f"missing column {given!r} ({key}); the header has {columns}",
                                file=path, line=1)
            col = given if given in columns else columns[cleaned.index(_clean(given))]
        else:
            hits = [c for c, n in zip(columns, cleaned) if n in ALIASES[key]]
            col = hits[0] if hits else None
        if col is not None:
            out[key] = df[col]
    missing = [k for k in ("user", "item") if k not in out]
    if missing:
        raise DataError(f"missing column(s) for {missing}; the header has {columns} (name them "
                        f"with user_col=/item_col=, or pass header=False for a file without "
                        f"header)", file=path, line=1)
    return pd.DataFrame(out, index=df.index)


def _first_line(values: pd.Series, bad: np.ndarray) -> int:
    return int(values.index[np.flatnonzero(bad)[0]])


def _raw_ids(values: pd.Series, column: str, file: PathLike) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype(str)
    if pd.api.types.is_numeric_dtype(values.dtype):
        num = values.to_numpy(dtype=np.float64) if not pd.api.types.is_integer_dtype(
            values.dtype) else values.to_numpy(dtype=np.int64)
    else:
        text = values.astype(str).str.strip()
        empty = (text == "").to_numpy()
        if empty.any():
            raise DataError(f"column '{column}': empty id", file=file,
                            line=_first_line(values, empty))
        num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(num).all():
            return text.to_numpy(dtype=object).astype(str)  # string ids
    if num.dtype != np.int64:
        bad = ~np.isfinite(num)
        bad[~bad] = num[~bad] != np.floor(num[~bad])
        if bad.any():
            line = _first_line(values, bad)
            raise DataError(f"column '{column}': {str(values.loc[line])!r} is not an integer id",
                            file=file, line=line)
        num = num.astype(np.int64)
    if (num < 0).any():
        line = _first_line(values, num < 0)
        raise DataError(f"column '{column}': negative id {str(values.loc[line])!r}", file=file,
                        line=line)
    return num


def _numeric(values: pd.Series, column: str, file: PathLike, allow_dates: bool) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype):
        return values.to_numpy(dtype=np.float64)
    values = values.astype(str)
    num = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any() and allow_dates:
        dates = pd.to_datetime(values, errors="coerce", utc=True)
        if not dates.isna().any():
            return (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    if bad.any():
        line = _first_line(values, bad)
        raise DataError(f"column '{column}': {values.loc[line]!r} is not a number", file=file,
                        line=line)
    return num.to_numpy(dtype=np.float64)


def _labels(values: pd.Series, file: PathLike) -> np.ndarray:
    values = values.astype(str)
    text = values.str.strip().str.lower()
    mapped = text.map(lambda v: LABEL_NAMES.get(v, v))
    num = pd.to_numeric(mapped, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isin(num, (0.0, 1.0, 2.0))
    if bad.any():
        line = int(values.index[np.flatnonzero(bad)[0]])
        raise DataError(f"split label {values.loc[line]!r} is not one of 0/1/2 or "
                        f"train/valid/test", file=file, line=line)
    return num.astype(np.int64)


def process_interactions(
    df: pd.DataFrame,
    source: PathLike,
    split: str = "random",
    seed: int = 999,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    rating_threshold: Optional[float] = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
) -> Interactions:
    r"""Runs steps 1-5 of this module's pipeline on a frame from :func:`read_table`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if len(df) == 0:
        raise DataError("no interactions", file=source)
    user_raw = _raw_ids(df["user"], "user", source)
    item_raw = _raw_ids(df["item"], "item", source)
    rating = _numeric(df["rating"], "rating", source, False) if "rating" in df else None
    ts = _numeric(df["timestamp"], "timestamp", source, True) if "timestamp" in df else None
    label = None
    if split == "column":
        if "label" not in df:
            raise DataError("split='column' needs a label column (x_label/label/split, or "
                            "label_col=...)", file=source, line=1)
        label = _labels(df["label"], source)
    keep = np.ones(len(df), dtype=bool)
    if rating_threshold is not None:
        if rating is None:
            raise DataError("rating_threshold given but the table has no rating column",
                            file=source, line=1)
        keep &= rating >= rating_threshold
    user, _ = rank_ids(user_raw)
    item, _ = rank_ids(item_raw)
    rows = np.flatnonzero(keep)
    dedup = deduplicate(user[rows], item[rows], None if ts is None else ts[rows],
                        source=str(source))
    rows = rows[dedup]
    core = k_core(user[rows], item[rows], min_user_interactions, min_item_interactions)
    rows = rows[core]
    if rows.shape[0] == 0:
        raise DataError("no interaction left after rating threshold / k-core filtering",
                        file=source)
    user, user_ids = rank_ids(user_raw[rows])
    item, item_ids = rank_ids(item_raw[rows])
    rating = None if rating is None else rating[rows]
    ts = None if ts is None else ts[rows]
    if split == "random":
        label = random_split(user, item, ratios=ratios, seed=seed)
    elif split == "loo":
        if ts is None:
            raise DataError("split='loo' needs a timestamp column", file=source, line=1)
        label = leave_one_out_split(user, ts)
    else:
        label = label[rows]
    order = np.lexsort((item, np.zeros_like(user) if ts is None else ts, user))
    return Interactions(user[order], item[order], label[order],
                        None if rating is None else rating[order],
                        None if ts is None else ts[order], user_ids, item_ids)


def load_csv(
    path: PathLike,
    split: str = "random",
    sep: Optional[str] = None,
    header: Union[str, bool] = "infer",
    user_col: Optional[str] = None,
    item_col: Optional[str] = None,
    rating_col: Optional[str] = None,
    timestamp_col: Optional[str] = None,
    label_col: Optional[str] = None,
    seed: int = 999,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    rating_threshold: Optional[float] = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    name: Optional[str] = None,
) -> RecDataset:
    r"""Loads a CSV / TSV table of ``user, item[, rating, timestamp]`` interactions.

    Args:
        path (str or Path): The table.
        split (str): ``"random"`` (per-user 8:1:1, MMRec protocol), ``"loo"`` (per-user
            leave-one-out by timestamp) or ``"column"`` (the table's label column).
            (default: ``"random"``)
        sep (str, optional): Separator; sniffed from the first line (tab, comma, semicolon,
            bar, else whitespace) when :obj:`None`. (default: :obj:`None`)
        header (str or bool): ``True``, ``False`` or ``"infer"``. (default: ``"infer"``)
        user_col, item_col, rating_col, timestamp_col, label_col (str, optional): Column names,
            when they are not among the common ones. (default: :obj:`None`)
        seed (int): Seed of the random split. (default: ``999``)
        ratios (sequence of float): Train/valid/test proportions of the random split.
            (default: ``(0.8, 0.1, 0.1)``)
        rating_threshold (float, optional): Keep interactions with ``rating >= threshold``.
            (default: :obj:`None`)
        min_user_interactions (int): k-core bound for users (``3`` is the MMRec protocol's user
            filter). (default: ``0``)
        min_item_interactions (int): k-core bound for items. (default: ``0``)
        name (str, optional): Dataset name; the file's stem by default. (default: :obj:`None`)
    """
    from stair_pyg.data.mmrec import dataset_from_labels

    path = Path(path)
    df = read_table(path, sep=sep, header=header, user_col=user_col, item_col=item_col,
                    rating_col=rating_col, timestamp_col=timestamp_col, label_col=label_col)
    x = process_interactions(df, path, split=split, seed=seed, ratios=ratios,
                             rating_threshold=rating_threshold,
                             min_user_interactions=min_user_interactions,
                             min_item_interactions=min_item_interactions)
    return dataset_from_labels(x.user, x.item, x.label, len(x.user_ids), len(x.item_ids),
                               name=name or path.stem, source=str(path))
