r"""Experiment configurations: YAML files, ``--set key=value`` overrides, defaults, validation.

A configuration has three sections::

    dataset:   {format: mmrec, path: ../shared/data/scientific, ...}   # stair_pyg.data.load_dataset
    model:     {name: stair, embedding_dim: 64, ...}                   # get_model(name).from_data
    train:     {epochs: 500, batch_size: 1024, lr: 1.0e-3, ...}        # Trainer settings

:func:`resolve_config` fills in the defaults of ``train`` (:class:`TrainConfig`), checks every
key and type, and turns a relative ``dataset.path`` into an absolute one (relative to the current
directory, else to the directory of the config file), so that the resolved configuration saved
beside the results can be re-run from anywhere.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import yaml

from stair_pyg.eval.metrics import parse_metric
from stair_pyg.keywords import as_int, as_number, check_keywords, check_types

class ConfigError(ValueError):
    r"""A configuration that cannot be run; the message names the offending key."""


#: Seeds are 64-bit (torch's generators take at most 2^64 - 1; numpy's use the seed mod 2^32).
MAX_SEED = 2 ** 64 - 1


def _int(key: str, value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None,
         allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    value = as_int(key, value, ConfigError)  # 5.0 is 5; 16.5 is refused, never rounded
    if minimum is not None and value < minimum:
        raise ConfigError(f"'{key}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"'{key}' must be <= {maximum}, got {value}")
    return value


def _float(key: str, value: Any, minimum: float, maximum: float, strictly: bool = False) -> float:
    out = as_number(key, value, ConfigError)
    if not math.isfinite(out):
        raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
    if out <= minimum if strictly else out < minimum:
        raise ConfigError(f"'{key}' must be {'>' if strictly else '>='} {minimum}, got {out}")
    if out > maximum:
        raise ConfigError(f"'{key}' must be <= {maximum} (a larger value cannot train), got "
                          f"{out}")
    return out


def _choice(key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"'{key}' must be one of {list(choices)}, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


@dataclass
class TrainConfig:
    r"""The ``train`` section of a configuration: every setting of
    :class:`~stair_pyg.train.Trainer`, with its default and its check.

    :meth:`from_dict` reads a section, refusing unknown keys and every value of the wrong type
    or range with a :class:`ConfigError` that names the key (``train.lr``); nothing is coerced
    silently (an integer setting of 16.5 is an error, 16.0 is 16).
    """

    #: Most training epochs.
    epochs: int = 500
    #: Interactions per batch.
    batch_size: int = 1024
    #: Learning rate.
    lr: float = 1.0e-3
    #: Weight decay (decoupled for STAIR's AdamW, L2 for Adam).
    weight_decay: float = 0.0
    #: Seed of shuffling, negative sampling and the model's initialisation.
    seed: int = 1
    #: Evaluations without improvement before stopping; 0 or null: never stop early.
    patience: Optional[int] = 20
    #: Evaluate the validation split every this many epochs.
    eval_every: int = 1
    #: The validation metric that selects the model, ``NAME@K``.
    metric: str = "NDCG@20"
    #: Cut-offs of the reported metrics (the metric's own is added).
    ks: List[int] = field(default_factory=lambda: [10, 20, 50])
    #: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Write ``checkpoint.pt`` every this many epochs (0: only at the end or on Ctrl-C).
    checkpoint_every: int = 5
    #: Most users per full-ranking block.
    eval_batch_users: Optional[int] = 4096
    #: Memory budget of one full-ranking block in GiB (null: a quarter of the free memory).
    eval_memory_gib: Optional[float] = None
    #: Negatives drawn from ``all`` items (the STAIR paper) or only the ``interacted`` ones
    #: (items with training interactions, as MMRec's training loader does; helps cold-start
    #: items).
    negatives: str = "all"
    #: On CPU, fix glibc's malloc thresholds so that large temporaries are reused instead of
    #: mapped afresh every step (:mod:`stair_pyg.train.allocator`; a process-wide setting, made
    #: by the experiment runner, not by the trainer).
    tune_malloc: bool = True
    #: Deterministic kernels on CUDA (:func:`~stair_pyg.train.device.use_deterministic_algorithms`).
    deterministic: bool = False

    def __post_init__(self) -> None:
        self.epochs = _int("train.epochs", self.epochs, 1)
        self.batch_size = _int("train.batch_size", self.batch_size, 1)
        self.lr = _float("train.lr", self.lr, 0.0, 10.0, strictly=True)
        self.weight_decay = _float("train.weight_decay", self.weight_decay, 0.0, 1e4)
        self.seed = _int("train.seed", self.seed, 0, MAX_SEED)
        self.patience = _int("train.patience", self.patience, 0, allow_none=True)
        self.eval_every = _int("train.eval_every", self.eval_every, 1)
        self.checkpoint_every = _int("train.checkpoint_every", self.checkpoint_every, 0)
        self.eval_batch_users = _int("train.eval_batch_users", self.eval_batch_users, 1,
                                     allow_none=True)
        if self.eval_memory_gib is not None:
            self.eval_memory_gib = _float("train.eval_memory_gib", self.eval_memory_gib, 0.0,
                                          1e6, strictly=True)
        ks = self.ks
        if isinstance(ks, int) and not isinstance(ks, bool):
            ks = [ks]
        if not isinstance(ks, (list, tuple)) or not ks:
            raise ConfigError(f"'train.ks' must be a list of positive integers, got {ks!r}")
        ks = [_int("train.ks", k, 1) for k in ks]
        try:
            name, k = parse_metric(self.metric)
        except ValueError as e:
            raise ConfigError(f"'train.metric': {e}") from None
        self.metric = f"{name}@{k}"
        self.ks = sorted(set(ks) | {k})
        self.negatives = _choice("train.negatives", self.negatives, ("all", "interacted"))
        self.tune_malloc = _bool("train.tune_malloc", self.tune_malloc)
        self.deterministic = _bool("train.deterministic", self.deterministic)
        device = self.device
        if not isinstance(device, str) or not (
                device in ("auto", "cpu", "cuda") or
                (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"'train.device' must be auto, cpu, cuda or cuda:N, got {device!r}")

    @classmethod
    def from_dict(cls, section: Optional[Mapping[str, Any]]) -> "TrainConfig":
        r"""Reads a ``train`` section (missing keys take their defaults)."""
        section = dict(section or {})
        names = [f.name for f in fields(cls)]
        for key in section:
            if key not in names:
                raise ConfigError(f"unknown key 'train.{key}'; allowed: {sorted(names)}")
        return cls(**section)

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


FILE_FORMATS = ("mmrec", "recbole", "csv")
SECTIONS = ("dataset", "model", "train")
#: The top-level key of a model config's hyper-parameter grid (``benchmarks/sweep.py``); a run
#: ignores it.
GRID = "grid"


def check_grid(grid: Any) -> Dict[str, List[Any]]:
    r"""Checks a ``grid`` section: ``{override key: [value, ...]}``, keys as in ``--set``
    (``model.gamma``, ``model.knn_k.text``), each with a non-empty list of values."""
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise ConfigError(f"'{GRID}' must be a mapping of keys to lists of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(key, str) or key.split(".")[0] not in SECTIONS:
            raise ConfigError(f"'{GRID}.{key}': a grid key names a setting as in --set, "
                              f"e.g. model.gamma")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"'{GRID}.{key}' must be a non-empty list of values, got {values!r}")
    return grid


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
    by a model config (``stair_pyg/configs/models/<name>.yaml``) trains that model on that dataset.
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
    options = {k: v for k, v in dataset.items() if k != "format" and k not in registry.COLD_KEYS}
    check_keywords(options, loaders[fmt], section="dataset", owner=f"format '{fmt}'",
                   error=ConfigError, hidden=("options",))
    dataset.update(check_types({k: v for k, v in options.items() if k != "path"}, loaders[fmt],
                               "dataset", ConfigError))


#: Constructor arguments that are data, not hyper-parameters: :meth:`from_data` fills them in.
_DATA_ARGUMENTS = ("data", "num_users", "num_items", "edge_index", "features", "adj")


def _check_model(model: Dict[str, Any]) -> None:
    from stair_pyg.models import MODELS, get_model

    name = model.get("name")
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ConfigError(f"'model.name' must be one of {sorted(MODELS)}, got {name!r}")
    cls = get_model(name)
    hparams = {k: v for k, v in model.items() if k != "name"}
    check_keywords(hparams, cls.from_data, cls.__init__, section="model",
                   owner=f"model '{name}'", error=ConfigError, hidden=_DATA_ARGUMENTS)
    model.update(check_types(hparams, cls.__init__, "model", ConfigError))


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
        if key not in SECTIONS + (GRID,):
            raise ConfigError(f"unknown top-level key '{key}'; allowed: {list(SECTIONS)} "
                              f"and '{GRID}'")
    cfg = copy.deepcopy(config)
    check_grid(cfg.pop(GRID, {}))
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

    cfg["train"] = TrainConfig.from_dict(cfg["train"]).to_dict()
    return cfg
