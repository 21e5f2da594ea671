r"""StepwiseConv (STAIR's FSC) against PyG's LGConv, forward + backward, per adjacency format.

Both sides propagate :math:`L` hops over the same adjacency, given in the same format, and start
from un-normalised input (each normalises it):

* ``StepwiseConv(d, L)(x, adj)``;
* LightGCN's propagation with :class:`torch_geometric.nn.LGConv`:
  :math:`\frac{1}{L+1}\sum_l \mathrm{LGConv}^l(x)`.

The default graph has the size of Amazon *sports* (35.6k users, 18.4k items, 218k interactions,
both directions in the homogeneous graph), :math:`d = 64`, :math:`L = 3`. Prints a table of
median seconds and the ratio StepwiseConv / LGConv, and writes ``benchmarks/out/bench_conv.json``.

Usage::

    python benchmarks/bench_conv.py                    # sports-sized graph
    python benchmarks/bench_conv.py --quick            # small graph, a few seconds
    python benchmarks/bench_conv.py --write-results    # also its section of RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

# benchmarks/profile.py would shadow the standard library's `profile` (imported by torch): drop
# this script's folder from the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402
from torch_geometric import EdgeIndex  # noqa: E402
from torch_geometric.nn import LGConv  # noqa: E402
from torch_geometric.typing import WITH_TORCH_SPARSE  # noqa: E402

from benchmarks import _common as C  # noqa: E402
from stair_pyg.nn import StepwiseConv  # noqa: E402


def bipartite_edge_index(num_users: int, num_items: int, num_edges: int, seed: int) -> torch.Tensor:
    r"""A random bipartite graph as a homogeneous, symmetric ``edge_index`` over
    ``num_users + num_items`` nodes (items shifted by ``num_users``), no duplicate pairs."""
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.unique(torch.randint(0, num_users * num_items, (int(num_edges * 1.02),),
                                       generator=gen))
    pairs = pairs[torch.randperm(pairs.numel(), generator=gen)[:num_edges]]
    users, items = pairs // num_items, pairs % num_items + num_users
    return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)


def formats(edge_index: torch.Tensor, num_nodes: int) -> Dict[str, object]:
    out: Dict[str, object] = {"edge_index": edge_index}
    out["EdgeIndex"] = EdgeIndex(edge_index, sparse_size=(num_nodes, num_nodes)).sort_by("col")[0]
    values = torch.ones(edge_index.size(1))
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), values, (num_nodes, num_nodes))
    out["torch_csr"] = adj_t.coalesce().to_sparse_csr()
    if WITH_TORCH_SPARSE:
        from torch_sparse import SparseTensor
        out["SparseTensor"] = SparseTensor(row=edge_index[1], col=edge_index[0],
                                           sparse_sizes=(num_nodes, num_nodes))
    return out


def timed(fn: Callable[[], None], warmup: int, repeats: int,
          sync: Callable[[], None]) -> List[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=35_598)
    parser.add_argument("--items", type=int, default=18_357)
    parser.add_argument("--edges", type=int, default=218_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small graph, few repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    parser.add_argument("--write-results", action="store_true",
                        help="also write this run's section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.users, args.items, args.edges, args.repeats = 2000, 1000, 12_000, 3

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n = args.users + args.items
    edge_index = bipartite_edge_index(args.users, args.items, args.edges, seed=0)
    x = torch.randn(n, args.dim, device=device, requires_grad=True)
    upstream = torch.randn(n, args.dim, device=device)
    stepwise = StepwiseConv(args.dim, args.layers).to(device)
    lgconv = LGConv().to(device)

    def run_stepwise(adj) -> None:
        x.grad = None
        (stepwise(x, adj) * upstream).sum().backward()

    def run_lgconv(adj) -> None:
        x.grad = None
        out, h = x, x
        for _ in range(args.layers):
            h = lgconv(h, adj)
            out = out + h
        ((out / (args.layers + 1)) * upstream).sum().backward()

    rows = []
    print(f"graph: {args.users} users, {args.items} items, {args.edges} interactions "
          f"({edge_index.size(1)} directed edges), d={args.dim}, L={args.layers}, "
          f"device={device}, torch {torch.__version__}, repeats={args.repeats} (median)")
    print(f"{'format':<14}{'StepwiseConv s':>16}{'LGConv s':>12}{'ratio':>8}")
    for name, adj in formats(edge_index, n).items():
        adj = adj.to(device)
        t_step = statistics.median(timed(lambda: run_stepwise(adj), 1, args.repeats, sync))
        t_lg = statistics.median(timed(lambda: run_lgconv(adj), 1, args.repeats, sync))
        rows.append({"format": name, "stepwise_s": t_step, "lgconv_s": t_lg,
                     "ratio": t_step / t_lg})
        print(f"{name:<14}{t_step:>16.4f}{t_lg:>12.4f}{t_step / t_lg:>8.2f}")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"config": {k: v for k, v in vars(args).items() if k != "out"},
              "directed_edges": int(edge_index.size(1)), "torch": torch.__version__,
              "platform": platform.platform(), "threads": torch.get_num_threads(),
              "rows": rows}
    path = out_dir / ("bench_conv_quick.json" if args.quick else "bench_conv.json")
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    if args.write_results and not args.quick:
        env = C.environment()
        note = (f"Absolute times from `{C.device_name(device)}`." if device.type == "cuda"
                else C.machine_note(env) + " Times are medians in seconds; compare the ratio.")
        table = C.markdown_table(
            ["format", "StepwiseConv (s)", "LGConv x L (s)", "ratio"],
            [[r["format"], f"{r['stepwise_s']:.4f}", f"{r['lgconv_s']:.4f}", f"{r['ratio']:.2f}"]
             for r in rows], align=["l", "r", "r", "r"])
        body = "\n".join([
            f"### `StepwiseConv` against PyG's `LGConv`, forward + backward ({device.type})", "",
            note, "",
            f"Random bipartite graph of sports' size: {args.users:,} users, {args.items:,} items, "
            f"{edge_index.size(1):,} directed edges; d = {args.dim}, L = {args.layers}; "
            f"{torch.get_num_threads()} torch threads; median of {args.repeats}. Both sides start "
            "from the un-normalised adjacency in the same format and normalise it themselves; "
            "the issue's target is a ratio of at most 1.3.", "", table, "",
            "Reproduce: `python benchmarks/bench_conv.py --write-results`"])
        C.update_results_section("bench_conv", device.type, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
