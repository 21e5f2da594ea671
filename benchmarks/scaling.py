r"""How time per epoch and peak memory grow with the number of interactions.

A synthetic sweep (:func:`_common.scaling_graph`: users and items grow with the interactions, at
the ``sports`` ratios of 6 interactions per user and 12 per item, Zipf-like item popularity,
Gaussian item features of MMRec's dimensions, 4096-d image and 384-d text, **timing-only**) from
:math:`10^4` to :math:`10^7` interactions. Every size is one run of ``benchmarks/profile.py``
(each model in its own process, a subset of the epoch timed and extrapolated, evaluation not
timed), so epoch time and peak memory mean the same as there. The models that use no item
features (``profile.FEATURELESS_MODELS``: ``lightgcn``, ``bpr``) run without them, so their
memory is their own.

Outputs: ``results.json``, ``table.md``, ``scaling_time.png`` and ``scaling_memory.png`` (log-log,
fitted slope per model in the legend), and the largest size whose **whole-process** peak resident
memory fits in ``--budget-gib`` (24 GiB by default) on CPU: measured where a run of that size
completed, or where a larger run was killed, otherwise estimated from a linear fit of the
measured points (the output says which).

Memory safety (the machine must survive the sweep):

* every model's process is killed (``SIGKILL``) by ``profile.py --memory-limit-gib`` when its
  resident memory exceeds ``--memory-limit-gib``, by default ``--budget-gib`` minus
  ``--memory-margin-gib`` (2 GiB: the sweep's own two processes beside the worker, this script
  and ``profile.py``'s parent, about 0.6 GiB together, measured at :math:`10^6` interactions:
  the parent builds the graph without features before its workers start and then hands that
  memory back; and the operating system);
* before each size, a model whose whole-process peak, predicted by a linear fit of its peaks at
  the smaller sizes (two or more), exceeds that limit is not run (``skipped``), and a model that
  was killed or skipped is skipped at every larger size; the sweep stops when no model is left;
* from ``--approx-knn-from`` interactions (default :math:`10^6`) STAIR and FREEDOM build
  their item kNN graph with the approximate IVF search (``knn_method=ivf``) instead of the exact
  one, whose cost is :math:`O(I^2 f)`; the output says from which size.

Examples::

    python benchmarks/scaling.py --quick
    python benchmarks/scaling.py --sizes 1e4,3e4,1e5,3e5,1e6,3e6,1e7 --write-results  # ~30 min, 2-core CPU
    python benchmarks/scaling.py --resume --write-results  # after an interruption: finished
                                                           # sizes are reused, not rerun
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

_HERE = Path(__file__).resolve().parent
# Keep this folder off sys.path (its profile.py would shadow the standard library's profile).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

from benchmarks import _common as C

DEFAULT_MODELS = "stair,lightgcn,bpr,vbpr,freedom,bm3,lgmrec"
DEFAULT_SIZES = "1e4,3e4,1e5,3e5,1e6,3e6,1e7"
#: Room left beside a model's process: this script (~0.2 GiB) and profile.py's parent (~0.4 GiB
#: while a worker runs: it holds no graph and no features then), and the operating system.
DEFAULT_MEMORY_MARGIN_GIB = 2.0
DEFAULT_APPROX_KNN_FROM = 1e6
#: The hyper-parameters that switch the models' item kNN graphs to the approximate IVF search.
APPROX_KNN_HPARAMS = ("stair.knn_method=ivf", "freedom.knn_method=ivf")
GIB = 2**30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help=f"comma-separated interaction counts (default: {DEFAULT_SIZES})")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--max-batches", type=int, default=5,
                        help="timed batches per size, extrapolated to the epoch (default: 5)")
    parser.add_argument("--budget-gib", type=float, default=24.0,
                        help="memory of the machine the 'largest size' is stated for "
                             "(default: 24)")
    parser.add_argument("--memory-margin-gib", type=float, default=DEFAULT_MEMORY_MARGIN_GIB,
                        help="the memory limit of a model's process is --budget-gib minus this "
                             "(room for this script, profile.py's parent and the OS; default: "
                             f"{DEFAULT_MEMORY_MARGIN_GIB:g})")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="the limit itself, overriding --budget-gib minus --memory-margin-gib "
                             "(e.g. the host memory on a GPU machine); 0 = no limit, no skipping")
    parser.add_argument("--approx-knn-from", type=float, default=DEFAULT_APPROX_KNN_FROM,
                        help="from this many interactions STAIR and FREEDOM use the approximate "
                             "IVF kNN graph (" + " ".join(f"--hparam {h}" for h in
                                                          APPROX_KNN_HPARAMS)
                             + "); 0 = never (default: 1e6)")
    parser.add_argument("--hparam", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="passed on to profile.py (after the kNN ones, so it wins)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds allowed per size; a size that runs out is reported as "
                             "such and later sizes are skipped (default: 3600)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the sizes a previous run with the same settings and --out "
                             "finished (an interrupted sweep continues where it stopped)")
    parser.add_argument("--quick", action="store_true",
                        help="two tiny sizes in this process (no isolation, no memory limit)")


def memory_limit_bytes(args: argparse.Namespace) -> Optional[float]:
    r"""The per-process limit in bytes, or :obj:`None` for none (``--quick`` runs the models in
    this process, where no limit can be enforced)."""
    if args.quick:
        return None
    gib = args.memory_limit_gib
    if gib is None:
        gib = args.budget_gib - args.memory_margin_gib
        if gib <= 0:
            raise SystemExit(f"--budget-gib {args.budget_gib:g} minus --memory-margin-gib "
                             f"{args.memory_margin_gib:g} leaves no memory for the models")
    return gib * GIB if gib > 0 else None


def knn_method(size: int, approx_knn_from: float) -> str:
    r"""``"ivf"`` from :obj:`approx_knn_from` interactions on (``0``: never), else ``"exact"``."""
    return "ivf" if approx_knn_from and size >= approx_knn_from else "exact"


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
    limit = memory_limit_bytes(args)
    if limit is not None:
        print(f"[scaling] memory limit per model process: {limit / GIB:.3g} GiB", flush=True)
    points: List[Dict[str, Any]] = []
    stopped: Optional[str] = None
    for size in sizes:
        if stopped:
            points.append({"size": size, "skipped": stopped})
            continue
        knn = knn_method(size, args.approx_knn_from)
        to_run, skipped = plan_size(points, models, size, limit)
        point: Dict[str, Any] = {"size": size, "knn_method": knn, "models": dict(skipped)}
        points.append(point)
        for m, rec in skipped.items():
            print(f"[scaling] {size:,}: {m} skipped: {rec['skipped']}", flush=True)
        if not to_run:
            stopped = "no model left within the memory limit"
            point["skipped"] = stopped
            print(f"[scaling] {size:,}: {stopped}, stopping", flush=True)
            continue
        run_dir = out_dir / f"n{size}"
        argv = [sys.executable, str(_HERE / "profile.py"), "--dataset", "synthetic",
                "--num-interactions", str(size), "--models", ",".join(to_run),
                "--device", args.device, "--batch-size", str(args.batch_size),
                "--max-batches", str(args.max_batches), "--warmup", "1", "--repeats", "1",
                "--skip-eval", "--no-trace", "--out", str(run_dir)]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        if limit is not None:
            argv += ["--memory-limit-gib", f"{limit / GIB:.6g}"]
        for h in (APPROX_KNN_HPARAMS if knn == "ivf" else ()) + tuple(args.hparam):
            argv += ["--hparam", h]
        argv.append("--no-isolate" if args.quick else "--isolate")
        # A finished size is kept with the exact profile.py command that made it; --resume
        # reuses it only for the same command (same models, size, settings and output).
        key_path, key = run_dir / "sweep_command.json", {"profile_args": argv[2:]}
        saved = _finished(run_dir, key_path, key) if args.resume else None
        if saved is not None:
            print(f"[scaling] {size:,}: reusing {run_dir / 'results.json'} (--resume)",
                  flush=True)
            point["wall_s"] = saved.get("wall_s")
            _add_results(point, run_dir, device)
            continue
        key_path.unlink(missing_ok=True)
        (run_dir / "results.json").unlink(missing_ok=True)  # never read a previous run's
        t0 = time.perf_counter()
        print(f"[scaling] {size:,} interactions ({', '.join(to_run)}; {knn} kNN) ...", flush=True)
        if args.quick:  # in this process: no interpreter start-up per size
            from benchmarks import profile as P

            rc = P.main(argv[2:])
            err = None if rc == 0 else f"profile.py exited {rc}"
        else:
            rc, stderr = _run_profile(argv, args.timeout)
            err = None
            if rc is None:
                err = f"timed out after {args.timeout:.0f} s"
                stopped = f"a smaller size timed out ({args.timeout:.0f} s)"
            elif not (run_dir / "results.json").exists():
                err = stderr[-2000:] or f"profile.py exited {rc} without writing results.json"
        point["wall_s"] = time.perf_counter() - t0
        if err:
            point["error"] = err
            last = err.strip().splitlines()[-1][:200] if err.strip() else "profile.py failed"
            point["models"].update({m: {"error": last} for m in to_run})
            print(f"[scaling] {size:,}: {err.strip().splitlines()[-1] if err.strip() else err}",
                  flush=True)
            continue
        _add_results(point, run_dir, device)
        C.write_json(key_path, {**key, "wall_s": point["wall_s"]})
        print(f"[scaling] {size:,}: done in {point['wall_s']:.0f} s", flush=True)

    fits = fit_all(points, models, args.budget_gib * GIB)
    result = {"script": "scaling", "device": str(device), "device_name": C.device_name(device),
              "environment": C.environment(), "budget_bytes": args.budget_gib * GIB,
              "memory_limit_bytes": limit,
              "settings": {k: v for k, v in vars(args).items()}, "points": points, "fits": fits}
    C.write_json(out_dir / "results.json", result)
    plots(result, out_dir)
    table = report(result, absolute=True)
    (out_dir / "table.md").write_text(table + "\n")
    print(table)
    if args.write_results:
        write_results(result, out_dir)
    return 0


def _finished(run_dir: Path, key_path: Path, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    r"""The saved command record if :obj:`run_dir` holds a finished size made by the profile.py
    command :obj:`key`, else :obj:`None`."""
    if not (key_path.exists() and (run_dir / "results.json").exists()):
        return None
    try:
        saved = json.loads(key_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return saved if saved.get("profile_args") == key["profile_args"] else None


def _add_results(point: Dict[str, Any], run_dir: Path, device) -> None:
    r"""Fills :obj:`point` from one size's profile.py ``results.json``."""
    res = json.loads((run_dir / "results.json").read_text())
    point.update(num_users=res["dataset"]["num_users"], num_items=res["dataset"]["num_items"],
                 num_train=res["dataset"]["num_train"])
    for r in res["models"]:
        point["models"][r["model"]] = _model_entry(r, device)


def _run_profile(argv: List[str], timeout: float) -> Tuple[Optional[int], str]:
    r"""Runs one profile.py in its own process group, so that on :obj:`timeout` (or an
    interruption) its workers are killed with it. Returns ``(returncode, stderr)``, the
    return code :obj:`None` when it timed out. (profile.py exits 1 when a model failed; its
    results.json still holds the others.)"""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""
    finally:
        if proc.poll() is None:  # interrupted: leave no profile.py or worker behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stderr or ""


def _model_entry(r: Dict[str, Any], device) -> Dict[str, Any]:
    r"""What the sweep keeps of one profile.py record."""
    if "error" in r:
        entry = {"error": r["error"].strip().splitlines()[-1]}
        for key in ("memory_failure", "memory_exceeded_bytes", "memory_limit_bytes"):
            if key in r:
                entry[key] = r[key]
        return entry
    # Whole-process resident peak of the model's worker, loading included (older records:
    # the peak of build + training).
    host = r.get("process_peak_bytes") or r["memory"].get("peak_rss")
    return {
        "epoch_s": r["epoch_s"], "build_s": r["build_s"],
        "peak_bytes": r["peak_bytes"],  # growth over the loaded dataset
        "host_peak_bytes": host,
        "process_peak_bytes": host if device.type == "cpu" else r["memory"].get("peak_reserved"),
        "parameters": r["parameters"],
        "epoch_ratio": r.get("ratio", {}).get("epoch"),
        "features_loaded": r.get("features_loaded"),
    }


def plan_size(points: Sequence[Dict[str, Any]], models: Sequence[str], size: int,
              limit: Optional[float], key: str = "host_peak_bytes"
              ) -> Tuple[List[str], Dict[str, Dict[str, Any]]]:
    r"""Which of :obj:`models` to run at :obj:`size` interactions, given the earlier
    :obj:`points` of the sweep. Returns ``(to_run, skipped)``, ``skipped`` mapping a model to its
    record ``{"skipped": reason, "short": cell text, ...}``.

    A model is skipped when, at a smaller size, it exceeded the memory limit (``memory_failure``)
    or was skipped, or when the linear fit :math:`y = c x + b` of its whole-process peaks
    :obj:`key` at two or more smaller sizes predicts more than :obj:`limit` bytes at
    :obj:`size` (``predicted_bytes``). With :obj:`limit` :obj:`None` nothing is skipped.
    """
    to_run: List[str] = []
    skipped: Dict[str, Dict[str, Any]] = {}
    if limit is None:
        return list(models), skipped
    for m in models:
        before = _excluded_before(points, m)
        if before is not None:
            skipped[m] = before
            continue
        xs, ys = _series(points, m, key)
        if len(xs) >= 2:
            per, base = _linear_fit(xs, ys)
            predicted = base + per * size
            if predicted > limit:
                skipped[m] = {"skipped": f"predicted {predicted / GIB:.1f} GiB > "
                                         f"{limit / GIB:.3g} GiB limit",
                              "short": f"predicted {_gib(predicted)} GiB",
                              "predicted_bytes": predicted}
                continue
        to_run.append(m)
    return to_run, skipped


def _excluded_before(points: Sequence[Dict[str, Any]], model: str) -> Optional[Dict[str, Any]]:
    for p in points:
        rec = p.get("models", {}).get(model) or {}
        size = p.get("num_train", p["size"])
        if rec.get("memory_failure"):
            return {"skipped": f"exceeded the memory limit at {size:,} interactions",
                    "short": f"killed at {size:,}", "after": size}
        if "skipped" in rec:
            if "after" in rec:  # already a consequence of an earlier size
                return dict(rec)
            return {"skipped": f"skipped at {size:,} interactions ({rec['skipped']})",
                    "short": f"skipped at {size:,}", "after": size}
    return None


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
    bytes per interaction at the largest measured size, the whole-process peak of the largest
    completed run, and the largest size within :obj:`budget`: measured when a run exceeded it
    or was killed for memory (the largest completed size below), otherwise estimated from the
    linear fit of the process peaks."""
    fits: Dict[str, Any] = {}
    for model in models:
        xt, yt = _series(points, model, "epoch_s")
        xg, yg = _series(points, model, "peak_bytes")
        xm, ym = _series(points, model, "process_peak_bytes")
        t_slope, _ = C.loglog_fit(xt, yt)
        g_slope, _ = C.loglog_fit(xg, yg)
        entry: Dict[str, Any] = {"time_slope": t_slope, "memory_slope": g_slope}
        if xm:
            i = max(range(len(xm)), key=xm.__getitem__)
            entry["largest_run"] = xm[i]
            entry["process_peak_at_largest_run"] = ym[i]
        if len(xm) >= 2:
            # Whole-process peak = fixed part (libraries, allocator) + c * interactions.
            per, base = _linear_fit(xm, ym)
            entry["bytes_per_interaction"] = per
            entry["process_base_bytes"] = base
        failure = _first_memory_failure(points, model)
        if failure is not None:
            size, rec = failure
            fitting = [x for x in xm if x < size]
            entry["memory_failure_at"] = size
            entry["max_interactions"] = max(fitting) if fitting else None
            how = (f"killed at {_gib(rec['memory_exceeded_bytes'])} GiB"
                   if rec.get("memory_exceeded_bytes") else rec.get("error", "out of memory"))
            entry["max_interactions_how"] = (
                (f"measured: fits at {max(fitting):,}, " if fitting else "measured: ")
                + f"not at {size:,} ({how})")
        elif any(y > budget for y in ym):
            fitting = [x for x, y in zip(xm, ym) if y <= budget]
            entry["max_interactions"] = max(fitting) if fitting else None
            entry["max_interactions_how"] = "measured (largest run within the budget)"
        elif len(xm) >= 2 and entry["bytes_per_interaction"] > 0:
            per, base = entry["bytes_per_interaction"], entry["process_base_bytes"]
            entry["max_interactions"] = (budget - base) / per
            entry["max_interactions_how"] = (
                f"estimated: linear fit of process peak ({C.fmt_bytes(base)} + "
                f"{C.fmt_bytes(per)} per interaction) beyond the largest run, "
                f"{max(xm):,} interactions")
        fits[model] = entry
    return fits


def _first_memory_failure(points: Sequence[Dict[str, Any]], model: str
                          ) -> Optional[Tuple[int, Dict[str, Any]]]:
    for p in points:
        rec = p.get("models", {}).get(model) or {}
        if rec.get("memory_failure"):
            return p.get("num_train", p["size"]), rec
    return None


def _linear_fit(x: Sequence[float], y: Sequence[float]):
    r"""Least squares :math:`y = c x + b`; returns ``(c, b)``."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    c = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx else float("nan")
    return c, my - c * mx


def plots(result: Dict[str, Any], out_dir: Path) -> None:
    r"""Time and memory against interactions; sizes a model did not complete are left out."""
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


def _gib(n: float) -> str:
    r"""Bytes in GiB, as many decimals as a table cell needs (31, 2.3, 0.46)."""
    v = n / GIB
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def cell(rec: Optional[Dict[str, Any]], absolute: bool) -> str:
    r"""One (size, model) cell: the epoch time (or its ratio to LightGCN), ``skipped (...)``,
    ``killed at X GiB`` or ``error``."""
    if not rec:
        return ""
    if "skipped" in rec:
        return f"skipped ({rec.get('short') or rec['skipped']})"
    failure = rec.get("memory_failure")
    if failure:
        seen = rec.get("memory_exceeded_bytes")
        at = f" at {_gib(seen)} GiB" if seen else ""
        return {"limit": f"killed{at}", "oom": f"killed by the kernel (OOM){at}"}.get(
            failure, "out of memory")
    if "error" in rec:
        return "error"
    if absolute:
        return C.fmt_seconds(rec["epoch_s"])
    v = rec.get("epoch_ratio")
    return f"{v:.2f}×" if v else "n/a"


def knn_note(result: Dict[str, Any]) -> str:
    r"""From which size STAIR's and FREEDOM's item kNN graphs are the approximate (IVF) ones."""
    ran = [p for p in result["points"] if "num_train" in p]
    exact = [p["size"] for p in ran if p.get("knn_method", "exact") == "exact"]
    ivf = [p["size"] for p in ran if p.get("knn_method") == "ivf"]
    tail = " (its own accuracy is measured in bench_modality)"
    if not ivf:
        return "STAIR's and FREEDOM's item kNN graphs: exact at every size."
    if not exact:
        return ("STAIR's and FREEDOM's item kNN graphs: IVF approximate at every size" + tail
                + ".")
    return (f"STAIR's and FREEDOM's item kNN graphs: exact kNN up to {max(exact):,} "
            f"interactions, IVF approximate above, from {min(ivf):,}{tail}.")


def memory_note(result: Dict[str, Any]) -> str:
    r"""How the sweep kept within the machine's memory, and which models ran without features."""
    limit = result.get("memory_limit_bytes")
    featureless = sorted({m for p in result["points"]
                          for m, r in p.get("models", {}).items()
                          if r.get("features_loaded") is False})
    parts = []
    if limit:
        parts.append(f"Each model ran in its own process, killed above {limit / GIB:.3g} GiB "
                     "resident; a model is skipped at a size where the linear fit of its "
                     "smaller sizes' process peaks predicts more, and at every size after one "
                     "where it was killed or skipped.")
    if featureless:
        parts.append("Models that use no item features ran without them: "
                     + ", ".join(f"`{m}`" for m in featureless) + ".")
    return " ".join(parts)


def report(result: Dict[str, Any], absolute: bool) -> str:
    models = list(result["fits"])
    lines = []
    headers = ["interactions", "users", "items"] + [
        (f"{m} epoch" if absolute else f"{m} epoch × LightGCN") for m in models]
    rows = []
    for p in result["points"]:
        recs = p.get("models", {})
        if "num_train" in p:
            row = [f"{p['num_train']:,}", f"{p['num_users']:,}", f"{p['num_items']:,}"]
        else:
            row = [f"{p['size']:,}", "", ""]
        if not recs:  # nothing was tried at this size
            rows.append(row + [p.get("skipped") or p.get("error", "error")]
                        + [""] * (len(models) - 1))
            continue
        rows.append(row + [cell(recs.get(m), absolute) for m in models])
    lines.append(C.markdown_table(headers, rows))
    lines.append("")
    headers = ["model", "time slope", "memory slope", "process bytes / interaction",
               "process peak at the largest run",
               f"largest size in {result['budget_bytes'] / GIB:g} GiB", "how"]
    rows = []
    for m, f in result["fits"].items():
        fmt = lambda v: "n/a" if v is None or v != v else f"{v:.2f}"  # noqa: E731
        mx = f.get("max_interactions")
        largest = (f"{C.fmt_bytes(f['process_peak_at_largest_run'])} at {f['largest_run']:,}"
                   if f.get("largest_run") else "n/a")
        rows.append([m, fmt(f["time_slope"]), fmt(f["memory_slope"]),
                     C.fmt_bytes(f.get("bytes_per_interaction")), largest,
                     "n/a" if mx is None else f"{mx:.2e}", f.get("max_interactions_how", "n/a")])
    lines.append(C.markdown_table(headers, rows, ["l", "r", "r", "r", "r", "r", "l"]))
    lines.append("")
    lines.append("Slopes are fitted on log-log axes over the measured sizes (time: seconds per "
                 "extrapolated epoch; memory: the model's peak growth over the loaded data; the "
                 "budget estimate uses the whole-process peak, data included). A time slope "
                 "near 2 is expected for graph models: an epoch has E/B batches and each "
                 "propagates over the whole graph.")
    lines.append("")
    lines.append(knn_note(result))
    note = memory_note(result)
    if note:
        lines.append("")
        lines.append(note)
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
    settings = result["settings"]
    body = [f"### Scaling: synthetic graphs, {min(sizes):,} to {max(sizes):,} interactions "
            f"({'GPU' if cuda else 'CPU'})", ""]
    if not cuda:
        body.append(C.machine_note(result["environment"]) + " Epoch times are ratios to "
                    "our `lightgcn` at the same size; memory is absolute (machine-independent). "
                    "Where epoch times do not grow with the size, the timed batches were too few "
                    "for the load on the machine: read the time slopes as unresolved there.")
    else:
        body.append(f"Absolute times from `{result['device_name']}`.")
    reproduce = (f"python benchmarks/scaling.py --sizes {','.join(str(s) for s in sizes)} "
                 f"--device {dev}")
    if settings.get("memory_limit_gib") is not None:
        reproduce += f" --memory-limit-gib {settings['memory_limit_gib']:g}"
    elif settings.get("budget_gib") != 24.0 or settings.get("memory_margin_gib") != 2.0:
        reproduce += (f" --budget-gib {settings['budget_gib']:g} "
                      f"--memory-margin-gib {settings['memory_margin_gib']:g}")
    if settings.get("approx_knn_from") != DEFAULT_APPROX_KNN_FROM:
        reproduce += f" --approx-knn-from {settings['approx_knn_from']:g}"
    reproduce += "".join(f" --hparam {h}" for h in settings.get("hparam") or [])
    body += ["", "Synthetic features of MMRec's dimensions (4096-d image, 384-d text), "
             "timing-only. Epoch times extrapolated from "
             f"{settings['max_batches']} timed batches.", "",
             report(result, absolute=cuda), "", *[f"![{f}]({f})" for f in figs], "",
             f"Reproduce: `{reproduce} --write-results`"]
    C.update_results_section("scaling", dev, "\n".join(body))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
