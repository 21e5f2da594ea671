r"""Loader for the MMRec format (https://github.com/enoche/MMRec), the format of
``shared/data/*``:

* ``<name>.inter``: tab-separated, header ``userID itemID [rating timestamp] x_label``, ids
  contiguous and 0-based, ``x_label`` 0 / 1 / 2 = train / valid / test;
* ``<modality>_feat.npy``: one float matrix ``[num_items, dim]`` per modality, row ``i`` = item
  ``i`` (``text_feat.npy`` becomes ``data["item"].text_feat``, ``image_feat.npy`` ``image_feat``).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import pandas as pd
import torch

from stair_pyg.data.errors import DataError, shown, warn_data
from stair_pyg.data.files import load_npy, read_text
from stair_pyg.data.hetero import RecDataset, Splits, build_hetero_data
from stair_pyg.data.splits import TEST, TRAIN, VALID, deduplicate
from stair_pyg.data.validate import (check_features, check_id_bound, check_labels,
                                     check_splits_not_empty, cold_start, find_data_file,
                                     integer_ids, require_columns, warn_cold_start)

PathLike = Union[str, Path]
FEATURE_GLOB = "*_feat.npy"


def _edges(user: np.ndarray, item: np.ndarray) -> torch.Tensor:
    order = np.lexsort((item, user))
    return torch.from_numpy(np.stack([user[order], item[order]])).long()


def dataset_from_labels(
    user: np.ndarray,
    item: np.ndarray,
    label: np.ndarray,
    num_users: int,
    num_items: int,
    features: Optional[Dict[str, np.ndarray]] = None,
    name: Optional[str] = None,
    source: Optional[str] = None,
    report_cold_start: bool = True,
) -> RecDataset:
    r"""Builds a :class:`~stair_pyg.data.hetero.RecDataset` from per-row ids and split labels.
    Each split is sorted by ``(user, item)``; only train enters the graph. Raises when a split is
    empty; warns (and keeps them) when valid/test hold users or items that train lacks.

    Args:
        user (np.ndarray): User id per interaction, in ``0..num_users-1``.
        item (np.ndarray): Item id per interaction, in ``0..num_items-1``.
        label (np.ndarray): ``x_label`` per interaction (0 train, 1 valid, 2 test).
        num_users (int): Number of users.
        num_items (int): Number of items.
        features (dict, optional): Modality to checked ``[num_items, dim]`` features.
        name (str, optional): Dataset name (``data.name``).
        source (str, optional): Input name for error and warning messages.
        report_cold_start (bool): Warn about cold-start users/items. (default: :obj:`True`)
    """
    check_splits_not_empty(label, file=source)
    parts = [_edges(user[label == k], item[label == k]) for k in (TRAIN, VALID, TEST)]
    splits = Splits(*parts)
    feats = {m: torch.from_numpy(np.ascontiguousarray(x)) for m, x in (features or {}).items()}
    data = build_hetero_data(num_users, num_items, splits.train, features=feats, name=name)
    if report_cold_start:
        warn_cold_start(cold_start(*splits), source)
    return RecDataset(data, splits)


def header_problem(first: str, need_label: bool = True) -> Optional[str]:
    r"""Why :obj:`first` (a file's first line) is not an MMRec ``.inter`` header, or
    :obj:`None`: empty, not tab-separated, or (with :obj:`need_label`) without ``x_label``."""
    if not first.strip():
        return "the file is empty" if first == "" else "the first line is empty"
    fields = [f.strip() for f in first.split("\t")]
    if "x_label" in fields or not need_label and len(fields) > 1:
        return None
    for sep in (",", ";", "|", " "):
        if "x_label" in [f.strip() for f in first.split(sep)]:
            return (f"the header {shown(first, 60)} is separated by {sep!r}; MMRec .inter files "
                    f"are tab-separated")
    return (f"the header has no 'x_label' column (MMRec .inter files are tab-separated "
            f"'userID itemID [rating timestamp] x_label'); it has "
            f"{[f[:30] for f in fields[:12]]}")


def load_mmrec(path: PathLike, name: Optional[str] = None) -> RecDataset:
    r"""Loads an MMRec-format dataset folder.

    The interactions file is ``<name>.inter`` (``name`` defaults to the folder's name, or the only
    ``*.inter`` file there); every ``<modality>_feat.npy`` beside it becomes
    ``data["item"].<modality>_feat``. ``num_users`` / ``num_items`` are the largest id plus one.

    Checks: a UTF-8 (BOM accepted), tab-separated file with the columns ``userID``, ``itemID``,
    ``x_label``; integer, non-negative ids, contiguous from 0 as MMRec defines them: every
    ``userID`` below the number of interaction rows, every ``itemID`` below the larger of that
    and the feature files' rows (so no id can make the loader allocate more than the input
    holds); labels in {0, 1, 2}; no split empty for every user; features with one finite row
    per item that do not all look the same (see
    :func:`~stair_pyg.data.validate.check_features`). Duplicated ``(userID, itemID)`` rows are
    merged (first row kept) with a :class:`~stair_pyg.data.errors.DataWarning`; cold-start
    users/items in valid/test are kept with one.

    Args:
        path (str or Path): The dataset folder, or its ``.inter`` file.
        name (str, optional): Dataset name; selects ``<name>.inter``. (default: :obj:`None`)
    """
    path = Path(path)
    inter = find_data_file(path, name, ".inter")
    folder = inter.parent
    name = name or inter.stem
    text = read_text(inter)
    problem = header_problem(text.split("\n", 1)[0].rstrip("\r"), need_label=False)
    if problem:
        raise DataError(f"not an MMRec .inter file: {problem}", file=inter, line=1)
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", low_memory=False)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse as tab-separated values: {e}", file=inter) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=inter) from None
    del text
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, ["userID", "itemID", "x_label"], inter)
    user = integer_ids(df["userID"], "userID", inter)
    item = integer_ids(df["itemID"], "itemID", inter)
    label = integer_ids(df["x_label"], "x_label", inter, non_negative=False)
    check_labels(label, inter)
    if user.shape[0] == 0:
        raise DataError("no interactions (only a header)", file=inter)
    raw = {f: load_npy(f) for f in sorted(folder.glob(FEATURE_GLOB))}
    rows = {f: x.shape[0] for f, x in raw.items() if x.ndim == 2}
    check_id_bound(user, user.shape[0], "userID", inter, "the number of interaction rows")
    item_bound = max([user.shape[0], *rows.values()])
    check_id_bound(item, item_bound, "itemID", inter,
                   "the number of interaction rows or feature rows, whichever is larger")
    keep = deduplicate(user, item, source=str(inter))
    if not keep.all():
        user, item, label = user[keep], item[keep], label[keep]
    num_users, num_items = int(user.max()) + 1, int(item.max()) + 1
    if rows and min(rows.values()) > num_items:
        # Trailing items with features but no interaction at all still belong to the catalogue.
        if len(set(rows.values())) > 1:
            raise DataError(f"feature files disagree on the number of items: "
                            f"{ {f.name: n for f, n in rows.items()} }", file=folder)
        extra = min(rows.values()) - num_items
        warn_data(f"{folder}: {extra} item(s) have features but no interaction", stacklevel=2)
        num_items += extra
    features = {f.name[: -len("_feat.npy")]: check_features(x, num_items, f, f.name[:-9])
                for f, x in raw.items()}
    return dataset_from_labels(user, item, label, num_users, num_items, features, name=name,
                               source=str(inter))
