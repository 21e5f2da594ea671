r"""How close STAIR's propagation runs to the memory-bandwidth limit, and how it compares with
PyG's ``LGConv``.

:class:`~stair_pyg.nn.StepwiseConv` (:math:`L` sparse products per call) is timed forward and
backward for every adjacency format it accepts (``SparseAdj``, a torch CSR matrix, PyG's
``EdgeIndex``, ``torch_sparse.SparseTensor`` where installed, a plain ``edge_index``), beside
the product alone (:func:`~stair_pyg.nn.sparse.csr_mm`) and the rows of one training batch
(``index=``); on the CPU the product and the ``SparseAdj`` path run with each kernel there is
(numba's where installed, with and without its prefetching, and torch's), the other formats
with the default one. The ceiling is a
measured large copy (``dst.copy_(src)``, read + write), timed in rounds alternated with the
products alone (:func:`paired_ceiling`: a shared host moves the bandwidth it leaves a process
between runs, so the headline fraction compares the two round by round); the bytes needed by
one pass are the
compulsory traffic of :math:`L` CSR products (int32 row pointers and columns, float32 values,
:math:`X` read and :math:`Y` written once), so ``bytes / time / copy bandwidth`` says how close a
format runs to the limit. A second reference is specific to the access pattern: the rows the
:math:`L` products read, in their order, gathered with no arithmetic (torch's ``index_select`` in
chunks into a cache-sized buffer, :func:`gather_rows`): a product near it runs at the rate a plain
gather of those rows reaches; the numba kernel, which prefetches them, can beat it (on ``sports``
it does). For each format PyG takes, LightGCN's
propagation with :class:`torch_geometric.nn.LGConv`,
:math:`\frac{1}{L+1}\sum_l \mathrm{LGConv}^l(x)`, is timed on the same un-normalised adjacency
(both sides normalise it themselves): ``× LGConv`` is the ratio of forward + backward times.
Where numba is installed, the training steps of ``--step-models`` are then timed with each CPU
kernel (numba's also without prefetching), alternated on one model (:func:`kernel_steps`): what
the kernel is worth to a whole step, not to the product alone.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from _results import DATA_ROOT, common_arguments, out_dir, publish
from stair_pyg.profiling.bench import synthetic_graph
from stair_pyg.profiling.measure import (PhaseTimer, device_name, environment, fmt_bytes,
                                         fmt_seconds, time_call)
from stair_pyg.profiling.report import markdown_table


class LGConvStack(torch.nn.Module):
    r"""LightGCN's propagation with PyG's :class:`~torch_geometric.nn.LGConv`."""

    def __init__(self, num_layers: int):
        from torch_geometric.nn import LGConv

        super().__init__()
        self.conv, self.num_layers = LGConv(), num_layers

    def forward(self, x: torch.Tensor, adj: Any) -> torch.Tensor:
        out = h = x
        for _ in range(self.num_layers):
            h = self.conv(h, adj)
            out = out + h
        return out / (self.num_layers + 1)


def adjacency_formats(edge_index: torch.Tensor, num_users: int, num_items: int,
                      device: torch.device) -> Dict[str, Any]:
    r"""The symmetric user-item graph in every format :class:`StepwiseConv` accepts."""
    from torch_geometric import EdgeIndex

    from stair_pyg.nn.sparse import user_item_adjacency

    n = num_users + num_items
    full = torch.stack([torch.cat([edge_index[0], edge_index[1] + num_users]),
                        torch.cat([edge_index[1] + num_users, edge_index[0]])]).to(device)
    full = full[:, torch.argsort(full[0] * n + full[1])]
    out: Dict[str, Any] = {
        "SparseAdj": user_item_adjacency(edge_index, num_users, num_items).to(device),
        "torch CSR": torch.sparse_coo_tensor(full.flip(0), torch.ones(full.size(1), device=device),
                                             (n, n), check_invariants=False
                                             ).coalesce().to_sparse_csr(),
        "EdgeIndex": EdgeIndex(full, sparse_size=(n, n), sort_order="row"),
        "SparseTensor": None}
    try:
        from torch_sparse import SparseTensor  # optional

        out["SparseTensor"] = SparseTensor(row=full[1], col=full[0], sparse_sizes=(n, n))
    except ImportError:
        pass
    out["edge_index"] = full
    return out


@contextlib.contextmanager
def no_prefetch() -> Iterator[None]:
    r"""The numba kernel without its prefetching, inside the block (a distance no non-zero
    reaches; the arithmetic is the same)."""
    from stair_pyg.nn import cpu_kernel

    before = cpu_kernel.PREFETCH_DISTANCE
    cpu_kernel.PREFETCH_DISTANCE = 1 << 62
    try:
        yield
    finally:
        cpu_kernel.PREFETCH_DISTANCE = before


def gather_rows(x: torch.Tensor, columns: torch.Tensor, layers: int, chunk: int = 8192) -> None:
    r"""Reads the rows of :obj:`x` that :obj:`layers` CSR products with these column indices
    read, in their order, and nothing else: ``index_select`` of :obj:`chunk` rows at a time
    into one reused buffer (2 MiB at 64 float32 channels), so that the writes stay in cache and
    the time is that of fetching the rows."""
    buffer = torch.empty(min(chunk, columns.numel()), x.size(1), dtype=x.dtype, device=x.device)
    for _ in range(layers):
        for start in range(0, columns.numel(), chunk):
            part = columns[start:start + chunk]
            torch.index_select(x, 0, part, out=buffer[:part.numel()])


def bench_format(conv, x: torch.Tensor, adj: Any, device: torch.device, repeats: int,
                 warmup: int, index: Optional[torch.Tensor] = None) -> Dict[str, float]:
    r"""Median forward and backward seconds of ``conv(x, adj)`` (with :obj:`index`: only those
    rows, as a training batch asks for)."""
    grad = torch.randn(x.size(0) if index is None else index.numel(), x.size(1), device=device)
    fwd: List[float] = []
    bwd: List[float] = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_(True)
        timer = PhaseTimer(device)
        with timer.phase("forward"):
            out = conv(xi, adj) if index is None else conv(xi, adj, index=index)
        with timer.phase("backward"):
            out.backward(grad)
        if i >= warmup:
            t = timer.totals()
            fwd.append(t["forward"])
            bwd.append(t["backward"])
    return {"forward_s": statistics.median(fwd), "backward_s": statistics.median(bwd)}


def paired_ceiling(product, need: int, copy_mib: int, device: torch.device,
                   rounds: int) -> Dict[str, Any]:
    r"""The copy ceiling, measured in :obj:`rounds` rounds alternated with :obj:`product` (the
    order swapped every round): one copy of :obj:`copy_mib` MiB (``dst.copy_(src)``, read +
    write) and the median of three calls of the product per round. The bandwidth a shared host
    leaves a process moves between runs (on the 2-core EPYC of RESULTS.md the copy gave 20 to
    52 GB/s on one morning), so each round's fraction compares the product and the copy under
    the same load: ``product_fraction`` is the median of the rounds' ``need / product time /
    copy bandwidth``, with its range; ``bandwidth`` is the median copy bandwidth, the ceiling
    of the report's other fractions."""
    src = torch.rand(copy_mib * 2**18, device=device)
    dst = torch.empty_like(src)
    copy_bytes = 8 * src.numel()
    copies: List[float] = []  # bandwidths, bytes per second
    products: List[float] = []
    steps = [(lambda: dst.copy_(src), copy_bytes, 1, copies), (product, need, 3, products)]
    for fn, _, _, _ in steps:
        time_call(fn, device, repeats=1, warmup=1)
    for r in range(max(1, rounds)):
        for fn, nbytes, repeats, seen in (steps if r % 2 == 0 else steps[::-1]):
            seen.append(nbytes / time_call(fn, device, repeats=repeats, warmup=0))
    fractions = [p / c for p, c in zip(products, copies)]
    bandwidth = statistics.median(copies)
    return {"bytes": copy_bytes, "seconds": copy_bytes / bandwidth, "bandwidth": bandwidth,
            "bandwidth_range": [min(copies), max(copies)], "rounds": len(copies),
            "product_bandwidth": statistics.median(products),
            "product_fraction": statistics.median(fractions),
            "product_fraction_range": [min(fractions), max(fractions)]}


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data.hetero import num_users_items, train_edge_index
    from stair_pyg.nn import StepwiseConv
    from stair_pyg.nn.cpu_kernel import cpu_kernel, numba_available, set_cpu_kernel
    from stair_pyg.nn.sparse import csr_mm
    from stair_pyg.train import resolve_device, tune_cpu_allocator

    if args.quick:
        args.dataset, args.num_interactions = "synthetic", 3000
        args.repeats, args.warmup, args.copy_mib, args.ceiling_rounds = 2, 1, 16, 2
        args.step_rounds, args.step_batches = 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu":
        # What training does (run_experiment), so that the products here run under the
        # allocator settings of a training step.
        tune_cpu_allocator()
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
    n, nnz = num_users + num_items, 2 * edge_index.size(1)
    d, layers = args.channels, args.num_layers
    formats = adjacency_formats(edge_index, num_users, num_items, device)
    x = torch.randn(n, d, device=device)
    # Compulsory traffic of L CSR products [N, N] x [N, d]: int32 indices, float32 values.
    need = layers * (4 * (n + 1) + 8 * nnz + 8 * n * d)
    rows: List[Dict[str, Any]] = []
    sparse_adj = formats["SparseAdj"]

    def raw():  # the raw product alone, L times: what the sparse kernel itself reaches
        h = x
        for _ in range(layers):
            h = csr_mm(sparse_adj.adj, h)
        return h

    # On the CPU, the product and the SparseAdj path with every kernel there is (the numba
    # kernel where numba is installed, and torch's product), one after the other.
    kernels = [k for k in ("numba", "torch") if k == "torch" or numba_available()] \
        if device.type == "cpu" else [None]
    for kernel in kernels:
        previous = set_cpu_kernel(kernel) if kernel else None
        label = f", {kernel} kernel" if kernel else ""
        try:
            rows.append({"format": f"csr_mm alone ({layers}x{label})", "kernel": kernel,
                         "backward_s": float("nan"),
                         "forward_s": time_call(raw, device, repeats=args.repeats,
                                                warmup=args.warmup)})
            if kernel == "numba":  # the same kernel with its prefetching switched off
                with no_prefetch():
                    rows.append({"format": f"csr_mm alone ({layers}x, numba kernel, no "
                                           "prefetch)", "kernel": "numba, no prefetch",
                                 "backward_s": float("nan"),
                                 "forward_s": time_call(raw, device, repeats=args.repeats,
                                                        warmup=args.warmup)})
            conv = StepwiseConv(d, num_layers=layers).to(device)
            rows.append({"format": f"SparseAdj{label}", "kernel": kernel,
                         **bench_format(conv, x, sparse_adj, device, args.repeats, args.warmup)})
        finally:
            if kernel:
                set_cpu_kernel(previous)
    columns = sparse_adj.adj.col_indices().long()
    rows.append({"format": f"row gather alone ({layers}x the products' rows, no arithmetic)",
                 "kernel": None, "gather": True, "backward_s": float("nan"),
                 "forward_s": time_call(lambda: gather_rows(x, columns, layers), device,
                                        repeats=args.repeats, warmup=args.warmup)})
    for fmt, adj in formats.items():
        if fmt == "SparseAdj":
            continue
        if adj is None:
            rows.append({"format": fmt, "skipped": "torch-sparse not installed"})
            continue
        conv = StepwiseConv(d, num_layers=layers).to(device)
        row = {"format": fmt, **bench_format(conv, x, adj, device, args.repeats, args.warmup)}
        lg = bench_format(LGConvStack(layers), x, adj, device, args.repeats, args.warmup)
        row["lgconv_s"] = lg["forward_s"] + lg["backward_s"]
        row["vs_lgconv"] = (row["forward_s"] + row["backward_s"]) / row["lgconv_s"]
        rows.append(row)
    # What a training step asks for: the rows of one batch of (user, positive, negative) triples,
    # drawn as the trainer draws them. Only the ratio is meaningful here (the bytes needed are
    # those of the batch's receptive field, not of L full products).
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(edge_index.size(1), (args.batch_size,), generator=gen)
    index = torch.cat([edge_index[0, pick], edge_index[1, pick] + num_users,
                       torch.randint(num_items, (args.batch_size,), generator=gen) + num_users])
    conv = StepwiseConv(d, num_layers=layers).to(device)
    rows.append({"format": f"SparseAdj, rows of a {args.batch_size}-triple batch (index=)",
                 "batch_rows": True, **bench_format(conv, x, sparse_adj, device, args.repeats,
                                                    args.warmup, index.to(device))})
    ceiling = paired_ceiling(raw, need, args.copy_mib, device, args.ceiling_rounds)
    for r in rows:
        for phase in ("forward", "backward"):
            s = r.get(f"{phase}_s")
            if s is not None and s == s and s > 0 and not r.get("batch_rows"):
                r[f"{phase}_bandwidth"] = need / s
                r[f"{phase}_of_ceiling"] = need / s / ceiling["bandwidth"]
    steps = kernel_steps(ds, args, device) if kernels[0] == "numba" else []
    result = {"script": "bench_propagation", "dataset": name, "num_nodes": n, "nnz": nnz,
              "channels": d, "num_layers": layers, "bytes_needed_per_pass": need,
              "default_kernel": cpu_kernel() if device.type == "cpu" else None,
              "copy": ceiling, "device": str(device), "device_name": device_name(device),
              "environment": environment(), "results": rows, "steps": steps,
              "step_rounds": args.step_rounds, "step_batches": args.step_batches,
              "batch_size": args.batch_size}
    publish(result, out, report, args.write_results, f"{name}-{device.type}",
            "Propagation: `StepwiseConv` per adjacency format on {dev}",
            "Times are given relative to the precomputed `SparseAdj` path with the default kernel "
            "and to PyG's `LGConv` on the same format; the bandwidth fractions are dimensionless "
            "(this issue's target is set in GB/s, so the ceiling they refer to is given).",
            f"python benchmarks/bench_propagation.py --dataset {args.dataset} --device "
            f"{device.type}" + (f" --threads {args.threads}" if args.threads else "")
            + (f" --step-rounds {args.step_rounds}" if args.step_rounds != 10 else ""))
    return 0


def kernel_steps(ds: Any, args: argparse.Namespace, device: torch.device) -> List[Dict[str, Any]]:
    r"""Training steps (:meth:`~stair_pyg.train.Trainer.train_step` on BPR batches: forward,
    backward, optimizer step) of each of ``--step-models`` with the numba kernel and with
    torch's product, alternated on one model: ``--step-rounds`` rounds of ``--step-batches``
    batches per kernel, the order flipped every round, so that both meet the same machine. The
    median seconds per batch of each and their ratio."""
    import time

    from stair_pyg.nn.cpu_kernel import set_cpu_kernel
    from stair_pyg.profiling.bench import Stepper, build
    from stair_pyg.train import Trainer, seed_everything

    settings = argparse.Namespace(embedding_dim=args.channels, num_layers=args.num_layers,
                                  model_hparams={}, device=str(device))
    out: List[Dict[str, Any]] = []
    for model_name in [m for m in args.step_models.split(",") if m]:
        seed_everything(0)
        try:
            model = build(model_name, ds.data, settings)
        except (ValueError, KeyError) as error:  # e.g. STAIR on a graph without item features
            out.append({"model": model_name, "skipped": str(error).split("\n")[0]})
            continue
        trainer = Trainer(model, ds, {"device": str(device), "batch_size": args.batch_size,
                                      "lr": 1e-3, "seed": 0}, progress=False,
                          model_name=model_name)
        step = Stepper(trainer, args.batch_size)
        seconds: Dict[str, List[float]] = {"numba": [], "numba, no prefetch": [], "torch": []}

        def arm(kernel: str) -> contextlib.AbstractContextManager:
            set_cpu_kernel(kernel.split(",")[0])
            return no_prefetch() if kernel.endswith("no prefetch") else contextlib.nullcontext()

        previous = set_cpu_kernel("numba")
        try:
            model.train()
            for kernel in seconds:
                with arm(kernel):
                    for _ in range(max(1, args.warmup)):
                        step()
            for r in range(args.step_rounds):
                order = list(seconds)[r % 3:] + list(seconds)[:r % 3]  # each arm first in turn
                for kernel in (order if r % 2 == 0 else order[::-1]):
                    with arm(kernel):
                        step.new_epoch()  # the timed steps slice one epoch's draw, untimed
                        start = time.perf_counter()
                        for _ in range(args.step_batches):
                            step()
                    seconds[kernel].append((time.perf_counter() - start) / args.step_batches)
        finally:
            set_cpu_kernel(previous)
        numba_s, plain_s, torch_s = (statistics.median(v) for v in seconds.values())
        out.append({"model": model_name, "numba_s": numba_s, "numba_no_prefetch_s": plain_s,
                    "torch_s": torch_s, "speedup": torch_s / numba_s,
                    "prefetch_speedup": plain_s / numba_s, "numba_rounds": seconds["numba"],
                    "numba_no_prefetch_rounds": seconds["numba, no prefetch"],
                    "torch_rounds": seconds["torch"]})
        print(f"[propagation] {model_name} step: numba {numba_s * 1e3:.1f} ms (without "
              f"prefetching {plain_s * 1e3:.1f} ms), torch {torch_s * 1e3:.1f} ms per batch "
              f"({torch_s / numba_s:.2f}x)", flush=True)
    return out


def _ceiling(result: Dict[str, Any]) -> str:
    r"""How the ceiling was measured, and the product alone against it round by round."""
    copy = result["copy"]
    low, high = copy["bandwidth_range"]
    frac_low, frac_high = copy["product_fraction_range"]
    kernel = f"the {result['default_kernel']} kernel" if result.get("default_kernel") else \
        "the default kernel"
    return (f"the median of {copy['rounds']} copies, {low / 1e9:.1f}-{high / 1e9:.1f} GB/s, each "
            f"alternated with the {result['num_layers']} products alone; in those rounds the "
            f"products with {kernel} ran at {100 * copy['product_fraction']:.1f}% of the copy "
            f"of the same round, the median of the rounds, range {100 * frac_low:.1f}-"
            f"{100 * frac_high:.1f}%")


def report(result: Dict[str, Any], absolute: bool) -> str:
    lines = [f"Graph `{result['dataset']}`: {result['num_nodes']:,} nodes, {result['nnz']:,} "
             f"non-zeros; d = {result['channels']}, L = {result['num_layers']}; "
             f"device {result['device_name']}.",
             "Bytes needed per pass (L CSR products): "
             f"{fmt_bytes(result['bytes_needed_per_pass'])}; "
             f"copy bandwidth ceiling {result['copy']['bandwidth'] / 1e9:.1f} GB/s "
             f"(a {fmt_bytes(result['copy']['bytes'])} copy, read + write; {_ceiling(result)})."
             + (f" Formats other than SparseAdj use the default CPU kernel "
                f"({result['default_kernel']})." if result.get("default_kernel") else ""), ""]
    default = result.get("default_kernel")
    ref = next((r for r in result["results"] if r.get("format", "").startswith("SparseAdj")
                and r.get("kernel") == default and "index=" not in r["format"]), {})
    times = ["forward", "backward"] if absolute else [f"forward × {ref.get('format')}",
                                                      f"backward × {ref.get('format')}"]
    headers = (["format"] + times + (["forward GB/s", "backward GB/s"] if absolute else [])
               + ["forward / ceiling", "backward / ceiling", "fwd+bwd × LGConv"])
    gbs_ceiling = result["copy"]["bandwidth"] / 1e9

    def pct(v):  # the fraction of the ceiling, and the ceiling it is a fraction of
        return f"{100 * v:.1f}% of {gbs_ceiling:.1f} GB/s" if v is not None and v == v else "n/a"
    rows = []
    for r in result["results"]:
        if "skipped" in r:
            rows.append([r["format"], f"skipped: {r['skipped']}"] + [""] * (len(headers) - 2))
            continue
        if absolute:
            gbs = lambda k: f"{r[k] / 1e9:.2f}" if k in r else "n/a"  # noqa: E731
            cells = [fmt_seconds(r["forward_s"]), fmt_seconds(r["backward_s"]),
                     gbs("forward_bandwidth"), gbs("backward_bandwidth")]
        else:
            cells = [f"{r[k] / ref[k]:.2f}×" if r.get(k) == r.get(k) and r.get(k) and ref.get(k)
                     else "n/a" for k in ("forward_s", "backward_s")]
        rows.append([r["format"], *cells, pct(r.get("forward_of_ceiling")),
                     pct(r.get("backward_of_ceiling")),
                     f"{r['vs_lgconv']:.2f}×" if "vs_lgconv" in r else ""])
    lines += [markdown_table(headers, rows)]
    gather = next((r for r in result["results"] if r.get("gather")), None)
    alone = [r for r in result["results"] if r["format"].startswith("csr_mm alone")]
    if gather and alone:
        names = {"numba": "numba kernel", "numba, no prefetch": "numba kernel without "
                 "prefetching", "torch": "torch's product"}
        ratios = [f"{names.get(r['kernel'], 'the product')} "
                  f"{r['forward_s'] / gather['forward_s']:.2f}×" for r in alone]
        lines += ["", "The product alone against a plain gather of the rows it reads (the row "
                  "gather line: torch's index_select, which does not prefetch), in multiples of "
                  f"the gather's time: {'; '.join(ratios)}."]
    if result.get("steps"):
        lines += ["", f"Training steps with each CPU kernel (batches of {result['batch_size']} "
                  f"triples: forward, backward, optimizer step), alternated on one model: "
                  f"{result['step_rounds']} rounds of {result['step_batches']} batches per "
                  "kernel, the order rotated every round; medians per batch.", ""]
        step_rows = []
        for r in result["steps"]:
            if "skipped" in r:
                step_rows.append([r["model"], f"skipped: {r['skipped']}", "", "", "", ""])
                continue
            keys = ("numba_s", "numba_no_prefetch_s", "torch_s")
            times = ([fmt_seconds(r[k]) if k in r else "n/a" for k in keys] if absolute else
                     [f"{r[k] / r['torch_s']:.2f}×" if k in r else "n/a" for k in keys])
            step_rows.append([r["model"], *times, f"{r['speedup']:.2f}×",
                              f"{r['prefetch_speedup']:.2f}×" if "prefetch_speedup" in r
                              else "n/a"])
        lines.append(markdown_table(["model", "numba kernel", "numba kernel, no prefetch",
                                     "torch's product", "speed-up of the numba kernel",
                                     "speed-up from prefetching"], step_rows))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", default="sports", help="a graph of ../shared/data (absent: synthetic)")
    for flag, default in (("--num-interactions", 200_000), ("--channels", 64),
                          ("--num-layers", 3), ("--repeats", 5), ("--warmup", 2),
                          ("--copy-mib", 512), ("--ceiling-rounds", 10),
                          ("--batch-size", 1024), ("--step-rounds", 10),
                          ("--step-batches", 5)):
        add(flag, type=int, default=default)
    add("--step-models", default="stair,lightgcn",
        help="models whose training step is timed with each CPU kernel ('' for none)")
    return run(common_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
