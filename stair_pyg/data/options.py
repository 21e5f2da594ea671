r"""One options type for reading and processing raw interactions.

:class:`InteractionOptions` holds what :func:`~stair_pyg.data.csv.read_table` (how a table is
read), :func:`~stair_pyg.data.csv.process_interactions` (rating threshold, k-core, split), the
loaders :func:`~stair_pyg.data.csv.load_csv` and :func:`~stair_pyg.data.recbole.load_recbole`,
:func:`~stair_pyg.data.prepare.prepare_dataset` and ``stair-pyg prepare`` share. Its field names
are the ``dataset.<key>`` names of an experiment config.

The loaders take the options either one by one as keywords (``load_csv(path, split="loo")``, what
a config's ``dataset:`` section is turned into) or as one object
(``load_csv(path, options=InteractionOptions(split="loo"))``); :func:`takes_options` gives them
the keyword form, and their :func:`inspect.signature` lists every accepted key, so that the
config checks (:func:`stair_pyg.keywords.check_keywords`) know them.
"""
from __future__ import annotations

import codecs
import dataclasses
import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from stair_pyg.data.errors import DataError

SPLITS = ("random", "loo", "column")
READ_FIELDS = ("encoding", "sep", "header", "user_col", "item_col", "rating_col",
               "timestamp_col", "label_col")
PIPELINE_FIELDS = ("split", "seed", "ratios", "rating_threshold", "min_user_interactions",
                   "min_item_interactions")

F = TypeVar("F", bound=Callable[..., Any])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


@dataclass(frozen=True)
class InteractionOptions:
    r"""How raw interactions are read and processed. Every field is a ``dataset.<key>`` of an
    experiment config with the same name; invalid values raise
    :class:`~stair_pyg.data.errors.DataError` naming the key.

    Reading a table (:func:`~stair_pyg.data.csv.read_table`):

    Args:
        encoding (str): Text encoding of the input files; a UTF-8 byte-order mark is accepted.
            (default: ``"utf-8"``)
        sep (str, optional): Separator; sniffed from the first line (tab, comma, semicolon,
            bar, else whitespace) when :obj:`None`. (default: :obj:`None`)
        header (str or bool): ``True``, ``False`` or ``"infer"``. (default: ``"infer"``)
        user_col, item_col, rating_col, timestamp_col, label_col (str, optional): Column names,
            when they are not among the common ones. (default: :obj:`None`)

    Processing (:func:`~stair_pyg.data.csv.process_interactions`):

    Args:
        split (str): ``"random"`` (per-user 8:1:1, MMRec protocol), ``"loo"`` (per-user
            leave-one-out by timestamp) or ``"column"`` (the table's label column).
            (default: ``"random"``)
        seed (int): Seed of the random split; ``999`` is the shared data's. (default: ``999``)
        ratios (sequence of float): Train/valid/test proportions of the random split.
            (default: ``(0.8, 0.1, 0.1)``)
        rating_threshold (float, optional): Keep interactions with ``rating >= threshold``.
            (default: :obj:`None`)
        min_user_interactions (int): k-core bound for users (``3`` is the MMRec protocol's user
            filter, and ``stair-pyg prepare``'s default). (default: ``0``)
        min_item_interactions (int): k-core bound for items. (default: ``0``)
    """

    encoding: str = "utf-8"
    sep: Optional[str] = None
    header: Union[str, bool] = "infer"
    user_col: Optional[str] = None
    item_col: Optional[str] = None
    rating_col: Optional[str] = None
    timestamp_col: Optional[str] = None
    label_col: Optional[str] = None
    split: str = "random"
    seed: int = 999
    ratios: Tuple[float, float, float] = field(default=(0.8, 0.1, 0.1))
    rating_threshold: Optional[float] = None
    min_user_interactions: int = 0
    min_item_interactions: int = 0

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> DataError:
            return DataError(f"'{key}' must be {expected}, got {getattr(self, key)!r}")

        if not isinstance(self.encoding, str):
            raise bad("encoding", "an encoding name such as 'utf-8' or 'latin-1'")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise bad("encoding", "an encoding name such as 'utf-8' or 'latin-1'") from None
        if self.sep is not None and (not isinstance(self.sep, str) or not self.sep):
            raise bad("sep", "a non-empty string or null (sniffed)")
        if not (isinstance(self.header, bool) or self.header == "infer"):
            raise bad("header", "true, false or 'infer'")
        for key in ("user_col", "item_col", "rating_col", "timestamp_col", "label_col"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise bad(key, "a column name (string) or null")
        if self.split not in SPLITS:
            raise bad("split", f"one of {list(SPLITS)}")
        if not _is_int(self.seed):
            raise bad("seed", "an integer")
        ratios = self.ratios
        if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Sequence) or \
                len(ratios) != 3 or not all(_is_number(r) and r >= 0 for r in ratios) or \
                sum(ratios) <= 0:
            raise bad("ratios", "three non-negative numbers (train, valid, test), not all zero")
        object.__setattr__(self, "ratios", tuple(float(r) for r in ratios))
        if self.rating_threshold is not None and not _is_number(self.rating_threshold):
            raise bad("rating_threshold", "a number or null")
        for key in ("min_user_interactions", "min_item_interactions"):
            value = getattr(self, key)
            if not _is_int(value) or value < 0:
                raise bad(key, "a non-negative integer")

    def replace(self, **changes: Any) -> "InteractionOptions":
        r"""A copy with :obj:`changes` (validated again)."""
        return dataclasses.replace(self, **changes)


FIELDS = tuple(f.name for f in dataclasses.fields(InteractionOptions))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(InteractionOptions)}


def as_options(options: Union[None, InteractionOptions, Mapping[str, Any]] = None,
               **changes: Any) -> InteractionOptions:
    r""":obj:`options` (an :class:`InteractionOptions`, a mapping of its fields, or :obj:`None`
    for the defaults) with :obj:`changes` applied."""
    if options is None:
        return InteractionOptions(**changes)
    if isinstance(options, Mapping):
        unknown = sorted(set(options) - set(FIELDS))
        if unknown:
            raise DataError(f"unknown option(s) {unknown}; allowed: {sorted(FIELDS)}")
        return InteractionOptions(**{**options, **changes})
    if not isinstance(options, InteractionOptions):
        raise TypeError(f"options must be InteractionOptions or a mapping, got "
                        f"{type(options).__name__}")
    return options.replace(**changes) if changes else options


def takes_options(fields: Sequence[str] = FIELDS, **defaults: Any) -> Callable[[F], F]:
    r"""Lets a function with an ``options: InteractionOptions`` keyword take the options'
    :obj:`fields` as keywords too: ``f(path, split="loo")`` calls
    ``f(path, options=InteractionOptions(split="loo"))``; explicit keywords override the fields
    of a given ``options``. :obj:`defaults` overrides field defaults for this function (e.g.
    ``min_user_interactions=3``). The wrapper's signature lists the fields as keyword-only
    parameters (for :func:`inspect.signature` and the config-key checks)."""
    fields = tuple(fields)
    unknown = set(fields) - set(FIELDS) or set(defaults) - set(fields)
    if unknown:
        raise TypeError(f"not option fields of this function: {sorted(unknown)}")

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        if "options" not in sig.parameters:
            raise TypeError(f"{fn.__name__} needs an 'options' parameter")
        hints = {f.name: f.type for f in dataclasses.fields(InteractionOptions)}
        params = [p for p in sig.parameters.values() if p.name != "options"]
        kinds = [p.kind for p in params]
        at = next((i for i, k in enumerate(kinds) if k in (inspect.Parameter.KEYWORD_ONLY,
                                                         inspect.Parameter.VAR_KEYWORD)),
                  len(params))
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                   default=defaults.get(name, _DEFAULTS[name]),
                                   annotation=hints[name]) for name in fields]
        extra.append(sig.parameters["options"].replace(kind=inspect.Parameter.KEYWORD_ONLY))
        signature = sig.replace(parameters=params[:at] + extra + params[at:])

        @functools.wraps(fn)
        def wrapper(*args: Any, options: Any = None, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in fields if name in kwargs}
            if options is None:
                given = {**defaults, **given}
            return fn(*args, options=as_options(options, **given), **kwargs)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["InteractionOptions", "as_options", "takes_options", "FIELDS", "READ_FIELDS",
           "PIPELINE_FIELDS", "SPLITS"]
