r"""Accuracy, speed and memory of every model under one protocol, several seeds each.

Every model (those of :data:`stair_pyg.profiling.bench.COMPARED`, the registry's; ``content``
on request) is trained by :func:`stair_pyg.train.run_experiment` on the same dataset and splits
with its own settings from ``stair_pyg/configs/models/<name>.yaml``, selected on validation NDCG@20 and
reported on test at its best validation epoch: mean ± std over seeds of Recall/NDCG@10/20,
seconds per epoch and peak memory (CUDA ``max_memory_allocated``; CPU growth of the peak RSS).
Writes ``benchmarks/results/compare_models_<name>.json`` and its section of ``RESULTS.md``.

Examples::

    python benchmarks/compare_models.py --quick                    # tiny synthetic, ~1 minute
    python benchmarks/compare_models.py                            # synthetic default, 3 seeds
    python benchmarks/compare_models.py --dataset ml100k --models stair,lightgcn,freedom
    python benchmarks/compare_models.py --config synthetic --seeds 1,2,3
"""
from __future__ import annotations

import argparse
import copy
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

from _results import (BENCH_DIR, common_arguments, config_file, dataset_section,
                      load_config_file, model_defaults, train_run, write_section)
from stair_pyg.profiling.bench import COMPARED
from stair_pyg.profiling.measure import device_name, environment, fmt_bytes
from stair_pyg.profiling.report import markdown_table, mean_std, write_json

SCRIPT = "compare_models"
HEADLINE = ["Recall@10", "Recall@20", "NDCG@10", "NDCG@20"]
DATASETS = ("ml100k", "scientific", "synthetic")
#: ``--quick``: a small synthetic graph and a few epochs (a smoke run of the whole pipeline).
QUICK_DATASET = {"format": "synthetic", "num_users": 300, "num_items": 150,
                 "interactions_per_user": 12, "content_weight": 0.5, "seed": 0}


def model_spec(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The ``model`` section and ``train`` settings of the model's packaged defaults
    (``stair_pyg/configs/models/<model>.yaml``, what ``stair-pyg train --model NAME`` uses)."""
    spec = model_defaults(model)
    return {"model": dict(spec.get("model", {"name": model})), "train": dict(spec.get("train", {}))}


def base_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""The dataset and train sections every run shares (per-model settings removed)."""
    if args.quick:
        config = {"dataset": dict(QUICK_DATASET),
                  "train": {"epochs": 5, "patience": 5, "eval_every": 1}}
    else:
        path = config_file(args.config or args.dataset)
        config = {"dataset": dataset_section(path),
                  "train": dict(load_config_file(path).get("train", {}))}
    train = config["train"]
    for key in ("batch_size", "lr", "weight_decay", "seed"):  # per model / per run
        train.pop(key, None)
    train.update({"metric": "NDCG@20", "ks": [10, 20, 50], "device": args.device,
                  "checkpoint_every": 0})
    train.update({k: int(getattr(args, k)) for k in ("epochs", "patience")
                  if getattr(args, k) is not None})
    return config


def run_config(base: Dict[str, Any], model: str, seed: int) -> Dict[str, Any]:
    spec, config = model_spec(model), copy.deepcopy(base)
    config["model"] = {**spec["model"], "name": model}
    config["train"] = {**config["train"], **spec["train"], "seed": int(seed)}
    return config


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    summary: Dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok)}
    if ok:
        summary.update({m: mean_std([r["test"].get(m) for r in ok]) for m in HEADLINE})
        summary["epoch_seconds"] = mean_std([r["epoch_seconds"] for r in ok])
        summary["best_epoch"] = mean_std([r["best_epoch"] for r in ok])
        summary["peak_memory_bytes"] = max((r["peak_memory_bytes"] for r in ok
                                            if r["peak_memory_bytes"] is not None), default=None)
    return summary


def markdown(name: str, results: Dict[str, Any]) -> str:
    env = results["environment"]
    memory = ("`torch.cuda.max_memory_allocated`" if results["device"].startswith("cuda")
              else "growth of the process's peak RSS during the run")
    rows = []
    for model, s in results["summary"].items():
        if s.get("failed") == s.get("runs"):
            err = results["runs"][model][0].get("error", "failed").splitlines()[0][:80]
            rows.append([model, "failed: " + err] + [""] * (len(HEADLINE) + 2))
            continue
        rows.append([model] + [f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}" for m in HEADLINE]
                    + [f"{s['epoch_seconds']['mean']:.2f}", fmt_bytes(s["peak_memory_bytes"]),
                       f"{s['best_epoch']['mean']:.0f}"
                       + (f" ({s['failed']} failed)" if s["failed"] else "")])
    return "\n".join([
        f"### Model comparison: `{name}`", "",
        f"Test metrics at the best validation epoch (NDCG@20), mean ± std over seeds "
        f"{results['seeds']}; s/epoch = mean training seconds per epoch; peak memory = {memory} "
        f"(largest over seeds). Device: {results['device_name']}. Dataset: "
        f"`{results['dataset_spec']}`; up to {results['train']['epochs']} epochs, patience "
        f"{results['train'].get('patience')}.", "",
        markdown_table(["model"] + HEADLINE + ["s/epoch", "peak memory", "best epoch"], rows), "",
        f"Produced by `python benchmarks/compare_models.py {results['args']}` on {env['time']} "
        f"(torch {env['torch']}, PyG {env['torch_geometric']})."])


def parse_seeds(text: str) -> List[int]:
    text = str(text).strip()
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    if int(text) < 1:
        raise argparse.ArgumentTypeError("--seeds must be a count >= 1 or a comma-separated list")
    return list(range(1, int(text) + 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dataset", choices=DATASETS, default="synthetic",
                       help="a shipped dataset config (default: synthetic)")
    group.add_argument("--config", help="an experiment YAML; its dataset and train sections "
                                        "are used (model section ignored)")
    parser.add_argument("--models", default=",".join(COMPARED),
                        help=f"comma-separated (default: {','.join(COMPARED)}; also: content)")
    parser.add_argument("--seeds", type=parse_seeds, default=[1, 2, 3],
                        help="a count (1..n) or a comma-separated list (default: 3)")
    parser.add_argument("--epochs", type=int, help="cap on training epochs (default: config)")
    parser.add_argument("--patience", type=int, help="early-stopping patience (default: config)")
    parser.add_argument("--name", help="section / file name (default: the dataset's name)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the table only; write neither JSON nor RESULTS.md")
    return common_arguments(parser, "--device", "--quick")


def main(argv: Optional[List[str]] = None) -> int:
    from stair_pyg.data import load_dataset
    from stair_pyg.models import MODELS
    from stair_pyg.train import resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick and "--seeds" not in argv:
        args.seeds = [1, 2]
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    name = args.name or ("synthetic-quick" if args.quick else
                         Path(args.config).stem if args.config else args.dataset)
    device = resolve_device(args.device)
    base = base_config(args)
    print(f"[{SCRIPT}] dataset {base['dataset']} on {device}", flush=True)
    dataset = load_dataset(base["dataset"])
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for model in models:
        for seed in args.seeds:
            try:
                run = train_run(run_config(base, model, seed), dataset)
                msg = (f"NDCG@20 {run['test'].get('NDCG@20', float('nan')):.4f} "
                       f"Recall@20 {run['test'].get('Recall@20', float('nan')):.4f} "
                       f"best epoch {run['best_epoch']} {run['epoch_seconds']:.2f} s/epoch")
            except Exception as e:  # keep going: one broken model must not lose the others
                run = {"seed": seed, "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()}
                msg = "FAILED " + run["error"]
            runs.setdefault(model, []).append(run)
            print(f"[{SCRIPT}] {model:9s} seed {seed}: {msg}", flush=True)
    results = {"script": SCRIPT, "name": name, "args": " ".join(argv), "models": models,
               "seeds": args.seeds, "device": str(device), "device_name": device_name(device),
               "environment": environment(), "dataset_spec": base["dataset"],
               "train": base["train"], "model_configs": {m: model_spec(m) for m in models},
               "runs": runs, "summary": {m: summarise(r) for m, r in runs.items()}}
    table = markdown(name, results)
    print(table)
    if not args.no_write:
        print(f"[{SCRIPT}] wrote", write_json(BENCH_DIR / "results" / f"{SCRIPT}_{name}.json",
                                              results))
        write_section(SCRIPT, name, [table])
    return 1 if any(s["failed"] for s in results["summary"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
