r"""Raw interactions (+ raw item text) into an MMRec-format folder, the format
:func:`~stair_pyg.data.mmrec.load_mmrec` reads (``stair-pyg prepare``).

Written files:

* ``<name>.inter``: ``userID itemID rating timestamp x_label``, rows sorted by
  ``(userID, timestamp, itemID)`` (``rating`` = 1 and ``timestamp`` = 0 when the input has none);
* ``u_id_mapping.csv`` / ``i_id_mapping.csv``: tab-separated ``user_id userID`` /
  ``item_id itemID`` (raw id to contiguous id);
* ``item_text.tsv``: ``itemID text`` in itemID order (whitespace normalised), and
  ``text_feat.npy``: ``float32 [num_items, dim]`` sentence-transformers embeddings of it, when item
  text is given (an ``item<TAB>text`` file, Amazon metadata or a product table);
* ``image_feat.npy``: ``float32 [num_items, dim]`` image embeddings in itemID order
  (:mod:`stair_pyg.data.images`), and ``missing_images.tsv``: ``itemID item_id source reason`` for
  every item without a usable image (header only when there is none), when images are given;
* ``features.json``: per modality the encoder, ``rows``, ``dim``, ``covered`` (items with a real
  feature row), ``filled`` (rows filled by the missing-text / missing-image policy) and ``fill``,
  which :func:`~stair_pyg.data.summary.describe` reports.

Interactions are a CSV/TSV table, or Amazon review data (JSON lines, 2014/2018/2023, plain or
gzipped; :mod:`stair_pyg.data.amazon`). Downloaded images go to a cache folder (``image_cache``
inside the output folder unless given): a rerun after an interruption downloads only what is
missing, and that folder alone does not make the output "not empty".

The protocol is the one of ``shared/data/PROVENANCE.md``: duplicates dropped keeping the first in
``(user, timestamp)`` order, users with fewer than ``min_user_interactions`` (3) items dropped,
ids = rank of the raw id, per-user random 8:1:1 split with ``seed`` (999). The input files are
only read; an existing output is replaced only with ``overwrite=True``, and never when an output
path is an input file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from stair_pyg.data.csv import ALIASES, ENCODING_OPTION, process_interactions, read_table
from stair_pyg.data.errors import DataError, warn_data
from stair_pyg.data.files import read_keyed_lines
from stair_pyg.data.options import FIELDS, InteractionOptions, takes_options
from stair_pyg.data.features import encode_texts, normalize_text
from stair_pyg.data.images import MAX_PIXELS, MISSING_POLICIES

PathLike = Union[str, Path]
MAPPING_FILES = ("u_id_mapping.csv", "i_id_mapping.csv")
FEATURES_JSON = "features.json"
MISSING_IMAGES = "missing_images.tsv"
CACHE_DIR = "image_cache"


def read_item_text(path: PathLike, encoding: str = "utf-8") -> Dict[str, str]:
    r"""Reads ``item<TAB>text`` lines into ``{raw item id: normalised text}``. A first line whose
    id field is a column name (``item``, ``item_id``, ``itemID``, ``asin``, RecBole's
    ``item_id:token``, ...) is a header. Text may itself contain tabs (everything after the first
    tab is text). Repeated ids keep their first text, with a
    :class:`~stair_pyg.data.errors.DataWarning`. The file is read in :obj:`encoding` (a UTF-8
    byte-order mark is accepted)."""
    path = Path(path)
    raw, repeated = read_keyed_lines(
        path, encoding, ENCODING_OPTION, "item<TAB>text",
        lambda key: key.split(":")[0].lower() in ALIASES["item"] + ("id",))
    texts = {key: normalize_text(text) for key, text in raw.items()}
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
    meta: Optional[PathLike] = None,
    catalog: Optional[PathLike] = None,
    release: Optional[str] = None,
    text_fields: Optional[Sequence[str]] = None,
    model: Optional[PathLike] = None,
    batch_size: int = 128,
    device: str = "cpu",
    missing_text: str = "error",
    images: Optional[PathLike] = None,
    image_model: Optional[PathLike] = None,
    image_encoder: str = "auto",
    image_batch_size: int = 32,
    missing_image: str = "mean",
    image_cache: Optional[PathLike] = None,
    download_workers: int = 8,
    max_image_pixels: int = MAX_PIXELS,
    overwrite: bool = False,
    progress: bool = True,
    options: Optional[InteractionOptions] = None,
) -> Path:
    r"""Writes an MMRec-format dataset folder from raw files.

    Args:
        interactions (str or Path): CSV / TSV of ``user, item[, rating, timestamp]`` (read by
            :func:`~stair_pyg.data.csv.read_table`; RecBole ``.inter`` headers work too), or
            Amazon reviews (JSON lines, ``.gz`` or not; :mod:`stair_pyg.data.amazon`).
        out_dir (str or Path): Output folder (created).
        item_text (str or Path, optional): ``item<TAB>text`` file keyed by the same raw item ids.
            (default: :obj:`None`, no text features)
        name (str, optional): Dataset name; ``out_dir``'s name by default. (default: :obj:`None`)
        meta (str or Path, optional): Amazon metadata (2014, 2018 or 2023) giving item text
            and image URLs. (default: :obj:`None`)
        catalog (str or Path, optional): A product table (CSV, TSV, Parquet) giving item text
            and images. At most one of :obj:`item_text`, :obj:`meta`, :obj:`catalog`.
            (default: :obj:`None`)
        release (str, optional): ``"2014"``, ``"2018"`` or ``"2023"`` for Amazon files;
            recognised from the first record when :obj:`None`. (default: :obj:`None`)
        text_fields (sequence of str, optional): Fields of :obj:`meta` / columns of
            :obj:`catalog` that make an item's text, in order; MMRec's template (title, brand,
            categories, description) when :obj:`None`. (default: :obj:`None`)
        model (str or Path, optional): Local sentence-transformers model folder; the offline
            all-MiniLM-L6-v2 package when :obj:`None`. (default: :obj:`None`)
        batch_size (int): Text encoder batch size. (default: ``128``)
        device (str): Encoder device (text and image). (default: ``"cpu"``)
        missing_text (str): ``"error"`` or ``"empty"`` (encode an empty text) for items that have
            no text. (default: ``"error"``)
        images (str or Path, optional): A folder of images named by raw item id, a TSV
            ``item<TAB>path-or-URL``, or ``"catalog"`` for the images named in :obj:`meta` /
            :obj:`catalog`. (default: :obj:`None`, no image features)
        image_model (str or Path, optional): Local image model (required with :obj:`images`;
            see :func:`~stair_pyg.data.images.load_image_encoder`). (default: :obj:`None`)
        image_encoder (str): ``"auto"``, ``"transformers"``, ``"sentence-transformers"`` or
            ``"torchvision:<arch>"``. (default: ``"auto"``)
        image_batch_size (int): Images per forward pass. (default: ``32``)
        missing_image (str): ``"mean"``, ``"zero"`` or ``"error"`` for items without a usable
            image. (default: ``"mean"``)
        image_cache (str or Path, optional): Download cache; ``out_dir/image_cache`` when
            :obj:`None`. (default: :obj:`None`)
        download_workers (int): Concurrent downloads and decoding threads. (default: ``8``)
        max_image_pixels (int): Larger images are refused (decompression bombs).
            (default: ``89,478,485``)
        overwrite (bool): Replace the files of an existing, non-empty output folder.
            (default: :obj:`False`)
        progress (bool): Progress bars. (default: :obj:`True`)
        **options: The fields of :class:`~stair_pyg.data.options.InteractionOptions` as
            keywords, or ``options=InteractionOptions(...)``: how to read the interactions
            (``encoding``, also used for ``item_text``, ``sep``, ``header``, ``*_col``) and
            process them (``split``, ``seed`` (``999``, the shared data's), ``ratios``,
            ``rating_threshold``, ``min_item_interactions``, and ``min_user_interactions``,
            which defaults to ``3`` here: the least for which every user gets train, valid and
            test; ``0`` disables; both ``5`` is the 5-core of MMRec's Amazon datasets). An
            ``options`` object is taken as it is, with its own defaults
            (``InteractionOptions().min_user_interactions`` is ``0``): pass
            ``min_user_interactions=3`` in it for the MMRec protocol.

    Returns:
        The output folder.
    """
    from stair_pyg.data import amazon

    assert options is not None
    interactions = Path(interactions)
    out_dir = Path(out_dir)
    name = name or out_dir.resolve().name
    if missing_text not in ("error", "empty"):
        raise ValueError(f"missing_text must be 'error' or 'empty', got {missing_text!r}")
    if missing_image not in MISSING_POLICIES:
        raise ValueError(f"missing_image must be one of {MISSING_POLICIES}, got "
                         f"{missing_image!r}")
    given = [p for p in (item_text, meta, catalog) if p is not None]
    if len(given) > 1:
        raise ValueError("give item text one way: item_text (--text), meta (--meta) or catalog "
                         "(--catalog)")
    text_source = given[0] if given else None
    if images is not None and image_model is None:
        raise ValueError("images need an image model: image_model=PATH (--image-model), a local "
                         "transformers / sentence-transformers folder or torchvision weights")
    from_catalog = images is not None and str(images) == "catalog"
    if from_catalog and meta is None and catalog is None:
        raise ValueError("images='catalog' (--images catalog) takes the images named in --meta "
                         "or --catalog; give one of them, or a folder / TSV of images")
    outputs = [out_dir / f"{name}.inter", *(out_dir / f for f in MAPPING_FILES)]
    if text_source is not None:
        outputs += [out_dir / "item_text.tsv", out_dir / "text_feat.npy"]
    if images is not None:
        outputs += [out_dir / "image_feat.npy", out_dir / MISSING_IMAGES]
    outputs.append(out_dir / FEATURES_JSON)
    inputs = {Path(p).resolve() for p in (interactions, text_source) if p is not None}
    if images is not None and not from_catalog:
        inputs.add(Path(images).resolve())
    for out in outputs:
        if out.resolve() in inputs:
            raise DataError(f"refusing to write over the input file {str(out)!r}; choose another "
                            f"output folder", file=out_dir)
    cache = Path(image_cache) if image_cache is not None else out_dir / CACHE_DIR
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DataError("output exists and is not a folder", file=out_dir)
        present = [p for p in out_dir.iterdir() if p.resolve() != cache.resolve()]
        if present and not overwrite:
            raise FileExistsError(f"output folder {str(out_dir)!r} exists and is not empty; pass "
                                  f"overwrite=True (--overwrite) to replace its dataset files")

    if interactions.is_dir():
        raise DataError("is a folder; prepare reads one interactions table (CSV/TSV, a "
                        "RecBole .inter file, or Amazon reviews)", file=interactions)
    if amazon.is_json_lines(interactions):
        df = amazon.read_amazon_reviews(interactions, release)
    else:
        df = read_table(interactions, options=options)
    x = process_interactions(df, interactions, options=options)
    keys = [str(i) for i in x.item_ids.tolist()]
    # Everything that can fail on the input is read before anything is encoded.
    table: Optional[Dict[str, str]] = None
    image_table: Optional[Dict[str, str]] = None
    if item_text is not None:
        table = read_item_text(item_text, options.encoding)
    elif meta is not None or catalog is not None:
        found = amazon.read_amazon_meta(meta, release, text_fields or amazon.DEFAULT_FIELDS) \
            if meta is not None else amazon.read_catalog(catalog, text_fields,
                                                         encoding=options.encoding)
        table = found.texts
        if from_catalog:
            image_table = found.images
    if images is not None and not from_catalog:
        from stair_pyg.data.images import read_image_sources

        image_table = read_image_sources(images, options.encoding)
    record: Dict[str, Any] = {}
    texts = None
    if table is not None:
        missing = [k for k in keys if k not in table]
        if missing and missing_text == "error":
            raise DataError(f"{len(missing)} item(s) of the interactions have no text (first: "
                            f"{missing[:5]}); pass missing_text='empty' (--missing-text empty) "
                            f"to encode empty texts", file=text_source)
        if missing:
            warn_data(f"{text_source}: {len(missing)} item(s) have no text; encoded as ''",
                      stacklevel=2)
        texts = [table.get(k, "") for k in keys]
        features = encode_texts(texts, model=model, batch_size=batch_size, device=device,
                                progress=progress)
        record["text"] = {"encoder": f"sentence-transformers:{model or 'all-MiniLM-L6-v2'}",
                          "rows": len(keys), "dim": int(features.shape[1]),
                          "covered": len(keys) - len(missing), "filled": len(missing),
                          "fill": "empty text"}
    image_result = None
    if image_table is not None:
        from stair_pyg.data.images import encode_images, load_image_encoder

        encoder = load_image_encoder(image_model, image_encoder, device=device,  # type: ignore
                                     batch_size=image_batch_size, progress=progress)
        sources: List[Optional[str]] = [image_table.get(k) for k in keys]
        image_result = encode_images(sources, encoder, batch_size=image_batch_size,
                                     missing_image=missing_image, cache_dir=cache,
                                     workers=download_workers, max_pixels=max_image_pixels,
                                     progress=progress, ids=keys,
                                     source=(meta or catalog) if from_catalog else images)
        filled = len(image_result.problems)
        record["image"] = {"encoder": image_result.encoder, "rows": len(keys),
                           "dim": int(image_result.features.shape[1]),
                           "covered": len(keys) - filled, "filled": filled,
                           "fill": missing_image, "report": MISSING_IMAGES}

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
    for stale in ("item_text.tsv", "text_feat.npy", "image_feat.npy", MISSING_IMAGES):
        if out_dir / stale not in outputs and (out_dir / stale).is_file():
            (out_dir / stale).unlink()  # an --overwrite without that modality: no stale file
    if texts is not None:
        with open(out_dir / "item_text.tsv", "w", encoding="utf-8") as f:
            f.write("itemID\ttext\n")
            f.writelines(f"{i}\t{t}\n" for i, t in enumerate(texts))
        np.save(out_dir / "text_feat.npy", features)
    if image_result is not None:
        np.save(out_dir / "image_feat.npy", image_result.features)
        with open(out_dir / MISSING_IMAGES, "w", encoding="utf-8") as f:
            f.write("itemID\titem_id\tsource\treason\n")
            for i, why in image_result.problems.items():
                src = normalize_text(sources[i] or "")
                f.write(f"{i}\t{keys[i]}\t{src}\t{normalize_text(why)}\n")
    with open(out_dir / FEATURES_JSON, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return out_dir
