r"""Cost of STAIR's modality initialisation and modality graph as the catalogue grows.

For :math:`N` items (Gaussian 384-d features, timing-only) this times :func:`stair_pyg.nn.whiten`
and :func:`stair_pyg.nn.modality_graph` with the exact and the approximate (``method="ivf"``)
search, the IVF graph's edge recall, and the peak memory growth of each beside the
:math:`4 N^2` bytes of a dense similarity matrix. Exact graphs above ``--max-graph-items`` are
**estimated** by :math:`N^2` scaling (the output says so); IVF runs up to ``--ivf-max-items``.
Gaussian features are IVF's worst case, so its recall is also measured on the real features of
``../shared/data/scientific`` where present.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import torch

from _results import DATA_ROOT, common_arguments, out_dir, publish
from stair_pyg.profiling.measure import (MemoryMeter, device_name, environment, fmt_bytes,
                                         fmt_seconds, synchronize)
from stair_pyg.profiling.report import markdown_table


def measure(fn, device: torch.device, keep: Optional[list] = None) -> Dict[str, Any]:
    r"""Seconds and peak memory growth of one call of :obj:`fn` (after its inputs exist); its
    output is appended to :obj:`keep` if given."""
    meter = MemoryMeter(device)
    with meter:
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        seconds = time.perf_counter() - t0
    peak = meter.peak_bytes()
    if device.type == "cuda":
        peak = meter.result["peak_allocated"] - meter.result["base_allocated"]
    if keep is not None:
        keep.append(out)
    del out
    return {"seconds": seconds, "peak_bytes": peak}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e4,3e4,1e5,3e5,1e6")
    for flag, default in (("--embedding-dim", 64), ("--k", 5), ("--max-graph-items", 100_000),
                          ("--ivf-max-items", 1_000_000)):
        parser.add_argument(flag, type=int, default=default)
    return common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from stair_pyg.nn import modality_graph, whiten
    from stair_pyg.nn.knn import knn_recall
    from stair_pyg.train import resolve_device

    if args.quick:
        args.sizes, args.max_graph_items, args.ivf_max_items = "2000,4000", 4000, 4000
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = out_dir(args, f"modality-{device.type}")
    sizes = sorted({int(float(s)) for s in args.sizes.split(",")})
    dims = {"text": 384}
    # Warm-up (library initialisation, first-touch allocations), excluded from every row.
    warm = [torch.randn(min(sizes), f).to(device) for f in dims.values()]
    [whiten(x, args.embedding_dim) for x in warm]
    modality_graph(warm, [args.k] * len(warm))
    del warm
    rows: List[Dict[str, Any]] = []
    last_graph: Optional[Dict[str, Any]] = None
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        feats = [torch.randn(n, f, generator=gen).to(device) for f in dims.values()]
        input_bytes = sum(x.numel() * x.element_size() for x in feats)
        row: Dict[str, Any] = {"items": n, "input_bytes": input_bytes,
                               "dense_similarity_bytes": 4 * n * n}
        row["whiten"] = measure(lambda: [whiten(x, args.embedding_dim) for x in feats], device)
        exact_graph: list = []
        if n <= args.max_graph_items:
            row["graph"] = measure(lambda: modality_graph(feats, [args.k] * len(feats)), device,
                                   exact_graph)
            row["graph"]["how"] = "measured"
            last_graph = {"items": n, **row["graph"]}
        elif last_graph is not None:
            scale = (n / last_graph["items"]) ** 2
            row["graph"] = {"seconds": last_graph["seconds"] * scale, "peak_bytes": None,
                            "how": f"estimated: N^2 scaling from N = {last_graph['items']:,}"}
        if n <= args.ivf_max_items:
            ivf_graph: list = []
            row["ivf"] = measure(lambda: modality_graph(feats, [args.k] * len(feats),
                                                        method="ivf"), device, ivf_graph)
            if exact_graph:
                row["ivf"]["edge_recall"] = knn_recall(ivf_graph[0][0], exact_graph[0][0], n)
            del ivf_graph
        del exact_graph
        rows.append(row)
        print(f"[modality] N={n:,} done", flush=True)
        feats = None  # free them (a del would leave the timed lambdas' name unbound)
    real = real_feature_recall(args.k)
    result = {"script": "bench_modality", "device": str(device),
              "device_name": device_name(device), "environment": environment(),
              "dims": dims, "k": args.k, "embedding_dim": args.embedding_dim, "results": rows,
              "real_feature_recall": real}
    publish(result, out, report, args.write_results, device.type,
            "Modality initialisation and graph ({dev})",
            "Times are relative to the smallest size; memory is absolute.",
            f"python benchmarks/bench_modality.py --sizes {args.sizes} --device {device.type}")
    return 0


def report(result: Dict[str, Any], absolute: bool) -> str:
    rows = result["results"]
    dims = ", ".join(f"{k} {v}-d" for k, v in result["dims"].items())
    lines = [f"Features: {dims} (Gaussian, timing-only); k = {result['k']}; whitened to "
             f"{result['embedding_dim']} dimensions; device {result['device_name']}.", ""]
    t0w = rows[0]["whiten"]["seconds"] if rows else 1.0
    t0g = rows[0].get("graph", {}).get("seconds") or 1.0
    headers = ["items N", "features", "whiten time" if absolute else "whiten time × smallest",
               "whiten peak", "exact graph time" if absolute else "exact graph time × smallest",
               "exact graph peak", "exact graph",
               "IVF graph time" if absolute else "IVF graph time × smallest exact",
               "IVF graph peak", "IVF edge recall", "dense N×N would be"]
    out = []
    for r in rows:
        g, v = r.get("graph", {}), r.get("ivf", {})
        if absolute:
            wt, gt = fmt_seconds(r["whiten"]["seconds"]), fmt_seconds(g.get("seconds"))
            vt = fmt_seconds(v.get("seconds"))
        else:
            wt = f"{r['whiten']['seconds'] / t0w:.1f}×"
            gt = f"{g['seconds'] / t0g:.1f}×" if g.get("seconds") else "n/a"
            vt = f"{v['seconds'] / t0g:.1f}×" if v.get("seconds") else "n/a"
        recall = v.get("edge_recall")
        out.append([f"{r['items']:,}", fmt_bytes(r["input_bytes"]), wt,
                    fmt_bytes(r["whiten"]["peak_bytes"]), gt, fmt_bytes(g.get("peak_bytes")),
                    g.get("how", "n/a"), vt, fmt_bytes(v.get("peak_bytes")),
                    "n/a" if recall is None else f"{recall:.3f}",
                    fmt_bytes(r["dense_similarity_bytes"])])
    lines.append(markdown_table(headers, out, ["r"] * 6 + ["l"] + ["r"] * 4))
    lines.append("")
    lines.append("Peak columns: memory growth of the call over its inputs (features already "
                 "loaded). A bounded build keeps the graph peak far below the dense N×N column. "
                 "IVF edge recall: the fraction of the exact graph's edges that the IVF graph "
                 "(defaults: ceil(sqrt(8N)) clusters, 8 probed) also has; Gaussian features are "
                 "its worst case.")
    real = result.get("real_feature_recall")
    if real:
        lines += ["", f"IVF recall on real features (`{real['dataset']}`, {real['items']:,} "
                  "items; recall of each item's top-k neighbours, k the larger of STAIR's default "
                  "and 5):", ""]
        lines.append(markdown_table(
            ["modality", "dimension", "k", "IVF recall"],
            [[m, str(d["dim"]), str(d["k"]), f"{d['recall']:.3f}"]
             for m, d in real["modalities"].items()]))
    return "\n".join(lines)


def real_feature_recall(k_default: int) -> Optional[Dict[str, Any]]:
    r"""Recall of the IVF search against the exact one on ``scientific``'s real features (their
    top-k neighbours per item, k the larger of STAIR's default and 5), or :obj:`None` without
    the data."""
    import numpy as np

    from stair_pyg.models.stair import DEFAULT_KNN_K
    from stair_pyg.nn import knn_cosine
    from stair_pyg.nn.knn import knn_recall

    folder = DATA_ROOT / "scientific"
    files = sorted(folder.glob("*_feat.npy")) if folder.exists() else []
    if not files:
        return None
    out: Dict[str, Any] = {"dataset": "scientific", "modalities": {}}
    for path in files:
        name = path.stem[:-len("_feat")]
        x = torch.from_numpy(np.load(path)).float()
        k = max(DEFAULT_KNN_K.get(name, k_default), 5)
        exact = knn_cosine(x, k)
        approx = knn_cosine(x, k, method="ivf")
        out["items"] = x.size(0)
        out["modalities"][name] = {"dim": x.size(1), "k": k,
                                   "recall": knn_recall(approx, exact, x.size(0))}
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
