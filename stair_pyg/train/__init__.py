r"""Training: the BPR trainer (single-process or data-parallel), negative sampling, checkpoints,
configurations and plots."""
from stair_pyg.train.allocator import tune_cpu_allocator
from stair_pyg.train.checkpoint import (
    CheckpointError,
    dataset_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from stair_pyg.train.config import (
    TRAIN_DEFAULTS,
    ConfigError,
    apply_overrides,
    load_config,
    resolve_config,
    save_config,
)
from stair_pyg.train.distributed import DistributedError, launch
from stair_pyg.train.sampling import NegativeSampler
from stair_pyg.train.trainer import (
    Trainer,
    build_model,
    load_trained,
    metrics_markdown,
    move_to_device,
    resolve_device,
    run_experiment,
    seed_everything,
)

__all__ = [
    "tune_cpu_allocator",
    "CheckpointError", "dataset_fingerprint", "load_checkpoint", "save_checkpoint",
    "TRAIN_DEFAULTS", "ConfigError", "apply_overrides", "load_config", "resolve_config",
    "save_config", "NegativeSampler", "Trainer", "build_model", "move_to_device",
    "resolve_device", "run_experiment", "seed_everything", "load_trained", "metrics_markdown",
    "DistributedError", "launch",
]
