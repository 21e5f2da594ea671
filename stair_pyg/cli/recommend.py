r"""``stair-pyg recommend``: top-k items per user from a saved model, seen items excluded.

Examples::

    stair-pyg recommend --checkpoint runs/scientific-stair/best.pt --users 3,17 --k 20
    stair-pyg recommend --checkpoint runs/scientific-stair/best.pt --all --output recs.tsv

Printed lines are ``userID<TAB>item item ...`` (best first); ``--output`` writes a TSV with
header ``userID  itemID  rank  score``, one row per recommendation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from stair_pyg.cli._args import (device, make_parent, non_negative_int_list, output_file,
                                 positive_int)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt or checkpoint.pt of a run")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", type=non_negative_int_list, metavar="ID,ID,...",
                     help="comma-separated user ids (0-based, as in the dataset)")
    who.add_argument("--all", action="store_true", help="every user")
    parser.add_argument("--k", type=positive_int, default=20,
                        help="items per user (default: 20)")
    parser.add_argument("--exclude", choices=["all", "train"], default="all",
                        help="seen items to exclude: every known interaction (train, valid and "
                             "test; default) or training interactions only")
    parser.add_argument("--output", type=output_file, default=None, metavar="FILE",
                        help="write a TSV file instead (missing parent folders are created)")
    parser.add_argument("--batch-users", type=positive_int, default=4096, metavar="N",
                        help="users scored at once (default: 4096)")
    parser.add_argument("--device", type=device, default="auto", metavar="{auto,cpu,cuda,cuda:N}")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.eval import recommend_topk
    from stair_pyg.data import DataError
    from stair_pyg.train import CheckpointError
    from stair_pyg.train import load_trained

    try:
        model, dataset, _ = load_trained(args.checkpoint, args.device)
    except (CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    num_users = model.num_users
    if args.all:
        users = torch.arange(num_users)
    else:
        users = torch.tensor(args.users, dtype=torch.long)
        bad = users[users >= num_users].tolist()
        if bad:
            print(f"error: unknown user ids {bad} (the dataset has users 0..{num_users - 1})",
                  file=sys.stderr)
            return 2
    splits = dataset.splits
    seen = splits.train if args.exclude == "train" else torch.cat(list(splits), dim=1)
    with torch.no_grad():
        user_emb, item_emb = model.get_embedding()
    out = open(make_parent(args.output), "w") if args.output is not None else sys.stdout
    try:
        if args.output is not None:
            out.write("userID\titemID\trank\tscore\n")
        for block, items, scores in recommend_topk(user_emb, item_emb, users, seen, args.k,
                                                   args.batch_users):
            for u, row_items, row_scores in zip(block.tolist(), items.cpu(), scores.cpu()):
                keep = torch.isfinite(row_scores)
                row_items, row_scores = row_items[keep].tolist(), row_scores[keep].tolist()
                if args.output is None:
                    out.write(f"{u}\t{' '.join(map(str, row_items))}\n")
                else:
                    out.writelines(f"{u}\t{i}\t{r}\t{s:.6g}\n" for r, (i, s)
                                   in enumerate(zip(row_items, row_scores), start=1))
    finally:
        if args.output is not None:
            out.close()
    if args.output is not None:
        print(f"wrote top-{args.k} recommendations of {users.numel()} users to {args.output}")
    return 0
