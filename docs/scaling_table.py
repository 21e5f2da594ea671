r"""Memory arithmetic of STAIR training for 10^6 .. 10^9 training interactions; prints the Markdown
tables of ``docs/SCALING.md``.

Sizes follow the training split of ``sports`` (MMRec): 218,409 training interactions over 35,598
users and 18,357 items, so :math:`U = E / 6.14` and :math:`I = E / 11.9` (the ratios of
``benchmarks/scaling.py``). Every figure is a count of bytes from the shapes the code allocates
(float32 values, int64 indices), not a measurement: see ``docs/SCALING.md`` for what each term is
and ``benchmarks/RESULTS.md`` for measured peaks.

Usage::

    python docs/scaling_table.py                      # d = 64, text 384-d + image 4096-d
    python docs/scaling_table.py --dim 128 --features 384
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence

FLOAT = 4  # float32
INDEX = 8  # int64 (edge_index)
CSR_INDEX_32 = 4  # SparseAdj's CSR indices while nnz < 2^31
DOUBLE = 8  # float64 (whitening)
WHITEN_BLOCK = 1 << 21  # values per block of stair_pyg.nn.whiten's Gram route
SPORTS_TRAIN, SPORTS_USERS, SPORTS_ITEMS = 218_409, 35_598, 18_357


def sizes(num_edges: float, per_user: float, per_item: float, dim: int, knn_k: int, features: Sequence[int], eval_users: int) -> Dict[str, float]:
    r"""Bytes of every term for :obj:`num_edges` training interactions."""
    users, items = num_edges / per_user, num_edges / per_item
    nodes = users + items
    csr_index = CSR_INDEX_32 if 2 * num_edges < 2 ** 31 - 1 else INDEX
    table = nodes * dim * FLOAT
    out = {
        "users": users,
        "items": items,
        # Device, held for the whole run.
        "embeddings": table,
        "gradients": table,  # dense: the propagation touches every row
        "adamw_state": 2 * table,  # exp_avg and exp_avg_sq
        # symmetric CSR; SparseAdj stores 32-bit indices while they fit (< 2^31 non-zeros)
        "adjacency": 2 * num_edges * (csr_index + FLOAT) + (nodes + 1) * csr_index,
        "edge_buffers": 2 * num_edges * INDEX,  # STAIR.train_edge_index
        "epoch_triples": 3 * num_edges * INDEX,  # users, positives, negatives of the epoch
        # edge_index + weight on the model, and the optimizer's cached CSR of the same graph.
        "modality_graph": items * knn_k * (2 * INDEX + FLOAT)
        + items * knn_k * (INDEX + FLOAT) + (items + 1) * INDEX,
        # Device, transient: FSC's working set (x, h, A h, out; the custom spmm backward keeps
        # no per-layer activation), BSC's (denominator, direction, series sum and term), and one
        # evaluation block of scores.
        "fsc_working_set": 4 * table,
        "bsc_working_set": 4 * items * dim * FLOAT,
        "eval_block": eval_users * items * FLOAT,
        # Host, at initialisation: the features, and whitening's working memory (one modality at a
        # time; the default Gram route of stair_pyg.nn.whiten on CPU: one float64 block of 2^21
        # values, the f x f Gram matrix, its d leading eigenvectors (computed in place), and the
        # float64 [I, d] output).
        "features": items * sum(features) * FLOAT,
        "whitening": max(min(items, WHITEN_BLOCK // f) * f * DOUBLE + f * f * DOUBLE
                         + f * dim * DOUBLE for f in features) + items * dim * DOUBLE,
    }
    # FSC's working set lives during forward and backward, BSC's during the optimizer step.
    out["device_total"] = sum(out[k] for k in (
        "embeddings", "gradients", "adamw_state", "adjacency", "edge_buffers",
        "epoch_triples", "modality_graph")) + max(out["fsc_working_set"],
                                                  out["bsc_working_set"])
    return out


def human(num_bytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= size:
            return f"{num_bytes / size:.3g} {unit}"
    return f"{num_bytes:.0f} B"


def count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def tables(edges: Sequence[float], **kwargs) -> str:
    rows = [(e, sizes(e, **kwargs)) for e in edges]
    columns = [("users U", "users", count), ("items I", "items", count),
               ("embeddings", "embeddings", human), ("gradients", "gradients", human),
               ("AdamW m, v", "adamw_state", human), ("CSR Â", "adjacency", human),
               ("edge index", "edge_buffers", human), ("epoch triples", "epoch_triples", human),
               ("modality graph", "modality_graph", human),
               ("FSC working set", "fsc_working_set", human),
               ("BSC working set", "bsc_working_set", human),
               ("**device peak** (FSC or BSC)", "device_total", human)]
    lines: List[str] = [
        "| term | " + " | ".join(f"E = {count(e)}" for e in edges) + " |",
        "|---|" + "---:|" * len(edges),
    ]
    for title, key, fmt in columns:
        lines.append(f"| {title} | " + " | ".join(fmt(r[key]) for _, r in rows) + " |")
    lines += ["", "| outside the training step | " + " | ".join(f"E = {count(e)}" for e in edges)
              + " |", "|---|" + "---:|" * len(edges)]
    for title, key in (("evaluation score block", "eval_block"),
                       ("item features (host, init)", "features"),
                       ("whitening working memory (init)", "whitening")):
        lines.append(f"| {title} | " + " | ".join(human(r[key]) for _, r in rows) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", default="1e6,1e7,1e8,1e9",
                        help="training interactions, comma-separated (default: 1e6,1e7,1e8,1e9)")
    parser.add_argument("--per-user", type=float, default=SPORTS_TRAIN / SPORTS_USERS)
    parser.add_argument("--per-item", type=float, default=SPORTS_TRAIN / SPORTS_ITEMS)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--knn-k", type=int, default=6, help="text 5 + image 1 (default: 6)")
    parser.add_argument("--features", default="384,4096",
                        help="feature widths per modality (default: 384,4096)")
    parser.add_argument("--eval-users", type=int, default=4096,
                        help="users per evaluation block (train.eval_batch_users)")
    args = parser.parse_args(argv)
    edges = [float(x) for x in args.edges.split(",")]
    print(f"d = {args.dim} (any L: no term depends on it), E/U = {args.per_user:.2f}, "
          f"E/I = {args.per_item:.2f}, kNN k = {args.knn_k}, features "
          f"{args.features}, evaluation blocks of {args.eval_users} users.\n")
    print(tables(edges, per_user=args.per_user, per_item=args.per_item, dim=args.dim,
                 knn_k=args.knn_k,
                 features=[int(f) for f in args.features.split(",")],
                 eval_users=args.eval_users))


if __name__ == "__main__":
    main()
