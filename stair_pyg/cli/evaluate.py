r"""``stair-pyg evaluate``: full-ranking evaluation of a saved model.

Example::

    stair-pyg evaluate --checkpoint runs/scientific-stair/best.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stair_pyg.cli._args import (device, make_parent, output_file, positive_float, positive_int,
                                 positive_int_list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt (best validation weights) or checkpoint.pt of a run")
    parser.add_argument("--split", choices=["valid", "test", "both"], default="both")
    parser.add_argument("--ks", type=positive_int_list, default=None, metavar="K,K,...",
                        help="comma-separated positive cut-offs (default: the run's train.ks)")
    parser.add_argument("--eval-batch-users", type=positive_int, default=None, metavar="N",
                        help="users scored at once (default: the run's train.eval_batch_users)")
    parser.add_argument("--eval-memory", type=positive_float, default=None, metavar="GIB",
                        help="memory budget of one block of users in GiB; the block size "
                             "follows from it (default: the run's train.eval_memory_gib, else a "
                             "quarter of the free memory)")
    parser.add_argument("--device", type=device, default="auto", metavar="{auto,cpu,cuda,cuda:N}")
    parser.add_argument("--json", type=output_file, default=None, metavar="FILE",
                        help="also write the metrics here (missing parent folders are created)")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.eval import evaluate
    from stair_pyg.eval.evaluator import block_plan
    from stair_pyg.data import DataError
    from stair_pyg.train import CheckpointError
    from stair_pyg.train import load_trained

    try:
        model, dataset, state = load_trained(args.checkpoint, args.device)
    except (CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    train_cfg = state["config"].get("train", {})
    ks = args.ks or list(train_cfg.get("ks", [10, 20, 50]))
    batch_users = args.eval_batch_users or train_cfg.get("eval_batch_users")
    gib = args.eval_memory if args.eval_memory is not None else train_cfg.get("eval_memory_gib")
    memory = None if gib is None else int(gib * 2 ** 30)
    splits = ["valid", "test"] if args.split == "both" else [args.split]
    _, why = block_plan(model.num_items, next(model.parameters()).device, batch_users, memory)
    print(f"evaluation: {why}", file=sys.stderr)
    results = {which: evaluate(model, dataset.splits, which, ks=ks, batch_users=batch_users,
                               memory_bytes=memory) for which in splits}
    print(f"{state['model_name']} from {args.checkpoint} (epoch {state.get('epoch')})")
    keys = [k for k in results[splits[0]] if "num_" not in k]
    print("| metric | " + " | ".join(splits) + " |")
    print("|---|" + "---|" * len(splits))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{results[s].get(key, float('nan')):.4f}"
                                         for s in splits) + " |")
    print("| users evaluated | " + " | ".join(str(results[s]["num_users"]) for s in splits) + " |")
    if args.json is not None:
        make_parent(args.json).write_text(json.dumps(results, indent=2))
    return 0
