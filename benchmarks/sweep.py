r"""Validation-selected hyper-parameters: a grid search that never looks at the test split.

Every point of the product of the ``--grid key=v1,v2,...`` axes (keys as in ``stair-pyg train
--set``) is trained once with the selection seed by :func:`stair_pyg.train.run_experiment`; the
point with the best **validation** metric is run again with ``--final-seeds`` and its **test**
metrics reported as mean ± std (the other points' test metrics are kept for inspection, never
used). Runs go to ``--jobs`` processes; the JSON is rewritten after every run, and a restart
with the same arguments reuses the finished runs (``--fresh`` ignores them). Outputs:
``benchmarks/results/sweep_<name>.json`` and the section ``sweep:<name>`` of ``RESULTS.md``.

Examples::

    python benchmarks/sweep.py --quick
    python benchmarks/sweep.py --config ml100k --model stair \
        --grid model.gamma=0.1,0.5,1.0 --grid train.weight_decay=0.1,0.3 \
        --set train.patience=50 --set train.epochs=400 --final-seeds 2,3 --jobs 2
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _results import (BENCH_DIR, common_arguments, config_file, dataset_section,
                      load_config_file, model_defaults, train_run, write_section)
from stair_pyg.profiling.measure import device_name, environment
from stair_pyg.profiling.report import markdown_table, mean_std, write_json

SCRIPT = "sweep"
HEADLINE = ["Recall@20", "NDCG@20"]

#: ``--quick``: a small synthetic graph, two grid points, a few epochs (a smoke run).
QUICK_CONFIG = {
    "dataset": {"format": "synthetic", "num_users": 300, "num_items": 150,
                "interactions_per_user": 12, "content_weight": 0.5, "seed": 0},
    "model": {"name": "stair"},
    "train": {"epochs": 4, "patience": 4, "eval_every": 1},
}
QUICK_GRID = ["model.gamma=0.1,1.0"]


def split_values(text: str) -> List[str]:
    r"""Splits ``"a,b,{x: 1, y: 2}"`` at the commas outside brackets and braces."""
    values, depth, current = [], 0, []
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    values.append("".join(current).strip())
    return [v for v in values if v]


def parse_grid(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    axes = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--grid '{item}' is not of the form key=v1,v2,...")
        key, raw = item.split("=", 1)
        values = split_values(raw)
        if not key.strip() or not values:
            raise SystemExit(f"--grid '{item}' needs a key and at least one value")
        axes.append((key.strip(), values))
    return axes


def grid_points(axes: List[Tuple[str, List[str]]]) -> List[List[str]]:
    r"""Every combination of the axes as a list of ``key=value`` overrides."""
    keys = [k for k, _ in axes]
    return [[f"{k}={v}" for k, v in zip(keys, combo)]
            for combo in itertools.product(*(values for _, values in axes))]


def base_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""The dataset config, then the model's packaged defaults when ``--model`` is given, then
    the ``--set`` overrides; checkpoints off, relative dataset paths made absolute."""
    from stair_pyg.train.config import apply_overrides, merge_configs

    if args.quick:
        config = copy.deepcopy(QUICK_CONFIG)
    else:
        path = config_file(args.config)
        config = {**load_config_file(path), "dataset": dataset_section(path)}
    if args.model:
        # A model section naming another model replaces the dataset config's (merge_configs).
        config = merge_configs(config, model_defaults(args.model))
    config = apply_overrides(config, args.set)
    config.setdefault("train", {})
    config["train"].update({"checkpoint_every": 0, "device": args.device})
    return config


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------

_DATASET_CACHE: Dict[str, Any] = {}


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    if sys.platform.startswith("linux"):  # a killed sweep must not leave workers training on
        try:
            import ctypes
            import signal

            ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def run_point(config: Dict[str, Any], overrides: List[str], seed: int) -> Dict[str, Any]:
    r"""Trains one grid point with one seed (in a worker process)."""
    from stair_pyg.data import load_dataset
    from stair_pyg.train.config import apply_overrides

    cfg = apply_overrides(config, overrides + [f"train.seed={seed}"])
    key = json.dumps(cfg["dataset"], sort_keys=True)
    if key not in _DATASET_CACHE:
        _DATASET_CACHE.clear()
        _DATASET_CACHE[key] = load_dataset(cfg["dataset"])
    return {"overrides": overrides, **train_run(cfg, _DATASET_CACHE[key])}


# ---------------------------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------------------------


def run_key(overrides: Sequence[str], seed: int) -> str:
    return json.dumps([list(overrides), int(seed)])


def select(points: List[List[str]], runs: Dict[str, Dict[str, Any]], seed: int,
           metric: str) -> Optional[List[str]]:
    r"""The grid point with the best validation :obj:`metric` for the selection seed (ties: the
    first in grid order)."""
    best, best_value = None, float("-inf")
    for point in points:
        run = runs.get(run_key(point, seed))
        if run is None or "error" in run:
            continue
        value = run["valid"].get(metric, float("-inf"))
        if value > best_value:
            best, best_value = point, value
    return best


def markdown(results: Dict[str, Any]) -> str:
    metric = results["metric"]
    seed = results["selection_seed"]
    lines = [
        f"### Sweep: `{results['name']}`",
        "",
        f"Model `{results['model']}`; every grid point trained with seed {seed}, selected on "
        f"**validation** {metric}; the selected point then run with seeds "
        f"{results['final_seeds_all']} and reported on test (mean ± std). Test columns of the "
        f"other points are for inspection only. Device: {results['device_name']}.",
        "",
    ]
    keys = [k for k, _ in results["grid"]]
    rows = []
    for point in results["points"]:
        run = results["runs"].get(run_key(point, seed))
        values = [o.split("=", 1)[1] for o in point]
        mark = " **selected**" if point == results["selected"] else ""
        if run is None:
            rows.append(values + ["not run"] + [""] * 4)
        elif "error" in run:
            rows.append(values + ["failed: " + run["error"].splitlines()[0][:60]] + [""] * 4)
        else:
            rows.append(values + [f"{run['valid'].get(metric, float('nan')):.4f}{mark}"]
                        + [f"{run['test'].get(m, float('nan')):.4f}" for m in HEADLINE]
                        + [str(run["best_epoch"]), f"{run['epoch_seconds']:.2f}"])
    lines.append(markdown_table(keys + [f"valid {metric}"] + [f"test {m}" for m in HEADLINE]
                                  + ["best epoch", "s/epoch"], rows))
    final = results.get("final")
    if final:
        lines += ["", f"Selected `{' '.join(results['selected'])}`, seeds "
                      f"{final['seeds']}: " + ", ".join(
                          f"test {m} {final[m]['mean']:.4f} ± {final[m]['std']:.4f}"
                          for m in HEADLINE) + "."]
    env = results["environment"]
    lines += ["", f"Produced by `python benchmarks/sweep.py {results['args']}` on {env['time']} "
                  f"(torch {env['torch']}, PyG {env['torch_geometric']})."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="experiment YAML (dataset, model, train sections)")
    parser.add_argument("--model", help="replace the config's model by its packaged defaults "
                        "(stair_pyg/configs/models/NAME.yaml)")
    parser.add_argument("--grid", action="append", default=[],
                        help="key=v1,v2,... (repeatable; the grid is the product of the axes)")
    parser.add_argument("--set", action="append", default=[],
                        help="key=value applied to every run (as in stair-pyg train --set)")
    parser.add_argument("--seed", type=int, default=1, help="selection seed (default: 1)")
    parser.add_argument("--final-seeds", default="",
                        help="comma-separated further seeds for the selected point (default: "
                             "none)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per worker (default: cores / jobs)")
    parser.add_argument("--name", help="section / file name (default: <config>-<model>)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the runs stored in an earlier JSON of the same name")
    parser.add_argument("--out", help="write the JSON into this folder and leave RESULTS.md "
                                      "alone (default: benchmarks/results and its section)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; write neither JSON nor RESULTS.md")
    common_arguments(parser, "--device", "--quick")
    parser.set_defaults(device="cpu")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not args.quick and not args.config:
        parser.error("--config is required (or --quick)")
    grid_items = args.grid or (QUICK_GRID if args.quick else [])
    if not grid_items:
        parser.error("give at least one --grid key=v1,v2,...")
    axes = parse_grid(grid_items)
    points = grid_points(axes)
    final_seeds = [int(s) for s in split_values(args.final_seeds)]
    config = base_config(args)
    metric = str(config["train"].get("metric", "NDCG@20"))
    model = str(config.get("model", {}).get("name", "stair"))
    name = args.name or ("quick" if args.quick else f"{Path(args.config).stem}-{model}")
    jobs = max(1, args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)

    from stair_pyg.train.config import resolve_config

    resolve_config(config, check_paths=True)  # bad configs fail here, not in a worker
    for point in points:
        from stair_pyg.train.config import apply_overrides
        resolve_config(apply_overrides(config, point), check_paths=False)

    json_path = (Path(args.out) if args.out else BENCH_DIR / "results") / f"{SCRIPT}_{name}.json"
    runs: Dict[str, Dict[str, Any]] = {}
    if json_path.is_file() and not args.fresh and not args.no_write:
        stored = json.loads(json_path.read_text())
        if stored.get("config") == json.loads(json.dumps(config)):
            runs = {k: v for k, v in stored.get("runs", {}).items() if "error" not in v}
            if runs:
                print(f"[sweep] reusing {len(runs)} finished run(s) from {json_path}")

    import torch

    from stair_pyg.train import resolve_device

    device = resolve_device(args.device)
    results: Dict[str, Any] = {
        "script": SCRIPT, "name": name, "args": " ".join(argv), "model": model,
        "metric": metric, "grid": axes, "points": points, "selection_seed": args.seed,
        "config": config, "device": str(device), "runs": runs, "selected": None,
        "environment": environment(),
    }
    torch.set_num_threads(threads)
    results["device_name"] = device_name(device)

    def save() -> None:
        if not args.no_write:
            write_json(json_path, results)

    def execute(todo: List[Tuple[List[str], int]]) -> None:
        todo = [(p, s) for p, s in todo if run_key(p, s) not in runs]
        if not todo:
            return
        print(f"[sweep] {len(todo)} run(s) on {jobs} worker(s) x {threads} thread(s)", flush=True)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            pending = {pool.submit(run_point, config, p, s): (p, s) for p, s in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    point, seed = pending.pop(future)
                    try:
                        run = future.result()
                        msg = (f"valid {metric} {run['valid'].get(metric, float('nan')):.4f} "
                               f"best epoch {run['best_epoch']} ({run['wall_seconds']:.0f} s)")
                    except Exception as e:  # keep going: one failed point must not lose others
                        run = {"overrides": point, "seed": seed,
                               "error": f"{type(e).__name__}: {e}"}
                        msg = "FAILED " + run["error"]
                    runs[run_key(point, seed)] = run
                    save()
                    print(f"[sweep] {' '.join(point)} seed {seed}: {msg}", flush=True)

    execute([(p, args.seed) for p in points])
    selected = select(points, runs, args.seed, metric)
    results["selected"] = selected
    if selected is None:
        save()
        print("[sweep] every grid point failed")
        return 1
    execute([(selected, s) for s in final_seeds if s != args.seed])
    all_seeds = [args.seed] + [s for s in final_seeds if s != args.seed]
    finished = [runs[run_key(selected, s)] for s in all_seeds
                if "error" not in runs.get(run_key(selected, s), {"error": ""})]
    results["final_seeds_all"] = all_seeds
    results["final"] = {"seeds": [r["seed"] for r in finished],
                        **{m: mean_std([r["test"][m] for r in finished]) for m in HEADLINE}}
    table = markdown(results)
    print(table)
    if not args.no_write:
        save()
        print(f"[sweep] wrote {json_path}")
        if not args.out:
            write_section(SCRIPT, name, [table])
    return 0 if len(finished) == len(all_seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
