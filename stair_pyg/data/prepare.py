r"""Raw interactions (+ raw item text) into an MMRec-format folder, the format
:func:`~stair_pyg.data.mmrec.load_mmrec` reads (``stair-pyg prepare``).

Written files:

* ``<name>.inter``: ``userID itemID rating timestamp x_label``, rows sorted by
  ``(userID, timestamp, itemID)`` (``rating`` = 1 and ``timestamp`` = 0 when the input has none);
* ``u_id_mapping.csv`` / ``i_id_mapping.csv``: tab-separated ``user_id userID`` /
  ``item_id itemID`` (raw id to contiguous id);
* ``item_text.tsv``: ``itemID text`` in itemID order (whitespace normalised), and
  ``text_feat.npy``: ``float32 [num_items, dim]`` sentence-transformers embeddings of it, when item
  text is given.

The protocol is the one of ``shared/data/PROVENANCE.md``: duplicates dropped keeping the first in
``(user, timestamp)`` order, users with fewer than ``min_user_interactions`` (3) items dropped,
ids = rank of the raw id, per-user random 8:1:1 split with ``seed`` (999). The input files are
only read; an existing output is replaced only with ``overwrite=True``, and never when an output
path is an input file.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.csv import ALIASES, process_interactions, read_table
from stair_pyg.data.errors import DataError
from stair_pyg.data.features import encode_texts, normalize_text

PathLike = Union[str, Path]
MAPPING_FILES = ("u_id_mapping.csv", "i_id_mapping.csv")


def read_item_text(path: PathLike) -> Dict[str, str]:
    r"""Reads ``item<TAB>text`` lines into ``{raw item id: normalised text}``. A first line whose
    id field is a column name (``item``, ``item_id``, ``itemID``, ``asin``, RecBole's
    ``item_id:token``, ...) is a header. Text may itself contain tabs (everything after the first
    tab is text). Repeated ids keep their first text, with a warning."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=path)
    texts: Dict[str, str] = {}
    repeated = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, tab, text = line.partition("\t")
            key = key.strip()
            if number == 1 and key.split(":")[0].lower() in ALIASES["item"] + ("id",):
                continue
            if not tab:
                raise DataError("expected 'item<TAB>text' (no tab found)", file=path, line=number)
            if not key:
                raise DataError("empty item id", file=path, line=number)
            if key in texts:
                repeated += 1
                continue
            texts[key] = normalize_text(text)
    if repeated:
        warnings.warn(f"{path}: {repeated} repeated item id(s); the first text of each is kept",
                      stacklevel=2)
    return texts


def _as_written(values: np.ndarray) -> np.ndarray:
    r"""Integral floats are written as integers (``5``, not ``5.0``)."""
    if np.all(values == np.floor(values)):
        return values.astype(np.int64)
    return values


def prepare_dataset(
    interactions: PathLike,
    out_dir: PathLike,
    item_text: Optional[PathLike] = None,
    name: Optional[str] = None,
    split: str = "random",
    seed: int = 999,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    min_user_interactions: int = 3,
    min_item_interactions: int = 0,
    rating_threshold: Optional[float] = None,
    sep: Optional[str] = None,
    header: Union[str, bool] = "infer",
    user_col: Optional[str] = None,
    item_col: Optional[str] = None,
    rating_col: Optional[str] = None,
    timestamp_col: Optional[str] = None,
    label_col: Optional[str] = None,
    model: Optional[PathLike] = None,
    batch_size: int = 128,
    device: str = "cpu",
    missing_text: str = "error",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    r"""Writes an MMRec-format dataset folder from raw files.

    Args:
        interactions (str or Path): CSV / TSV of ``user, item[, rating, timestamp]`` (read by
            :func:`~stair_pyg.data.csv.read_table`; RecBole ``.inter`` headers work too).
        out_dir (str or Path): Output folder (created).
        item_text (str or Path, optional): ``item<TAB>text`` file keyed by the same raw item ids.
            (default: :obj:`None`, no text features)
        name (str, optional): Dataset name; ``out_dir``'s name by default. (default: :obj:`None`)
        split (str): ``"random"``, ``"loo"`` or ``"column"``. (default: ``"random"``)
        seed (int): Seed of the random split; ``999`` is the shared data's. (default: ``999``)
        ratios (sequence of float): Random split proportions. (default: ``(0.8, 0.1, 0.1)``)
        min_user_interactions (int): Drop users with fewer distinct items (``0`` disables; 3 is
            the least for which every user gets train, valid and test). (default: ``3``)
        min_item_interactions (int): k-core bound for items. (default: ``0``)
        rating_threshold (float, optional): Keep ``rating >= threshold``. (default: :obj:`None`)
        sep, header, user_col, item_col, rating_col, timestamp_col, label_col: How to read the
            interactions, as in :func:`~stair_pyg.data.csv.load_csv`.
        model (str or Path, optional): Local sentence-transformers model folder; the offline
            all-MiniLM-L6-v2 package when :obj:`None`. (default: :obj:`None`)
        batch_size (int): Encoder batch size. (default: ``128``)
        device (str): Encoder device. (default: ``"cpu"``)
        missing_text (str): ``"error"`` or ``"empty"`` (encode an empty text) for items that have
            no text. (default: ``"error"``)
        overwrite (bool): Replace the files of an existing, non-empty output folder.
            (default: :obj:`False`)
        progress (bool): Progress bar while encoding. (default: :obj:`True`)

    Returns:
        The output folder.
    """
    interactions = Path(interactions)
    out_dir = Path(out_dir)
    name = name or out_dir.resolve().name
    if missing_text not in ("error", "empty"):
        raise ValueError(f"missing_text must be 'error' or 'empty', got {missing_text!r}")
    outputs = [out_dir / f"{name}.inter", *(out_dir / f for f in MAPPING_FILES)]
    if item_text is not None:
        outputs += [out_dir / "item_text.tsv", out_dir / "text_feat.npy"]
    inputs = {Path(p).resolve() for p in (interactions, item_text) if p is not None}
    for out in outputs:
        if out.resolve() in inputs:
            raise DataError(f"refusing to write over the input file {str(out)!r}; choose another "
                            f"output folder", file=out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError("output exists and is not a folder", file=out_dir)
        if any(out_dir.iterdir()) and not overwrite:
            raise FileExistsError(f"output folder {str(out_dir)!r} exists and is not empty; pass "
                                  f"overwrite=True (--overwrite) to replace its dataset files")

    df = read_table(interactions, sep=sep, header=header, user_col=user_col, item_col=item_col,
                    rating_col=rating_col, timestamp_col=timestamp_col, label_col=label_col)
    x = process_interactions(df, interactions, split=split, seed=seed, ratios=ratios,
                             rating_threshold=rating_threshold,
                             min_user_interactions=min_user_interactions,
                             min_item_interactions=min_item_interactions)
    texts = None
    if item_text is not None:
        table = read_item_text(item_text)
        keys = [str(i) for i in x.item_ids.tolist()]
        missing = [k for k in keys if k not in table]
        if missing and missing_text == "error":
            raise DataError(f"{len(missing)} item(s) of the interactions have no text (first: "
                            f"{missing[:5]}); pass missing_text='empty' to encode empty texts",
                            file=item_text)
        if missing:
            warnings.warn(f"{item_text}: {len(missing)} item(s) have no text; encoded as ''",
                          stacklevel=2)
        texts = [table.get(k, "") for k in keys]
        features = encode_texts(texts, model=model, batch_size=batch_size, device=device,
                                progress=progress)

    n = x.user.shape[0]
    rating = np.ones(n, dtype=np.int64) if x.rating is None else _as_written(x.rating)
    timestamp = np.zeros(n, dtype=np.int64) if x.timestamp is None else _as_written(x.timestamp)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"userID": x.user, "itemID": x.item, "rating": rating, "timestamp": timestamp,
                  "x_label": x.label}).to_csv(outputs[0], sep="\t", index=False)
    pd.DataFrame({"user_id": x.user_ids, "userID": np.arange(len(x.user_ids))}).to_csv(
        outputs[1], sep="\t", index=False)
    pd.DataFrame({"item_id": x.item_ids, "itemID": np.arange(len(x.item_ids))}).to_csv(
        outputs[2], sep="\t", index=False)
    if texts is not None:
        with open(out_dir / "item_text.tsv", "w", encoding="utf-8") as f:
            f.write("itemID\ttext\n")
            f.writelines(f"{i}\t{t}\n" for i, t in enumerate(texts))
        np.save(out_dir / "text_feat.npy", features)
    return out_dir
