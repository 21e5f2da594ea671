r"""``load_dataset(spec)``: the ``dataset:`` section of an experiment config to a
:class:`~stair_pyg.data.hetero.RecDataset`."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

from stair_pyg.data.errors import DataError
from stair_pyg.data.hetero import RecDataset
from stair_pyg.keywords import check_keywords, missing_keywords

HIDDEN = ("options",)  # the options object itself: its fields are the keys
#: Keys of every format: the cold-item protocol (:func:`~stair_pyg.data.splits.hold_out_items`).
COLD_KEYS = ("cold_items", "cold_items_seed")


def _loaders() -> Dict[str, Callable[..., RecDataset]]:
    from stair_pyg.data.csv import load_csv
    from stair_pyg.data.mmrec import load_mmrec
    from stair_pyg.data.recbole import load_recbole
    from stair_pyg.data.synthetic import make_synthetic

    return {"mmrec": load_mmrec, "recbole": load_recbole, "csv": load_csv,
            "synthetic": make_synthetic}


FORMATS = ("mmrec", "recbole", "csv", "synthetic")


def load_dataset(spec: Mapping[str, Any]) -> RecDataset:
    r"""Loads the dataset a config describes.

    ``spec["format"]`` is one of ``mmrec`` (:func:`~stair_pyg.data.mmrec.load_mmrec`),
    ``recbole`` (:func:`~stair_pyg.data.recbole.load_recbole`), ``csv``
    (:func:`~stair_pyg.data.csv.load_csv`) or ``synthetic``
    (:func:`~stair_pyg.data.synthetic.make_synthetic`); the other keys are that function's keyword
    arguments (``path`` for the file formats, relative to the working directory; the fields of
    :class:`~stair_pyg.data.options.InteractionOptions` for ``recbole`` and ``csv``). Unknown
    keys raise :class:`ValueError` naming ``dataset.<key>`` and listing the accepted ones
    (:func:`stair_pyg.keywords.check_keywords`, the check the config loader uses too). Every
    format also takes ``cold_items`` (a fraction of the items held out entirely: no training
    or validation interaction, all of theirs in test) and ``cold_items_seed``
    (:func:`~stair_pyg.data.splits.hold_out_items`).

    Example::

        load_dataset({"format": "mmrec", "path": "../shared/data/scientific"})
        load_dataset({"format": "synthetic", "content_weight": 0.8, "seed": 1})
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"dataset spec must be a mapping, got {type(spec).__name__}")
    from stair_pyg.data.splits import hold_out_items

    kwargs = dict(spec)
    fmt = kwargs.pop("format", None)
    if fmt not in FORMATS:
        raise ValueError(f"dataset 'format' must be one of {list(FORMATS)}, got {fmt!r}")
    loader = _loaders()[fmt]
    cold = {k: kwargs.pop(k) for k in COLD_KEYS if k in kwargs}
    check_keywords(kwargs, loader, section="dataset", owner=f"format {fmt!r}",
                   hidden=HIDDEN)
    missing = missing_keywords(kwargs, loader, hidden=HIDDEN)
    if missing:
        raise ValueError(f"dataset format {fmt!r} needs key(s) {missing}")
    if fmt == "synthetic":
        try:
            return hold_out_items(loader(**kwargs), **cold)
        except ValueError as e:  # a generator setting out of range: name the section
            raise DataError(f"dataset (synthetic): {e}") from None
    return hold_out_items(loader(**kwargs), **cold)
