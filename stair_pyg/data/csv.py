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

import io
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.errors import DataError, shown
from stair_pyg.data.files import read_text
from stair_pyg.data.hetero import RecDataset
from stair_pyg.data.options import (PIPELINE_FIELDS, READ_FIELDS, SPLITS,  # noqa: F401
                                    InteractionOptions, takes_options)
from stair_pyg.data.splits import (deduplicate, k_core, leave_one_out_split, random_split,
                                   rank_ids)

PathLike = Union[str, Path]
ENCODING_OPTION = "dataset.encoding, --encoding"
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


@takes_options(READ_FIELDS)
def read_table(path: PathLike, *, options: Optional[InteractionOptions] = None) -> pd.DataFrame:
    r"""Reads an interaction table into a frame with columns ``user``, ``item`` and, where
    present, ``rating``, ``timestamp``, ``label`` (raw text values, parsed later by
    :func:`process_interactions`). The frame's index is the 1-based line number in the file.

    The reading options (:class:`~stair_pyg.data.options.InteractionOptions`: ``encoding``,
    ``sep``, ``header``, ``user_col``, ``item_col``, ``rating_col``, ``timestamp_col``,
    ``label_col``) are keywords or one ``options=`` object. Column names are matched
    case-insensitively, ignoring RecBole ``:type`` suffixes, against common names
    (``user``/``user_id``/``userID``/..., ``item``/``item_id``/``asin``/..., ``rating``,
    ``timestamp``, ``x_label``/``label``) unless given explicitly. Without a header
    (``header=False``, or ``"infer"`` when the first line is all numbers) the columns are
    positional: user, item, rating, timestamp.
    """
    assert options is not None
    path = Path(path)
    text = read_text(path, options.encoding, ENCODING_OPTION)
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip():
        what = "file is empty" if not text.strip() else "the first line is empty"
        raise DataError(f"{what}; expected a header or a first interaction "
                        f"'user<sep>item[<sep>rating<sep>timestamp]'", file=path, line=1)
    sep = options.sep or _sniff_sep(first)
    fields = [c for c in pd.Series([first]).str.split(sep, regex=len(sep) > 1).iloc[0]]
    names = [_clean(c) for c in fields]
    explicit = {"user": options.user_col, "item": options.item_col,
                "rating": options.rating_col, "timestamp": options.timestamp_col,
                "label": options.label_col}
    header = options.header
    if header == "infer":
        known = any(n in ALIASES["user"] or n in ALIASES["item"] for n in names)
        header = known or any(v is not None for v in explicit.values()) or \
            not all(_is_number(c) for c in fields)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None,
                         keep_default_na=False, dtype=str,
                         engine="c" if len(sep) == 1 else "python", quoting=3,
                         skip_blank_lines=False)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse with separator {sep!r}: {e}", file=path) from None
    except pd.errors.EmptyDataError:
        raise DataError("no columns to read", file=path, line=1) from None
    first_line = 2 if header else 1
    df.index = np.arange(first_line, first_line + len(df))
    if not header:
        if df.shape[1] < 2:
            raise DataError(f"expected at least 2 columns (user, item) separated by {sep!r}, "
                            f"found {df.shape[1]}", file=path, line=1)
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
                raise DataError(f"missing column {given!r} ({key}_col); the header has "
                                f"{_columns(columns)}", file=path, line=1)
            col = given if given in columns else columns[cleaned.index(_clean(given))]
        else:
            hits = [c for c, n in zip(columns, cleaned) if n in ALIASES[key]]
            col = hits[0] if hits else None
        if col is not None:
            out[key] = df[col]
    missing = [k for k in ("user", "item") if k not in out]
    if missing:
        raise DataError(f"missing column(s) for {missing}; the header has {_columns(columns)} "
                        f"(separator {sep!r}; name them with user_col=/item_col=, or pass "
                        f"header=False for a file without header)", file=path, line=1)
    return pd.DataFrame(out, index=df.index)


def _columns(columns: Sequence[Any]) -> str:
    r"""The header's column names for a message, each cut short."""
    shown_cols = [shown(c, 30) for c in columns[:12]]
    more = f", ... ({len(columns)} columns)" if len(columns) > 12 else ""
    return "[" + ", ".join(shown_cols) + more + "]"


def _first_line(values: pd.Series, bad: np.ndarray) -> int:
    return int(values.index[np.flatnonzero(bad)[0]])


MISSING_IDS = ("", "nan", "na", "n/a", "nat", "null", "none", "<na>")
_EXACT = 2 ** 53  # floats represent every integer below this exactly


def _raw_ids(values: pd.Series, column: str, file: PathLike) -> np.ndarray:
    r"""Raw ids of a column: ``int64`` when every id is an integer within ``int64`` (numeric
    order), else the ids' text as an object array (lexicographic order; integers beyond
    ``int64`` stay exact this way). Missing ids (empty, ``NaN``, ``null``, ...) and negative
    integer ids raise."""
    text = values.astype(str).str.strip()
    missing = text.str.lower().isin(MISSING_IDS).to_numpy()
    if missing.any():
        line = _first_line(values, missing)
        raise DataError(f"column '{column}': missing id {shown(values.loc[line])} "
                        f"({int(missing.sum())} such row(s)); every interaction needs a "
                        f"{column}", file=file, line=line)
    num = pd.to_numeric(text, errors="coerce")
    as_text = text.to_numpy(dtype=object)
    if num.isna().any() or num.dtype.kind == "u":
        return as_text  # string ids (or integers beyond int64): kept exact, ranked as text
    arr = num.to_numpy()
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            return as_text
        bad = arr != np.floor(arr)
        if bad.any():
            line = _first_line(values, bad)
            raise DataError(f"column '{column}': {shown(values.loc[line])} is not an integer id",
                            file=file, line=line)
        if np.abs(arr).max() >= _EXACT:
            return as_text
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64, copy=False)
    if (arr < 0).any():
        line = _first_line(values, arr < 0)
        raise DataError(f"column '{column}': negative id {shown(values.loc[line])}", file=file,
                        line=line)
    return arr


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
        raise DataError(f"column '{column}': {shown(values.loc[line])} is not a number", file=file,
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
        raise DataError(f"split label {shown(values.loc[line])} is not one of 0/1/2 or "
                        f"train/valid/test", file=file, line=line)
    return num.astype(np.int64)


@takes_options(PIPELINE_FIELDS)
def process_interactions(df: pd.DataFrame, source: PathLike, *,
                         options: Optional[InteractionOptions] = None) -> Interactions:
    r"""Runs steps 1-5 of this module's pipeline on a frame from :func:`read_table`, with the
    processing options of :class:`~stair_pyg.data.options.InteractionOptions` (``split``,
    ``seed``, ``ratios``, ``rating_threshold``, ``min_user_interactions``,
    ``min_item_interactions``) as keywords or one ``options=`` object."""
    assert options is not None
    split, rating_threshold = options.split, options.rating_threshold
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
    core = k_core(user[rows], item[rows], options.min_user_interactions,
                  options.min_item_interactions)
    rows = rows[core]
    if rows.shape[0] == 0:
        raise DataError("no interaction left after rating threshold / k-core filtering",
                        file=source)
    user, user_ids = rank_ids(user_raw[rows])
    item, item_ids = rank_ids(item_raw[rows])
    rating = None if rating is None else rating[rows]
    ts = None if ts is None else ts[rows]
    if split == "random":
        label = random_split(user, item, ratios=options.ratios, seed=options.seed)
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


@takes_options()
def load_csv(path: PathLike, *, name: Optional[str] = None,
             options: Optional[InteractionOptions] = None) -> RecDataset:
    r"""Loads a CSV / TSV table of ``user, item[, rating, timestamp]`` interactions.

    Raw ids are remapped to contiguous ids (step 4 above), so any id works: integers (numeric
    order), strings, integers beyond ``int64`` (kept exact, as text).

    Args:
        path (str or Path): The table.
        name (str, optional): Dataset name; the file's stem by default. (default: :obj:`None`)
        **options: The fields of :class:`~stair_pyg.data.options.InteractionOptions`, as
            keywords (``split="loo"``, ``sep=";"``, ``min_user_interactions=3``, ...), or
            ``options=InteractionOptions(...)``: ``encoding``, ``sep``, ``header``,
            ``user_col``, ``item_col``, ``rating_col``, ``timestamp_col``, ``label_col``,
            ``split``, ``seed``, ``ratios``, ``rating_threshold``, ``min_user_interactions``,
            ``min_item_interactions``.
    """
    from stair_pyg.data.mmrec import dataset_from_labels

    assert options is not None
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder; the csv format reads one table file (a folder of "
                        "'<name>.inter' is --format mmrec or recbole)", file=path)
    df = read_table(path, options=options)
    x = process_interactions(df, path, options=options)
    return dataset_from_labels(x.user, x.item, x.label, len(x.user_ids), len(x.item_ids),
                               name=name or path.stem, source=str(path))
