r"""Training checkpoints: atomic writes, RNG states, and checks before anything is restored.

A checkpoint is a dictionary saved with :func:`torch.save` and read back with
``torch.load(weights_only=True)`` (so loading runs no pickled code). It holds:

* ``format``: :data:`FORMAT` and ``kind`` (``"checkpoint"`` or ``"best"``);
* ``model_name``, ``model_hparams`` (the model's :attr:`hparams`), ``model_state``;
* ``optimizer_state`` (``kind="checkpoint"`` only; the optimizer's own state dict);
* ``rng``: the states of torch (CPU, and CUDA where it is initialised), numpy, Python's
  ``random`` and the sampler's generator;
* ``epoch`` (last completed epoch), ``best`` (best epoch, best value, evaluations without
  improvement), ``history``, ``finished``;
* ``config`` (the resolved configuration) and ``dataset`` (:func:`dataset_fingerprint`).

:class:`TrainingState` is the typed form of that dictionary. Restoring checks the fingerprint, the
model name and hyper-parameters and every parameter shape first, and raises :class:`CheckpointError`
with what differs: a mismatching checkpoint is never silently ignored.
"""
from __future__ import annotations

import copy
import hashlib
import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor

FORMAT = "stair-pyg/1"


class CheckpointError(RuntimeError):
    r"""A checkpoint that cannot be used: unreadable, or written for another dataset or model."""


def save_checkpoint(state: Dict[str, Any], path: Union[str, Path]) -> None:
    r"""Writes :obj:`state` to :obj:`path` atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over :obj:`path` (:func:`os.replace`), so that an interruption
    leaves either the old or the new file, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state, format=FORMAT), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Union[str, Path],
                    map_location: Union[str, torch.device, None] = "cpu") -> Dict[str, Any]:
    r"""Reads a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: If :obj:`path` does not exist.
        CheckpointError: If the file is not a readable stair-pyg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled objects, ...
        raise CheckpointError(f"checkpoint '{path}' cannot be read (corrupt or truncated file, "
                              f"or not a stair-pyg checkpoint): {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"'{path}' is not a stair-pyg checkpoint (format {found!r}, "
                              f"expected {FORMAT!r})")
    missing = [k for k in ("model_name", "model_state", "dataset", "config") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' lacks {missing}")
    return state


def _hash_tensor(h: "hashlib._Hash", x: Tensor) -> None:
    h.update(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().to(torch.long).numpy().tobytes())


def dataset_fingerprint(dataset) -> Dict[str, Any]:
    r"""Identifies a :class:`~stair_pyg.data.hetero.RecDataset`: numbers of users, items and
    interactions per split and a SHA-256 over the three splits' interactions."""
    from stair_pyg.data.hetero import num_users_items

    num_users, num_items = num_users_items(dataset.data)
    h = hashlib.sha256()
    for split in dataset.splits:
        _hash_tensor(h, split)
    return {
        "num_users": num_users,
        "num_items": num_items,
        "num_train": int(dataset.splits.train.size(1)),
        "num_valid": int(dataset.splits.valid.size(1)),
        "num_test": int(dataset.splits.test.size(1)),
        "sha256": h.hexdigest(),
    }


def check_dataset(state: Dict[str, Any], fingerprint: Dict[str, Any], path: Any = "") -> None:
    r"""Raises :class:`CheckpointError` if :obj:`state` was written for another dataset."""
    saved = state.get("dataset", {})
    if saved != fingerprint:
        diff = {k: (saved.get(k), fingerprint.get(k)) for k in fingerprint
                if saved.get(k) != fingerprint.get(k)}
        raise CheckpointError(
            f"checkpoint {path} was written for another dataset; differences "
            f"(checkpoint, current): {diff}")


def check_model(state: Dict[str, Any], model_name: str, hparams: Dict[str, Any],
                path: Any = "") -> None:
    r"""Raises :class:`CheckpointError` if :obj:`state` was written for another model or other
    model hyper-parameters."""
    if str(state.get("model_name", "")).lower() != model_name.lower():
        raise CheckpointError(f"checkpoint {path} holds model '{state.get('model_name')}', "
                              f"not '{model_name}'")
    saved = state.get("model_hparams", {})
    if saved != hparams:
        keys = sorted(set(saved) | set(hparams))
        diff = {k: (saved.get(k), hparams.get(k)) for k in keys if saved.get(k) != hparams.get(k)}
        raise CheckpointError(f"checkpoint {path} was written with other model hyper-parameters; "
                              f"differences (checkpoint, current): {diff}")


def load_model_state(model: torch.nn.Module, state_dict: Dict[str, Tensor],
                     path: Any = "") -> None:
    r"""Loads parameters after checking names and shapes, with a message naming each mismatch.
    Entries the model lists in ``derived_state_keys`` (recomputed from the training data, such
    as STAIR's whitening transforms) may be absent from an older checkpoint; the model keeps
    its own values for them."""
    own = model.state_dict()
    derived = set(getattr(model, "derived_state_keys", ()))
    state_dict = dict(state_dict)
    for key in derived - set(state_dict):
        if key in own:
            state_dict[key] = own[key]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = {k: (tuple(state_dict[k].shape), tuple(own[k].shape))
              for k in set(own) & set(state_dict) if state_dict[k].shape != own[k].shape}
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: missing {missing}, unexpected "
            f"{unexpected}, shape (checkpoint, model) {shapes}")
    model.load_state_dict(state_dict)


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: Dict[str, Any],
                      path: Any = "") -> None:
    r"""Loads an optimizer's saved :meth:`~torch.optim.Optimizer.state_dict` after checking
    that its parameter groups match, with a :class:`CheckpointError` naming the checkpoint
    otherwise. (What is not training state, such as the smoothing graph of
    :class:`~stair_pyg.optim.StepwiseAdamW`, is left out of the optimizer's own state dict.)"""
    current = optimizer.state_dict()["param_groups"]
    groups = saved.get("param_groups", [])
    if len(groups) != len(current) or any(len(a["params"]) != len(b["params"])
                                          for a, b in zip(groups, current)):
        raise CheckpointError(f"checkpoint {path}: optimizer parameter groups do not match "
                              f"the model's")
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path}: optimizer state does not fit: {e}") from e


def rng_state(generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    r"""States of every random number generator a training run draws from (CPU tensors). The
    CUDA generator of the current device is included only where CUDA is initialised already,
    so that a CPU run never opens a CUDA context."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        # the current device only: under data parallelism each rank owns one GPU, and touching
        # every device would open a CUDA context on each of them from every rank
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: Dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    r"""Restores what :func:`rng_state` returned, from CPU copies of the saved tensors whatever
    device the checkpoint was loaded to; the CUDA state only where CUDA is initialised."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].cpu().numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if state.get("cuda") and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(state["cuda"][0].cpu())
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_clone(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class TrainingState:
    r"""What a checkpoint holds (see the module docstring): the whole training state
    (``kind="checkpoint"``, ``checkpoint.pt``) or the best model's weights (``kind="best"``,
    ``best.pt``, without optimizer, generator and history)."""

    kind: str
    model_name: str
    model_hparams: Dict[str, Any]
    model_state: Dict[str, Tensor]
    config: Dict[str, Any]
    dataset: Dict[str, Any]
    epoch: int
    best: Dict[str, Any]
    optimizer_state: Optional[Dict[str, Any]] = None
    best_model_state: Optional[Dict[str, Tensor]] = None
    rng: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict_shallow(self).items() if v is not None}

    @classmethod
    def from_dict(cls, state: Dict[str, Any], path: Any = "") -> "TrainingState":
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in state.items() if k in names})
        except TypeError as e:
            raise CheckpointError(f"checkpoint {path} lacks entries: {e}") from e

    def clone(self) -> "TrainingState":
        r"""A deep copy whose tensors are detached clones (a snapshot that later training
        steps do not change)."""
        return TrainingState(**{k: _clone(v) for k, v in asdict_shallow(self).items()})

    def save(self, path: Union[str, Path]) -> None:
        save_checkpoint(self.to_dict(), path)


def asdict_shallow(obj: Any) -> Dict[str, Any]:
    r""":func:`dataclasses.asdict` without its deep copy."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
