r"""Loader for RecBole atomic files (https://recbole.io/docs/user_guide/data/atomic_files.html):
``<name>.inter`` (tab-separated, header fields ``name:type`` with type ``token``, ``token_seq``,
``float`` or ``float_seq``) and an optional ``<name>.item`` whose fields can become item
features. The interactions go through the pipeline of :mod:`stair_pyg.data.csv` (rating
threshold, de-duplication, k-core, id ranking, split).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.csv import ENCODING_OPTION, process_interactions, read_table
from stair_pyg.data.errors import DataError, shown
from stair_pyg.data.files import read_text
from stair_pyg.data.hetero import RecDataset
from stair_pyg.data.options import PIPELINE_FIELDS, InteractionOptions, takes_options
from stair_pyg.data.validate import check_features, find_data_file

PathLike = Union[str, Path]
TYPES = ("token", "token_seq", "float", "float_seq")


def header_problem(first: str) -> Optional[str]:
    r"""Why :obj:`first` (a file's first line) is not a RecBole header, or :obj:`None`."""
    if not first.strip():
        return "the file is empty" if first == "" else "the first line is empty"
    if "\t" not in first and any(s in first for s in (",", ";", "|")) and ":" in first:
        return (f"the header {shown(first, 60)} is not tab-separated; RecBole atomic files "
                f"separate fields with tabs")
    for col in first.split("\t"):
        name, _, kind = col.partition(":")
        if kind not in TYPES:
            return (f"header field {shown(col)} is not 'name:type' with type in {TYPES} "
                    f"(e.g. 'user_id:token')")
    return None


def _header(path: Path, text: str) -> Dict[str, str]:
    first = text.split("\n", 1)[0].rstrip("\r")
    problem = header_problem(first)
    if problem:
        raise DataError(f"{problem}; RecBole atomic files type every field (a plain table "
                        f"without types is read by the csv format)", file=path, line=1)
    fields = {}
    for col in first.split("\t"):
        name, _, kind = col.partition(":")
        if name in fields:
            raise DataError(f"header field {name!r} is repeated", file=path, line=1)
        fields[name] = kind
    return fields


def _item_features(item_file: Path, fields: Sequence[str], item_ids: np.ndarray,
                   id_field: str, encoding: str) -> Dict[str, np.ndarray]:
    text = read_text(item_file, encoding, ENCODING_OPTION)
    types = _header(item_file, text)
    if id_field not in types:
        raise DataError(f"missing column '{id_field}'; the header has {list(types)}",
                        file=item_file, line=1)
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False,
                         quoting=3)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse as tab-separated values: {e}", file=item_file) from None
    df.columns = list(types)
    df.index = np.arange(2, 2 + len(df))
    raw = df[id_field].str.strip()
    if np.issubdtype(item_ids.dtype, np.integer):
        raw = pd.to_numeric(raw, errors="coerce")
    pos = pd.Index(raw).get_indexer(pd.Index(item_ids))
    if (pos < 0).any():
        missing = item_ids[pos < 0]
        raise DataError(f"{int((pos < 0).sum())} item(s) of the interactions have no row here "
                        f"(first: {shown(missing[0])}); feature rows fewer than items",
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


@takes_options(("encoding",) + PIPELINE_FIELDS)
def load_recbole(
    path: PathLike,
    name: Optional[str] = None,
    *,
    item_features: Optional[Sequence[str]] = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    timestamp_field: str = "timestamp",
    label_field: Optional[str] = None,
    options: Optional[InteractionOptions] = None,
) -> RecDataset:
    r"""Loads RecBole atomic files.

    ``item_features`` names ``.item`` fields to turn into item features
    ``data["item"].<field>_feat``: ``float`` / ``float_seq`` fields as dense vectors,
    ``token`` / ``token_seq`` fields as multi-hot vectors over their sorted vocabulary (e.g.
    ``["class"]`` gives ml-100k's genres). Every item of the interactions needs a ``.item`` row.
    User and item ids are tokens: they are remapped to contiguous ids (numeric order when every
    id is an integer within ``int64``, text order otherwise), so any id works.

    Args:
        path (str or Path): Folder with ``<name>.inter`` (and ``<name>.item``), or the ``.inter``.
        name (str, optional): Dataset name (the file stem). (default: :obj:`None`)
        item_features (sequence of str, optional): ``.item`` fields to load as features.
            (default: :obj:`None`)
        user_field, item_field, rating_field, timestamp_field (str): Field names.
            (defaults: ``"user_id"``, ``"item_id"``, ``"rating"``, ``"timestamp"``)
        label_field (str, optional): Field holding 0/1/2 split labels, for
            ``split="column"``. (default: :obj:`None`)
        **options: ``encoding`` and the processing fields of
            :class:`~stair_pyg.data.options.InteractionOptions` (``split``, ``seed``,
            ``ratios``, ``rating_threshold``, ``min_user_interactions``,
            ``min_item_interactions``) as keywords, or ``options=InteractionOptions(...)``.
    """
    from stair_pyg.data.mmrec import dataset_from_labels

    assert options is not None
    inter = find_data_file(Path(path), name, ".inter")
    types = _header(inter, read_text(inter, options.encoding, ENCODING_OPTION))
    for field in (user_field, item_field):
        if field not in types:
            raise DataError(f"missing column '{field}'; the header has "
                            f"{[f'{k}:{v}' for k, v in types.items()]}", file=inter, line=1)
    df = read_table(inter, encoding=options.encoding, sep="\t", header=True,
                    user_col=user_field, item_col=item_field,
                    rating_col=rating_field if rating_field in types else None,
                    timestamp_col=timestamp_field if timestamp_field in types else None,
                    label_col=label_field)
    x = process_interactions(df, inter, options=options)
    features = {}
    if item_features:
        item_file = inter.with_suffix(".item")
        if not item_file.exists() and not item_file.is_symlink():
            raise DataError(f"item_features={list(item_features)} given but there is no "
                            f"'{item_file.name}'", file=inter.parent)
        features = _item_features(item_file, item_features, x.item_ids, item_field,
                                  options.encoding)
    return dataset_from_labels(x.user, x.item, x.label, len(x.user_ids), len(x.item_ids),
                               features, name=name or inter.stem, source=str(inter))
