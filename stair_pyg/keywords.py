r"""Checking keyword arguments read from a configuration against the functions that take them.

One rule for every config section that is passed on as keyword arguments (a dataset loader's
``dataset:`` keys, a model's ``model:`` keys, a benchmark's ``--hparams``): a key that none of
the functions accepts is an error that names it and lists the accepted ones.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import typing
from typing import Any, Callable, Dict, Iterable, List, Mapping, Set, Tuple, Type

_SKIP = {"self", "cls"}


def accepted_keywords(*functions: Callable[..., Any]) -> Tuple[Set[str], bool]:
    r"""The keyword names :obj:`functions` accept, read in order: a function with a
    ``**kwargs`` catch-all passes the remaining keys on to the next one.

    Returns:
        ``(names, open_ended)``: the accepted names, and whether the last function read still
        takes any keyword (so that no key can be called unknown).
    """
    names: Set[str] = set()
    for fn in functions:
        params = inspect.signature(fn).parameters.values()
        names.update(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                     and p.name not in _SKIP)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def check_keywords(keys: Iterable[str], *functions: Callable[..., Any], section: str,
                   owner: str, error: Type[Exception] = ValueError,
                   hidden: Iterable[str] = ()) -> None:
    r"""Raises :obj:`error` for the first key of :obj:`keys` that :obj:`functions` do not accept.

    Args:
        keys (Iterable[str]): The keys given (for example a config section's).
        *functions: The functions they are passed to (see :func:`accepted_keywords`).
        section (str): Prefix of the key in the message (``"model"`` gives ``'model.k'``).
        owner (str): What the keys are for, as the message names it (``"model 'stair'"``).
        error (type, optional): The exception class. (default: :class:`ValueError`)
        hidden (Iterable[str], optional): Accepted names that are not set from a config
            (positional data arguments) and are left out of the message and refused.
    """
    allowed, open_ended = accepted_keywords(*functions)
    hidden = set(hidden)
    allowed -= hidden
    if open_ended:
        return
    for key in keys:
        if key not in allowed:
            raise error(f"unknown key '{section}.{key}' for {owner}; allowed: {sorted(allowed)}")


def missing_keywords(given: Mapping[str, Any], function: Callable[..., Any],
                     hidden: Iterable[str] = ()) -> List[str]:
    r"""The parameters of :obj:`function` without a default that :obj:`given` lacks."""
    hidden = set(hidden) | _SKIP
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.default is inspect.Parameter.empty and p.name not in given
            and p.name not in hidden
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]




def as_int(key: str, value: Any, error: Type[Exception] = ValueError) -> int:
    r""":obj:`value` as an ``int``: an integral float (``5.0``) is one, anything else that is not
    an ``int`` (``16.5``, ``True``, ``"5"``) raises :obj:`error` naming :obj:`key`; nothing is
    rounded."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"'{key}' must be an integer, got {value!r}")
    return value


def as_number(key: str, value: Any, error: Type[Exception] = ValueError) -> float:
    r""":obj:`value` as a ``float``, numeric strings included (PyYAML follows YAML 1.1, where
    ``1e-3`` without a dot is a string); booleans and non-numbers raise :obj:`error` naming
    :obj:`key`. The caller checks the range (infinite and NaN pass here)."""
    if isinstance(value, bool):
        raise error(f"'{key}' must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise error(f"'{key}' must be a number, got {value!r}") from None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_value(key: str, value: Any, hint: Any, error: Type[Exception] = ValueError) -> Any:
    r"""Checks :obj:`value` against the type annotation :obj:`hint` (``int``, ``float``,
    ``bool``, ``str``, ``Optional[...]``, ``Mapping[str, ...]``, ``List[...]``/``Sequence[...]``/
    ``Tuple[...]``) and returns it, an integral float given for an ``int`` as an ``int`` and a
    numeric string for a ``float`` as a ``float``; raises :obj:`error` naming :obj:`key`
    otherwise. Numbers must be finite and non-negative: no hyper-parameter or loader option of
    the library takes a negative one. Nothing is rounded: 16.5 is not an ``int``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return check_value(key, value, option, error)
            except error as e:
                errors.append(str(e))
        raise error(errors[0] if len(errors) == 1 else
                    f"'{key}' must be one of {[_type_name(o) for o in options]}, got {value!r}")
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"'{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        value = as_int(key, value, error)
        if value < 0:
            raise error(f"'{key}' must be >= 0, got {value}")
        return value
    if hint is float:
        out = as_number(key, value, error)
        if not math.isfinite(out) or out < 0:
            raise error(f"'{key}' must be a finite number >= 0, got {value!r}")
        return out
    if hint is str:
        if not isinstance(value, str):
            raise error(f"'{key}' must be a string, got {value!r}")
        return value
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise error(f"'{key}' must be a mapping, got {value!r}")
        value_hint = args[1] if len(args) == 2 else Any
        return {check_value(f"{key}", k, args[0] if args else Any, error):
                check_value(f"{key}.{k}", v, value_hint, error) for k, v in value.items()}
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise error(f"'{key}' must be a list, got {value!r}")
        item_hint = args[0] if args and args[-1] is not Ellipsis or len(args) == 2 else Any
        return [check_value(key, v, item_hint, error) for v in value]
    return value


def check_types(values: Mapping[str, Any], function: Callable[..., Any], section: str,
                error: Type[Exception] = ValueError) -> Dict[str, Any]:
    r"""Checks each of :obj:`values` against the annotation of the parameter of
    :obj:`function` with that name (:func:`check_value`, keys named ``'{section}.{name}'``);
    returns the checked values. Names without a parameter or annotation pass as they are."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # pragma: no cover - unresolvable annotations: nothing to check against
        return dict(values)
    return {name: check_value(f"{section}.{name}", value, hints[name], error)
            if name in hints else value for name, value in values.items()}


__all__ = ["accepted_keywords", "check_keywords", "missing_keywords", "as_int", "as_number",
           "check_value", "check_types"]
