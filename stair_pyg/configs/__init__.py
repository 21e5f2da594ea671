r"""Configurations that ship inside the package, read with :mod:`importlib.resources`.

Two kinds live in this folder:

* example configs (``synthetic``, ``scientific``, ``ml100k``, ``ml100k-tuned``): whole
  ``dataset`` / ``model`` / ``train`` configurations; ``stair-pyg train --config NAME`` finds
  them by name from any directory (a file of that name on disk wins);
* model defaults (``models/<name>.yaml``): the ``model`` section and the ``train`` settings of
  each model's paper or reference implementation, merged by ``stair-pyg train --model NAME``.

A relative ``dataset.path`` in a packaged config (``../shared/data/...``) is looked up from the
current directory: run those from the checkout root, or override it with
``--set dataset.path=...``.

Example::

    from stair_pyg.configs import config_path, model_config_path
    from stair_pyg.train import load_config

    cfg = load_config([config_path("synthetic"), model_config_path("lightgcn")])
"""
from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path
from typing import List, Optional

__all__ = ["config_names", "model_names", "config_path", "model_config_path",
           "find_config"]

_MODELS = "models"
_SUFFIX = ".yaml"
_files = contextlib.ExitStack()
atexit.register(_files.close)


def _root():
    return resources.files(__name__)


def _as_path(resource) -> Path:
    r"""A real file for :obj:`resource`: itself for an ordinary install, else a temporary copy
    (zip imports) that lives until the interpreter exits."""
    if isinstance(resource, Path):
        return resource
    return _files.enter_context(resources.as_file(resource))


def _names(folder) -> List[str]:
    return sorted(entry.name[:-len(_SUFFIX)] for entry in folder.iterdir()
                  if entry.is_file() and entry.name.endswith(_SUFFIX))


def config_names() -> List[str]:
    r"""Names of the packaged example configs (``synthetic``, ``scientific``, ...)."""
    return _names(_root())


def model_names() -> List[str]:
    r"""Names of the models with packaged defaults (``models/<name>.yaml``)."""
    return _names(_root() / _MODELS)


def _strip(name: str) -> str:
    name = str(name)
    return name[:-len(_SUFFIX)] if name.endswith(_SUFFIX) else name


def config_path(name: str) -> Path:
    r"""The file of the packaged example config :obj:`name` (with or without ``.yaml``).

    Raises:
        KeyError: No packaged config of that name.
    """
    key = _strip(name)
    if key not in config_names():
        raise KeyError(f"no packaged config '{name}' (packaged: {', '.join(config_names())})")
    return _as_path(_root() / f"{key}{_SUFFIX}")


def model_config_path(name: str) -> Optional[Path]:
    r"""The packaged defaults ``models/<name>.yaml`` of model :obj:`name` (case-insensitive), or
    :obj:`None` when there are none."""
    key = _strip(name).lower()
    if key not in model_names():
        return None
    return _as_path(_root() / _MODELS / f"{key}{_SUFFIX}")


def find_config(value: str) -> Optional[Path]:
    r"""What ``--config VALUE`` means: an existing file, else (for a bare name without a folder
    part, ``.yaml`` optional) the packaged config of that name; :obj:`None` when neither."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if "/" in str(value) or "\\" in str(value) or path.exists():
        return None
    try:
        return config_path(str(value))
    except KeyError:
        return None
