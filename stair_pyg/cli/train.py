r"""``stair-pyg train``: train a model from a YAML configuration.

Examples::

    stair-pyg train --config configs/scientific.yaml
    stair-pyg train --config configs/synthetic.yaml --set train.epochs=20 --set model.name=bpr
    stair-pyg train --out runs/scientific --resume          # continue an interrupted run
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Train a model from a YAML config (--set key=value overrides)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="YAML config (dataset, model, train sections); with --resume it "
                             "defaults to OUT/config.yaml")
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


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError
    from stair_pyg.train import CheckpointError, ConfigError, load_config, run_experiment
    from stair_pyg.train.trainer import metrics_markdown

    config_path = args.config
    if config_path is None:
        if not (args.resume and args.out is not None):
            print("error: --config is required (or --resume with --out)", file=sys.stderr)
            return 2
        config_path = args.out / "config.yaml"
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    try:
        config = load_config(config_path, overrides)
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
