r"""Accuracy of models under one protocol, hyper-parameters selected on validation only.

For each of ``--models`` (default: the config's model; ``all``: every registry model but
``content``), every point of the product of the ``--grid key=v1,v2,...`` axes (keys as in
``stair-pyg train --set``; no grid: one point) is trained by :func:`stair_pyg.train.run_experiment`
with the selection ``--seed``; the point with the best **validation** metric is run again with
``--final-seeds``, and its **test** metrics at the best validation epoch are reported as mean ± std
over all of its seeds (the other points' test columns are for inspection only). ``--models``
trains each model with its packaged settings (``stair_pyg/configs/models/<name>.yaml``) on the
config's dataset. Runs go to ``--jobs`` processes; the JSON (``benchmarks/results/sweep_<name>.json``)
is rewritten after every run, and a restart with the same settings reuses the finished runs.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _results import BENCH_DIR, write_section
from stair_pyg.profiling.bench import COMPARED
from stair_pyg.profiling.measure import MemoryMeter, device_name, environment, fmt_bytes
from stair_pyg.profiling.report import markdown_table, mean_std, write_json

SCRIPT = "sweep"
HEADLINE = ["Recall@10", "Recall@20", "NDCG@10", "NDCG@20"]
#: ``--quick``: a small synthetic graph, two grid points, a few epochs (a smoke run).
QUICK_CONFIG = {
    "dataset": {"format": "synthetic", "num_users": 300, "num_items": 150,
                "interactions_per_user": 12, "content_weight": 0.5, "seed": 0},
    "model": {"name": "stair"},
    "train": {"epochs": 4, "patience": 4, "eval_every": 1, "ks": [10, 20, 50]},
}
QUICK_GRID = ["model.gamma=0.1,1.0"]


def split_values(text: str) -> List[str]:
    r"""Splits ``"a,b,{x: 1, y: 2}"`` at the commas outside brackets and braces."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{(") - (char in "]})")
        if char == "," and depth == 0:
            values, current = values + [current.strip()], ""
        else:
            current += char
    return [v for v in values + [current.strip()] if v]


def parse_grid(items: Sequence[str]) -> List[List[Any]]:
    axes = []
    for item in items:
        key, _, raw = item.partition("=")
        if not key.strip() or not split_values(raw):
            raise SystemExit(f"--grid '{item}' is not of the form key=v1,v2,...")
        axes.append([key.strip(), split_values(raw)])
    return axes


def grid_points(axes: List[List[Any]]) -> List[List[str]]:
    r"""Every combination of the axes as a list of ``key=value`` overrides."""
    return [[f"{k}={v}" for (k, _), v in zip(axes, combo)]
            for combo in itertools.product(*(values for _, values in axes))]


def model_config(args: argparse.Namespace, model: Optional[str]) -> Dict[str, Any]:
    r"""The config (resolved: dataset paths absolute), with :obj:`model`'s packaged ``model``
    section and ``train`` settings in place of the config's own, then the ``--set`` overrides."""
    import yaml

    from stair_pyg.configs import find_config, model_config_path
    from stair_pyg.train.config import apply_overrides, load_config

    path = None if args.quick else find_config(args.config)
    if path is None and not args.quick:
        raise SystemExit(f"error: --config {args.config}: no such file and no packaged config")
    config = copy.deepcopy(QUICK_CONFIG) if args.quick else load_config(path)
    if model is not None:
        spec = yaml.safe_load(model_config_path(model).read_text())
        config["model"] = {**spec.get("model", {}), "name": model}
        train = {k: v for k, v in config.get("train", {}).items()
                 if k not in ("batch_size", "lr", "weight_decay", "seed")}
        config["train"] = {**train, **spec.get("train", {})}
    config = apply_overrides(config, args.set)
    config.setdefault("train", {}).update(checkpoint_every=0, device=args.device)
    return config


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    if sys.platform.startswith("linux"):  # a killed sweep must not leave workers training on
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


_DATASET_CACHE: Dict[str, Any] = {}


def run_point(config: Dict[str, Any], overrides: List[str], seed: int) -> Dict[str, Any]:
    r"""Trains one grid point with one seed (in a worker process): best epoch, seconds per
    epoch, peak memory (CUDA peak allocated; CPU growth of the peak RSS), numeric metrics."""
    from stair_pyg.data import load_dataset
    from stair_pyg.train import resolve_device, run_experiment
    from stair_pyg.train.config import apply_overrides

    cfg = apply_overrides(config, overrides + [f"train.seed={seed}"])
    key = json.dumps(cfg["dataset"], sort_keys=True)
    if key not in _DATASET_CACHE:
        _DATASET_CACHE.clear()
        _DATASET_CACHE[key] = load_dataset(cfg["dataset"])
    meter, start = MemoryMeter(resolve_device(cfg["train"]["device"])), time.perf_counter()
    with meter:
        result = run_experiment(cfg, out_dir=None, progress=False, dataset=_DATASET_CACHE[key])
    numbers = lambda d: {k: float(v) for k, v in d.items() if isinstance(v, (int, float))}  # noqa
    return {"overrides": overrides, "seed": seed, "best_epoch": result["best_epoch"],
            "epoch_seconds": float(result["epoch_seconds"]),
            "wall_seconds": time.perf_counter() - start, "peak_memory_bytes": meter.peak_bytes(),
            "valid": numbers(result["valid"]), "test": numbers(result["test"])}


def run_key(model: str, overrides: Sequence[str], seed: int) -> str:
    return json.dumps([model, list(overrides), int(seed)])


def select(model: str, points: List[List[str]], runs: Dict[str, Any], seed: int,
           metric: str) -> Optional[List[str]]:
    r"""The point with the best validation :obj:`metric` for the selection seed (ties: the first
    in grid order)."""
    scored = [(runs[run_key(model, p, seed)]["valid"].get(metric, float("-inf")), -i, p)
              for i, p in enumerate(points) if "error" not in runs.get(run_key(model, p, seed),
                                                                       {"error": ""})]
    return max(scored)[2] if scored else None


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    summary: Dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok),
                               "seeds": [r["seed"] for r in ok]}
    if ok:
        summary.update({m: mean_std([r["test"].get(m) for r in ok]) for m in HEADLINE})
        summary["epoch_seconds"] = mean_std([r["epoch_seconds"] for r in ok])
        summary["best_epoch"] = mean_std([r["best_epoch"] for r in ok])
        summary["peak_memory_bytes"] = max((r["peak_memory_bytes"] for r in ok
                                            if r["peak_memory_bytes"] is not None), default=None)
    return summary


def markdown(results: Dict[str, Any]) -> str:
    metric, seed, axes = results["metric"], results["selection_seed"], results["grid"]
    memory = ("`torch.cuda.max_memory_allocated`" if results["device"].startswith("cuda")
              else "growth of the process's peak RSS during the run")
    lines = [f"### Sweep: `{results['name']}`", "",
             f"Every grid point trained with seed {seed}, selected on **validation** {metric}; "
             f"the selected point then run with seeds {results['seeds']} and reported on test at "
             "its best validation epoch (mean ± std). Test columns of the other points are for "
             f"inspection only. Peak memory: {memory} (largest over seeds). Device: "
             f"{results['device_name']}.", ""]
    headers = [k for k, _ in axes] + [f"valid {metric}", "test Recall@20", "test NDCG@20",
                                      "best epoch", "s/epoch"]
    for model, entry in results["models"].items():
        if len(results["points"]) < 2:
            break
        rows = []
        for point in results["points"]:
            run = results["runs"].get(run_key(model, point, seed))
            cells = ["not run"] if run is None else [
                "failed: " + run["error"].splitlines()[0][:60]] if "error" in run else [
                f"{run['valid'].get(metric, float('nan')):.4f}"
                + (" **selected**" if point == entry["selected"] else "")] + [
                f"{run['test'].get(m, float('nan')):.4f}" for m in HEADLINE[1::2]] + [
                str(run["best_epoch"]), f"{run['epoch_seconds']:.2f}"]
            rows.append([o.split("=", 1)[1] for o in point] + cells)
        lines += [f"Model `{model}`:", "", markdown_table(headers, rows), ""]
    rows = []
    for model, entry in results["models"].items():
        s = entry.get("final") or {}
        if not s.get("seeds"):
            rows.append([model, "failed"] + [""] * (len(HEADLINE) + 3))
            continue
        rows.append([model, " ".join(entry["selected"]) or "packaged"] + [
            f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in HEADLINE] + [
            f"{s['epoch_seconds']['mean']:.2f}", fmt_bytes(s["peak_memory_bytes"]),
            f"{s['best_epoch']['mean']:.0f}" + (f" ({s['failed']} failed)" if s["failed"] else "")])
    env = results["environment"]
    lines += [markdown_table(["model", "selected"] + [f"test {m}" for m in HEADLINE]
                             + ["s/epoch", "peak memory", "best epoch"], rows), "",
              f"Produced by `python benchmarks/sweep.py {results['args']}` on {env['time']} "
              f"(torch {env['torch']}, PyG {env['torch_geometric']})."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--config", default="synthetic", help="experiment YAML or packaged config name")
    add("--models", help="comma-separated, or 'all' (default: the config's model)")
    add("--grid", action="append", default=[], help="key=v1,v2,... (repeatable: the product)")
    add("--set", action="append", default=[], help="key=value applied to every run")
    add("--seed", type=int, default=1, help="selection seed (default: 1)")
    add("--final-seeds", default="", help="further seeds of the selected point, e.g. 2,3")
    add("--jobs", type=int, default=1, help="worker processes (default: 1)")
    add("--threads", type=int, help="torch threads per worker (default: cores / jobs)")
    add("--name", help="section / file name (default: <config>[-<model>])")
    add("--fresh", action="store_true", help="ignore the runs of an earlier JSON")
    add("--out", help="write the JSON here and leave RESULTS.md alone")
    add("--no-write", action="store_true", help="print only; write neither JSON nor RESULTS.md")
    add("--device", default="cpu", help="auto | cpu | cuda (default: cpu)")
    add("--quick", action="store_true", help="tiny synthetic graph, a few epochs (a smoke run)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from stair_pyg.models import MODELS
    from stair_pyg.train import resolve_device
    from stair_pyg.train.config import apply_overrides, resolve_config

    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    models: List[Optional[str]] = ([None] if not args.models else COMPARED
                                   if args.models == "all" else args.models.split(","))
    unknown = [m for m in models if m is not None and m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    axes = parse_grid(args.grid or (QUICK_GRID if args.quick and not args.models else []))
    points = grid_points(axes)
    configs = {}
    for m in models:
        config = model_config(args, m)
        for point in points:  # bad configs fail here, not in a worker
            resolve_config(apply_overrides(config, point), check_paths=point is points[0])
        configs[str(config["model"].get("name", "stair"))] = config
    metric = str(next(iter(configs.values()))["train"].get("metric", "NDCG@20"))
    stem = "quick" if args.quick else Path(args.config).stem
    name = args.name or (f"{stem}-{next(iter(configs))}" if len(configs) == 1 else stem)
    final_seeds = [args.seed] + [int(s) for s in split_values(args.final_seeds) if
                                 int(s) != args.seed]
    jobs = max(1, args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    json_path = (Path(args.out) if args.out else BENCH_DIR / "results") / f"{SCRIPT}_{name}.json"
    runs: Dict[str, Dict[str, Any]] = {}
    if json_path.is_file() and not args.fresh and not args.no_write:
        stored = json.loads(json_path.read_text())
        stored_configs = {m: e.get("config") for m, e in stored.get("models", {}).items()}
        runs = {k: v for k, v in stored.get("runs", {}).items() if "error" not in v
                and stored_configs.get(json.loads(k)[0]) == json.loads(json.dumps(
                    configs.get(json.loads(k)[0])))}
        if runs:
            print(f"[sweep] reusing {len(runs)} finished run(s) from {json_path}")
    device = resolve_device(args.device)
    results: Dict[str, Any] = {
        "script": SCRIPT, "name": name, "args": " ".join(argv), "metric": metric, "grid": axes,
        "points": points, "selection_seed": args.seed, "seeds": final_seeds,
        "device": str(device), "device_name": device_name(device), "environment": environment(),
        "models": {m: {"config": c, "selected": None} for m, c in configs.items()}, "runs": runs}

    def save() -> None:
        if not args.no_write:
            write_json(json_path, results)

    def execute(todo: List[List[Any]]) -> None:
        todo = [t for t in todo if run_key(*t) not in runs]
        if not todo:
            return
        print(f"[sweep] {len(todo)} run(s) on {jobs} worker(s) x {threads} thread(s)", flush=True)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            pending = {pool.submit(run_point, configs[m], p, s): (m, p, s) for m, p, s in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    model, point, seed = pending.pop(future)
                    try:
                        run = future.result()
                        msg = (f"valid {metric} {run['valid'].get(metric, float('nan')):.4f} "
                               f"best epoch {run['best_epoch']} ({run['wall_seconds']:.0f} s)")
                    except Exception as e:  # keep going: one failed run must not lose others
                        run = {"overrides": point, "seed": seed,
                               "error": f"{type(e).__name__}: {e}"}
                        msg = "FAILED " + run["error"]
                    runs[run_key(model, point, seed)] = run
                    save()
                    print(f"[sweep] {model} {' '.join(point)} seed {seed}: {msg}", flush=True)

    execute([[m, p, args.seed] for m in configs for p in points])
    for m, entry in results["models"].items():
        entry["selected"] = select(m, points, runs, args.seed, metric)
    execute([[m, e["selected"], s] for m, e in results["models"].items()
             if e["selected"] is not None for s in final_seeds])
    for m, entry in results["models"].items():
        entry["final"] = summarise([runs.get(run_key(m, entry["selected"], s), {"error": "not run"})
                                    for s in final_seeds] if entry["selected"] is not None
                                   else [{"error": "every grid point failed"}])
    table = markdown(results)
    print(table)
    if not args.no_write:
        save()
        print(f"[sweep] wrote {json_path}")
        if not args.out:
            write_section(SCRIPT, name, [table])
    return 0 if all(not e["final"]["failed"] for e in results["models"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
