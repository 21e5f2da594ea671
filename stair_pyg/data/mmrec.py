r"""Loader for the MMRec format (https://github.com/enoche/MMRec), the format of
``shared/data/*``:

* ``<name>.inter``: tab-separated, header ``userID itemID [rating timestamp] x_label``, ids
  contiguous and 0-based, ``x_label`` 0 / 1 / 2 = train / valid / test;
* ``<modality>_feat.npy``: one float matrix ``[num_items, dim]`` per modality, row ``i`` = item
  ``i`` (``text_feat.npy`` becomes ``data["item"].text_feat``, ``image_feat.npy`` ``image_feat``).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import pandas as pd
import torch

from stair_pyg.data.errors import DataError
from stair_pyg.data.hetero import RecDataset, Splits, build_hetero_data
from stair_pyg.data.splits import TEST, TRAIN, VALID, deduplicate
from stair_pyg.data.validate import (check_features, check_labels, check_splits_not_empty,
                                     cold_start, find_data_file, integer_ids, require_columns,
                                     warn_cold_start)

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


def load_mmrec(path: PathLike, name: Optional[str] = None) -> RecDataset:
    r"""Loads an MMRec-format dataset folder.

    The interactions file is ``<name>.inter`` (``name`` defaults to the folder's name, or the only
    ``*.inter`` file there); every ``<modality>_feat.npy`` beside it becomes
    ``data["item"].<modality>_feat``. ``num_users`` / ``num_items`` are the largest id plus one.

    Checks: required columns ``userID``, ``itemID``, ``x_label``; integer, non-negative ids;
    labels in {0, 1, 2}; no split empty for every user; features with one finite row per item.
    Duplicated ``(userID, itemID)`` rows are merged (first row kept) with a warning; cold-start
    users/items in valid/test are kept with a warning.

    Args:
        path (str or Path): The dataset folder, or its ``.inter`` file.
        name (str, optional): Dataset name; selects ``<name>.inter``. (default: :obj:`None`)
    """
    path = Path(path)
    inter = find_data_file(path, name, ".inter")
    folder = inter.parent
    name = name or inter.stem
    try:
        df = pd.read_csv(inter, sep="\t", low_memory=False)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse as tab-separated values: {e}", file=inter) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=inter) from None
    require_columns(df.columns, ["userID", "itemID", "x_label"], inter)
    user = integer_ids(df["userID"], "userID", inter)
    item = integer_ids(df["itemID"], "itemID", inter)
    label = integer_ids(df["x_label"], "x_label", inter, non_negative=False)
    check_labels(label, inter)
    if user.shape[0] == 0:
        raise DataError("no interactions", file=inter)
    keep = deduplicate(user, item, source=str(inter))
    if not keep.all():
        user, item, label = user[keep], item[keep], label[keep]
    num_users, num_items = int(user.max()) + 1, int(item.max()) + 1
    raw = {}
    for f in sorted(folder.glob(FEATURE_GLOB)):
        try:
            raw[f] = np.load(f, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"not a numpy array file: {e}", file=f) from None
    rows = {f: x.shape[0] for f, x in raw.items() if x.ndim == 2}
    if rows and min(rows.values()) > num_items:
        # Trailing items with features but no interaction at all still belong to the catalogue.
        if len(set(rows.values())) > 1:
            raise DataError(f"feature files disagree on the number of items: "
                            f"{ {f.name: n for f, n in rows.items()} }", file=folder)
        extra = min(rows.values()) - num_items
        warnings.warn(f"{folder}: {extra} item(s) have features but no interaction", stacklevel=2)
        num_items += extra
    features = {f.name[: -len("_feat.npy")]: check_features(x, num_items, f, f.name[:-9])
                for f, x in raw.items()}
    return dataset_from_labels(user, item, label, num_users, num_items, features, name=name,
                               source=str(inter))
