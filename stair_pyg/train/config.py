r"""Experiment configurations: YAML files, ``--set key=value`` overrides, defaults, validation.

A configuration has three sections::

    dataset:   {format: mmrec, path: ../shared/data/scientific, ...}   # stair_pyg.data.load_dataset
    model:     {name: stair, embedding_dim: 64, ...}                   # get_model(name).from_data
    train:     {epochs: 500, batch_size: 1024, lr: 1.0e-3, ...}        # Trainer settings

:func:`resolve_config` fills in the defaults of ``train`` (:data:`TRAIN_DEFAULTS`), checks every
key and type, and turns a relative ``dataset.path`` into an absolute one (relative to the current
directory, else to the directory of the config file), so that the resolved configuration saved
beside the results can be re-run from anywhere.
"""
from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Union

import yaml

from stair_pyg.eval.metrics import parse_metric

TRAIN_DEFAULTS: Dict[str, Any] = {
    "epochs": 500,
    "batch_size": 1024,
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    "seed": 1,
    "patience": 20,  # evaluations without improvement before stopping; 0 or null: never stop
    "eval_every": 1,
    "metric": "NDCG@20",
    "ks": [10, 20, 50],
    "device": "auto",
    "checkpoint_every": 5,
    "eval_batch_users": 4096,
    # Negatives drawn from "all" items (MMRec, the STAIR paper) or only the "interacted" ones
    # (items with training interactions; see NegativeSampler: helps cold-start items).
    "negatives": "all",
    # On CPU, fix glibc's malloc thresholds so that large temporaries are reused instead of
    # mapped afresh every step (stair_pyg.train.allocator; about 1.35x on a sports epoch).
    "tune_malloc": True,
}

FILE_FORMATS = ("mmrec", "recbole", "csv")
SECTIONS = ("dataset", "model", "train")


class ConfigError(ValueError):
    r"""A configuration that cannot be run; the message names the offending key."""


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: {e}") from e
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping, got {type(cfg).__name__}")
    return cfg


def apply_overrides(config: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    r"""Returns a copy of :obj:`config` with ``key.sub=value`` overrides applied; values are parsed
    as YAML (``train.lr=1e-4``, ``model.knn_k={text: 3}``, ``train.ks=[10,20]``)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': value is not valid YAML: {e}") from e
        node = config
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{'.'.join(parts[:depth + 1])}' "
                                  f"is not a section")
            node = child
        node[parts[-1]] = value
    return config


def merge_configs(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    r"""Returns :obj:`base` updated by :obj:`extra`, section by section.

    Keys of :obj:`extra` override those of :obj:`base`; the ``dataset`` and ``train`` sections
    are merged key by key. A ``model`` section of :obj:`extra` that names a *different* model
    replaces the base's ``model`` section as a whole (the hyper-parameters of one model mean
    nothing to another), otherwise it is merged key by key as well. So a dataset config followed
    by a model config (``configs/models/<name>.yaml``) trains that model on that dataset.
    """
    out = copy.deepcopy(base)
    for section, value in extra.items():
        value = copy.deepcopy(value)
        current = out.get(section)
        if not isinstance(value, dict) or not isinstance(current, dict):
            out[section] = value
        elif section == "model" and "name" in value and str(value["name"]).lower() != str(
                current.get("name", "")).lower():
            out[section] = value
        else:
            current.update(value)
    return out


def load_config(path: Union[str, Path, Sequence[Union[str, Path]]],
                overrides: Iterable[str] = (), resolve: bool = True) -> Dict[str, Any]:
    r"""Reads one YAML config, or several merged in order by :func:`merge_configs`, applies
    :obj:`overrides` and (by default) resolves it. A relative ``dataset.path`` is looked up from
    the current directory, then from the folder of the first file."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise ConfigError("no config file given")
    cfg: Dict[str, Any] = {}
    for p in paths:
        cfg = merge_configs(cfg, load_yaml(p))
    cfg = apply_overrides(cfg, overrides)
    return resolve_config(cfg, base_dir=Path(paths[0]).resolve().parent) if resolve else cfg


def save_config(config: Dict[str, Any], path: Union[str, Path]) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False, default_flow_style=None)


def _as_int(key: str, value: Any, minimum: Optional[int] = None, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"'{key}' must be >= {minimum}, got {value}")
    return value


def _as_float(key: str, value: Any, minimum: Optional[float] = None,
              strictly: bool = False) -> float:
    # PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string: accept numeric strings.
    if isinstance(value, bool):
        raise ConfigError(f"'{key}' must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"'{key}' must be a number, got {value!r}") from None
    if minimum is not None and (out <= minimum if strictly else out < minimum):
        raise ConfigError(f"'{key}' must be {'>' if strictly else '>='} {minimum}, got {out}")
    return out


def _resolve_path(raw: Any, base_dir: Optional[Path]) -> str:
    if not isinstance(raw, (str, Path)) or not str(raw):
        raise ConfigError(f"'dataset.path' must be a folder path, got {raw!r}")
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute() and base_dir is not None:
        candidates.append(base_dir / path)
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    tried = ", ".join(f"'{c}'" for c in candidates)
    raise ConfigError(f"'dataset.path': '{raw}' does not exist (tried {tried}; relative paths "
                      f"are taken from the current directory, then from the config's folder)")


def _check_dataset_keys(dataset: Dict[str, Any]) -> None:
    from stair_pyg.data import registry

    loaders = registry._loaders()
    fmt = dataset["format"]
    if fmt not in loaders:
        raise ConfigError(f"'dataset.format' must be one of {sorted(loaders)}, got {fmt!r}")
    params = inspect.signature(loaders[fmt]).parameters
    for key in dataset:
        if key != "format" and key not in params:
            raise ConfigError(f"unknown key 'dataset.{key}' for format '{fmt}'; "
                              f"allowed: {sorted(params)}")


def _check_model(model: Dict[str, Any]) -> None:
    from stair_pyg.models import MODELS, get_model

    name = model.get("name")
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ConfigError(f"'model.name' must be one of {sorted(MODELS)}, got {name!r}")
    try:
        cls = get_model(name)
    except ImportError as e:
        raise ConfigError(f"'model.name': model '{name}' cannot be imported: {e}") from e
    allowed = set()
    open_ended = False
    for fn in (cls.from_data, cls.__init__):
        params = inspect.signature(fn).parameters.values()
        named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        allowed.update(n for n in named if n not in ("self", "cls", "data"))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            open_ended = False
            break
        open_ended = True
    if open_ended:
        return
    for key in model:
        if key != "name" and key not in allowed:
            raise ConfigError(f"unknown key 'model.{key}' for model '{name}'; "
                              f"allowed: {sorted(allowed - {'num_users', 'num_items'})}")


def resolve_config(config: Dict[str, Any], base_dir: Optional[Union[str, Path]] = None,
                   check_paths: bool = True) -> Dict[str, Any]:
    r"""Fills in defaults and validates a configuration.

    Args:
        config (dict): The configuration (``dataset``, ``model``, ``train`` sections).
        base_dir (str or Path, optional): The config file's folder, a second place to look for a
            relative ``dataset.path``.
        check_paths (bool, optional): Check that ``dataset.path`` exists and make it absolute.
            (default: :obj:`True`)

    Raises:
        ConfigError: naming the offending key (unknown key, wrong type, missing path, ...).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping, got {type(config).__name__}")
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"unknown top-level key '{key}'; allowed: {list(SECTIONS)}")
    cfg = copy.deepcopy(config)
    for section in SECTIONS:
        if cfg.get(section) is None:
            cfg[section] = {}
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"'{section}' must be a mapping, got {cfg[section]!r}")

    dataset = cfg["dataset"]
    fmt = dataset.get("format")
    if not isinstance(fmt, str) or not fmt:
        raise ConfigError("'dataset.format' is required (mmrec, recbole, csv or synthetic)")
    dataset["format"] = fmt.lower()
    _check_dataset_keys(dataset)
    if dataset["format"] in FILE_FORMATS:
        if "path" not in dataset:
            raise ConfigError(f"'dataset.path' is required for format '{fmt}'")
        if check_paths:
            dataset["path"] = _resolve_path(dataset["path"], Path(base_dir) if base_dir else None)

    if "name" not in cfg["model"]:
        raise ConfigError("'model.name' is required")
    _check_model(cfg["model"])

    train = cfg["train"]
    for key in train:
        if key not in TRAIN_DEFAULTS:
            raise ConfigError(f"unknown key 'train.{key}'; allowed: {sorted(TRAIN_DEFAULTS)}")
    for key, value in TRAIN_DEFAULTS.items():
        train.setdefault(key, copy.deepcopy(value))
    train["epochs"] = _as_int("train.epochs", train["epochs"], 1)
    train["batch_size"] = _as_int("train.batch_size", train["batch_size"], 1)
    train["lr"] = _as_float("train.lr", train["lr"], 0.0, strictly=True)
    train["weight_decay"] = _as_float("train.weight_decay", train["weight_decay"], 0.0)
    train["seed"] = _as_int("train.seed", train["seed"], 0)
    train["patience"] = _as_int("train.patience", train["patience"], 0, allow_none=True)
    train["eval_every"] = _as_int("train.eval_every", train["eval_every"], 1)
    train["checkpoint_every"] = _as_int("train.checkpoint_every", train["checkpoint_every"], 0)
    train["eval_batch_users"] = _as_int("train.eval_batch_users", train["eval_batch_users"], 1,
                                        allow_none=True)
    ks = train["ks"]
    if isinstance(ks, int) and not isinstance(ks, bool):
        ks = [ks]
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ConfigError(f"'train.ks' must be a list of positive integers, got {ks!r}")
    ks = [_as_int("train.ks", k, 1) for k in ks]
    try:
        name, k = parse_metric(train["metric"])
    except ValueError as e:
        raise ConfigError(f"'train.metric': {e}") from None
    train["metric"] = f"{name}@{k}"
    train["ks"] = sorted(set(ks) | {k})
    if not isinstance(train["tune_malloc"], bool):
        raise ConfigError(f"'train.tune_malloc' must be true or false, got "
                          f"{train['tune_malloc']!r}")
    if train["negatives"] not in ("all", "interacted"):
        raise ConfigError(f"'train.negatives' must be 'all' or 'interacted', got "
                          f"{train['negatives']!r}")
    device = train["device"]
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                           or device.startswith("cuda:")):
        raise ConfigError(f"'train.device' must be auto, cpu, cuda or cuda:N, got {device!r}")
    return cfg
