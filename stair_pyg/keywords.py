r"""Checking keyword arguments read from a configuration against the functions that take them.

One rule for every config section that is passed on as keyword arguments (a dataset loader's
``dataset:`` keys, a model's ``model:`` keys, a benchmark's ``--hparams``): a key that none of
the functions accepts is an error that names it and lists the accepted ones.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, List, Mapping, Set, Tuple, Type

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


__all__ = ["accepted_keywords", "check_keywords", "missing_keywords"]
