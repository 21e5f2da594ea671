r"""``stair-pyg train``: train a model from a YAML configuration.

Examples::

    stair-pyg train --config configs/scientific.yaml
    stair-pyg train --config configs/synthetic.yaml --set train.epochs=20
    stair-pyg train --config configs/scientific.yaml --model freedom   # + configs/models/freedom.yaml
    stair-pyg train --config configs/scientific.yaml --config my_model.yaml
    stair-pyg train --out runs/scientific --resume          # continue an interrupted run
    stair-pyg train --config configs/scientific.yaml --nproc 4   # 4 data-parallel processes
    torchrun --nproc-per-node 4 "$(command -v stair-pyg)" train --config configs/scientific.yaml
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

HELP = "Train a model from a YAML config (--set key=value overrides)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, action="append",
                        help="YAML config (dataset, model, train sections); repeat to merge "
                             "several in order (a later model section naming another model "
                             "replaces the earlier one); with --resume it defaults to "
                             "OUT/config.yaml")
    parser.add_argument("--model", metavar="NAME",
                        help="train model NAME with its defaults from configs/models/NAME.yaml "
                             "(merged after --config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config entry, dotted key and YAML value, e.g. "
                             "--set train.lr=1e-4 --set model.knn_k={text: 3} (repeatable)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: runs/<config name>-<model>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint.pt")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="overrides train.device (auto: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar and no per-epoch lines")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="data-parallel training in N local processes (torch.distributed on "
                             "127.0.0.1; one per GPU on CUDA); under torchrun leave it at 1")
    parser.add_argument("--backend", choices=["gloo", "nccl"],
                        help="torch.distributed backend (default: nccl on CUDA, gloo on CPU)")


def model_config_path(name: str) -> Optional[Path]:
    r"""``configs/models/<name>.yaml`` from the current directory, else from the checkout the
    package was installed from (editable installs)."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "configs" / "models" / f"{name.lower()}.yaml"
        if path.is_file():
            return path
    return None


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError
    from stair_pyg.train import (CheckpointError, ConfigError, DistributedError, load_config,
                                 run_experiment)
    from stair_pyg.train.trainer import metrics_markdown

    config_paths = list(args.config or [])
    if not config_paths:
        if not (args.resume and args.out is not None):
            print("error: --config is required (or --resume with --out)", file=sys.stderr)
            return 2
        config_paths = [args.out / "config.yaml"]
    if args.model:
        model_path = model_config_path(args.model)
        if model_path is None:
            print(f"error: --model {args.model}: no configs/models/{args.model}.yaml in the "
                  f"current directory or beside the package", file=sys.stderr)
            return 2
        config_paths.append(model_path)
    config_path = config_paths[0]
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    try:
        config = load_config(config_paths, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out
    if out is None:
        out = Path("runs") / f"{Path(config_path).stem}-{config['model']['name']}"
    if args.nproc != 1:
        return _launch(args, config, out)
    try:
        result = run_experiment(config, out_dir=out, resume=args.resume,
                                progress=not args.no_progress, backend=args.backend)
    except (ConfigError, CheckpointError, DataError, DistributedError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # under torchrun / --nproc: rank 0 reports
        return 0
    print(metrics_markdown(result))
    print(f"results in {out}/ (metrics.json, metrics.md, history.jsonl, curves.png, best.pt)")
    return 0


def _launch(args: argparse.Namespace, config: dict, out: Path) -> int:
    r"""``--nproc N``: runs this command in N processes (without ``--nproc``) on the resolved
    configuration, through :func:`stair_pyg.train.distributed.launch`."""
    import tempfile

    from stair_pyg.train import save_config
    from stair_pyg.train.distributed import launch

    if args.nproc < 1:
        print(f"error: --nproc must be positive, got {args.nproc}", file=sys.stderr)
        return 2
    if "RANK" in os.environ:
        print("error: --nproc starts its own processes; under torchrun leave it out",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="stair-pyg-launch-") as tmp:
        config_path = Path(tmp) / "config.yaml"
        save_config(config, config_path)
        command = [sys.executable, "-c", "import sys; from stair_pyg.cli import main; "
                   "sys.exit(main())", "train", "--config", str(config_path), "--out", str(out)]
        command += ["--resume"] if args.resume else []
        command += ["--no-progress"] if args.no_progress else []
        command += ["--backend", args.backend] if args.backend else []
        return launch(command, args.nproc)
