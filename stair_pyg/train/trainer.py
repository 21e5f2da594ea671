r"""BPR training of any :class:`~stair_pyg.models.base.Recommender`, with model selection on the
validation split, early stopping, exact resumption and the run's outputs.

An **epoch** is one pass over the shuffled training interactions in batches of ``batch_size``,
each positive ``(u, i)`` paired with one negative item drawn uniformly from the items ``u`` has no
training interaction with. Shuffling and negative sampling draw from one
:class:`torch.Generator` seeded from ``train.seed``; the model's own randomness (initialisation,
dropout) draws from torch's global generator, seeded likewise. On CPU a run is therefore a
deterministic function of its configuration.

Checkpoints are taken at epoch boundaries. They hold the full training state, including every
generator's state, so a run resumed from a checkpoint replays the following epochs exactly as the
uninterrupted run would have. On :class:`KeyboardInterrupt` mid-epoch, the state at the end of the
last completed epoch (kept in memory) is written, and resuming restarts the interrupted epoch.

Outputs in ``out_dir``:

* ``config.yaml``: the resolved configuration;
* ``history.jsonl``: one JSON object per epoch (``epoch``, ``loss``, ``train_seconds``, and on
  evaluation epochs ``valid`` metrics and ``eval_seconds``);
* ``checkpoint.pt`` (full training state) and ``best.pt`` (the best model's weights);
* ``metrics.json`` and ``metrics.md``: validation and test metrics at the best validation epoch;
* ``curves.png``: training loss and validation metric per epoch.

**Data parallelism.** When a :mod:`torch.distributed` process group of several ranks is
initialised (by :func:`run_experiment` from ``torchrun``'s environment, or by the caller), every
rank draws the same global batches, computes the loss of its contiguous share, and the gradients
are summed over ranks before every rank applies the same optimizer step; only rank 0 evaluates,
logs and writes the outputs above (see :mod:`stair_pyg.train.distributed`). Checkpoints do not
depend on the number of ranks.
"""
from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from stair_pyg.data.hetero import EDGE, RecDataset, num_users_items
from stair_pyg.eval.evaluator import COLD_PREFIX, block_plan, evaluate
from stair_pyg.models.base import Recommender
from stair_pyg.nn import cpu_kernel
from stair_pyg.train import checkpoint as ckpt
from stair_pyg.train import distributed
from stair_pyg.train.checkpoint import TrainingState
from stair_pyg.train.config import TrainConfig, save_config
from stair_pyg.train.device import resolve_device
from stair_pyg.train.sampling import NegativeSampler

#: Batches between two checks that the epoch's loss is finite (each check waits for the device).
FINITE_CHECK_EVERY = 50

# Training settings that change the trajectory: a resumed run must use the checkpoint's values.
_TRAJECTORY_KEYS = ("seed", "batch_size", "lr", "weight_decay", "eval_every", "metric")


class Trainer:
    r"""Trains a :class:`~stair_pyg.models.base.Recommender` with BPR on a
    :class:`~stair_pyg.data.hetero.RecDataset`.

    The model is used only through its interface: :meth:`configure_optimizer` once,
    :meth:`pre_epoch` at the start of every epoch, :meth:`recommendation_loss` on every batch of
    ``(users, positives, negatives)``, and :meth:`get_embedding` (in evaluation mode) for the
    full-ranking evaluation.

    Args:
        model (Recommender): The model, built from ``dataset.data`` (training edges only).
        dataset (RecDataset): Training graph and splits.
        train_config (TrainConfig or dict, optional): The training settings, or the ``train``
            section of a configuration (missing keys take their
            :class:`~stair_pyg.train.config.TrainConfig` defaults).
        out_dir (str or Path, optional): Where checkpoints, history, metrics and curves go;
            :obj:`None` keeps everything in memory. (default: :obj:`None`)
        progress (bool, optional): Show a progress bar per epoch (only on a terminal) and a line
            per evaluation. (default: :obj:`True`)
        config (dict, optional): The full resolved configuration, saved in checkpoints.
        model_name (str, optional): Registry name of the model, saved in checkpoints.
        on_batch (callable, optional): ``on_batch(epoch, batch_index)`` after every optimizer
            step (for tests and monitoring; raising :class:`KeyboardInterrupt` from it stops
            training as Ctrl-C does).
        notices (Sequence[str], optional): Notices about the data (duplicates merged, users
            only in validation, ...), kept in ``metrics.json``.

    In an initialised :mod:`torch.distributed` process group of several ranks, the trainer runs
    data-parallel (see the module docstring); rank 0 alone evaluates and writes to
    :obj:`out_dir`, and :meth:`fit` returns rank 0's result on every rank.
    """

    def __init__(
        self,
        model: Recommender,
        dataset: RecDataset,
        train_config: Union[TrainConfig, Dict[str, Any], None] = None,
        out_dir: Union[str, Path, None] = None,
        progress: bool = True,
        config: Optional[Dict[str, Any]] = None,
        model_name: Optional[str] = None,
        on_batch: Optional[Callable[[int, int], None]] = None,
        notices: Sequence[str] = (),
    ):
        cfg = train_config if isinstance(train_config, TrainConfig) else \
            TrainConfig.from_dict(train_config)
        self.cfg = cfg
        self.config = config if config is not None else {"train": cfg.to_dict()}
        self.model_name = model_name or type(model).__name__
        self.dataset = dataset
        self.splits = dataset.splits
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.on_batch = on_batch
        self.notices = list(notices)
        self.rank, self.world_size = distributed.rank_and_world_size()
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.device, self.world_size)
        if self.device.type == "cpu":
            # The numba kernels load from numba's cache (or compile) on first use, half a second
            # or more: here, at set-up, rather than inside the first timed epoch.
            cpu_kernel.cpu_kernel()
        self.model = model.to(self.device)
        self.optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
        self.num_users, self.num_items = num_users_items(dataset.data)
        self.train_pairs = dataset.data[EDGE].edge_index.cpu()
        self.sampler = NegativeSampler(self.train_pairs, self.num_users, self.num_items,
                                       interacted_only=cfg.negatives == "interacted")
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.metric = cfg.metric
        self.ks = sorted(set(cfg.ks))
        self.fingerprint = ckpt.dataset_fingerprint(dataset)
        # Training state.
        self.epoch = 0
        self.best_value = -math.inf
        self.best_epoch = 0
        self.bad_evals = 0
        self.history: List[Dict[str, Any]] = []
        self.best_state: Optional[Dict[str, Tensor]] = None
        self.finished = False
        self._snapshot: Optional[TrainingState] = None
        self._logged_block = False

    # ---------------------------------------------------------------------------------------
    # State capture / restore
    def state(self) -> TrainingState:
        r"""The full training state at the current point (what ``checkpoint.pt`` holds), sharing
        tensors with the live model and optimizer (:meth:`TrainingState.clone` for a
        snapshot)."""
        return TrainingState(
            kind="checkpoint", model_name=self.model_name, model_hparams=self.model.hparams,
            model_state=self.model.state_dict(), config=self.config, dataset=self.fingerprint,
            epoch=self.epoch,
            best={"epoch": self.best_epoch, "value": self.best_value,
                  "bad_evals": self.bad_evals, "metric": self.metric},
            optimizer_state=self.optimizer.state_dict(), best_model_state=self.best_state,
            rng=ckpt.rng_state(self.generator), history=self.history,
            finished=self.finished)

    def state_dict(self) -> Dict[str, Any]:
        r"""The full training state as a dictionary (:meth:`state`)."""
        return self.state().to_dict()

    def load_state_dict(self, state: Dict[str, Any], path: Any = "") -> None:
        r"""Restores a state from :meth:`state_dict` after checking that it belongs to this
        dataset, model and training trajectory (:class:`~stair_pyg.train.checkpoint.CheckpointError`
        otherwise)."""
        ckpt.check_dataset(state, self.fingerprint, path)
        ckpt.check_model(state, self.model_name, self.model.hparams, path)
        saved_train = state.get("config", {}).get("train", {})
        current = self.cfg.to_dict()
        diff = {k: (saved_train.get(k), current[k]) for k in _TRAJECTORY_KEYS
                if k in saved_train and saved_train.get(k) != current[k]}
        if diff:
            raise ckpt.CheckpointError(
                f"checkpoint {path} was written with other training settings; differences "
                f"(checkpoint, current): {diff}. Resume with the original settings or start a "
                f"new run in another folder.")
        if state.get("kind") != "checkpoint" or "optimizer_state" not in state:
            raise ckpt.CheckpointError(f"{path} holds model weights only (best.pt?); resume "
                                       f"needs the full training state in checkpoint.pt")
        ckpt.load_model_state(self.model, state["model_state"], path)
        ckpt.restore_optimizer(self.optimizer, state["optimizer_state"], path)
        ckpt.set_rng_state(state["rng"], self.generator)
        self.epoch = int(state["epoch"])
        best = state["best"]
        self.best_epoch, self.best_value = int(best["epoch"]), float(best["value"])
        self.bad_evals = int(best["bad_evals"])
        self.history = list(state["history"])
        self.best_state = state.get("best_model_state")
        self.finished = bool(state.get("finished", False))

    def _path(self, name: str) -> Optional[Path]:
        return self.out_dir / name if self.out_dir is not None else None

    def _output(self, name: str) -> Optional[Path]:
        r"""Where to write :obj:`name`: :obj:`None` without an output folder and on ranks > 0."""
        return self._path(name) if self.is_main else None

    def _write_checkpoint(self, state: TrainingState) -> None:
        path = self._output("checkpoint.pt")
        if path is not None:
            state.save(path)

    def _write_best(self) -> None:
        path = self._output("best.pt")
        if path is None:
            return
        TrainingState(
            kind="best", model_name=self.model_name, model_hparams=self.model.hparams,
            model_state=self.best_state, config=self.config, dataset=self.fingerprint,
            epoch=self.best_epoch,
            best={"epoch": self.best_epoch, "value": self.best_value, "metric": self.metric},
        ).save(path)

    def _rewrite_history(self) -> None:
        path = self._output("history.jsonl")
        if path is not None:
            with open(path, "w") as f:
                for record in self.history:
                    f.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------------------------------
    # Training
    def train_epoch(self, epoch: int) -> float:
        r"""One pass over the training interactions; returns the mean batch loss (weighted by
        batch size)."""
        from tqdm.auto import tqdm

        self.model.train()
        self.model.pre_epoch(epoch)
        num_edges = self.train_pairs.size(1)
        users, pos, neg = self.draw_epoch()
        batch_size = self.cfg.batch_size
        num_batches = (num_edges + batch_size - 1) // batch_size
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        checked = 0
        bar = tqdm(total=num_batches, desc=f"epoch {epoch}", unit="batch", leave=False,
                   dynamic_ncols=True,
                   disable=None if self.progress and self.is_main else True)
        try:
            for b in range(num_batches):
                sl = slice(b * batch_size, (b + 1) * batch_size)
                u, p, n = users[sl], pos[sl], neg[sl]
                loss = self.train_step(u, p, n)
                total += loss.double() * u.numel()
                if (b + 1) % FINITE_CHECK_EVERY == 0 or b == num_batches - 1:
                    # One host synchronisation per FINITE_CHECK_EVERY batches, not per batch.
                    if not bool(torch.isfinite(total)):
                        raise FloatingPointError(
                            f"the training loss became {float(total)} at epoch {epoch}, "
                            f"within batches {checked}..{b}: lower train.lr, or check the "
                            f"features for extreme values")
                    checked = b + 1
                bar.update(1)
                if not bar.disable and (b % 20 == 0 or b == num_batches - 1):
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                if self.on_batch is not None:
                    self.on_batch(epoch, b)
        finally:
            bar.close()
        return float(total) / max(num_edges, 1)

    def draw_epoch(self, negatives: Optional[Callable[..., Tensor]] = None
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""An epoch's shuffled training triples ``(users, positives, negatives)`` on the
        device: one permutation of the training pairs, one draw of negatives for all of them
        (by :obj:`negatives`, ``(users, generator) -> items``; default: the trainer's
        :class:`~stair_pyg.train.sampling.NegativeSampler`), one transfer."""
        perm = torch.randperm(self.train_pairs.size(1), generator=self.generator)
        users, pos = self.train_pairs[0, perm], self.train_pairs[1, perm]
        neg = (negatives or self.sampler.sample)(users, self.generator)
        return tuple(t.to(self.device) for t in (users, pos, neg))  # type: ignore[return-value]

    def train_step(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        r"""One optimizer step on a batch of ``(user, positive, negative)`` triples; returns the
        batch's mean loss (detached).

        This rank computes the loss of its contiguous share of the batch
        (:func:`~stair_pyg.train.distributed.local_share`: all of it in a single process);
        with several ranks the gradients, scaled so that their sum over ranks is the gradient
        of the batch mean, are summed before every rank applies the same step. Nothing here
        waits for the device: :meth:`train_epoch` checks that the loss is finite every
        :data:`FINITE_CHECK_EVERY` batches (the same decision on every rank).
        """
        n = users.numel()
        share = distributed.local_share(n, self.rank, self.world_size)
        local_n = share.stop - share.start
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=self.device)
        if local_n > 0:
            loss = self.model.recommendation_loss(users[share], pos_items[share], neg_items[share])
            (loss * (local_n / n) if self.world_size > 1 else loss).backward()
        loss = loss.detach()
        if self.world_size > 1:
            loss_sum = distributed.all_reduce_gradients(self.model.parameters(),
                                                        extra=loss.double() * local_n)
            loss = loss_sum / n
        self.optimizer.step()
        return loss

    def _evaluate(self, which: str) -> Dict[str, float]:
        memory = None if self.cfg.eval_memory_gib is None else \
            int(self.cfg.eval_memory_gib * 2 ** 30)
        if not self._logged_block:
            self._logged_block = True
            _, why = block_plan(self.num_items, self.device, self.cfg.eval_batch_users, memory)
            self._log(f"evaluation: {why}")
        return evaluate(self.model, self.splits, which, ks=self.ks,
                        batch_users=self.cfg.eval_batch_users, memory_bytes=memory)

    def _log(self, text: str) -> None:
        if self.progress and self.is_main:
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)

    def fit(self, resume: bool = False) -> Dict[str, Any]:
        r"""Trains until ``epochs`` or early stopping, then evaluates validation and test with the
        best validation weights.

        Args:
            resume (bool, optional): Continue from ``out_dir/checkpoint.pt``. A missing or
                mismatching checkpoint raises an error. (default: :obj:`False`)

        Returns:
            ``{"best_epoch", "metric", "valid", "test", "epoch_seconds", "epochs_run",
            "stopped_early", "history"}``.
        """
        cfg = self.cfg
        if self._output("config.yaml") is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
        if resume:
            path = self._path("checkpoint.pt")
            if path is None:
                raise ValueError("resume=True needs an output folder holding checkpoint.pt")
            if not path.is_file():
                raise FileNotFoundError(f"cannot resume: no checkpoint at '{path}' (run without "
                                        f"--resume to start a new run)")
            # Loaded to the CPU: load_state_dict places each tensor where its owner lives, and the
            # generator states must stay CPU tensors.
            self.load_state_dict(ckpt.load_checkpoint(path, map_location="cpu"), path)
            self._log(f"resumed from {path} after epoch {self.epoch}")
        elif self._output("checkpoint.pt") is not None and self._path("checkpoint.pt").exists():
            warnings.warn(f"'{self.out_dir}' already holds a run; it is overwritten "
                          f"(pass resume=True / --resume to continue it instead)")
        self._rewrite_history()

        patience = cfg.patience
        every = cfg.eval_every
        epochs = cfg.epochs
        if self.is_main:
            self._snapshot = self.state().clone()
        try:
            while not self.finished and self.epoch < epochs:
                epoch = self.epoch + 1
                start = time.perf_counter()
                loss = self.train_epoch(epoch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                record: Dict[str, Any] = {"epoch": epoch, "loss": loss,
                                          "train_seconds": time.perf_counter() - start}
                if self.is_main and (epoch % every == 0 or epoch == epochs):
                    start = time.perf_counter()
                    valid = self._evaluate("valid")
                    record["valid"] = valid
                    record["eval_seconds"] = time.perf_counter() - start
                    value = valid[self.metric]
                    if value > self.best_value:
                        self.best_value, self.best_epoch, self.bad_evals = value, epoch, 0
                        self.best_state = {k: v.detach().clone()
                                           for k, v in self.model.state_dict().items()}
                        self._write_best()
                    else:
                        self.bad_evals += 1
                    self._log(f"epoch {epoch:4d}  loss {loss:.4f}  {self.metric} {value:.4f}  "
                              f"(best {self.best_value:.4f} @ {self.best_epoch})  "
                              f"{record['train_seconds']:.1f}s + {record['eval_seconds']:.1f}s")
                self.history.append(record)
                path = self._output("history.jsonl")
                if path is not None:
                    with open(path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                self.epoch = epoch
                if patience is not None and patience > 0 and self.bad_evals >= patience:
                    self._log(f"early stop: no improvement of {self.metric} in {patience} "
                              f"evaluations")
                    self.finished = True
                if self.epoch >= epochs:
                    self.finished = True
                if self.world_size > 1:  # rank 0 decides; its generator state covers evaluation
                    self.finished = distributed.broadcast_object(self.finished)
                    distributed.sync_rng_states()
                if not self.is_main:
                    continue
                self._snapshot = self.state().clone()
                every_ck = cfg.checkpoint_every
                if self.finished or (every_ck > 0 and epoch % every_ck == 0):
                    self._write_checkpoint(self._snapshot)
        except KeyboardInterrupt:
            if self._snapshot is not None and self._output("checkpoint.pt") is not None:
                self._write_checkpoint(self._snapshot)
                self._log(f"\ninterrupted: saved the state after epoch {self._snapshot.epoch} "
                          f"to {self._path('checkpoint.pt')}; continue with --resume")
            raise
        return self._finish()

    def _finish(self) -> Dict[str, Any]:
        if self.world_size > 1:
            # Rank 0 evaluates; every rank ends with its result and the best weights.
            result = self._finish_main() if self.is_main else None
            result = distributed.broadcast_object(result)
            distributed.broadcast_parameters(self.model)
            return result
        return self._finish_main()

    def _finish_main(self) -> Dict[str, Any]:
        if self.best_state is None:
            raise RuntimeError("no evaluation was run, so there is no best model")
        ckpt.load_model_state(self.model, self.best_state)
        valid = self._evaluate("valid")
        test = self._evaluate("test")
        train_secs = [r["train_seconds"] for r in self.history]
        result = {
            "best_epoch": self.best_epoch,
            "metric": self.metric,
            "valid": valid,
            "test": test,
            "epoch_seconds": float(np.mean(train_secs)) if train_secs else 0.0,
            "epochs_run": self.epoch,
            "stopped_early": self.epoch < self.cfg.epochs,
            "history": self.history,
        }
        if self.out_dir is not None:
            summary = {k: v for k, v in result.items() if k != "history"}
            summary.update(model=self.model_name, dataset=self.fingerprint,
                           notices=self.notices)
            with open(self.out_dir / "metrics.json", "w") as f:
                json.dump(summary, f, indent=2)
            (self.out_dir / "metrics.md").write_text(metrics_markdown(result))
            try:
                from stair_pyg.train.plots import plot_history

                plot_history(self.history, self.out_dir / "curves.png", self.metric,
                             best_epoch=self.best_epoch)
            except ImportError as e:  # pragma: no cover - matplotlib missing
                warnings.warn(f"curves.png not written: {e}")
        return result


def metrics_markdown(result: Dict[str, Any]) -> str:
    r"""A Markdown table of validation and test metrics at the best epoch (cold-start rows when
    present)."""
    valid, test = result["valid"], result["test"]
    keys = [k for k in test if not k.endswith("num_users") and not k.endswith("num_items")]

    def order(key: str):
        cold = key.startswith(COLD_PREFIX)
        name, _, k = key.replace(COLD_PREFIX, "").partition("@")
        return (cold, int(k) if k.isdigit() else 0, name)

    lines = [f"Best epoch {result['best_epoch']} (selected on validation {result['metric']}); "
             f"mean training time per epoch {result['epoch_seconds']:.2f} s.", "",
             "| metric | valid | test |", "|---|---|---|"]
    for key in sorted(keys, key=order):
        v = valid.get(key)
        lines.append(f"| {key} | {'-' if v is None else f'{v:.4f}'} | {test[key]:.4f} |")
    lines.append(f"| users evaluated | {valid.get('num_users', '-')} | {test.get('num_users')} |")
    if COLD_PREFIX + "num_users" in test or COLD_PREFIX + "num_users" in valid:
        lines.append(f"| cold-start users | {valid.get(COLD_PREFIX + 'num_users', '-')} | "
                     f"{test.get(COLD_PREFIX + 'num_users', '-')} |")
        lines.append(f"| cold-start items | {valid.get(COLD_PREFIX + 'num_items', '-')} | "
                     f"{test.get(COLD_PREFIX + 'num_items', '-')} |")
    return "\n".join(lines) + "\n"
