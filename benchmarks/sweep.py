r"""Accuracy of models under one protocol, hyper-parameters selected on validation only.

For each of ``--models`` (default: the config's model; ``all``: every registry model but
``content``), every point of the product of the ``--grid key=v1,v2,...`` axes (keys as in
``stair-pyg train --set``; no grid: one point) is trained by :func:`stair_pyg.train.run_experiment`
with the selection ``--seed``; the point with the best **validation** metric is run again with
``--final-seeds``, and its **test** metrics at the best validation epoch are reported as mean ± std
over all of its seeds (the other points' test columns are for inspection only). ``--models``
trains each model with its packaged settings (``stair_pyg/configs/models/<name>.yaml``) on the
config's dataset. ``--leaderboard`` is the results table: every model, each over the ``grid`` of
its packaged config, under one protocol (:data:`LEADERBOARD`), as ``### Leaderboard: <config>``.
Runs go to ``--jobs`` processes, model by model; the JSON
(``benchmarks/results/sweep_<name>.json``) is rewritten after every run, a restart with the same
settings reuses the finished runs (after a change to the code a model's runs execute, its own
module or any ``stair_pyg`` module it or the trainer imports, once one of its runs has been
reproduced by the changed code; otherwise they run again). Beside the JSON goes a figure,
``sweep_<name>.png``: each finished model's test score (mean ± std over its seeds) and the
validation curve of each model's selected point. ``--report`` rebuilds the tables and the figure
from the JSON alone.
"""
from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _results import BENCH_DIR, write_section
from stair_pyg.profiling.bench import COMPARED
from stair_pyg.profiling.measure import MemoryMeter, device_name, environment, fmt_bytes
from stair_pyg.profiling.report import (markdown_table, mean_std, scores_and_curves_plot,
                                        write_json)

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
#: ``--leaderboard``: the protocol every model is trained under (MMRec's epoch cap; a patience
#: long enough that LightGCN does not stop on its early popularity peak), and the final seeds.
LEADERBOARD = ["train.epochs=1000", "train.patience=50"]
LEADERBOARD_SEEDS = "2,3"


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


def run_point(config: Dict[str, Any], overrides: List[str], seed: int) -> Dict[str, Any]:
    r"""Trains one grid point with one seed (in a worker process): best epoch, seconds per
    epoch, peak memory (CUDA peak allocated; CPU growth of the peak RSS), numeric metrics."""
    from stair_pyg.data import load_dataset
    from stair_pyg.train import resolve_device, run_experiment
    from stair_pyg.train.config import apply_overrides

    cfg = apply_overrides(config, overrides + [f"train.seed={seed}"])
    dataset = load_dataset(cfg["dataset"])  # before the meter: its memory is the data's
    meter, start = MemoryMeter(resolve_device(cfg["train"]["device"])), time.perf_counter()
    with meter:
        result = run_experiment(cfg, out_dir=None, progress=False, dataset=dataset)
    numbers = lambda d: {k: float(v) for k, v in d.items() if isinstance(v, (int, float))}  # noqa
    metric = cfg["train"].get("metric", "NDCG@20")
    curve = [[r["epoch"], round(float(r["valid"][metric]), 5), round(float(r["loss"]), 5)]
             for r in result["history"] if "valid" in r]
    return {"overrides": overrides, "seed": seed, "best_epoch": result["best_epoch"],
            "epoch_seconds": float(result["epoch_seconds"]), "curve": curve,
            "wall_seconds": time.perf_counter() - start, "peak_memory_bytes": meter.peak_bytes(),
            "fresh_process": True,
            "valid": numbers(result["valid"]), "test": numbers(result["test"])}


#: The module a sweep's worker trains with; the code it imports counts for every model.
TRAINING_ENTRY = "stair_pyg.train.experiment"


@functools.lru_cache(maxsize=None)
def _imported_modules(name: str) -> Tuple[str, ...]:
    r"""The ``stair_pyg`` modules module :obj:`name`'s source imports, read from the source
    (imports inside functions and ``importlib.import_module("...")`` of a literal name included,
    since those run too), with the packages each one is imported through."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(name)
    tree = ast.parse(_source(name))
    package = name if spec.submodule_search_locations is not None else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # submodules
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    modules = set()
    for module in found:
        if module.split(".")[0] != "stair_pyg":
            continue
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except (ImportError, ValueError):  # a name imported from a module, not a module
            continue
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return tuple(sorted(modules))


def _source(module: str) -> bytes:
    r"""The source file of :obj:`module`, as bytes."""
    import importlib.util

    return Path(importlib.util.find_spec(module).origin).read_bytes()


def code_modules(model: str) -> List[str]:
    r"""The code a run of :obj:`model` executes: its model's module and every ``stair_pyg``
    module that it or the training entry (:data:`TRAINING_ENTRY`) imports, transitively
    (:func:`_imported_modules`), the other models' modules excepted (the registry imports them
    all; they do not run)."""
    import inspect

    from stair_pyg.models import MODELS

    own = inspect.getmodule(MODELS[model]).__name__
    others = {inspect.getmodule(cls).__name__ for cls in MODELS.values()} - {own}
    seen, todo = set(), [own, TRAINING_ENTRY]
    while todo:
        module = todo.pop()
        if module in seen or module in others:
            continue
        seen.add(module)
        todo.extend(_imported_modules(module))
    return sorted(seen)


def code_version(model: str) -> str:
    r"""A fingerprint of the code a run of :obj:`model` executes (:func:`code_modules`: the
    model, the layers, kernels and optimizer it uses, the trainer, the data loading and the
    evaluation): a finished run is reused only by a sweep whose fingerprint and config are
    both unchanged, and after a change only once the changed code has reproduced one of the
    model's runs (:func:`reproduces`)."""
    import hashlib

    digest = hashlib.sha256()
    for module in code_modules(model):
        digest.update(module.encode() + b"\0" + _source(module))
    return digest.hexdigest()[:12]


def reproduces(new: Dict[str, Any], old: Dict[str, Any]) -> bool:
    r"""Whether :obj:`new` (a run of changed model code) reproduces :obj:`old`: the same best
    epoch, the same validation and test metrics (to 1e-9 relative: the evaluation sums its
    blocks in float64, and a different block size reorders those sums), and the same validation
    curve (5 digits) where both have one. Then the model's other runs stand for the changed code
    too (a change that leaves the computation as it was, such as a refactoring, need not re-run
    a grid)."""
    import math

    if "error" in new or "error" in old:
        return False

    def close(a: Dict[str, float], b: Dict[str, float]) -> bool:
        return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12)
                                            for k in a)

    same = (new["best_epoch"] == old["best_epoch"] and close(new["valid"], old["valid"])
            and close(new["test"], old["test"]))
    if "curve" in new and "curve" in old:
        same = same and new["curve"] == old["curve"]
    return same


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


def shown_point(model: str, entry: Dict[str, Any], runs: Dict[str, Any], seed: int,
                metric: str) -> Optional[List[str]]:
    r"""The point a table row or a curve of :obj:`model` shows: its selected point once the grid
    has run, until then the best of the points that have run (on validation)."""
    if all(run_key(model, p, seed) in runs for p in entry["points"]):
        return entry["selected"]
    return select(model, [p for p in entry["points"] if run_key(model, p, seed) in runs], runs,
                  seed, metric)


def runs_needed(model: str, points: List[List[str]], runs: Dict[str, Any], seed: int,
                final_seeds: Sequence[int], metric: str
                ) -> Tuple[List[List[Any]], Optional[List[str]]]:
    r"""The runs :obj:`model` still needs, as ``[model, point, seed]``, and its selected point
    (:obj:`None` until every grid point has run with the selection seed, or if all failed):
    first its grid points with the selection seed, then the selected point's further seeds. A
    grid of one point selects nothing, so its further seeds are needed at once, beside the first
    (with several workers they run side by side)."""
    todo = [[model, p, seed] for p in points if run_key(model, p, seed) not in runs]
    selected = None if todo else select(model, points, runs, seed, metric)
    seeded = points[0] if todo and len(points) == 1 else selected
    return todo + ([] if seeded is None else [
        [model, seeded, s] for s in final_seeds
        if s != seed and run_key(model, seeded, s) not in runs]), selected


#: The placeholder of a run the sweep has not reached yet (as opposed to one that failed).
NOT_RUN = {"error": "not run"}


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    missing = sum(r == NOT_RUN for r in runs)
    summary: Dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok) - missing,
                               "missing": missing, "seeds": [r["seed"] for r in ok]}
    if ok:
        summary.update({m: mean_std([r["test"].get(m) for r in ok]) for m in HEADLINE})
        summary["epoch_seconds"] = mean_std([r["epoch_seconds"] for r in ok])
        summary["best_epoch"] = mean_std([r["best_epoch"] for r in ok])
        # Runs of older sweeps shared a worker process, whose heap the later runs reused, so
        # their RSS growth read near 0: only a run in a process of its own counts.
        summary["peak_memory_bytes"] = max((r["peak_memory_bytes"] for r in ok
                                            if r["peak_memory_bytes"] is not None
                                            and r.get("fresh_process")), default=None)
    return summary


def at_cap(run: Dict[str, Any], train: Dict[str, Any]) -> bool:
    r"""Whether :obj:`run` was still improving when the epoch cap stopped it: its best epoch
    came later than ``epochs - patience * eval_every``, so early stopping never fired."""
    every = int(train.get("eval_every", 1))
    return run["best_epoch"] > int(train["epochs"]) - int(train["patience"]) * every


def markdown(results: Dict[str, Any]) -> str:
    metric, seed = results["metric"], results["selection_seed"]
    memory = ("`torch.cuda.max_memory_allocated`" if results["device"].startswith("cuda")
              else "growth of the process's peak RSS during the run")
    train = next(iter(results["models"].values()))["config"]["train"]
    lines = [f"### {results.get('title') or 'Sweep: `' + results['name'] + '`'}", "",
             f"Every grid point trained with seed {seed}, selected on **validation** {metric}; "
             f"the selected point then run with seeds {results['seeds']} and reported on test at "
             "its best validation epoch (mean ± std). Test columns of the other points are for "
             f"inspection only. Up to {train['epochs']} epochs, early stopping after "
             f"{train['patience']} evaluations without improvement; † marks a best epoch so late "
             f"that the cap, not early stopping, ended the run. Peak memory: {memory} (largest "
             f"over seeds). Device: {results['device_name'].split(' (')[0]}, "
             f"{results.get('jobs', 1)} worker(s) x {results.get('threads', '?')} torch "
             f"thread(s); on a CPU the seconds per epoch depend on what else ran, so they "
             f"are for orientation only.", ""]
    rows = []
    for model, entry in results["models"].items():
        points, cfg = entry["points"], entry["config"]["train"]
        done = sum(run_key(model, p, seed) in results["runs"] for p in points)
        s = entry.get("final") or {}
        if done < len(points) or not s.get("seeds") or s.get("missing"):
            status = (f"{done} of {len(points)} grid points run" if done < len(points) else
                      "every grid point failed" if entry["selected"] is None else
                      f"{len(s.get('seeds', []))} of {len(results['seeds'])} seeds run")
            best = shown_point(model, entry, results["runs"], seed, metric)
            if best is not None:
                run = results["runs"][run_key(model, best, seed)]
                status += (f"; {'selected' if done == len(points) else 'best so far'} "
                           f"{' '.join(best) or 'packaged'}: valid "
                           f"{metric} {run['valid'][metric]:.4f}, test "
                           f"{run['test'][metric]:.4f} (seed {seed})")
            rows.append([model, status] + [""] * (len(HEADLINE) + 3))
        else:
            capped = any(at_cap(results["runs"][run_key(model, entry["selected"], x)], cfg)
                         for x in s["seeds"])
            rows.append([model, " ".join(entry["selected"]) or "packaged"] + [
                f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in HEADLINE] + [
                f"{s['epoch_seconds']['mean']:.2f}", fmt_bytes(s["peak_memory_bytes"]),
                f"{s['best_epoch']['mean']:.0f}" + " †" * capped
                + (f" ({s['failed']} failed)" if s["failed"] else "")])
    env = results["environment"]
    lines += [markdown_table(["model", "selected"] + [f"test {m}" for m in HEADLINE]
                             + ["s/epoch", "peak memory", "best epoch"], rows), ""]
    for model, entry in results["models"].items():
        if len(entry["points"]) < 2 or not any(run_key(model, p, seed) in results["runs"]
                                               for p in entry["points"]):
            continue
        headers = [k for k, _ in entry["grid"]] + [f"valid {metric}", "test Recall@20",
                                                   "test NDCG@20", "best epoch", "s/epoch"]
        grid_rows = []
        for point in entry["points"]:
            run = results["runs"].get(run_key(model, point, seed))
            blank = [""] * 4
            cells = ["not run"] + blank if run is None else [
                "failed: " + run["error"].splitlines()[0][:60]] + blank if "error" in run else [
                f"{run['valid'].get(metric, float('nan')):.4f}"
                + (" **selected**" if point == entry["selected"] else "")] + [
                f"{run['test'].get(m, float('nan')):.4f}" for m in HEADLINE[1::2]] + [
                f"{run['best_epoch']}" + " †" * at_cap(run, entry["config"]["train"]),
                f"{run['epoch_seconds']:.2f}"]
            grid_rows.append([o.split("=", 1)[1] for o in point] + cells)
        lines += [f"Model `{model}`, seed {seed}:", "", markdown_table(headers, grid_rows), ""]
    lines += [f"Produced by `python benchmarks/sweep.py {results['args']}` on {env['time']} "
              f"(torch {env['torch']}, PyG {env['torch_geometric']}); tables regenerated from "
              f"the JSON by `python benchmarks/sweep.py {results['args']} --report`."]
    return "\n".join(lines)


def figure_data(results: Dict[str, Any]) -> Tuple[Dict[str, Tuple[float, float]],
                                                  Dict[str, Tuple[List[int], List[float]]]]:
    r"""What the sweep's figure shows: the test :obj:`metric` ``(mean, std)`` of every model
    whose selected point has run with all its seeds, best first, and the validation curve of
    each model's selected point with the selection seed (of its best point so far while its
    grid is unfinished)."""
    metric, seed, runs = results["metric"], results["selection_seed"], results["runs"]
    scores, curves = {}, {}
    for model, entry in results["models"].items():
        final = entry.get("final") or {}
        if final.get("seeds") and not final.get("missing") and not final.get("failed"):
            scores[model] = (final[metric]["mean"], final[metric]["std"])
        point = shown_point(model, entry, runs, seed, metric)
        run = runs.get(run_key(model, point, seed)) if point is not None else None
        if run and run.get("curve"):
            curves[model] = ([e for e, *_ in run["curve"]], [v for _, v, *_ in run["curve"]])
    return dict(sorted(scores.items(), key=lambda kv: -kv[1][0])), curves


def write_figure(results: Dict[str, Any], path: Path) -> Optional[Path]:
    r"""The figure of :func:`figure_data` as a PNG at :obj:`path` (:obj:`None` when no run has
    a curve yet)."""
    scores, curves = figure_data(results)
    if not curves:
        return None
    metric = results["metric"]
    return scores_and_curves_plot(
        path, scores, curves, f"test {metric} (mean ± std over seeds {results['seeds']})",
        f"validation {metric}, seed {results['selection_seed']}",
        f"{results.get('title') or results['name']}: selected on validation")


def packaged_grid(model: str) -> List[List[Any]]:
    r"""The ``grid`` section of :obj:`model`'s packaged config as sweep axes (values written
    back as YAML, so ``1.0e-05`` stays a float)."""
    import yaml

    from stair_pyg.configs import model_config_path
    from stair_pyg.train.config import check_grid

    grid = check_grid(yaml.safe_load(model_config_path(model).read_text()).get("grid"))
    dump = lambda v: yaml.safe_dump(v, default_flow_style=True, width=10**6)  # noqa: E731
    return [[key, [dump(v).removesuffix("\n...\n").strip() for v in values]]
            for key, values in grid.items()]


def lock_results(json_path: Path) -> None:
    r"""Holds an exclusive lock on ``<json>.lock`` for the rest of the process: a second sweep
    into the same JSON would overwrite the first one's runs with its own, so it stops here."""
    import fcntl

    json_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(json_path.with_suffix(".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"error: another sweep is writing {json_path}; wait for it, or stop it "
                         "(its finished runs are kept) and start again") from None
    _LOCKS.append(handle)


_LOCKS: List[Any] = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--config", default="synthetic", help="experiment YAML or packaged config name")
    add("--models", help="comma-separated, or 'all' (default: the config's model)")
    add("--grid", action="append", default=[], help="key=v1,v2,... (repeatable: the product)")
    add("--leaderboard", action="store_true",
        help="every model with its packaged grid, " + " ".join(LEADERBOARD)
        + f", final seeds {LEADERBOARD_SEEDS}")
    add("--set", action="append", default=[], help="key=value applied to every run")
    add("--seed", type=int, default=1, help="selection seed (default: 1)")
    add("--final-seeds", default="", help="further seeds of the selected point, e.g. 2,3")
    add("--jobs", type=int, default=1, help="worker processes (default: 1)")
    add("--threads", type=int, help="torch threads per worker (default: cores / jobs)")
    add("--name", help="section / file name (default: <config>[-<model>])")
    add("--fresh", action="store_true", help="ignore the runs of an earlier JSON")
    add("--report", action="store_true",
        help="train nothing: rebuild the tables (and RESULTS.md) from the JSON's runs")
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
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report"]
    if args.leaderboard:
        args.models, args.final_seeds = args.models or "all", args.final_seeds or LEADERBOARD_SEEDS
        args.set = LEADERBOARD + args.set
    models: List[Optional[str]] = ([None] if not args.models else list(MODELS) if
                                   args.leaderboard and args.models == "all" else COMPARED
                                   if args.models == "all" else args.models.split(","))
    unknown = [m for m in models if m is not None and m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    axes = parse_grid(args.grid or (QUICK_GRID if args.quick and not args.models else []))
    configs, grids = {}, {}
    for m in models:
        config = model_config(args, m)
        name = str(config["model"].get("name", "stair"))
        model_axes = packaged_grid(name) if args.leaderboard and not args.grid else axes
        for point in grid_points(model_axes):  # bad configs fail here, not in a worker
            resolve_config(apply_overrides(config, point), check_paths=not grids.get(name))
            grids[name] = model_axes
        configs[name] = config
    metric = str(next(iter(configs.values()))["train"].get("metric", "NDCG@20"))
    stem = "quick" if args.quick else Path(args.config).stem
    name = args.name or (f"leaderboard-{stem}" if args.leaderboard else
                         f"{stem}-{next(iter(configs))}" if len(configs) == 1 else stem)
    final_seeds = [args.seed] + [int(s) for s in split_values(args.final_seeds) if
                                 int(s) != args.seed]
    jobs = max(1, args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    json_path = (Path(args.out) if args.out else BENCH_DIR / "results") / f"{SCRIPT}_{name}.json"
    runs: Dict[str, Dict[str, Any]] = {}
    stored: Dict[str, Any] = {}
    carried: Dict[str, Dict[str, Dict[str, Any]]] = {}  # runs of changed code, awaiting a check
    if not args.no_write and not args.report:
        lock_results(json_path)
    if json_path.is_file() and not args.fresh and not (args.no_write and not args.report):
        stored = json.loads(json_path.read_text())
        same_config = {m for m, e in stored.get("models", {}).items() if m in configs
                       and e.get("config") == json.loads(json.dumps(configs[m]))}
        finished = {k: v for k, v in stored.get("runs", {}).items() if "error" not in v
                    and json.loads(k)[0] in same_config}
        # --report shows what the JSON holds; a sweep reuses a model's runs while its code is
        # unchanged, or once the changed code has reproduced one of them (see reproduces()).
        same = same_config if args.report else {
            m for m in same_config if stored["models"][m].get("code") == code_version(m)}
        runs = {k: v for k, v in finished.items() if json.loads(k)[0] in same}
        for m in sorted(same_config - same):
            held = {k: v for k, v in finished.items() if json.loads(k)[0] == m}
            if held:
                carried[m] = held
                print(f"[sweep] {m}: its code changed since its {len(held)} finished run(s); "
                      "running one of them again first, to keep them if it reproduces",
                      flush=True)
        if runs:
            print(f"[sweep] reusing {len(runs)} finished run(s) from {json_path}")
    elif args.report:
        raise SystemExit(f"--report: no results at {json_path}")
    device = resolve_device(args.device)
    results: Dict[str, Any] = {
        "script": SCRIPT, "name": name, "args": " ".join(argv), "metric": metric,
        "jobs": jobs, "threads": threads,
        "title": f"Leaderboard: {stem}" if args.leaderboard else None,
        "selection_seed": args.seed, "seeds": final_seeds,
        "device": str(device), "device_name": device_name(device), "environment": environment(),
        "models": {m: {"config": c, "code": code_version(m), "grid": grids[m],
                       "points": grid_points(grids[m]), "selected": None}
                   for m, c in configs.items()}, "runs": runs}
    if args.report:  # the run's own description, not this invocation's
        results.update({k: stored[k] for k in ("device", "device_name", "environment", "args",
                                               "jobs", "threads") if k in stored})

    def save() -> None:
        if not args.no_write and not args.report:
            write_json(json_path, results)

    def needed(model: str) -> List[List[Any]]:
        r"""The runs :obj:`model` needs next (see :func:`runs_needed`); the reproduction check
        of changed model code comes first."""
        entry = results["models"][model]
        if model in carried:
            key = next((run_key(model, p, args.seed) for p in entry["points"]
                        if run_key(model, p, args.seed) in carried[model]),
                       next(iter(carried[model])))
            return [json.loads(key)]
        todo, entry["selected"] = runs_needed(model, entry["points"], runs, args.seed,
                                              final_seeds, metric)
        return todo

    def record(task: List[Any], run: Dict[str, Any]) -> None:
        model, point, seed = task
        msg = ("FAILED " + run["error"] if "error" in run else
               f"valid {metric} {run['valid'].get(metric, float('nan')):.4f} "
               f"best epoch {run['best_epoch']} ({run['wall_seconds']:.0f} s)")
        key = run_key(model, point, seed)
        runs[key] = run
        print(f"[sweep] {model} {' '.join(point)} seed {seed}: {msg}", flush=True)
        if model in carried:
            held = carried.pop(model)
            if reproduces(run, held[key]):
                runs.update({k: v for k, v in held.items() if k != key})
                results["models"][model]["reproduced"] = {
                    "run": key, "code_before": stored["models"][model].get("code")}
                print(f"[sweep] {model}: the changed code reproduced that run exactly; keeping "
                      f"its other {len(held) - 1} finished run(s)", flush=True)
            else:
                print(f"[sweep] {model}: the changed code gives different results; its other "
                      f"{len(held) - 1} run(s) are run again", flush=True)
        save()

    # Models in order (grid, then its selected point's seeds), a later model's runs only taking
    # workers the earlier ones leave idle, so that an interrupted sweep leaves whole rows.
    if not args.report and any(needed(m) for m in configs):
        print(f"[sweep] {sum(len(needed(m)) for m in configs)} run(s) ahead (more once a grid "
              f"selects) on {jobs} worker(s) x {threads} thread(s)", flush=True)
        # One process per run (max_tasks_per_child): a run's peak memory is then its own, not
        # hidden by the heap an earlier run of the same worker left behind.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 max_tasks_per_child=1,
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            pending: Dict[Any, List[Any]] = {}
            while True:
                queued = [t for t in pending.values()]
                for task in (t for m in configs for t in needed(m) if t not in queued):
                    if len(pending) >= jobs:
                        break
                    pending[pool.submit(run_point, configs[task[0]], *task[1:])] = task
                    queued.append(task)
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        record(task, future.result())
                    except Exception as e:  # keep going: one failed run must not lose others
                        record(task, {"overrides": task[1], "seed": task[2],
                                      "error": f"{type(e).__name__}: {e}"})
    for m, entry in results["models"].items():
        needed(m)
        entry["final"] = summarise([runs.get(run_key(m, entry["selected"], s), NOT_RUN)
                                    for s in final_seeds] if entry["selected"] is not None
                                   else [{"error": "every grid point failed"}])
    table = markdown(results)
    print(table)
    if not args.no_write:
        save()
        print(f"[sweep] wrote {json_path}" if not args.report else "[sweep] tables rebuilt")
        figure = write_figure(results, json_path.with_suffix(".png"))
        if not args.out:
            write_section(SCRIPT, name, [table] + (
                ["", f"![{SCRIPT}: {name}]({figure.relative_to(BENCH_DIR).as_posix()})"]
                if figure else []))
    if args.report:  # the tables are rebuilt, whatever the runs they show
        return 0
    return 0 if all(not e["final"]["failed"] and not e["final"]["missing"]
                    for e in results["models"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
