r"""How time per epoch and peak memory grow with the number of interactions.

A synthetic sweep (:func:`_common.scaling_graph`: users and items grow with the interactions, at
the ``sports`` ratios of 6 interactions per user and 12 per item, Zipf-like item popularity,
Gaussian item features of MMRec's dimensions, 4096-d image and 384-d text, **timing-only**) from
:math:`10^4` to :math:`10^7` interactions. Every size is one run of ``benchmarks/profile.py``
(each model in its own process, a subset of the epoch timed and extrapolated, evaluation not
timed), so epoch time and peak memory mean the same as there.

Outputs: ``results.json``, ``table.md``, ``scaling_time.png`` and ``scaling_memory.png`` (log-log,
fitted slope per model in the legend), and the largest size whose **whole-process** peak resident
memory fits in ``--budget-gib`` (24 GiB by default) on CPU: measured where a run of that size
completed, otherwise estimated from the log-log fit of the measured points (the output says which).

Examples::

    python benchmarks/scaling.py --quick
    python benchmarks/scaling.py --sizes 1e4,3e4,1e5,3e5,1e6,3e6,1e7 --write-results  # ~1 hour
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

_HERE = Path(__file__).resolve().parent
# Keep this folder off sys.path (its profile.py would shadow the standard library's profile).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

from benchmarks import _common as C

DEFAULT_MODELS = "stair,lightgcn,bpr,vbpr,freedom,bm3,lgmrec"
DEFAULT_SIZES = "1e4,3e4,1e5,3e5,1e6,3e6,1e7"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated interaction counts (default: {DEFAULT_SIZES})")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--max-batches", type=int, default=5,
                        help="timed batches per size, extrapolated to the epoch (default: 5)")
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds allowed per size; a size that runs out is reported as "
                             "such and later sizes are skipped (default: 1800)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.sizes, args.models, args.max_batches = "1000,3000", "stair,lightgcn", 2
        args.batch_size = 256
        args.threads = args.threads or 1
    device = C.resolve_device(args.device)
    out_dir = Path(args.out or C.REPO_ROOT / "build" / "bench" / f"scaling-{device.type}")
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(float(s)) for s in args.sizes.split(",")})
    models = args.models.split(",")
    points: List[Dict[str, Any]] = []
    stopped: Optional[str] = None
    for size in sizes:
        if stopped:
            points.append({"size": size, "skipped": stopped})
            continue
        run_dir = out_dir / f"n{size}"
        argv = [sys.executable, str(_HERE / "profile.py"), "--dataset", "synthetic",
                "--num-interactions", str(size), "--models", ",".join(models),
                "--device", args.device, "--batch-size", str(args.batch_size),
                "--max-batches", str(args.max_batches), "--warmup", "1", "--repeats", "1",
                "--skip-eval", "--no-trace", "--out", str(run_dir)]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        argv.append("--no-isolate" if args.quick else "--isolate")
        t0 = time.perf_counter()
        print(f"[scaling] {size:,} interactions ...", flush=True)
        try:
            if args.quick:  # in this process: no interpreter start-up per size
                from benchmarks import profile as P

                rc = P.main(argv[2:])
                err = None if rc == 0 else f"profile.py exited {rc}"
            else:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
                err = None if (run_dir / "results.json").exists() else proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            err = f"timed out after {args.timeout:.0f} s"
            stopped = f"a smaller size timed out ({args.timeout:.0f} s)"
        wall = time.perf_counter() - t0
        if err:
            points.append({"size": size, "error": err, "wall_s": wall})
            print(f"[scaling] {size:,}: {err.strip().splitlines()[-1] if err.strip() else err}",
                  flush=True)
            continue
        res = json.loads((run_dir / "results.json").read_text())
        per_model = {}
        for r in res["models"]:
            if "error" in r:
                per_model[r["model"]] = {"error": r["error"].strip().splitlines()[-1]}
                continue
            per_model[r["model"]] = {
                "epoch_s": r["epoch_s"], "build_s": r["build_s"],
                "peak_bytes": r["peak_bytes"],  # growth over the loaded dataset
                "process_peak_bytes": r["memory"].get("peak_rss")
                if device.type == "cpu" else r["memory"].get("peak_reserved"),
                "parameters": r["parameters"],
                "epoch_ratio": r.get("ratio", {}).get("epoch"),
            }
        points.append({"size": size, "num_users": res["dataset"]["num_users"],
                       "num_items": res["dataset"]["num_items"],
                       "num_train": res["dataset"]["num_train"], "models": per_model,
                       "wall_s": wall})
        print(f"[scaling] {size:,}: done in {wall:.0f} s", flush=True)

    fits = fit_all(points, models, args.budget_gib * 2**30)
    result = {"script": "scaling", "device": str(device), "device_name": C.device_name(device),
              "environment": C.environment(), "budget_bytes": args.budget_gib * 2**30,
              "settings": {k: v for k, v in vars(args).items()}, "points": points, "fits": fits}
    C.write_json(out_dir / "results.json", result)
    plots(result, out_dir)
    table = report(result, absolute=True)
    (out_dir / "table.md").write_text(table + "\n")
    print(table)
    if args.write_results:
        write_results(result, out_dir)
    return 0


def _series(points: List[Dict[str, Any]], model: str, key: str):
    xs, ys = [], []
    for p in points:
        m = p.get("models", {}).get(model)
        if m and "error" not in m and m.get(key):
            xs.append(p.get("num_train", p["size"]))
            ys.append(m[key])
    return xs, ys


def fit_all(points: List[Dict[str, Any]], models: Sequence[str], budget: float
            ) -> Dict[str, Any]:
    r"""Per model: log-log slopes of epoch time and process peak memory against interactions,
    bytes per interaction at the largest measured size, and the largest size within
    :obj:`budget` (measured, or estimated from the memory fit)."""
    fits: Dict[str, Any] = {}
    for model in models:
        xt, yt = _series(points, model, "epoch_s")
        xg, yg = _series(points, model, "peak_bytes")
        xm, ym = _series(points, model, "process_peak_bytes")
        t_slope, _ = C.loglog_fit(xt, yt)
        g_slope, _ = C.loglog_fit(xg, yg)
        entry: Dict[str, Any] = {"time_slope": t_slope, "memory_slope": g_slope}
        if len(xm) >= 2:
            # Whole-process peak = fixed part (libraries, allocator) + c * interactions.
            per, base = _linear_fit(xm, ym)
            entry["bytes_per_interaction"] = per
            entry["process_base_bytes"] = base
            fitting = [x for x, y in zip(xm, ym) if y <= budget]
            if any(y > budget for y in ym):
                entry["max_interactions"] = max(fitting) if fitting else None
                entry["max_interactions_how"] = "measured (largest run within the budget)"
            elif per > 0:
                entry["max_interactions"] = (budget - base) / per
                entry["max_interactions_how"] = (
                    f"estimated: linear fit of process peak ({C.fmt_bytes(base)} + "
                    f"{C.fmt_bytes(per)} per interaction) beyond the largest run, "
                    f"{max(xm):,} interactions")
        fits[model] = entry
    return fits


def _linear_fit(x: Sequence[float], y: Sequence[float]):
    r"""Least squares :math:`y = c x + b`; returns ``(c, b)``."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    c = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx else float("nan")
    return c, my - c * mx


def plots(result: Dict[str, Any], out_dir: Path) -> None:
    models = list(result["fits"])
    pts = result["points"]
    C.loglog_plot(out_dir / "scaling_time.png",
                  {m: _series(pts, m, "epoch_s") for m in models},
                  "training interactions", "seconds per epoch (extrapolated)",
                  f"Time per epoch, {result['device_name'][:50]}")
    memory = {}
    for m in models:
        xs, ys = _series(pts, m, "peak_bytes")
        memory[m] = (xs, [v / 2**20 for v in ys])
    C.loglog_plot(out_dir / "scaling_memory.png", memory,
                  "training interactions", "peak memory of the model (MiB)",
                  "Peak memory: build + training, over the loaded data")

def report(result: Dict[str, Any], absolute: bool) -> str:
    models = list(result["fits"])
    lines = []
    headers = ["interactions", "users", "items"] + [
        (f"{m} epoch" if absolute else f"{m} epoch × LightGCN") for m in models]
    rows = []
    for p in result["points"]:
        if "models" not in p:
            rows.append([f"{p['size']:,}", "", ""] + [p.get("skipped") or "error"] +
                        [""] * (len(models) - 1))
            continue
        row = [f"{p['num_train']:,}", f"{p['num_users']:,}", f"{p['num_items']:,}"]
        for m in models:
            r = p["models"].get(m, {})
            if "error" in r or not r:
                row.append("error" if r else "")
            elif absolute:
                row.append(C.fmt_seconds(r["epoch_s"]))
            else:
                v = r.get("epoch_ratio")
                row.append(f"{v:.2f}×" if v else "n/a")
        rows.append(row)
    lines.append(C.markdown_table(headers, rows))
    lines.append("")
    headers = ["model", "time slope", "memory slope", "process bytes / interaction",
               f"largest size in {result['budget_bytes'] / 2**30:.0f} GiB", "how"]
    rows = []
    for m, f in result["fits"].items():
        fmt = lambda v: "n/a" if v is None or v != v else f"{v:.2f}"  # noqa: E731
        mx = f.get("max_interactions")
        rows.append([m, fmt(f["time_slope"]), fmt(f["memory_slope"]),
                     C.fmt_bytes(f.get("bytes_per_interaction")),
                     "n/a" if mx is None else f"{mx:.2e}", f.get("max_interactions_how", "n/a")])
    lines.append(C.markdown_table(headers, rows, ["l", "r", "r", "r", "r", "l"]))
    lines.append("")
    lines.append("Slopes are fitted on log-log axes over the measured sizes (time: seconds per "
                 "extrapolated epoch; memory: the model's peak growth over the loaded data; the "
                 "budget estimate uses the whole-process peak, data included). A time slope "
                 "near 2 is expected for graph models: an epoch has E/B batches and each "
                 "propagates over the whole graph.")
    return "\n".join(lines)


def write_results(result: Dict[str, Any], out_dir: Path) -> None:
    import shutil

    cuda = result["device"].startswith("cuda")
    dev = result["device"].split(":")[0]
    fig_dir = C.BENCH_DIR / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = []
    for name in ("scaling_time", "scaling_memory"):
        dst = fig_dir / f"{name}-{dev}.png"
        shutil.copyfile(out_dir / f"{name}.png", dst)
        figs.append(dst.relative_to(C.BENCH_DIR).as_posix())
    sizes = [p["size"] for p in result["points"]]
    body = [f"### Scaling: synthetic graphs, {min(sizes):,} to {max(sizes):,} interactions "
            f"({'GPU' if cuda else 'CPU'})", ""]
    if not cuda:
        body.append(C.machine_note(result["environment"]) + " Epoch times are ratios to "
                    "our `lightgcn` at the same size; memory is absolute (machine-independent). "
                    "Where epoch times do not grow with the size, the timed batches were too few "
                    "for the load on the machine: read the time slopes as unresolved there.")
    else:
        body.append(f"Absolute times from `{result['device_name']}`.")
    body += ["", "Synthetic features of MMRec's dimensions (4096-d image, 384-d text), "
             "timing-only. Epoch times extrapolated from "
             f"{result['settings']['max_batches']} timed batches.", "",
             report(result, absolute=cuda), "", *[f"![{f}]({f})" for f in figs], "",
             f"Reproduce: `python benchmarks/scaling.py --sizes {','.join(str(s) for s in sizes)} "
             f"--device {dev} --write-results`"]
    C.update_results_section("scaling", dev, "\n".join(body))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
