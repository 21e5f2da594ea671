r"""Training: the experiment runner, the BPR trainer (single-process or data-parallel), negative
sampling, checkpoints, the typed configuration, devices and plots.

* :mod:`~stair_pyg.train.experiment`: :func:`run_experiment`, :func:`build_model`,
  :func:`load_trained`;
* :mod:`~stair_pyg.train.trainer`: the loop, :class:`Trainer`;
* :mod:`~stair_pyg.train.checkpoint`: :class:`TrainingState` and atomic checkpoint files;
* :mod:`~stair_pyg.train.config`: YAML configurations and :class:`TrainConfig`;
* :mod:`~stair_pyg.train.device`: devices, seeds, deterministic kernels.
"""
from stair_pyg.train.allocator import tune_cpu_allocator
from stair_pyg.train.checkpoint import (
    CheckpointError,
    TrainingState,
    dataset_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from stair_pyg.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    load_config,
    resolve_config,
    save_config,
)
from stair_pyg.train.device import resolve_device, seed_everything, use_deterministic_algorithms
from stair_pyg.train.distributed import DistributedError, launch
from stair_pyg.train.experiment import (add_items_to_checkpoint, build_model, load_trained,
                                       run_experiment)
from stair_pyg.train.sampling import NegativeSampler
from stair_pyg.train.trainer import Trainer, metrics_markdown

__all__ = [
    "tune_cpu_allocator",
    "CheckpointError", "TrainingState", "dataset_fingerprint", "load_checkpoint",
    "save_checkpoint",
    "TrainConfig", "ConfigError", "apply_overrides", "load_config", "resolve_config",
    "save_config", "NegativeSampler", "Trainer", "build_model",
    "resolve_device", "seed_everything", "use_deterministic_algorithms", "run_experiment",
    "load_trained", "add_items_to_checkpoint", "metrics_markdown", "DistributedError", "launch",
]
