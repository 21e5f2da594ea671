r"""``stair-pyg recommend``: top-k items per user from a saved model, seen items excluded.

Examples::

    stair-pyg recommend --checkpoint runs/scientific-stair/best.pt --users 3,17 --k 20
    stair-pyg recommend --checkpoint runs/scientific-stair/best.pt --all --output recs.tsv
    stair-pyg recommend --export serve/ --all --output recs.parquet --format parquet

Users are scored in blocks (``--batch-users``, capped so that a block's score matrix stays
within the evaluator's memory budget) and seen items are excluded per block (a sorted pair
index, never a dense users x items mask). From ``--export DIR`` (``stair-pyg export``) the
exported embeddings are served without the dataset or the model; where the folder has an
``items.faiss`` index and faiss is installed, the search goes through it (PyG's
``MIPSKNNIndex`` with ``exclude_links``) unless ``--exact``.

Printed lines are ``userID<TAB>item item ...`` (best first). ``--output`` writes
``--format tsv`` (default; header ``userID  itemID  rank  score``, one row per recommendation),
``parquet`` (the same columns; needs pyarrow) or ``jsonl`` (one ``{"userID", "items",
"scores"}`` object per user).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Tuple

import torch
from torch import Tensor

from stair_pyg.cli._args import (device, make_parent, non_negative_int_list, output_file,
                                 positive_int)

FORMATS = ("tsv", "parquet", "jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="best.pt or checkpoint.pt of a run")
    source.add_argument("--export", type=Path, metavar="DIR",
                        help="a folder written by 'stair-pyg export'")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", type=non_negative_int_list, metavar="ID,ID,...",
                     help="comma-separated user ids (0-based, as in the dataset)")
    who.add_argument("--all", action="store_true", help="every user")
    parser.add_argument("--k", type=positive_int, default=20,
                        help="items per user (default: 20)")
    parser.add_argument("--exclude", choices=["all", "train"], default="all",
                        help="seen items to exclude: every known interaction (train, valid and "
                             "test; default) or training interactions only (--checkpoint only)")
    parser.add_argument("--output", type=output_file, default=None, metavar="FILE",
                        help="write a file instead (missing parent folders are created)")
    parser.add_argument("--format", choices=FORMATS, default="tsv",
                        help="file format of --output: tsv (default), parquet (needs pyarrow) "
                             "or jsonl")
    parser.add_argument("--exact", action="store_true",
                        help="with --export: blocked exact search even where an index exists")
    parser.add_argument("--batch-users", type=positive_int, default=4096, metavar="N",
                        help="largest block of users scored at once (default: 4096)")
    parser.add_argument("--device", type=device, default="auto", metavar="{auto,cpu,cuda,cuda:N}")


def _parquet_schema() -> Any:
    r"""The columns of ``--format parquet``: the TSV's, typed."""
    import pyarrow as pa

    return pa.schema([("userID", pa.int64()), ("itemID", pa.int64()), ("rank", pa.int32()),
                      ("score", pa.float32())])


class _Writer:
    r"""Writes blocks of ``(users, items, scores)`` in one of :data:`FORMATS`."""

    def __init__(self, path: Optional[Path], fmt: str):
        self.path, self.fmt = path, fmt
        self.parquet: Any = None
        if path is None:
            self.file: Any = sys.stdout
        elif fmt == "parquet":
            self.file = None
        else:
            self.file = open(make_parent(path), "w")
            if fmt == "tsv":
                self.file.write("userID\titemID\trank\tscore\n")

    def write(self, users: Tensor, items: Tensor, scores: Tensor) -> None:
        items, scores = items.cpu(), scores.cpu()
        keep = torch.isfinite(scores)
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            rank = torch.arange(1, items.size(1) + 1).expand_as(items)
            user = users.cpu().view(-1, 1).expand_as(items)
            table = pa.table({"userID": user[keep].numpy(), "itemID": items[keep].numpy(),
                              "rank": rank[keep].numpy(), "score": scores[keep].numpy()},
                             schema=_parquet_schema())
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(str(make_parent(self.path)), table.schema)
            self.parquet.write_table(table)
            return
        lines = []
        for u, row_items, row_scores, row_keep in zip(users.tolist(), items, scores, keep):
            its, scs = row_items[row_keep].tolist(), row_scores[row_keep].tolist()
            if self.fmt == "jsonl":
                lines.append(json.dumps({"userID": u, "items": its,
                                         "scores": [round(s, 6) for s in scs]}) + "\n")
            elif self.path is None:
                lines.append(f"{u}\t{' '.join(map(str, its))}\n")
            else:
                lines.extend(f"{u}\t{i}\t{r}\t{s:.6g}\n"
                             for r, (i, s) in enumerate(zip(its, scs), start=1))
        self.file.writelines(lines)

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        elif self.fmt == "parquet" and self.path is not None:  # no user: an empty table
            import pyarrow.parquet as pq

            pq.write_table(_parquet_schema().empty_table(), str(make_parent(self.path)))
        if self.file is not None and self.path is not None:
            self.file.close()


def _load_export(folder: Path) -> Tuple[Tensor, Tensor, Tensor, Optional[Path]]:
    import numpy as np

    from stair_pyg.data import DataError

    needed = ["user_embeddings.npy", "item_embeddings.npy", "seen.npy"]
    if not folder.is_dir() or any(not (folder / n).is_file() for n in needed):
        raise DataError(f"not an export folder (needs {needed}; see 'stair-pyg export')",
                        file=folder)
    arrays = [torch.from_numpy(np.load(folder / n, allow_pickle=False)) for n in needed]
    user_emb, item_emb, seen = arrays
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise DataError(f"embeddings of shapes {tuple(user_emb.shape)} and "
                        f"{tuple(item_emb.shape)} do not match", file=folder)
    index = folder / "items.faiss"
    return user_emb, item_emb, seen.long(), index if index.is_file() else None


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError
    from stair_pyg.eval.evaluator import block_size, recommend_topk
    from stair_pyg.nn.retrieval import PairIndex, has_faiss, index_topk
    from stair_pyg.train import CheckpointError, load_trained

    if args.format == "parquet":
        if args.output is None:
            print("error: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            print("error: --format parquet needs pyarrow (pip install pyarrow); use --format "
                  "tsv or jsonl", file=sys.stderr)
            return 2
    index_path = None
    try:
        if args.export is not None:
            if args.exclude == "train":
                print("error: --exclude train needs --checkpoint (an export holds all seen "
                      "pairs)", file=sys.stderr)
                return 2
            user_emb, item_emb, seen, index_path = _load_export(args.export)
        else:
            model, dataset, _ = load_trained(args.checkpoint, args.device)
            splits = dataset.splits
            seen = splits.train if args.exclude == "train" else torch.cat(list(splits), dim=1)
            with torch.no_grad():
                user_emb, item_emb = model.get_embedding()
    except (CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    num_users, num_items = user_emb.size(0), item_emb.size(0)
    if args.all:
        users = torch.arange(num_users)
    else:
        users = torch.tensor(args.users, dtype=torch.long)
        bad = users[users >= num_users].tolist()
        if bad:
            print(f"error: unknown user ids {bad} (the dataset has users 0..{num_users - 1})",
                  file=sys.stderr)
            return 2
    users = users.to(user_emb.device)
    blocks: Iterable[Tuple[Tensor, Tensor, Tensor]]
    if index_path is not None and not args.exact and has_faiss():
        import faiss
        from torch_geometric.nn.pool import MIPSKNNIndex

        index = MIPSKNNIndex()
        index.index = faiss.read_index(str(index_path))
        exclude = PairIndex(seen.to(user_emb.device), num_users, num_items)
        blocks = index_topk(index, user_emb, users, exclude, args.k,
                            block_size(num_items, user_emb.device, args.batch_users))
    else:
        blocks = recommend_topk(user_emb, item_emb, users, seen, args.k, args.batch_users)
    writer = _Writer(args.output, args.format)
    try:
        with torch.no_grad():
            for block_users, items, scores in blocks:
                writer.write(block_users, items, scores)
    finally:
        writer.close()
    if args.output is not None:
        print(f"wrote top-{args.k} recommendations of {users.numel()} users to {args.output}")
    return 0
