r"""Loader for RecBole atomic files (https://recbole.io/docs/user_guide/data/atomic_files.html):
``<name>.inter`` (tab-separated, header fields ``name:type`` with type ``token``, ``token_seq``,
``float`` or ``float_seq``) and an optional ``<name>.item`` whose fields can become item
features. The interactions go through the pipeline of :mod:`stair_pyg.data.csv` (rating
threshold, de-duplication, k-core, id ranking, split).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.csv import process_interactions, read_table
from stair_pyg.data.errors import DataError
from stair_pyg.data.hetero import RecDataset
from stair_pyg.data.validate import check_features, find_data_file

PathLike = Union[str, Path]
TYPES = ("token", "token_seq", "float", "float_seq")


def _header(path: Path) -> Dict[str, str]:
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\r\n")
    fields = {}
    for col in first.split("\t"):
        name, _, kind = col.partition(":")
        if kind not in TYPES:
            raise DataError(f"header field {col!r} is not 'name:type' with type in {TYPES}",
                            file=path, line=1)
        fields[name] = kind
    return fields


def _item_features(item_file: Path, fields: Sequence[str], item_ids: np.ndarray,
                   id_field: str) -> Dict[str, np.ndarray]:
    types = _header(item_file)
    if id_field not in types:
        raise DataError(f"missing column '{id_field}'; the header has {list(types)}",
                        file=item_file, line=1)
    df = pd.read_csv(item_file, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = list(types)
    df.index = np.arange(2, 2 + len(df))
    raw = df[id_field].str.strip()
    if np.issubdtype(item_ids.dtype, np.integer):
        raw = pd.to_numeric(raw, errors="coerce")
    pos = pd.Index(raw).get_indexer(pd.Index(item_ids))
    if (pos < 0).any():
        missing = item_ids[pos < 0]
        raise DataError(f"{int((pos < 0).sum())} item(s) of the interactions have no row here "
                        f"(first: {missing[0]!r}); feature rows fewer than items",
                        file=item_file)
    out = {}
    for field in fields:
        if field not in types:
            raise DataError(f"no field {field!r}; the header has {list(types)}", file=item_file,
                            line=1)
        col = df[field].iloc[pos]
        kind = types[field]
        if kind in ("float", "float_seq"):
            parts = col.str.split().tolist()
            lengths = {len(p) for p in parts}
            if len(lengths) != 1:
                raise DataError(f"field {field!r}: rows have different lengths {sorted(lengths)}",
                                file=item_file)
            try:
                x = np.asarray(parts, dtype=np.float32).reshape(len(parts), -1)
            except ValueError as e:
                raise DataError(f"field {field!r}: {e}", file=item_file) from None
        else:  # token / token_seq -> multi-hot over the sorted vocabulary
            tokens = col.str.split() if kind == "token_seq" else col.str.strip().map(lambda t: [t])
            vocab = sorted({t for ts in tokens for t in ts})
            index = {t: j for j, t in enumerate(vocab)}
            x = np.zeros((len(col), len(vocab)), dtype=np.float32)
            r = np.repeat(np.arange(len(col)), tokens.map(len).to_numpy())
            c = np.fromiter((index[t] for ts in tokens for t in ts), dtype=np.int64,
                            count=r.shape[0])
            x[r, c] = 1.0
        out[field] = check_features(x, len(item_ids), item_file, field)
    return out


def load_recbole(
    path: PathLike,
    name: Optional[str] = None,
    split: str = "random",
    seed: int = 999,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    rating_threshold: Optional[float] = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    item_features: Optional[Sequence[str]] = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    timestamp_field: str = "timestamp",
    label_field: Optional[str] = None,
) -> RecDataset:
    r"""Loads RecBole atomic files.

    ``item_features`` names ``.item`` fields to turn into item features
    ``data["item"].<field>_feat``: ``float`` / ``float_seq`` fields as dense vectors,
    ``token`` / ``token_seq`` fields as multi-hot vectors over their sorted vocabulary (e.g.
    ``["class"]`` gives ml-100k's genres). Every item of the interactions needs a ``.item`` row.

    Args:
        path (str or Path): Folder with ``<name>.inter`` (and ``<name>.item``), or the ``.inter``.
        name (str, optional): Dataset name (the file stem). (default: :obj:`None`)
        split (str): ``"random"``, ``"loo"`` or ``"column"`` (needs :obj:`label_field`), as in
            :func:`~stair_pyg.data.csv.load_csv`. (default: ``"random"``)
        seed (int): Seed of the random split. (default: ``999``)
        ratios (sequence of float): Random split proportions. (default: ``(0.8, 0.1, 0.1)``)
        rating_threshold (float, optional): Keep ``rating >= threshold``. (default: :obj:`None`)
        min_user_interactions (int): k-core bound for users. (default: ``0``)
        min_item_interactions (int): k-core bound for items. (default: ``0``)
        item_features (sequence of str, optional): ``.item`` fields to load as features.
            (default: :obj:`None`)
        user_field, item_field, rating_field, timestamp_field (str): Field names.
            (defaults: ``"user_id"``, ``"item_id"``, ``"rating"``, ``"timestamp"``)
        label_field (str, optional): Field holding 0/1/2 split labels. (default: :obj:`None`)
    """
    from stair_pyg.data.mmrec import dataset_from_labels

    inter = find_data_file(Path(path), name, ".inter")
    types = _header(inter)
    for field in (user_field, item_field):
        if field not in types:
            raise DataError(f"missing column '{field}'; the header has "
                            f"{[f'{k}:{v}' for k, v in types.items()]}", file=inter, line=1)
    df = read_table(inter, sep="\t", header=True, user_col=user_field, item_col=item_field,
                    rating_col=rating_field if rating_field in types else None,
                    timestamp_col=timestamp_field if timestamp_field in types else None,
                    label_col=label_field)
    x = process_interactions(df, inter, split=split, seed=seed, ratios=ratios,
                             rating_threshold=rating_threshold,
                             min_user_interactions=min_user_interactions,
                             min_item_interactions=min_item_interactions)
    features = {}
    if item_features:
        item_file = inter.with_suffix(".item")
        if not item_file.is_file():
            raise DataError(f"item_features={list(item_features)} given but there is no "
                            f"'{item_file.name}'", file=inter.parent)
        features = _item_features(item_file, item_features, x.item_ids, item_field)
    return dataset_from_labels(x.user, x.item, x.label, len(x.user_ids), len(x.item_ids),
                               features, name=name or inter.stem, source=str(inter))
