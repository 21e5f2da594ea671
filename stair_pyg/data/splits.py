r"""Interaction preprocessing shared by every loader: id ranking, de-duplication, k-core filtering
and the three split protocols.

All functions work on numpy arrays, one entry per interaction (row), and are vectorised over rows;
the per-user random split loops over users only (one permutation each), as the MMRec protocol does.

Split labels follow MMRec's ``x_label``: :data:`TRAIN` ``= 0``, :data:`VALID` ``= 1``,
:data:`TEST` ``= 2``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from stair_pyg.data.errors import DataError, warn_data

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")


def rank_ids(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    r"""Maps raw ids to contiguous ids ``0..n-1`` by their rank among the distinct raw ids
    (ascending: numeric order for integer ids, lexicographic order for strings).

    Returns:
        ``(ids, uniques)`` with ``uniques[ids] == raw``.
    """
    uniques, ids = np.unique(np.asarray(raw), return_inverse=True)
    return ids.reshape(-1).astype(np.int64), uniques


def deduplicate(
    user: np.ndarray,
    item: np.ndarray,
    timestamp: Optional[np.ndarray] = None,
    source: Optional[str] = None,
    warn: bool = True,
) -> np.ndarray:
    r"""Finds repeated ``(user, item)`` pairs and keeps the first occurrence in
    ``(user, timestamp)`` order (file order breaks ties; without timestamps, file order).

    Args:
        user (np.ndarray): Integer user ids per row.
        item (np.ndarray): Integer item ids per row.
        timestamp (np.ndarray, optional): Timestamps per row. (default: :obj:`None`)
        source (str, optional): Name of the input, used in the warning. (default: :obj:`None`)
        warn (bool): Emit a :class:`~stair_pyg.data.errors.DataWarning` when duplicates are
            merged. (default: :obj:`True`)

    Returns:
        A boolean mask over rows, :obj:`True` for the rows kept.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    n = user.shape[0]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if timestamp is None:
        order = np.argsort(user, kind="stable")
    else:
        order = np.lexsort((np.arange(n), np.asarray(timestamp), user))
    key = user[order] * (int(item.max()) + 1) + item[order]
    _, first = np.unique(key, return_index=True)
    keep[order[first]] = True
    dropped = n - int(keep.sum())
    if dropped and warn:
        where = f"{source}: " if source else ""
        warn_data(f"{where}merged {dropped} duplicated (user, item) interaction(s), keeping "
                  f"the first occurrence in (user, timestamp) order", stacklevel=2)
    return keep


def k_core(
    user: np.ndarray,
    item: np.ndarray,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
) -> np.ndarray:
    r"""Iterative k-core filtering: repeatedly drops users with fewer than
    :obj:`min_user_interactions` and items with fewer than :obj:`min_item_interactions`
    interactions until both hold. With :obj:`min_item_interactions` ``= 0`` this is a single
    user filter (the MMRec protocol's "at least 3 items per user"). Rows should be distinct pairs
    (see :func:`deduplicate`).

    Returns:
        A boolean mask over rows, :obj:`True` for the rows kept.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    keep = np.ones(user.shape[0], dtype=bool)
    if user.shape[0] == 0:
        return keep
    while True:
        changed = False
        if min_user_interactions > 1:
            count = np.bincount(user[keep], minlength=int(user.max()) + 1)
            bad = keep & (count[user] < min_user_interactions)
            if bad.any():
                keep &= ~bad
                changed = True
        if min_item_interactions > 1:
            count = np.bincount(item[keep], minlength=int(item.max()) + 1)
            bad = keep & (count[item] < min_item_interactions)
            if bad.any():
                keep &= ~bad
                changed = True
        if not changed:
            return keep


def _groups(sorted_user: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    ends = np.r_[starts[1:], sorted_user.shape[0]]
    return starts, ends


def random_split(
    user: np.ndarray,
    item: np.ndarray,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 999,
) -> np.ndarray:
    r"""Per-user random split, exactly the MMRec protocol of ``shared/data/PROVENANCE.md``.

    One :class:`numpy.random.Generator` (``PCG64(seed)``) serves the whole dataset. For each user
    in ascending id order, the user's items in ascending id order are shuffled by
    ``rng.permutation(n)``; the first ``n_train`` shuffled items are train, the next ``n_valid``
    valid, the rest test, with

    .. math::
        n_{valid} = \max(1, \mathrm{round}(r_{valid} \, n)), \quad
        n_{test} = \max(1, \mathrm{round}(r_{test} \, n)), \quad
        n_{train} = n - n_{valid} - n_{test},

    where :math:`\mathrm{round}` is Python's (half to even) on the float product and
    :math:`r` are the ratios normalised to sum to one. Users with fewer than 3 interactions cannot
    have all three parts: they are kept wholly in train and draw nothing from the generator.

    Args:
        user (np.ndarray): Integer user ids per row (distinct ``(user, item)`` pairs).
        item (np.ndarray): Integer item ids per row.
        ratios (sequence of float): Train, valid, test proportions. (default: ``(0.8, 0.1, 0.1)``)
        seed (int): Seed of the ``PCG64`` generator; ``999`` reproduces the shared ``.inter``
            files. (default: ``999``)

    Returns:
        ``x_label`` per row (``0`` train, ``1`` valid, ``2`` test).
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (train, valid, test), "
                         f"got {tuple(ratios)}")
    total = float(sum(ratios))
    r_valid, r_test = ratios[1] / total, ratios[2] / total
    labels = np.full(user.shape[0], TRAIN, dtype=np.int64)
    if user.shape[0] == 0:
        return labels
    order = np.lexsort((item, user))
    starts, ends = _groups(user[order])
    rng = np.random.Generator(np.random.PCG64(seed))
    for start, end in zip(starts.tolist(), ends.tolist()):
        n = end - start
        if n < 3:
            continue
        perm = rng.permutation(n)
        n_valid = max(1, round(r_valid * n))
        n_test = max(1, round(r_test * n))
        n_train = n - n_valid - n_test
        rows = order[start:end][perm]
        labels[rows[n_train:n_train + n_valid]] = VALID
        labels[rows[n_train + n_valid:]] = TEST
    return labels


def leave_one_out_split(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    r"""Per-user leave-one-out by time: each user's last interaction (largest timestamp, later
    rows breaking ties) is test, the one before it valid, the rest train. Users with two
    interactions get one train and one test; users with one interaction only train.

    Returns:
        ``x_label`` per row (``0`` train, ``1`` valid, ``2`` test).
    """
    user = np.asarray(user, dtype=np.int64)
    n = user.shape[0]
    labels = np.full(n, TRAIN, dtype=np.int64)
    if n == 0:
        return labels
    order = np.lexsort((np.arange(n), np.asarray(timestamp), user))
    starts, ends = _groups(user[order])
    sizes = ends - starts
    from_end = np.repeat(ends, sizes) - 1 - np.arange(n)  # 0 for each user's last row
    size = np.repeat(sizes, sizes)
    lab = np.full(n, TRAIN, dtype=np.int64)
    lab[(from_end == 0) & (size >= 2)] = TEST
    lab[(from_end == 1) & (size >= 3)] = VALID
    labels[order] = lab
    return labels


def cold_item_labels(item: np.ndarray, label: np.ndarray, num_items: int, fraction: float,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    r"""The cold-item protocol: a fraction of the items is held out entirely.

    Of the items with at least one training interaction, :math:`\mathrm{round}(p \cdot n)` are
    drawn uniformly (:obj:`fraction` :math:`p`, a generator seeded with :obj:`seed`); every
    interaction of a drawn item, training and validation ones included, is relabelled
    :data:`TEST`. Those items have no training or validation interaction left: a model never
    sees them interact, and evaluation measures them as the ``cold/...`` figures (ranked
    among all items).

    Returns:
        ``(new_label, cold)``: the labels, and the ascending ids of the held-out items.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the cold-item fraction must lie in [0, 1), got {fraction}")
    eligible = np.unique(item[label == TRAIN])
    count = int(round(fraction * eligible.size))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=count, replace=False)) if count else \
        np.empty(0, dtype=np.int64)
    mask = np.zeros(num_items, dtype=bool)
    mask[cold] = True
    out = label.copy()
    out[mask[item]] = TEST
    return out, cold.astype(np.int64)


def hold_out_items(dataset, cold_items: float = 0.0, cold_items_seed: int = 0):
    r"""A :class:`~stair_pyg.data.hetero.RecDataset` with the cold-item protocol of
    :func:`cold_item_labels` applied (``dataset.cold_items`` and ``dataset.cold_items_seed``
    of a config, for any format): the held-out items' interactions leave train and valid for
    test, their features stay. :obj:`cold_items` :math:`= 0` returns :obj:`dataset` as it is.
    The held-out ids are stored as ``data["item"].cold_items``."""
    if not isinstance(cold_items, (int, float)) or isinstance(cold_items, bool) or \
            not 0.0 <= float(cold_items) < 1.0:
        raise DataError(f"'cold_items' must be a fraction in [0, 1), got {cold_items!r}")
    if not isinstance(cold_items_seed, int) or isinstance(cold_items_seed, bool):
        raise DataError(f"'cold_items_seed' must be an integer, got {cold_items_seed!r}")
    if cold_items == 0:
        return dataset
    import torch

    from stair_pyg.data.hetero import RecDataset, Splits, build_hetero_data, modality_features

    data, splits = dataset
    edges = torch.cat(list(splits), dim=1).numpy()
    label = np.concatenate([np.full(s.size(1), k, dtype=np.int64)
                            for k, s in zip((TRAIN, VALID, TEST), splits)])
    num_users, num_items = int(data["user"].num_nodes), int(data["item"].num_nodes)
    label, cold = cold_item_labels(edges[1], label, num_items, float(cold_items),
                                   cold_items_seed)
    parts = []
    for k in (TRAIN, VALID, TEST):
        pairs = edges[:, label == k]
        order = np.lexsort((pairs[1], pairs[0]))
        parts.append(torch.from_numpy(np.ascontiguousarray(pairs[:, order])))
    new = build_hetero_data(num_users, num_items, parts[0], features=modality_features(data),
                            name=getattr(data, "name", None))
    new["item"].cold_items = torch.from_numpy(cold)
    return RecDataset(new, Splits(*parts))
