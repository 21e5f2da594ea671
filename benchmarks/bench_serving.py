r"""Serving top-:math:`k` lists at catalogue scale: exact blocked search against faiss indexes.

Synthetic embeddings (``d = 64``, float32): items are drawn around ``--clusters`` random centres
(unit centres plus Gaussian noise of std 0.5 per coordinate, as embeddings of a trained model
cluster by topic), users likewise, each user with ``--seen`` random seen items that must be
excluded. For each catalogue size (default :math:`10^5` and :math:`10^6` items), three ways
of serving ``--users`` users their top-20, the same ones ``stair-pyg recommend`` takes:

* ``exact``: :func:`stair_pyg.nn.retrieval.topk_items`, blocks of users scored against all items
  with the seen pairs masked (:class:`~stair_pyg.nn.retrieval.PairIndex`), the block size capped
  by :func:`stair_pyg.eval.evaluator.block_size` (and ``--batch-users``);
* ``faiss-flat``: PyG's :class:`~torch_geometric.nn.pool.MIPSKNNIndex` (exact inner product),
  seen items through its ``exclude_links``;
* ``faiss-ivfpq``: PyG's :class:`~torch_geometric.nn.pool.ApproxMIPSKNNIndex` (IVF-PQ,
  :math:`\sqrt{I}` lists, 32 visited, 16 sub-quantisers of 8 bits: 16 bytes per item).

Reported: build seconds (index), users served per second, peak resident memory of the search
(the process' high-water mark ``VmHWM``, reset before each measurement through
``/proc/self/clear_refs``, minus the resident memory before it: what the search adds), and
recall@20 of each against ``exact`` (the fraction of exact top-20 items found).

Example::

    python benchmarks/bench_serving.py                         # 1e5 and 1e6 items
    python benchmarks/bench_serving.py --items 100000 --users 2000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

from _results import BENCH_DIR

from stair_pyg.eval.evaluator import block_size
from stair_pyg.nn.retrieval import (PairIndex, has_faiss, index_topk, mips_index,
                                    topk_items)
from stair_pyg.profiling.measure import MemoryMeter


def measure(fn: Callable[[], Any]) -> Dict[str, Any]:
    r"""Runs :obj:`fn` once: seconds and the resident memory it added at its peak
    (:class:`~stair_pyg.profiling.measure.MemoryMeter`; 0 where ``/proc`` cannot tell)."""
    meter = MemoryMeter(torch.device("cpu"))
    with meter:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return {"result": result, "seconds": seconds, "peak_extra_bytes": meter.peak_bytes() or 0}


def synthetic(num_users: int, num_items: int, dim: int, clusters: int, seen: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(clusters, dim, generator=gen), dim=1)
    items = centres[torch.randint(0, clusters, (num_items,), generator=gen)]
    items = items + 0.5 / dim ** 0.5 * torch.randn(num_items, dim, generator=gen)
    users = centres[torch.randint(0, clusters, (num_users,), generator=gen)]
    users = users + 0.5 / dim ** 0.5 * torch.randn(num_users, dim, generator=gen)
    pairs = torch.stack([torch.arange(num_users).repeat_interleave(seen),
                         torch.randint(0, num_items, (num_users * seen,), generator=gen)])
    return users.contiguous(), items.contiguous(), pairs


def run(num_items: int, args: argparse.Namespace) -> Dict[str, Any]:
    users, items, seen = synthetic(args.users, num_items, args.dim, args.clusters, args.seen,
                                   args.seed)
    exclude = PairIndex(seen, args.users, num_items)
    ids = torch.arange(args.users)
    block = block_size(num_items, users.device, args.batch_users)
    row: Dict[str, Any] = {"items": num_items, "users": args.users, "dim": args.dim,
                           "block_users": block}

    def collect(blocks) -> torch.Tensor:
        return torch.cat([top for _, top, _ in blocks])

    exact = measure(lambda: collect(topk_items(users, items, ids, exclude, args.k, block)))
    truth = exact["result"]
    row["exact"] = {"users_per_s": args.users / exact["seconds"],
                    "peak_extra_MiB": exact["peak_extra_bytes"] / 2**20, "recall@20": 1.0}
    print(f"  {num_items:>8} items exact: {row['exact']['users_per_s']:.0f} users/s, "
          f"+{row['exact']['peak_extra_MiB']:.0f} MiB (blocks of {block})", flush=True)
    if not has_faiss():
        print("  faiss not installed: index rows skipped")
        return row
    for kind in ("flat", "ivfpq"):
        built = measure(lambda: mips_index(items, kind, num_cells_to_visit=args.probes,
                                           bits_per_vector=args.pq))
        index = built["result"]
        search = measure(lambda index=index: collect(index_topk(
            index, users, ids, exclude, args.k, args.index_batch)))
        got = search["result"]
        hits = (got.unsqueeze(2) == truth.unsqueeze(1)).any(dim=2).float().sum()
        row[f"faiss-{kind}"] = {
            "build_s": built["seconds"], "build_peak_extra_MiB": built["peak_extra_bytes"] / 2**20,
            "users_per_s": args.users / search["seconds"],
            "peak_extra_MiB": search["peak_extra_bytes"] / 2**20,
            "recall@20": float(hits / truth.numel())}
        r = row[f"faiss-{kind}"]
        print(f"  {num_items:>8} items faiss-{kind}: build {r['build_s']:.1f} s, "
              f"{r['users_per_s']:.0f} users/s, +{r['peak_extra_MiB']:.0f} MiB, recall@20 "
              f"{r['recall@20']:.3f}", flush=True)
        del index
    return row


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="100000,1000000")
    parser.add_argument("--users", type=int, default=4096, help="users served per size")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seen", type=int, default=20, help="seen items per user")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--batch-users", type=int, default=4096,
                        help="largest block of the exact search (also capped by memory)")
    parser.add_argument("--index-batch", type=int, default=4096, help="users per index query")
    parser.add_argument("--probes", type=int, default=32, help="IVF lists visited")
    parser.add_argument("--pq", type=int, default=16, help="PQ sub-quantisers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "serving.json"))
    args = parser.parse_args(argv)
    print(f"serving benchmark: {args.users} users, d = {args.dim}, k = {args.k}, "
          f"{torch.get_num_threads()} threads", flush=True)
    with torch.no_grad():
        rows = [run(int(n), args) for n in args.items.split(",")]
    methods = ["exact", "faiss-flat", "faiss-ivfpq"]
    lines = ["| items | method | build s | users/s | peak extra MiB | recall@20 vs exact |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for m in methods:
            if m in row:
                r = row[m]
                lines.append(f"| {row['items']:,} | {m} | {r.get('build_s', 0):.1f} | "
                             f"{r['users_per_s']:,.0f} | {r['peak_extra_MiB']:,.0f} | "
                             f"{r['recall@20']:.3f} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows,
                               "markdown": "\n".join(lines)}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
