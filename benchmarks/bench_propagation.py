r"""How close STAIR's propagation runs to the memory-bandwidth limit of the machine.

:class:`~stair_pyg.nn.StepwiseConv` (:math:`L` sparse products per call) is timed forward and
backward for every adjacency format it accepts (``SparseAdj``, a torch CSR matrix, PyG's
``EdgeIndex``, ``torch_sparse.SparseTensor`` where installed, a plain ``edge_index``), beside
``torch.sparse.mm`` alone and the rows of one training batch (``index=``). The ceiling is a
measured large copy (``dst.copy_(src)``, read + write); the bytes needed by one pass are the
compulsory traffic of :math:`L` CSR products (int32 row pointers and columns, float32 values,
:math:`X` read and :math:`Y` written once), so ``bytes / time / copy bandwidth`` says how close a
format runs to the limit (see ``benchmarks/README.md``).

Examples::

    python benchmarks/bench_propagation.py --quick
    python benchmarks/bench_propagation.py --dataset sports --write-results
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence

import torch

from _results import DATA_ROOT, common_arguments, out_dir, publish
from stair_pyg.profiling.bench import synthetic_graph
from stair_pyg.profiling.measure import PhaseTimer, device_name, environment, fmt_bytes, fmt_seconds, median, time_call
from stair_pyg.profiling.report import markdown_table


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int) -> Dict[str, float]:
    r"""Bytes per second of ``dst.copy_(src)`` over :obj:`nbytes`-sized float32 tensors
    (read + write counted)."""
    n = max(1, nbytes // 4)
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), device, repeats=repeats, warmup=2)
    return {"bytes": 2 * 4 * n, "seconds": t["median"], "bandwidth": 2 * 4 * n / t["median"]}


def adjacency_formats(edge_index: torch.Tensor, num_users: int, num_items: int,
                      device: torch.device) -> Dict[str, Any]:
    r"""The symmetric user-item graph in every format :class:`StepwiseConv` accepts."""
    from torch_geometric import EdgeIndex

    from stair_pyg.nn.sparse import user_item_adjacency

    n = num_users + num_items
    src = torch.cat([edge_index[0], edge_index[1] + num_users])
    dst = torch.cat([edge_index[1] + num_users, edge_index[0]])
    full = torch.stack([src, dst]).to(device)
    order = torch.argsort(full[0] * n + full[1])
    full = full[:, order]
    out: Dict[str, Any] = {
        "SparseAdj": user_item_adjacency(edge_index, num_users, num_items).to(device),
        "torch CSR": torch.sparse_coo_tensor(full.flip(0), torch.ones(full.size(1), device=device),
                                             (n, n), check_invariants=False
                                             ).coalesce().to_sparse_csr(),
        "EdgeIndex": EdgeIndex(full, sparse_size=(n, n), sort_order="row"),
    }
    try:
        from torch_sparse import SparseTensor  # optional

        out["SparseTensor"] = SparseTensor(row=full[1], col=full[0], sparse_sizes=(n, n))
    except ImportError:
        out["SparseTensor"] = None
    out["edge_index"] = full
    return out


def spmm_bytes(num_nodes: int, nnz: int, channels: int) -> int:
    r"""Compulsory traffic of one CSR product ``[N, N] x [N, d]`` (int32 indices, float32)."""
    return 4 * (num_nodes + 1) + 4 * nnz + 4 * nnz + 2 * 4 * num_nodes * channels


def bench_format(conv, x: torch.Tensor, adj: Any, device: torch.device, repeats: int,
                 warmup: int, index: Optional[torch.Tensor] = None) -> Dict[str, float]:
    r"""Median forward and backward seconds of ``conv(x, adj)`` (``conv(x, adj, index=index)``
    when :obj:`index` is given: only those rows, as a training batch asks for)."""
    grad = torch.randn_like(x) if index is None else torch.randn(index.numel(), x.size(1),
                                                                 device=x.device)
    fwd: List[float] = []
    bwd: List[float] = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_(True)
        timer = PhaseTimer(device)
        with timer.phase("forward"):
            out = conv(xi, adj) if index is None else conv(xi, adj, index=index)
        with timer.phase("backward"):
            out.backward(grad)
        t = timer.totals()
        if i >= warmup:
            fwd.append(t["forward"])
            bwd.append(t["backward"])
    return {"forward_s": median(fwd), "backward_s": median(bwd)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", default="sports", help="a real graph of ../shared/data, or synthetic "
        "(default: sports, synthetic where absent)")
    for flag, default in (("--num-interactions", 200_000), ("--channels", 64),
                          ("--num-layers", 3), ("--repeats", 5), ("--warmup", 2)):
        add(flag, type=int, default=default)
    add("--copy-mib", type=int, default=512,
        help="size of the copied tensor for the bandwidth ceiling (default: 512)")
    add("--formats", default=None, help="comma-separated subset of formats")
    add("--batch-size", type=int, default=1024,
        help="triples of the batch whose rows the index= row computes (default: 1024)")
    return common_arguments(parser, "--device", "--out", "--write-results", "--quick")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data.hetero import num_users_items, train_edge_index
    from stair_pyg.nn import StepwiseConv
    from stair_pyg.train import resolve_device

    if args.quick:
        args.dataset, args.num_interactions = "synthetic", 3000
        args.repeats, args.warmup, args.copy_mib = 2, 1, 16
    device = resolve_device(args.device)
    out = out_dir(args, f"propagation-{device.type}")
    torch.manual_seed(0)

    name = args.dataset
    if name != "synthetic" and not (DATA_ROOT / name).exists():
        print(f"[propagation] {DATA_ROOT / name} absent: using a synthetic graph", flush=True)
        name = "synthetic"
    if name == "synthetic":
        ds = synthetic_graph(args.num_interactions)
    else:
        from stair_pyg.data import load_dataset

        ds = load_dataset({"format": "mmrec", "path": str(DATA_ROOT / name)})
    num_users, num_items = num_users_items(ds.data)
    edge_index = train_edge_index(ds.data)
    n = num_users + num_items
    nnz = 2 * edge_index.size(1)
    formats = adjacency_formats(edge_index, num_users, num_items, device)
    if args.formats:
        keep = args.formats.split(",")
        formats = {k: v for k, v in formats.items() if k in keep}

    ceiling = copy_bandwidth(device, args.copy_mib * 2**20, args.repeats)
    x = torch.randn(n, args.channels, device=device)
    need = args.num_layers * spmm_bytes(n, nnz, args.channels)
    rows: List[Dict[str, Any]] = []
    # The raw product alone, L times: what the sparse kernel itself reaches.
    csr = formats.get("SparseAdj")
    if csr is not None:
        adj = csr.adj

        def raw():
            h = x
            for _ in range(args.num_layers):
                h = torch.sparse.mm(adj, h)
            return h

        t = time_call(raw, device, repeats=args.repeats, warmup=args.warmup)
        rows.append({"format": f"torch.sparse.mm alone ({args.num_layers}x)",
                     "forward_s": t["median"], "backward_s": float("nan")})
    for fmt, adj in formats.items():
        if adj is None:
            rows.append({"format": fmt, "skipped": "torch-sparse not installed"})
            continue
        conv = StepwiseConv(args.channels, num_layers=args.num_layers).to(device)
        rows.append({"format": fmt, **bench_format(conv, x, adj, device, args.repeats,
                                                   args.warmup)})
    if csr is not None:
        # What a training step asks for: the rows of one batch of (user, positive, negative)
        # triples, drawn as the trainer draws them. Only the ratio is meaningful here (the
        # bytes needed are those of the batch's receptive field, not of L full products).
        gen = torch.Generator().manual_seed(0)
        pick = torch.randint(edge_index.size(1), (args.batch_size,), generator=gen)
        index = torch.cat([edge_index[0, pick], edge_index[1, pick] + num_users,
                           torch.randint(num_items, (args.batch_size,), generator=gen)
                           + num_users]).to(device)
        conv = StepwiseConv(args.channels, num_layers=args.num_layers).to(device)
        rows.append({"format": f"SparseAdj, rows of a {args.batch_size}-triple batch (index=)",
                     "batch_rows": True,
                     **bench_format(conv, x, csr, device, args.repeats, args.warmup, index)})
    for r in rows:
        for phase in ("forward", "backward"):
            s = r.get(f"{phase}_s")
            if s is not None and s == s and s > 0 and not r.get("batch_rows"):
                r[f"{phase}_bandwidth"] = need / s
                r[f"{phase}_of_ceiling"] = need / s / ceiling["bandwidth"]
    result = {"script": "bench_propagation", "dataset": name, "num_nodes": n, "nnz": nnz,
              "channels": args.channels, "num_layers": args.num_layers,
              "bytes_needed_per_pass": need, "copy": ceiling, "device": str(device),
              "device_name": device_name(device), "environment": environment(),
              "results": rows}
    publish(result, out, report, args.write_results, f"{name}-{device.type}",
            "Propagation: `StepwiseConv` per adjacency format on {dev}",
            "Times are given relative to the precomputed `SparseAdj` path; the bandwidth "
            "fractions are dimensionless.",
            f"python benchmarks/bench_propagation.py --dataset {args.dataset} --device "
            f"{device.type}")
    return 0


def report(result: Dict[str, Any], absolute: bool) -> str:
    copy = result["copy"]
    lines = [f"Graph `{result['dataset']}`: {result['num_nodes']:,} nodes, {result['nnz']:,} "
             f"non-zeros; d = {result['channels']}, L = {result['num_layers']}; "
             f"device {result['device_name']}.",
             f"Bytes needed per pass (L CSR products): {fmt_bytes(result['bytes_needed_per_pass'])}"
             + (f"; copy bandwidth ceiling {copy['bandwidth'] / 1e9:.1f} GB/s." if absolute else
                "."), ""]
    ref = next((r for r in result["results"] if r.get("format") == "SparseAdj"), None)
    if absolute:
        headers = ["format", "forward", "backward", "forward GB/s", "backward GB/s",
                   "forward / ceiling", "backward / ceiling"]
    else:
        headers = ["format", "forward × SparseAdj", "backward × SparseAdj", "forward / ceiling",
                   "backward / ceiling"]
    rows = []
    pct = lambda v: f"{100 * v:.1f}%" if v is not None and v == v else "n/a"  # noqa: E731
    for r in result["results"]:
        if "skipped" in r:
            rows.append([r["format"], f"skipped: {r['skipped']}"] + [""] * (len(headers) - 2))
            continue
        if absolute:
            gbs = lambda k: f"{r[k] / 1e9:.2f}" if k in r else "n/a"  # noqa: E731
            rows.append([r["format"], fmt_seconds(r["forward_s"]), fmt_seconds(r["backward_s"]),
                         gbs("forward_bandwidth"), gbs("backward_bandwidth"),
                         pct(r.get("forward_of_ceiling")), pct(r.get("backward_of_ceiling"))])
        else:
            rel = lambda k: (f"{r[k] / ref[k]:.2f}×" if ref and r.get(k) == r.get(k)  # noqa: E731
                             and r.get(k) else "n/a")
            rows.append([r["format"], rel("forward_s"), rel("backward_s"),
                         pct(r.get("forward_of_ceiling")), pct(r.get("backward_of_ceiling"))])
    lines.append(markdown_table(headers, rows))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
