r"""Product catalogues: the public Amazon review data (2014, 2018, 2023 releases) and a generic
product table, read into interactions, item text and item image sources for
:func:`~stair_pyg.data.prepare.prepare_dataset`.

**Amazon review data** (McAuley lab), one record per line, plain or gzipped:

* **2014**: reviews ``reviews_*.json.gz``, JSON (``reviewerID``, ``asin``, ``overall``,
  ``unixReviewTime``); metadata ``meta_*.json.gz``, one **Python literal** a line
  (``{'asin': ...}``, read with :func:`ast.literal_eval`, never ``eval``): ``title``, ``brand``,
  ``categories`` (a list of category paths), ``description``; image ``imUrl``.
* **2018**: reviews as in 2014; metadata JSON: ``asin``, ``title``, ``brand``, ``category`` (a
  list), ``description`` (a list of paragraphs); image ``imageURLHighRes[0]``, else
  ``imageURL[0]``.
* **2023**: reviews JSONL (``user_id``, ``parent_asin``, ``rating``, ``timestamp`` in ms);
  metadata JSONL: ``parent_asin``, ``title``, ``store`` (the brand), ``categories``,
  ``features``, ``description`` (lists); image: the ``MAIN`` entry of ``images``, its
  ``hi_res``, else ``large``, else the first image.

The release is recognised from the first record's keys (:func:`detect_release`), or given.

**Item text.** The default template is MMRec's (``preprocessing/3feat-encoder.ipynb``, which made
the text features of MMRec's Amazon datasets): ``title + ' ' + brand + ' ' + each category of
the first category path followed by ' ' + description``, missing fields as ``' '``, newlines as
spaces. Here each field is normalised (:func:`~stair_pyg.data.features.normalize_text`) and the
non-empty ones are joined by one space, which is MMRec's string with runs of whitespace
collapsed (the tokenizer of the text encoder splits on whitespace, so the tokens are the same).
``fields`` chooses others, in order: ``title``, ``brand``, ``categories`` (the first path of
2014's list of paths; ``categories_all`` for every path), ``description``, ``features`` (2023),
or any other key of the record (lists are joined by spaces, dicts as ``key: value``).
2023's brand is ``store`` (else ``details['Brand']``); its ``categories`` is one path.

**Generic table** (:func:`read_catalog`): CSV, TSV or Parquet with one row per product; columns
matched case-insensitively: the id (``item``, ``item_id``, ``id``, ``sku``, ``asin``,
``product_id``...), text columns (by default whichever of ``title``/``name``, ``brand``,
``category``/``categories``, ``description`` exist) and an image column (``image``,
``image_url``, ``image_path``, ``imUrl``...; relative paths are relative to the table's folder).

Bad input raises :class:`~stair_pyg.data.errors.DataError` naming the file, the line and the key.
"""
from __future__ import annotations

import ast
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import pandas as pd

from stair_pyg.data.errors import DataError, shown, warn_data
from stair_pyg.data.features import normalize_text
from stair_pyg.data.files import check_file, read_bytes

PathLike = Union[str, Path]
RELEASES = ("2014", "2018", "2023")
#: MMRec's text template.
DEFAULT_FIELDS = ("title", "brand", "categories", "description")
CATALOG_ALIASES = {
    "item": ("item", "item_id", "itemid", "id", "sku", "asin", "parent_asin", "product_id",
             "productid", "product"),
    "title": ("title", "name", "product_name", "product_title"),
    "brand": ("brand", "manufacturer", "store", "vendor"),
    "categories": ("categories", "category", "product_type", "type"),
    "description": ("description", "desc", "body", "body_html"),
    "image": ("image", "image_url", "image_path", "imurl", "img", "image_link", "picture",
              "photo", "image_src"),
}
_REVIEW_KEYS = {"2014": ("reviewerID", "asin", "overall", "unixReviewTime"),
                "2018": ("reviewerID", "asin", "overall", "unixReviewTime"),
                "2023": ("user_id", "parent_asin", "rating", "timestamp")}


class Catalogue(NamedTuple):
    r"""Item text and images of a catalogue: ``texts[item]`` (normalised, template applied) and
    ``images[item]`` (path or URL) by raw item id; ``source`` is the file read."""

    texts: Dict[str, str]
    images: Dict[str, str]
    source: Path


def _open_lines(path: Path) -> Iterator[Tuple[int, bytes]]:
    r"""``(line number, bytes)`` of a plain or gzipped file; a broken gzip stream is a
    :class:`DataError` naming the file and the line reached."""
    check_file(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    number = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            for number, line in enumerate(f, start=1):
                yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        what = "truncated gzip file (it ends before the stream does)" if isinstance(
            e, EOFError) else f"corrupt gzip data ({e})"
        raise DataError(what, file=path, line=number + 1) from None


def iter_records(path: PathLike, literal: bool = True) -> Iterator[Tuple[int, Dict[str, Any]]]:
    r"""``(line number, record)`` for each non-blank line of a JSON-lines file (plain or
    ``.gz``). A line that is not JSON is read as a Python literal when :obj:`literal` (the 2014
    metadata), with :func:`ast.literal_eval` (no code runs). Each record must be an object."""
    path = Path(path)
    for number, raw in _open_lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 at byte {e.start} of the line", file=path,
                            line=number) from None
        if number == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if not literal:
                raise DataError(f"not a JSON object: {e}", file=path, line=number) from None
            try:
                record = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise DataError(f"neither JSON nor a Python literal (json: {e})", file=path,
                                line=number) from None
        if not isinstance(record, dict):
            raise DataError(f"expected one object per line, got {type(record).__name__}",
                            file=path, line=number)
        yield number, record


def detect_release(record: Dict[str, Any], path: PathLike, kind: str) -> str:
    r"""The release (``"2014"``, ``"2018"``, ``"2023"``) of a first :obj:`record` of
    :obj:`kind` ``"reviews"`` or ``"meta"``."""
    if kind == "reviews":
        if "user_id" in record and ("parent_asin" in record or "asin" in record):
            return "2023"
        if "reviewerID" in record and "asin" in record:
            return "2018" if "style" in record or "vote" in record or "image" in record else \
                "2014"
        raise DataError(f"not Amazon review data: the first record has keys "
                        f"{sorted(record)[:12]} (expected reviewerID/asin (2014, 2018) or "
                        f"user_id/parent_asin (2023))", file=path, line=1)
    if "parent_asin" in record:
        return "2023"
    if "asin" in record:
        if "imUrl" in record or "categories" in record or "salesRank" in record:
            return "2014"
        return "2018"
    raise DataError(f"not Amazon metadata: the first record has keys {sorted(record)[:12]} "
                    f"(expected asin (2014, 2018) or parent_asin (2023))", file=path, line=1)


def _release(release: Optional[str]) -> Optional[str]:
    if release in (None, "auto"):
        return None
    release = str(release)
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES} or 'auto', got {release!r}")
    return release


def read_amazon_reviews(path: PathLike, release: Optional[str] = None) -> pd.DataFrame:
    r"""Reads Amazon reviews into the frame :func:`~stair_pyg.data.csv.process_interactions`
    takes: ``user``, ``item``, ``rating``, ``timestamp`` (text values; index = line number).
    2023 items are ``parent_asin`` (the product, as its metadata is keyed), else ``asin``."""
    path = Path(path)
    release = _release(release)
    users: List[str] = []
    items: List[str] = []
    ratings: List[str] = []
    times: List[str] = []
    lines: List[int] = []
    keys: Tuple[str, ...] = ()
    for number, rec in iter_records(path, literal=True):
        if release is None:
            release = detect_release(rec, path, "reviews")
        if not keys:
            keys = _REVIEW_KEYS[release]
        user_key, item_key, rating_key, time_key = keys
        if release == "2023" and item_key not in rec and "asin" in rec:
            item_key = "asin"
        values = []
        for key in (user_key, item_key):
            value = rec.get(key)
            if value is None or not str(value).strip():
                raise DataError(f"missing {key!r} (Amazon {release} reviews need "
                                f"{user_key!r} and {item_key!r})", file=path, line=number)
            values.append(str(value).strip())
        users.append(values[0])
        items.append(values[1])
        ratings.append(str(rec.get(rating_key, "1")))
        times.append(str(rec.get(time_key, "0")))
        lines.append(number)
    if not lines:
        raise DataError("no reviews (the file is empty)", file=path)
    return pd.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": times},
                        index=lines)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, dict):
        return " ".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_as_text(v) for v in value)
    return str(value)


def _field(rec: Dict[str, Any], name: str, release: str) -> str:
    if name == "brand":
        value = rec.get("brand")
        if release == "2023" and not value:
            details = rec.get("details")
            value = rec.get("store") or (details.get("Brand") if isinstance(details, dict)
                                         else None)
        return _as_text(value)
    if name in ("categories", "categories_all"):
        value = rec.get("categories", rec.get("category"))
        if release == "2014" and isinstance(value, list) and value and \
                all(isinstance(v, list) for v in value):
            value = value if name == "categories_all" else value[0]
        return _as_text(value)
    return _as_text(rec.get(name))


def item_text(rec: Dict[str, Any], fields: Sequence[str], release: str = "2018") -> str:
    r"""The text of one metadata record: the normalised :obj:`fields`, non-empty ones joined by
    a space (the module notes give the field names)."""
    parts = (normalize_text(_field(rec, f, release)) for f in fields)
    return " ".join(p for p in parts if p)


def _image(rec: Dict[str, Any], release: str) -> Optional[str]:
    if release == "2014":
        value = rec.get("imUrl")
    elif release == "2018":
        value = next((v for key in ("imageURLHighRes", "imageURL")
                      for v in (rec.get(key) or []) if isinstance(v, str) and v.strip()), None)
    else:
        images = [im for im in rec.get("images") or [] if isinstance(im, dict)]
        images.sort(key=lambda im: im.get("variant") != "MAIN")  # stable: MAIN first
        value = next((im.get(k) for im in images for k in ("hi_res", "large", "thumb")
                      if isinstance(im.get(k), str) and im.get(k).strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def read_amazon_meta(path: PathLike, release: Optional[str] = None,
                     fields: Sequence[str] = DEFAULT_FIELDS) -> Catalogue:
    r"""Reads Amazon metadata into a :class:`Catalogue` (text by :obj:`fields`, image URL per
    the table above). Items are ``asin`` (2014, 2018) or ``parent_asin`` (2023); a repeated
    item keeps its first record, with a :class:`~stair_pyg.data.errors.DataWarning`."""
    path = Path(path)
    release = _release(release)
    texts: Dict[str, str] = {}
    images: Dict[str, str] = {}
    repeated = 0
    seen: set = set()
    for number, rec in iter_records(path, literal=True):
        seen.update(rec)
        if release is None:
            release = detect_release(rec, path, "meta")
        key = "parent_asin" if release == "2023" else "asin"
        item = rec.get(key)
        if item is None or not str(item).strip():
            raise DataError(f"missing {key!r} (the item id of Amazon {release} metadata)",
                            file=path, line=number)
        item = str(item).strip()
        if item in texts:
            repeated += 1
            continue
        texts[item] = item_text(rec, fields, release)
        url = _image(rec, release)
        if url is not None:
            images[item] = url
    if not texts:
        raise DataError("no metadata records (the file is empty)", file=path)
    derived = {"brand": ("brand", "store", "details"), "categories": ("categories", "category"),
               "categories_all": ("categories", "category")}
    absent = [f for f in fields if not seen.intersection(derived.get(f, (f,)))]
    if absent and list(fields) != list(DEFAULT_FIELDS):
        raise DataError(f"text field(s) {absent} occur in no record; the records have "
                        f"{sorted(seen)[:20]}", file=path)
    if repeated:
        warn_data(f"{path}: {repeated} repeated item(s); the first record of each is kept",
                  stacklevel=2)
    return Catalogue(texts, images, path)


def _read_frame(path: Path, encoding: str) -> pd.DataFrame:
    r"""A CSV/TSV (separator sniffed from the header: tab, comma, semicolon, bar; standard CSV
    quoting) or Parquet table, every value as text."""
    head = read_bytes(path)[:4]
    if head == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError("reading Parquet needs pyarrow: pip install "
                              "\"stair-pyg[parquet]\"") from None
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises its own error types
            raise DataError(f"not a readable Parquet file ({type(e).__name__}: {e})",
                            file=path) from None
        return df.astype(object).where(df.notna(), "").astype(str)
    from stair_pyg.data.files import read_text

    text = read_text(path, encoding, "--encoding")
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise DataError("empty file or empty header line; expected a header such as "
                        "'item,title,description,image'", file=path, line=1)
    sep = next((s for s in ("\t", ",", ";", "|") if s in first), ",")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise DataError(f"cannot parse with separator {sep!r}: {e}", file=path) from None
    df.index = range(2, len(df) + 2)  # line numbers of single-line rows
    return df


def read_catalog(
    path: PathLike,
    fields: Optional[Sequence[str]] = None,
    item_col: Optional[str] = None,
    image_col: Optional[str] = None,
    encoding: str = "utf-8",
) -> Catalogue:
    r"""Reads a generic product table (CSV, TSV or Parquet) into a :class:`Catalogue`.

    Args:
        path (str or Path): The table, one row per product.
        fields (sequence of str, optional): Text columns in order, by name (or one of the
            aliases of the module notes); by default those of ``title``, ``brand``,
            ``categories``, ``description`` that the table has. (default: :obj:`None`)
        item_col (str, optional): The id column, when not a common name. (default: :obj:`None`)
        image_col (str, optional): The image column (path or URL), when not a common name.
            (default: :obj:`None`)
        encoding (str): Text encoding of a CSV/TSV. (default: ``"utf-8"``)
    """
    path = Path(path)
    df = _read_frame(path, encoding)
    columns = list(df.columns)
    lower = [str(c).strip().lower() for c in columns]
    header = [shown(c, 30) for c in columns[:12]]

    def find(key: str, given: Optional[str], required: bool) -> Optional[str]:
        if given is not None:
            if given in columns:
                return given
            if given.lower() in lower:
                return columns[lower.index(given.lower())]
            if given.lower() not in CATALOG_ALIASES:
                raise DataError(f"no column {given!r}; the header has {header}", file=path,
                                line=1)
            key = given.lower()
        aliases = CATALOG_ALIASES.get(key, (key,))
        hit = next((columns[lower.index(a)] for a in aliases if a in lower), None)
        if hit is None and required:
            raise DataError(f"no {key} column (one of {list(aliases)}); the header has "
                            f"{header}", file=path, line=1)
        return hit

    item = find("item", item_col, True)
    image = find("image", image_col, False) if image_col is None else find("image", image_col,
                                                                           True)
    if fields is None:
        text_cols = [c for c in (find(k, None, False) for k in DEFAULT_FIELDS) if c is not None]
        if not text_cols:
            raise DataError(f"no text column (title/name, brand, category, description); name "
                            f"them with --text-fields. The header has {header}", file=path,
                            line=1)
    else:
        text_cols = [find(f, f, True) for f in fields]
    texts: Dict[str, str] = {}
    images: Dict[str, str] = {}
    repeated = 0
    for line, row in zip(df.index, df.itertuples(index=False)):
        values = dict(zip(columns, row))
        key = str(values[item]).strip()
        if not key:
            raise DataError(f"empty item id (column {item!r})", file=path, line=int(line))
        if key in texts:
            repeated += 1
            continue
        texts[key] = " ".join(t for t in (normalize_text(values[c]) for c in text_cols) if t)
        if image is not None:
            src = str(values[image]).strip()
            if src:
                from stair_pyg.data.images import is_url

                images[key] = src if is_url(src) or Path(src).is_absolute() else \
                    str(path.parent / src)
    if not texts:
        raise DataError("no products (only a header)", file=path)
    if repeated:
        warn_data(f"{path}: {repeated} repeated item id(s); the first row of each is kept",
                  stacklevel=2)
    return Catalogue(texts, images, path)


def is_json_lines(path: PathLike) -> bool:
    r"""Whether :obj:`path` looks like JSON-lines review data: a ``.json``/``.jsonl`` name
    (``.gz`` allowed), or a first non-blank character ``{``."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return True
    try:
        for _, line in _open_lines(path):
            if line.strip():
                return line.lstrip().startswith(b"{")
    except DataError:
        return False
    return False


__all__ = ["RELEASES", "DEFAULT_FIELDS", "CATALOG_ALIASES", "Catalogue", "iter_records",
           "detect_release", "read_amazon_reviews", "read_amazon_meta", "item_text",
           "read_catalog", "is_json_lines"]
