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

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import pandas as pd

from stair_pyg.data.csv import ALIASES, ENCODING_OPTION, process_interactions, read_table
from stair_pyg.data.errors import DataError, warn_data
from stair_pyg.data.files import read_text
from stair_pyg.data.options import FIELDS, InteractionOptions, takes_options
from stair_pyg.data.features import encode_texts, normalize_text

PathLike = Union[str, Path]
MAPPING_FILES = ("u_id_mapping.csv", "i_id_mapping.csv")


def read_item_text(path: PathLike, encoding: str = "utf-8") -> Dict[str, str]:
    r"""Reads ``item<TAB>text`` lines into ``{raw item id: normalised text}``. A first line whose
    id field is a column name (``item``, ``item_id``, ``itemID``, ``asin``, RecBole's
    ``item_id:token``, ...) is a header. Text may itself contain tabs (everything after the first
    tab is text). Repeated ids keep their first text, with a
    :class:`~stair_pyg.data.errors.DataWarning`. The file is read in :obj:`encoding` (a UTF-8
    byte-order mark is accepted)."""
    path = Path(path)
    content = read_text(path, encoding, ENCODING_OPTION)
    texts: Dict[str, str] = {}
    repeated = 0
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.rstrip("\r")
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
        warn_data(f"{path}: {repeated} repeated item id(s); the first text of each is kept",
                  stacklevel=2)
    return texts


def _as_written(values: np.ndarray) -> np.ndarray:
    r"""Integral floats are written as integers (``5``, not ``5.0``)."""
    if np.all(values == np.floor(values)):
        return values.astype(np.int64)
    return values


@takes_options(FIELDS, min_user_interactions=3)
def prepare_dataset(
    interactions: PathLike,
    out_dir: PathLike,
    item_text: Optional[PathLike] = None,
    name: Optional[str] = None,
    *,
    model: Optional[PathLike] = None,
    batch_size: int = 128,
    device: str = "cpu",
    missing_text: str = "error",
    overwrite: bool = False,
    progress: bool = True,
    options: Optional[InteractionOptions] = None,
) -> Path:
    r"""Writes an MMRec-format dataset folder from raw files.

    Args:
        interactions (str or Path): CSV / TSV of ``user, item[, rating, timestamp]`` (read by
            :func:`~stair_pyg.data.csv.read_table`; RecBole ``.inter`` headers work too).
        out_dir (str or Path): Output folder (created).
        item_text (str or Path, optional): ``item<TAB>text`` file keyed by the same raw item ids.
            (default: :obj:`None`, no text features)
        name (str, optional): Dataset name; ``out_dir``'s name by default. (default: :obj:`None`)
        model (str or Path, optional): Local sentence-transformers model folder; the offline
            all-MiniLM-L6-v2 package when :obj:`None`. (default: :obj:`None`)
        batch_size (int): Encoder batch size. (default: ``128``)
        device (str): Encoder device. (default: ``"cpu"``)
        missing_text (str): ``"error"`` or ``"empty"`` (encode an empty text) for items that have
            no text. (default: ``"error"``)
        overwrite (bool): Replace the files of an existing, non-empty output folder.
            (default: :obj:`False`)
        progress (bool): Progress bar while encoding. (default: :obj:`True`)
        **options: The fields of :class:`~stair_pyg.data.options.InteractionOptions` as
            keywords, or ``options=InteractionOptions(...)``: how to read the interactions
            (``encoding``, also used for ``item_text``, ``sep``, ``header``, ``*_col``) and
            process them (``split``, ``seed`` (``999``, the shared data's), ``ratios``,
            ``rating_threshold``, ``min_item_interactions``, and ``min_user_interactions``,
            which defaults to ``3`` here: the least for which every user gets train, valid and
            test; ``0`` disables). An ``options`` object is taken as it is, with its own
            defaults (``InteractionOptions().min_user_interactions`` is ``0``): pass
            ``min_user_interactions=3`` in it for the MMRec protocol.

    Returns:
        The output folder.
    """
    assert options is not None
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

    if interactions.is_dir():
        raise DataError("is a folder; prepare reads one interactions table (CSV/TSV or a "
                        "RecBole .inter file)", file=interactions)
    df = read_table(interactions, options=options)
    x = process_interactions(df, interactions, options=options)
    texts = None
    if item_text is not None:
        table = read_item_text(item_text, options.encoding)
        keys = [str(i) for i in x.item_ids.tolist()]
        missing = [k for k in keys if k not in table]
        if missing and missing_text == "error":
            raise DataError(f"{len(missing)} item(s) of the interactions have no text (first: "
                            f"{missing[:5]}); pass missing_text='empty' to encode empty texts",
                            file=item_text)
        if missing:
            warn_data(f"{item_text}: {len(missing)} item(s) have no text; encoded as ''",
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
