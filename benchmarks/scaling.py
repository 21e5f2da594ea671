r"""How time per epoch and peak memory grow with the number of interactions.

A sweep over synthetic graphs (``sports`` ratios, MMRec-sized timing-only features); every size
is one run of the profile (``python -m stair_pyg.profiling``: each model in its own watched
process, ``--max-batches`` extrapolated, no evaluation). States the largest size whose
whole-process peak fits in ``--budget-gib``, measured or estimated. The sweep's memory safety
(per-process limit, skipping by prediction, approximate kNN) and ``--resume``: see
``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _results import common_arguments, keep_figure, out_dir, publish
from stair_pyg.profiling import bench as P
from stair_pyg.profiling.measure import device_name, environment, fmt_bytes, fmt_seconds
from stair_pyg.profiling.report import (linear_fit, loglog_fit, loglog_plot, markdown_table,
                                        write_json)
from stair_pyg.profiling.watchdog import GIB, run_watched

DEFAULTS = {"budget_gib": 24.0, "memory_margin_gib": 2.0, "approx_knn_from": 1e6}
#: The hyper-parameters that switch the item kNN graphs to the approximate IVF search.
APPROX_KNN_HPARAMS = ("stair.knn_method=ivf", "freedom.knn_method=ivf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sizes", default="1e4,3e4,1e5,3e5,1e6,3e6,1e7", help="interaction counts")
    add("--models", default=",".join(P.COMPARED))
    add("--batch-size", type=int, default=1024)
    add("--max-batches", type=int, default=5, help="timed batches per size (default: 5)")
    add("--budget-gib", type=float, default=DEFAULTS["budget_gib"],
        help="memory the 'largest size' is stated for (default: 24)")
    add("--memory-margin-gib", type=float, default=DEFAULTS["memory_margin_gib"],
        help="a model's process is killed above the budget minus this (default: 2)")
    add("--memory-limit-gib", type=float, default=None,
        help="the limit itself, overriding budget minus margin; 0: no limit, no skipping")
    add("--approx-knn-from", type=float, default=DEFAULTS["approx_knn_from"],
        help="from this size STAIR and FREEDOM use the IVF kNN graph; 0: never (default: 1e6)")
    add("--hparam", action="append", default=[], help="passed on to the profile (wins)")
    add("--timeout", type=float, default=3600,
        help="seconds per size; a size that runs out stops the sweep (default: 3600)")
    add("--resume", action="store_true", help="reuse the sizes a previous run finished")
    return common_arguments(parser)


def memory_limit_bytes(args: argparse.Namespace) -> Optional[float]:
    r"""The per-process limit in bytes, :obj:`None` for none (``--quick`` runs in-process)."""
    gib = args.memory_limit_gib
    if gib is None:
        gib = args.budget_gib - args.memory_margin_gib
        if gib <= 0:
            raise SystemExit("--budget-gib minus --memory-margin-gib leaves no memory")
    return gib * GIB if gib > 0 and not args.quick else None


def run(args: argparse.Namespace) -> int:
    from stair_pyg.train import resolve_device

    if args.quick:
        args.sizes, args.models, args.max_batches = "1000,3000", "stair,lightgcn", 2
        args.batch_size, args.threads = 256, args.threads or 1
    device = resolve_device(args.device)
    out = out_dir(args, f"scaling-{device.type}")
    models = args.models.split(",")
    limit = memory_limit_bytes(args)
    if limit is not None:
        print(f"[scaling] memory limit per model process: {limit / GIB:.3g} GiB", flush=True)
    points: List[Dict[str, Any]] = []
    stopped: Optional[str] = None
    for size in sorted({int(float(s)) for s in args.sizes.split(",")}):
        if stopped:
            points.append({"size": size, "skipped": stopped})
            continue
        ivf = bool(args.approx_knn_from) and size >= args.approx_knn_from
        to_run, skipped = plan_size(points, models, size, limit)
        point = {"size": size, "knn_method": "ivf" if ivf else "exact", "models": dict(skipped)}
        points.append(point)
        for m, rec in skipped.items():
            print(f"[scaling] {size:,}: {m} skipped: {rec['skipped']}", flush=True)
        if not to_run:
            stopped = point["skipped"] = "no model left within the memory limit"
            print(f"[scaling] {size:,}: {stopped}, stopping", flush=True)
            continue
        run_dir = out / f"n{size}"
        hparams = (APPROX_KNN_HPARAMS if ivf else ()) + tuple(args.hparam)
        profile_args = [
            "--dataset", "synthetic", "--num-interactions", str(size), "--models",
            ",".join(to_run), "--device", args.device, "--batch-size", str(args.batch_size),
            "--max-batches", str(args.max_batches), "--warmup", "1", "--repeats", "1",
            "--skip-eval", "--no-trace", "--out", str(run_dir),
            *(["--threads", str(args.threads)] if args.threads else []),
            *(["--memory-limit-gib", f"{limit / GIB:.6g}"] if limit is not None else []),
            *[a for h in hparams for a in ("--hparam", h)],
            "--no-isolate" if args.quick else "--isolate"]
        # A finished size is kept with the exact profile command that made it; --resume reuses
        # it only for the same command (same models, size, settings and output).
        key_path, results_path = run_dir / "sweep_command.json", run_dir / "results.json"
        if args.resume and key_path.exists() and results_path.exists():
            saved = json.loads(key_path.read_text())
            if saved.get("profile_args") == profile_args:
                print(f"[scaling] {size:,}: reusing {results_path} (--resume)", flush=True)
                point["wall_s"] = saved.get("wall_s")
                _add_results(point, results_path, device)
                continue
        key_path.unlink(missing_ok=True)
        results_path.unlink(missing_ok=True)  # never read a previous run's
        t0 = time.perf_counter()
        print(f"[scaling] {size:,} interactions ({', '.join(to_run)}; "
              f"{point['knn_method']} kNN) ...", flush=True)
        err = None
        if args.quick:  # in this process: no interpreter start-up per size
            rc = P.main(profile_args)
            err = None if rc == 0 else f"the profile exited {rc}"
        else:
            done = run_watched([sys.executable, "-m", "stair_pyg.profiling", *profile_args],
                               timeout=args.timeout)
            if done["timed_out"]:
                err = f"timed out after {args.timeout:.0f} s"
                stopped = f"a smaller size timed out ({args.timeout:.0f} s)"
            elif not results_path.exists():
                err = done["stderr"][-2000:] or f"the profile exited {done['returncode']}"
        point["wall_s"] = time.perf_counter() - t0
        if err:
            last = err.strip().splitlines()[-1][:200] if err.strip() else "the profile failed"
            point["error"] = err
            point["models"].update({m: {"error": last} for m in to_run})
            print(f"[scaling] {size:,}: {last}", flush=True)
            continue
        _add_results(point, results_path, device)
        write_json(key_path, {"profile_args": profile_args, "wall_s": point["wall_s"]})
        print(f"[scaling] {size:,}: done in {point['wall_s']:.0f} s", flush=True)

    result = {"script": "scaling", "device": str(device), "device_name": device_name(device),
              "environment": environment(), "budget_bytes": args.budget_gib * GIB,
              "memory_limit_bytes": limit, "settings": vars(args), "points": points,
              "fits": fit_all(points, models, args.budget_gib * GIB)}
    plots(result, out)
    sizes, dev = [p["size"] for p in points], device.type
    figs = [keep_figure(out / f"{n}.png", f"{n}-{dev}.png")
            for n in ("scaling_time", "scaling_memory")] if args.write_results else []
    command = f"python benchmarks/scaling.py --sizes {','.join(map(str, sizes))} --device {dev}"
    changed = [k for k in ("memory_limit_gib", *DEFAULTS) if getattr(args, k) != DEFAULTS.get(k)]
    command += "".join(f" --{k.replace('_', '-')} {getattr(args, k):g}" for k in changed)
    command += "".join(f" --hparam {h}" for h in args.hparam)
    publish(result, out, report, args.write_results, dev,
            f"Scaling: synthetic graphs, {min(sizes):,} to {max(sizes):,} interactions " "({dev})",
            "Epoch times are ratios to our `lightgcn` at the same size; memory is absolute "
            "(machine-independent). Where epoch times do not grow with the size, the timed "
            "batches were too few for the load on the machine: read the time slopes as "
            "unresolved there.", command,
            before=["Synthetic features of MMRec's dimensions (4096-d image, 384-d text), "
                    f"timing-only. Epoch times extrapolated from {args.max_batches} timed "
                    "batches.", ""],
            after=[*[f"![{f}]({f})" for f in figs], ""])
    return 0


def _add_results(point: Dict[str, Any], path: Path, device) -> None:
    r"""Fills :obj:`point` from one size's ``results.json``: what the sweep keeps of a record."""
    res = json.loads(path.read_text())
    point.update({k: res["dataset"][k] for k in ("num_users", "num_items", "num_train")})
    for r in res["models"]:
        if "error" in r:
            entry = {"error": r["error"].strip().splitlines()[-1]}
            entry.update({k: r[k] for k in ("memory_failure", "memory_exceeded_bytes",
                                            "memory_limit_bytes") if k in r})
        else:  # whole-process resident peak of the worker, loading included
            host = r.get("process_peak_bytes") or r["memory"].get("peak_rss")
            entry = {"epoch_s": r["epoch_s"], "build_s": r["build_s"],
                     "peak_bytes": r["peak_bytes"],  # growth over the loaded dataset
                     "host_peak_bytes": host, "parameters": r["parameters"],
                     "process_peak_bytes": host if device.type == "cpu"
                     else r["memory"].get("peak_reserved"),
                     "epoch_ratio": r.get("ratio", {}).get("epoch"),
                     "features_loaded": r.get("features_loaded")}
        point["models"][r["model"]] = entry


def _size(p: Dict[str, Any]) -> int:
    return p.get("num_train", p["size"])


def plan_size(points: Sequence[Dict[str, Any]], models: Sequence[str], size: int,
              limit: Optional[float], key: str = "host_peak_bytes"
              ) -> Tuple[List[str], Dict[str, Dict[str, Any]]]:
    r"""``(to_run, skipped)`` at :obj:`size`: a model is skipped (``{"skipped": reason, "short":
    cell text, ...}``) when at a smaller size it exceeded the memory limit or was skipped, or
    when the linear fit of its peaks :obj:`key` at two or more smaller sizes predicts more than
    :obj:`limit` (``predicted_bytes``). Without a limit nothing is skipped."""
    if limit is None:
        return list(models), {}
    to_run: List[str] = []
    skipped: Dict[str, Dict[str, Any]] = {}
    for m in models:
        before = _excluded_before(points, m)
        xs, ys = _series(points, m, key)
        per, base = linear_fit(xs, ys) if len(xs) >= 2 else (0.0, 0.0)
        predicted = base + per * size
        if before is not None:
            skipped[m] = before
        elif predicted > limit:
            skipped[m] = {"skipped": f"predicted {predicted / GIB:.1f} GiB > "
                                     f"{limit / GIB:.3g} GiB limit",
                          "short": f"predicted {_gib(predicted)} GiB",
                          "predicted_bytes": predicted}
        else:
            to_run.append(m)
    return to_run, skipped


def _excluded_before(points: Sequence[Dict[str, Any]], model: str) -> Optional[Dict[str, Any]]:
    for p in points:
        rec = p.get("models", {}).get(model) or {}
        if rec.get("memory_failure"):
            return {"skipped": f"exceeded the memory limit at {_size(p):,} interactions",
                    "short": f"killed at {_size(p):,}", "after": _size(p)}
        if "skipped" in rec:
            return dict(rec) if "after" in rec else {  # "after": from an earlier size already
                "skipped": f"skipped at {_size(p):,} interactions ({rec['skipped']})",
                "short": f"skipped at {_size(p):,}", "after": _size(p)}
    return None


def _series(points: Sequence[Dict[str, Any]], model: str, key: str):
    pts = [(_size(p), p["models"][model][key]) for p in points
           if "error" not in p.get("models", {}).get(model, {"error": 1})
           and p["models"][model].get(key)]
    return [x for x, _ in pts], [y for _, y in pts]


def fit_all(points: List[Dict[str, Any]], models: Sequence[str], budget: float
            ) -> Dict[str, Any]:
    r"""Per model: log-log slopes of epoch time and peak memory against interactions, the
    whole-process peak of the largest completed run, bytes per interaction, and the largest
    size within :obj:`budget`: measured when a run exceeded it or was killed for memory,
    otherwise estimated from the linear fit of the process peaks."""
    fits: Dict[str, Any] = {}
    for model in models:
        xm, ym = _series(points, model, "process_peak_bytes")
        entry: Dict[str, Any] = {
            "time_slope": loglog_fit(*_series(points, model, "epoch_s"))[0],
            "memory_slope": loglog_fit(*_series(points, model, "peak_bytes"))[0]}
        if xm:
            i = max(range(len(xm)), key=xm.__getitem__)
            entry.update(largest_run=xm[i], process_peak_at_largest_run=ym[i])
        if len(xm) >= 2:  # whole-process peak = fixed part + c * interactions
            entry["bytes_per_interaction"], entry["process_base_bytes"] = linear_fit(xm, ym)
        failure = next(((_size(p), p["models"][model]) for p in points
                        if (p.get("models", {}).get(model) or {}).get("memory_failure")), None)
        if failure is not None:
            size, rec = failure
            fitting = [x for x in xm if x < size]
            how = (f"killed at {_gib(rec['memory_exceeded_bytes'])} GiB"
                   if rec.get("memory_exceeded_bytes") else rec.get("error", "out of memory"))
            entry.update(memory_failure_at=size, max_interactions=max(fitting, default=None),
                         max_interactions_how=(f"measured: fits at {max(fitting):,}, " if fitting
                                               else "measured: ") + f"not at {size:,} ({how})")
        elif any(y > budget for y in ym):
            entry["max_interactions"] = max((x for x, y in zip(xm, ym) if y <= budget),
                                            default=None)
            entry["max_interactions_how"] = "measured (largest run within the budget)"
        elif len(xm) >= 2 and entry["bytes_per_interaction"] > 0:
            per, base = entry["bytes_per_interaction"], entry["process_base_bytes"]
            entry["max_interactions"] = (budget - base) / per
            entry["max_interactions_how"] = (
                f"estimated: linear fit of process peak ({fmt_bytes(base)} + {fmt_bytes(per)} "
                f"per interaction) beyond the largest run, {max(xm):,} interactions")
        fits[model] = entry
    return fits


def plots(result: Dict[str, Any], out: Path) -> None:
    r"""Time and memory against interactions; sizes a model did not complete are left out."""
    pts, models = result["points"], list(result["fits"])
    loglog_plot(out / "scaling_time.png", {m: _series(pts, m, "epoch_s") for m in models},
                "training interactions", "seconds per epoch (extrapolated)",
                f"Time per epoch, {result['device_name'][:50]}")
    memory = {m: (xs, [v / 2**20 for v in ys])
              for m, (xs, ys) in ((m, _series(pts, m, "peak_bytes")) for m in models)}
    loglog_plot(out / "scaling_memory.png", memory, "training interactions",
                "peak memory of the model (MiB)",
                "Peak memory: build + training, over the loaded data")


def _gib(n: float) -> str:
    r"""Bytes in GiB, as many decimals as a table cell needs (31, 2.3, 0.46)."""
    v = n / GIB
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def cell(rec: Optional[Dict[str, Any]], absolute: bool) -> str:
    r"""One (size, model) cell: the epoch (or its ratio), ``skipped (...)``, ``killed`` or
    ``error``."""
    if not rec:
        return ""
    if "skipped" in rec:
        return f"skipped ({rec.get('short') or rec['skipped']})"
    if rec.get("memory_failure"):
        seen = rec.get("memory_exceeded_bytes")
        at = f" at {_gib(seen)} GiB" if seen else ""
        return {"limit": f"killed{at}", "oom": f"killed by the kernel (OOM){at}"}.get(
            rec["memory_failure"], "out of memory")
    if "error" in rec:
        return "error"
    if absolute:
        return fmt_seconds(rec["epoch_s"])
    return f"{rec['epoch_ratio']:.2f}×" if rec.get("epoch_ratio") else "n/a"


def notes(result: Dict[str, Any]) -> List[str]:
    r"""From which size the item kNN graphs are approximate; how the sweep kept within memory;
    which models ran without features."""
    ran = [p for p in result["points"] if "num_train" in p]
    exact = [p["size"] for p in ran if p.get("knn_method", "exact") == "exact"]
    ivf = [p["size"] for p in ran if p.get("knn_method") == "ivf"]
    tail = " (its own accuracy is measured in bench_modality)"
    knn = ("STAIR's and FREEDOM's item kNN graphs: " + (
        "exact at every size." if not ivf else f"IVF approximate at every size{tail}."
        if not exact else f"exact kNN up to {max(exact):,} interactions, IVF approximate "
        f"above, from {min(ivf):,}{tail}."))
    featureless = sorted({m for p in result["points"] for m, r in p.get("models", {}).items()
                          if r.get("features_loaded") is False})
    memory = []
    if result.get("memory_limit_bytes"):
        memory.append(f"Each model ran in its own process, killed above "
                      f"{result['memory_limit_bytes'] / GIB:.3g} GiB resident; a model is skipped "
                      "at a size where the linear fit of its smaller sizes' process peaks "
                      "predicts more, and at every size after one where it was killed or "
                      "skipped.")
    if featureless:
        memory.append("Models that use no item features ran without them: "
                      + ", ".join(f"`{m}`" for m in featureless) + ".")
    return [knn] + ([" ".join(memory)] if memory else [])


def report(result: Dict[str, Any], absolute: bool) -> str:
    models = list(result["fits"])
    rows = []
    for p in result["points"]:
        recs = p.get("models", {})
        row = ([f"{p['num_train']:,}", f"{p['num_users']:,}", f"{p['num_items']:,}"]
               if "num_train" in p else [f"{p['size']:,}", "", ""])
        rows.append(row + ([cell(recs.get(m), absolute) for m in models] if recs else
                           [p.get("skipped") or p.get("error", "error")]
                           + [""] * (len(models) - 1)))
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.2f}"  # noqa: E731
    fits = [[m, fmt(f["time_slope"]), fmt(f["memory_slope"]),
             fmt_bytes(f.get("bytes_per_interaction")),
             (f"{fmt_bytes(f['process_peak_at_largest_run'])} at {f['largest_run']:,}"
              if f.get("largest_run") else "n/a"),
             "n/a" if f.get("max_interactions") is None else f"{f['max_interactions']:.2e}",
             f.get("max_interactions_how", "n/a")] for m, f in result["fits"].items()]
    lines = [markdown_table(["interactions", "users", "items"] + [
                 f"{m} epoch" + ("" if absolute else " × LightGCN") for m in models], rows), "",
             markdown_table(["model", "time slope", "memory slope", "process bytes / interaction",
                             "process peak at the largest run",
                             f"largest size in {result['budget_bytes'] / GIB:g} GiB", "how"],
                            fits, ["l", "r", "r", "r", "r", "r", "l"]), "",
             "Slopes are fitted on log-log axes over the measured sizes (time: seconds per "
             "extrapolated epoch; memory: the model's peak growth over the loaded data; the "
             "budget estimate uses the whole-process peak, data included). A time slope near 2 "
             "is expected for graph models: an epoch has E/B batches and each propagates over "
             "the whole graph."]
    for note in notes(result):
        lines += ["", note]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
