r"""``stair-pyg train``: train a model from a YAML configuration.

Examples::

    stair-pyg train --config configs/scientific.yaml
    stair-pyg train --config configs/synthetic.yaml --set train.epochs=20
    stair-pyg train --config configs/scientific.yaml --model freedom   # + configs/models/freedom.yaml
    stair-pyg train --config configs/scientific.yaml --config my_model.yaml
    stair-pyg train --out runs/scientific --resume          # continue an interrupted run
"""
from __future__ import annotations

import argparse
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
    from stair_pyg.train import CheckpointError, ConfigError, load_config, run_experiment
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
    try:
        result = run_experiment(config, out_dir=out, resume=args.resume,
                                progress=not args.no_progress)
    except (ConfigError, CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(metrics_markdown(result))
    print(f"results in {out}/ (metrics.json, metrics.md, history.jsonl, curves.png, best.pt)")
    return 0
