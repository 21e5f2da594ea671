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
from pathlib import Path
from typing import Dict

import torch
from torch_geometric import EdgeIndex
from torch_geometric.nn import LGConv
from torch_geometric.typing import WITH_TORCH_SPARSE

from _results import common_arguments, write_section
from stair_pyg.nn import StepwiseConv
from stair_pyg.profiling.measure import device_name, environment, machine_note, time_call
from stair_pyg.profiling.report import markdown_table, write_json
from stair_pyg.train import resolve_device


def bipartite_edge_index(num_users: int, num_items: int, num_edges: int, seed: int) -> torch.Tensor:
    r"""A random bipartite graph as a homogeneous, symmetric ``edge_index`` over
    ``num_users + num_items`` nodes (items shifted by ``num_users``), no duplicate pairs."""
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.unique(torch.randint(0, num_users * num_items, (int(num_edges * 1.02),),
                                       generator=gen))
    pairs = pairs[torch.randperm(pairs.numel(), generator=gen)[:num_edges]]
    users, items = pairs // num_items, pairs % num_items + num_users
    return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)


def formats(edge_index: torch.Tensor, n: int) -> Dict[str, object]:
    r"""The graph in the forms LGConv takes, each laid out as PyG's message passing prefers."""
    out: Dict[str, object] = {
        "edge_index": edge_index,
        "EdgeIndex": EdgeIndex(edge_index, sparse_size=(n, n)).sort_by("col")[0],
        "torch_csr": torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(edge_index.size(1)),
                                             (n, n)).coalesce().to_sparse_csr()}
    if WITH_TORCH_SPARSE:
        from torch_sparse import SparseTensor

        out["SparseTensor"] = SparseTensor(row=edge_index[1], col=edge_index[0],
                                           sparse_sizes=(n, n))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag, default in (("--users", 35_598), ("--items", 18_357), ("--edges", 218_000),
                          ("--dim", 64), ("--layers", 3), ("--repeats", 7)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    common_arguments(parser, "--device", "--write-results", "--quick").set_defaults(device="cpu")
    args = parser.parse_args()
    if args.quick:
        args.users, args.items, args.edges, args.repeats = 2000, 1000, 12_000, 3
    device = resolve_device(args.device)
    n = args.users + args.items
    edge_index = bipartite_edge_index(args.users, args.items, args.edges, seed=0)
    x = torch.randn(n, args.dim, device=device, requires_grad=True)
    upstream = torch.randn(n, args.dim, device=device)
    stepwise, lgconv = StepwiseConv(args.dim, args.layers).to(device), LGConv().to(device)

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

    print(f"graph: {args.users} users, {args.items} items, {args.edges} interactions "
          f"({2 * args.edges} directed edges), d={args.dim}, L={args.layers}, device={device}, "
          f"torch {torch.__version__}, repeats={args.repeats} (median)")
    rows = []
    for name, adj in formats(edge_index, n).items():
        adj = adj.to(device)
        t_step = time_call(lambda: run_stepwise(adj), device, args.repeats)["median"]
        t_lg = time_call(lambda: run_lgconv(adj), device, args.repeats)["median"]
        rows.append({"format": name, "stepwise_s": t_step, "lgconv_s": t_lg,
                     "ratio": t_step / t_lg})
    table = markdown_table(["format", "StepwiseConv (s)", "LGConv x L (s)", "ratio"],
                           [[r["format"], f"{r['stepwise_s']:.4f}", f"{r['lgconv_s']:.4f}",
                             f"{r['ratio']:.2f}"] for r in rows])
    print(table)
    path = Path(args.out) / ("bench_conv_quick.json" if args.quick else "bench_conv.json")
    write_json(path, {"config": {k: v for k, v in vars(args).items() if k != "out"},
                      "directed_edges": 2 * args.edges, "environment": environment(),
                      "rows": rows})
    print(f"wrote {path}")
    if args.write_results and not args.quick:
        note = (f"Absolute times from `{device_name(device)}`." if device.type == "cuda"
                else machine_note(environment()) + " Times are medians in seconds; compare the "
                "ratio.")
        write_section("bench_conv", device.type, [
            f"### `StepwiseConv` against PyG's `LGConv`, forward + backward ({device.type})", "",
            note, "",
            f"Random bipartite graph of sports' size: {args.users:,} users, {args.items:,} items, "
            f"{2 * args.edges:,} directed edges; d = {args.dim}, L = {args.layers}; "
            f"{torch.get_num_threads()} torch threads; median of {args.repeats}. Both sides start "
            "from the un-normalised adjacency in the same format and normalise it themselves; "
            "the issue's target is a ratio of at most 1.3.", "", table, "",
            "Reproduce: `python benchmarks/bench_conv.py --write-results`"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
