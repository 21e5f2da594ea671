r"""Features of new items, read for ``add_items`` (``stair-pyg add-items --features DIR``).

A folder holds one ``<modality>_feat.npy`` per modality, ``[n, f_m]``, row :math:`r` = the
:math:`r`-th new item, in the layout of :mod:`stair_pyg.data.mmrec`, and optionally
``item_ids.txt``: the new items' raw ids, one a line, in the same row order (without it the raw
ids are the row numbers ``0..n-1``). New items get the ids :math:`I + r` of a model with
:math:`I` items, in row order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from stair_pyg.data.errors import DataError
from stair_pyg.data.files import PathLike, load_npy, read_text
from stair_pyg.data.validate import check_features

#: The optional file of raw ids in a new-items folder.
IDS_FILE = "item_ids.txt"


def load_new_item_features(folder: PathLike, dims: Optional[Mapping[str, int]] = None
                           ) -> Tuple[Dict[str, Tensor], List[str]]:
    r"""Reads and validates the features of new items from :obj:`folder`.

    Every file is checked like training features (:func:`~stair_pyg.data.validate.check_features`:
    a real 2-d ``.npy`` with at least one column and no NaN/Inf), all files must have the same
    number of rows, and with :obj:`dims` (``{modality: columns}`` at training time) the folder
    must hold exactly those modalities with those columns. ``item_ids.txt``, if present, must
    have one non-empty, distinct id per row.

    Returns:
        ``({modality: float32 [n, f_m]}, raw_ids)``, modalities in the order of :obj:`dims`.

    Raises:
        DataError: Naming the file and what is wrong.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a folder of <modality>_feat.npy files", file=folder)
    files = {f.name[: -len("_feat.npy")]: f for f in sorted(folder.glob("*_feat.npy"))}
    if not files:
        raise DataError("no <modality>_feat.npy file: the new items need their features",
                        file=folder)
    if dims is not None:
        missing = [m for m in dims if m not in files]
        extra = [m for m in files if m not in dims]
        if missing or extra:
            raise DataError(f"the model was trained on modalities {list(dims)}; missing "
                            f"{[m + '_feat.npy' for m in missing]}, unknown "
                            f"{[m + '_feat.npy' for m in extra]}", file=folder)
        files = {m: files[m] for m in dims}
    out: Dict[str, Tensor] = {}
    rows = None
    for m, f in files.items():
        x = load_npy(f)
        n = x.shape[0] if x.ndim == 2 else 0
        if x.ndim == 2 and n == 0:
            raise DataError(f"'{m}' features have no rows", file=f)
        x = check_features(x, n if x.ndim == 2 else -1, f, m, distinct=False)
        if dims is not None and x.shape[1] != int(dims[m]):
            raise DataError(f"'{m}' features have {x.shape[1]} columns; the model was trained "
                            f"with {int(dims[m])}", file=f)
        if rows is not None and x.shape[0] != rows:
            raise DataError(f"'{m}' features have {x.shape[0]} rows, the other modalities "
                            f"{rows}: every file needs one row per new item", file=f)
        rows = x.shape[0]
        out[m] = torch.from_numpy(x)
    assert rows is not None
    ids_file = folder / IDS_FILE
    if ids_file.exists():
        lines = read_text(ids_file).splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        ids = [line.strip() for line in lines]
        if len(ids) != rows:
            raise DataError(f"{len(ids)} ids for {rows} feature rows (one id a line, in row "
                            f"order)", file=ids_file)
        for i, raw in enumerate(ids):
            if not raw:
                raise DataError("empty id", file=ids_file, line=i + 1)
        seen: Dict[str, int] = {}
        for i, raw in enumerate(ids):
            if raw in seen:
                raise DataError(f"id '{raw[:40]}' repeats line {seen[raw] + 1}", file=ids_file,
                                line=i + 1)
            seen[raw] = i
    else:
        ids = [str(i) for i in range(rows)]
    return out, ids


__all__ = ["load_new_item_features", "IDS_FILE"]
