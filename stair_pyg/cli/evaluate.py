r"""``stair-pyg evaluate``: full-ranking evaluation of a saved model.

Example::

    stair-pyg evaluate --checkpoint runs/scientific-stair/best.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Full-ranking evaluation of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt (best validation weights) or checkpoint.pt of a run")
    parser.add_argument("--split", choices=["valid", "test", "both"], default="both")
    parser.add_argument("--ks", default=None,
                        help="comma-separated cut-offs (default: the run's train.ks)")
    parser.add_argument("--eval-batch-users", type=int, default=None,
                        help="users scored at once (default: the run's train.eval_batch_users)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.eval import evaluate
    from stair_pyg.data import DataError
    from stair_pyg.train import CheckpointError
    from stair_pyg.train import load_trained

    try:
        model, dataset, state = load_trained(args.checkpoint, args.device)
    except (CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train_cfg = state["config"].get("train", {})
    try:
        ks = ([int(k) for k in args.ks.split(",")] if args.ks
              else list(train_cfg.get("ks", [10, 20, 50])))
    except ValueError:
        print(f"error: --ks must be comma-separated integers, got '{args.ks}'", file=sys.stderr)
        return 2
    batch_users = args.eval_batch_users or train_cfg.get("eval_batch_users")
    splits = ["valid", "test"] if args.split == "both" else [args.split]
    results = {which: evaluate(model, dataset.splits, which, ks=ks, batch_users=batch_users)
               for which in splits}
    print(f"{state['model_name']} from {args.checkpoint} (epoch {state.get('epoch')})")
    keys = [k for k in results[splits[0]] if "num_" not in k]
    print("| metric | " + " | ".join(splits) + " |")
    print("|---|" + "---|" * len(splits))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{results[s].get(key, float('nan')):.4f}"
                                         for s in splits) + " |")
    print("| users evaluated | " + " | ".join(str(results[s]["num_users"]) for s in splits) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
