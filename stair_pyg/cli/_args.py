r"""Argument types shared by the ``stair-pyg`` commands.

Each is an ``argparse`` ``type=``: a bad value ends the command at parse time with the usual
``stair-pyg CMD: error: argument --OPTION: ...`` line and exit status 2, before any work starts.
Output paths are checked the same way (an existing folder where a file is wanted, a parent that is
a file, a folder that cannot be written); :func:`make_parent` / ``mkdir`` then create missing
parent folders, as ``stair-pyg train --out`` always has.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, List

__all__ = ["positive_int", "non_negative_int", "non_negative_float", "positive_int_list",
           "non_negative_int_list", "SplitRatios", "output_file", "output_dir", "device",
           "encoder_device", "config_file", "make_parent"]


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


def positive_int(text: str) -> int:
    r"""An integer ``>= 1``."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    r"""An integer ``>= 0``."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    r"""A finite number ``>= 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    r"""A finite number ``> 0``."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


class SplitRatios(argparse.Action):
    r"""``--ratios TRAIN VALID TEST`` (``nargs=3``, ``type=non_negative_float``): the sum must be
    positive (the proportions are normalised by it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not sum(values) > 0:
            raise argparse.ArgumentError(self, f"the three ratios must not all be 0, got "
                                               f"{' '.join(f'{v:g}' for v in values)}")
        setattr(namespace, self.dest, tuple(values))


def _int_list(item: Callable[[str], int], what: str) -> Callable[[str], List[int]]:
    def parse(text: str) -> List[int]:
        parts = [p.strip() for p in str(text).split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got '{text}'")
        if not all(parts):
            raise argparse.ArgumentTypeError(f"empty entry in '{text}'")
        values = []
        for p in parts:
            try:
                values.append(item(p))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"'{p}' in '{text}': {e}") from None
        return values

    parse.__name__ = f"{item.__name__}_list"
    return parse


#: Comma-separated integers ``>= 1``, at least one (``--ks 10,20``).
positive_int_list = _int_list(positive_int, "positive integers")
#: Comma-separated integers ``>= 0``, at least one (``--users 3,17``).
non_negative_int_list = _int_list(non_negative_int, "integers >= 0")


def _check_writable_parent(path: Path) -> None:
    r"""The nearest existing ancestor of :obj:`path` must be a writable folder (the missing ones
    are created later)."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"'{path}': '{parent}' is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"'{path}': folder '{parent}' is not writable")


def output_file(text: str) -> Path:
    r"""A file to write: not an existing folder, under a writable folder (missing parent folders
    are created by :func:`make_parent`)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{path}' is a folder, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"'{path}' exists and is not writable")
    _check_writable_parent(path)
    return path


def output_dir(text: str) -> Path:
    r"""A folder to write into: not an existing file; missing folders (parents included) are
    created by the command."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{path}' is a file, expected a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"folder '{path}' is not writable")
    else:
        _check_writable_parent(path)
    return path


def make_parent(path: Path) -> Path:
    r"""Creates the missing parent folders of an :func:`output_file`; returns :obj:`path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _device(text: str, allow_auto: bool) -> str:
    value = str(text).strip().lower()
    choices = ("auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N")
    index = None
    if value.startswith("cuda:"):
        try:
            index = int(value[5:])
        except ValueError:
            index = -1
        if index < 0:
            raise argparse.ArgumentTypeError(f"expected {choices}, got '{text}'")
    elif value not in (("auto", "cpu", "cuda") if allow_auto else ("cpu", "cuda")):
        raise argparse.ArgumentTypeError(f"expected {choices}, got '{text}'")
    if value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"'{text}' was requested but CUDA is not available here (torch "
                f"{torch.__version__}); use cpu" + (" or auto" if allow_auto else ""))
        if index is not None and index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"'{text}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    return value


def device(text: str) -> str:
    r"""``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; CUDA must be available."""
    return _device(text, allow_auto=True)


def encoder_device(text: str) -> str:
    r"""``cpu``, ``cuda`` or ``cuda:N`` for the text encoder; CUDA must be available."""
    return _device(text, allow_auto=False)


def config_file(text: str) -> Path:
    r"""``--config``: an existing YAML file, or the name of a packaged config
    (``synthetic``, ``scientific``, ``ml100k``, ``ml100k-tuned``; ``.yaml`` optional), see
    :mod:`stair_pyg.configs`."""
    from stair_pyg.configs import config_names, find_config

    path = find_config(text)
    if path is None:
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is a folder, expected a YAML file")
        stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
        if path.parent.name == "configs" and stem in config_names():
            raise argparse.ArgumentTypeError(
                f"no file '{text}'; the example configs ship inside the package now: "
                f"--config {stem}")
        raise argparse.ArgumentTypeError(
            f"no file '{text}', and no packaged config of that name (packaged: "
            f"{', '.join(config_names())})")
    return path
