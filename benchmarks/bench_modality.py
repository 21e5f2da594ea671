r"""Cost of STAIR's modality initialisation and modality graph as the catalogue grows.

For :math:`N` items from :math:`10^4` to :math:`10^6` (Gaussian features, timing-only; 384-d text
by default, MMRec's 4096-d image with ``--image``) this times

* :func:`stair_pyg.nn.whiten` (centring + thin SVD / Gram eigen-decomposition, MI), and
* :func:`stair_pyg.nn.modality_graph` (chunked cosine top-:math:`k`, symmetrised, normalised),

and records the peak memory growth of each (CPU: peak RSS over the inputs; CUDA:
``max_memory_allocated`` over the inputs). With chunked top-:math:`k` the graph's memory is
:math:`O(\text{chunk} \cdot N + N k)`, never the :math:`4 N^2` bytes of a dense similarity matrix;
the table sets the two side by side. The graph build costs :math:`O(N^2 f)` operations, so sizes
above ``--max-graph-items`` are not run but **estimated** from the largest run by :math:`N^2`
scaling (the output says so).

Examples::

    python benchmarks/bench_modality.py --quick
    python benchmarks/bench_modality.py --sizes 1e4,3e4,1e5,3e5,1e6 --write-results
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

_HERE = Path(__file__).resolve().parent
# Keep this folder off sys.path (its profile.py would shadow the standard library's profile).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import torch

from benchmarks import _common as C


def measure(fn, device: torch.device) -> Dict[str, Any]:
    r"""Seconds and peak memory growth of one call of :obj:`fn` (after its inputs exist)."""
    meter = C.MemoryMeter(device)
    with meter:
        t0 = time.perf_counter()
        out = fn()
        C.synchronize(device)
        seconds = time.perf_counter() - t0
    peak = meter.peak_bytes()
    if device.type == "cuda":
        peak = meter.result["peak_allocated"] - meter.result["base_allocated"]
    del out
    return {"seconds": seconds, "peak_bytes": peak}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1e4,3e4,1e5,3e5,1e6")
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--image", action="store_true",
                        help="add a 4096-d image modality (MMRec's dimension)")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=5, help="neighbours per item (default: 5)")
    parser.add_argument("--max-graph-items", type=int, default=100_000,
                        help="largest N whose graph is built; larger sizes are estimated")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--quick", action="store_true")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.nn import modality_graph, whiten

    if args.quick:
        args.sizes, args.max_graph_items = "2000,4000", 4000
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = C.resolve_device(args.device)
    out_dir = Path(args.out or C.REPO_ROOT / "build" / "bench" / f"modality-{device.type}")
    sizes = sorted({int(float(s)) for s in args.sizes.split(",")})
    dims = {"text": args.text_dim, **({"image": 4096} if args.image else {})}
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
        if n <= args.max_graph_items:
            row["graph"] = measure(lambda: modality_graph(feats, [args.k] * len(feats)), device)
            row["graph"]["how"] = "measured"
            last_graph = {"items": n, **row["graph"]}
        elif last_graph is not None:
            scale = (n / last_graph["items"]) ** 2
            row["graph"] = {"seconds": last_graph["seconds"] * scale, "peak_bytes": None,
                            "how": f"estimated: N^2 scaling from N = {last_graph['items']:,}"}
        rows.append(row)
        g = row.get("graph", {})
        print(f"[modality] N={n:,}: whiten {C.fmt_seconds(row['whiten']['seconds'])} "
              f"(+{C.fmt_bytes(row['whiten']['peak_bytes'])}), graph "
              f"{C.fmt_seconds(g.get('seconds'))} (+{C.fmt_bytes(g.get('peak_bytes'))}, "
              f"{g.get('how', 'n/a')})", flush=True)
        del feats
    result = {"script": "bench_modality", "device": str(device),
              "device_name": C.device_name(device), "environment": C.environment(),
              "dims": dims, "k": args.k, "embedding_dim": args.embedding_dim, "results": rows}
    C.write_json(out_dir / "results.json", result)
    table = report(result, absolute=True)
    (out_dir / "table.md").write_text(table + "\n")
    print(table)
    if args.write_results:
        cuda = device.type == "cuda"
        body = [f"### Modality initialisation and graph ({'GPU' if cuda else 'CPU'})", ""]
        if not cuda:
            body.append(C.machine_note(result["environment"]) + " Times are relative to the "
                        "smallest size; memory is absolute.")
        body += ["", report(result, absolute=cuda), "",
                 f"Reproduce: `python benchmarks/bench_modality.py --sizes {args.sizes} "
                 f"--device {device.type} --write-results`"]
        C.update_results_section("bench_modality", device.type, "\n".join(body))
    return 0


def report(result: Dict[str, Any], absolute: bool) -> str:
    rows = result["results"]
    dims = ", ".join(f"{k} {v}-d" for k, v in result["dims"].items())
    lines = [f"Features: {dims} (Gaussian, timing-only); k = {result['k']}; whitened to "
             f"{result['embedding_dim']} dimensions; device {result['device_name']}.", ""]
    t0w = rows[0]["whiten"]["seconds"] if rows else 1.0
    t0g = rows[0].get("graph", {}).get("seconds") or 1.0
    headers = ["items N", "features", "whiten time" if absolute else "whiten time × smallest",
               "whiten peak", "graph time" if absolute else "graph time × smallest",
               "graph peak", "dense N×N would be", "graph"]
    out = []
    for r in rows:
        g = r.get("graph", {})
        if absolute:
            wt, gt = C.fmt_seconds(r["whiten"]["seconds"]), C.fmt_seconds(g.get("seconds"))
        else:
            wt = f"{r['whiten']['seconds'] / t0w:.1f}×"
            gt = f"{g['seconds'] / t0g:.1f}×" if g.get("seconds") else "n/a"
        out.append([f"{r['items']:,}", C.fmt_bytes(r["input_bytes"]), wt,
                    C.fmt_bytes(r["whiten"]["peak_bytes"]), gt, C.fmt_bytes(g.get("peak_bytes")),
                    C.fmt_bytes(r["dense_similarity_bytes"]), g.get("how", "n/a")])
    lines.append(C.markdown_table(headers, out, ["r"] * 7 + ["l"]))
    lines.append("")
    lines.append("Peak columns: memory growth of the call over its inputs (features already "
                 "loaded). A bounded build keeps the graph peak far below the dense N×N column.")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
