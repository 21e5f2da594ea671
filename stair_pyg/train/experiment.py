r"""The experiment runner: from a configuration to a trained model and its metrics
(:func:`run_experiment`), the model a configuration names (:func:`build_model`), and a trained
model back from its checkpoint (:func:`load_trained`)."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import torch

from stair_pyg.data.hetero import RecDataset
from stair_pyg.models.base import Recommender
from stair_pyg.train import checkpoint as ckpt
from stair_pyg.train import distributed
from stair_pyg.train.allocator import tune_cpu_allocator
from stair_pyg.train.config import ConfigError, TrainConfig, resolve_config
from stair_pyg.train.device import resolve_device, seed_everything, use_deterministic_algorithms
from stair_pyg.train.trainer import Trainer


def build_model(model_config: Dict[str, Any], data,
                device: Union[str, torch.device, None] = None) -> Recommender:
    r"""``get_model(model_config["name"]).from_data(data, **rest)``, built on :obj:`device`:
    the training graph is moved there first (in place, as :meth:`HeteroData.to` does), so that
    whitening and the kNN graphs are computed where the model will train (a GPU, for example),
    not on the host. A hyper-parameter the model refuses raises :class:`ConfigError`."""
    from stair_pyg.models import get_model

    hparams = {k: v for k, v in model_config.items() if k != "name"}
    cls = get_model(model_config["name"])
    if device is not None:
        data = data.to(device)
    try:
        model = cls.from_data(data, **hparams)
    except (TypeError, ValueError) as e:  # a hyper-parameter the model refuses or does not take
        raise ConfigError(f"model '{model_config['name']}': {e}") from e
    return model if device is None else model.to(device)


@contextmanager
def _recorded_data_warnings(notices: List[str]) -> Iterator[None]:
    r"""Records the messages of the data warnings raised inside (and shows them as usual), for
    the run's summary."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, UserWarning):
            notices.append(str(w.message))
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def run_experiment(
    config: Dict[str, Any],
    out_dir: Union[str, Path, None] = None,
    resume: bool = False,
    progress: bool = True,
    dataset: Optional[RecDataset] = None,
    on_batch: Optional[Callable[[int, int], None]] = None,
    backend: Optional[str] = None,
) -> Dict[str, Any]:
    r"""Runs one experiment from a configuration: loads the dataset, builds the model from the
    training graph, trains with :class:`Trainer` and reports metrics at the best validation
    epoch.

    Args:
        config (dict): A configuration (see :mod:`stair_pyg.train.config`); it is resolved and
            validated here.
        out_dir (str or Path, optional): Output folder (:obj:`None`: nothing is written).
        resume (bool, optional): Continue the run in :obj:`out_dir`. (default: :obj:`False`)
        progress (bool, optional): Progress bars and per-evaluation lines. (default: :obj:`True`)
        dataset (RecDataset, optional): Use this dataset instead of loading ``config["dataset"]``.
        on_batch (callable, optional): See :class:`Trainer`.
        backend (str, optional): :mod:`torch.distributed` backend when the environment describes
            several ranks (``torchrun``, ``stair-pyg train --nproc N``): ``"nccl"`` or ``"gloo"``
            (default: ``nccl`` on CUDA, ``gloo`` on CPU). The process group is joined here and
            left at the end, unless the caller initialised one already.

    Returns:
        ``{"best_epoch": int, "valid": {...}, "test": {...}, "epoch_seconds": float,
        "history": [...], ...}`` with metric names such as ``"NDCG@20"``.
    """
    cfg = resolve_config(config, check_paths=dataset is None)
    train = TrainConfig.from_dict(cfg["train"])
    owns_group = distributed.init_process_group(train.device, backend=backend)
    try:
        _, world_size = distributed.rank_and_world_size()
        try:
            device = resolve_device(train.device, world_size)
        except ValueError as e:
            raise ConfigError(f"'train.device': {e}") from None
        # Process-wide decisions belong to the runner, not to a Trainer.
        if device.type == "cpu" and train.tune_malloc:
            tune_cpu_allocator()
        if train.deterministic:
            use_deterministic_algorithms(True)
        seed_everything(train.seed)  # the same on every rank: the same model
        notices: List[str] = []
        if dataset is None:
            from stair_pyg.data import load_dataset

            with _recorded_data_warnings(notices):
                dataset = load_dataset(cfg["dataset"])
        model = build_model(cfg["model"], dataset.data, device=device)
        trainer = Trainer(model, dataset, train, out_dir=out_dir, progress=progress,
                          config=cfg, model_name=cfg["model"]["name"].lower(),
                          on_batch=on_batch, notices=notices)
        return trainer.fit(resume=resume)
    finally:
        if owns_group:
            distributed.destroy_process_group()


def load_trained(path: Union[str, Path], device: Union[str, torch.device, None] = "auto",
                 dataset: Optional[RecDataset] = None):
    r"""Rebuilds the model of a ``checkpoint.pt`` or ``best.pt`` with its weights.

    The dataset is loaded again from the configuration stored in the checkpoint (unless given)
    and must have the fingerprint recorded there; the model is rebuilt from the training graph
    with the stored hyper-parameters, given the items that ``add_items`` added (the checkpoint's
    ``added_items`` entry: their features, see :func:`add_items_to_checkpoint`), and must have
    the stored parameter shapes.

    Returns:
        ``(model, dataset, state)``: the model on :obj:`device` in evaluation mode, the dataset,
        and the checkpoint's contents.

    Raises:
        CheckpointError: On a corrupt checkpoint, another dataset or another model shape.
    """
    state = ckpt.load_checkpoint(path)
    config = state["config"]
    if dataset is None:
        from stair_pyg.data import load_dataset

        dataset = load_dataset(config["dataset"])
    ckpt.check_dataset(state, ckpt.dataset_fingerprint(dataset), path)
    seed_everything(int(config.get("train", {}).get("seed", 0)))
    model = build_model(config["model"], dataset.data, device=resolve_device(device))
    ckpt.check_model(state, state["model_name"], model.hparams, path)
    for batch in state.get("added_items", {}).get("batches", []):
        try:
            model.add_items(batch["features"])
        except (ValueError, NotImplementedError) as e:
            raise ckpt.CheckpointError(f"checkpoint {path}: its added items do not fit the "
                                       f"model: {e}") from e
    ckpt.load_model_state(model, state["model_state"], path)
    model.eval()
    return model, dataset, state


def add_items_to_checkpoint(path: Union[str, Path], features: Dict[str, torch.Tensor],
                            out: Union[str, Path], raw_ids: Optional[List[str]] = None,
                            device: Union[str, torch.device, None] = "cpu",
                            dataset: Optional[RecDataset] = None,
                            loaded: Optional[tuple] = None) -> Dict[str, Any]:
    r"""Loads a trained model (:func:`load_trained`, or takes its result :obj:`loaded`), adds
    items with :obj:`features` to it
    (``model.add_items``) and writes the result to :obj:`out` as a ``best``-kind checkpoint: the
    same configuration and dataset fingerprint, the grown ``model_state``, and an
    ``added_items`` entry ``{"batches": [{"features": {m: [n, f]}, "raw_ids": [...],
    "first_id": I}, ...]}`` (one batch per call, in order) from which :func:`load_trained`
    rebuilds the model.

    Returns:
        ``{"first_id": I, "num_added": n, "num_items": I + n, "raw_ids": [...]}``.
    """
    model, dataset, state = loaded if loaded is not None else load_trained(path, device, dataset)
    first = model.num_items
    new_ids = model.add_items(features)
    n = int(new_ids.numel())
    raw = [str(i) for i in range(n)] if raw_ids is None else [str(r) for r in raw_ids]
    if len(raw) != n:
        raise ValueError(f"got {len(raw)} raw ids for {n} new items")
    added = dict(state.get("added_items", {}))
    batches = list(added.get("batches", []))
    batches.append({"features": {m: torch.as_tensor(x).detach().float().cpu()
                                 for m, x in features.items()},
                    "raw_ids": raw, "first_id": first})
    keep = {k: state[k] for k in ("config", "dataset", "model_name", "model_hparams", "epoch",
                                  "best", "history", "finished") if k in state}
    new_state = dict(keep, kind="best", added_items={"batches": batches},
                     model_state={k: v.detach().cpu() for k, v in model.state_dict().items()})
    ckpt.save_checkpoint(new_state, out)
    return {"first_id": first, "num_added": n, "num_items": model.num_items, "raw_ids": raw}
