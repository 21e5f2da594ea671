r"""Accuracy, speed and memory of every model under one protocol, several seeds each.

Every model (STAIR, BPR-MF, LightGCN, VBPR, FREEDOM, BM3, LGMRec; optionally the content-only
``content`` model) is trained by :func:`stair_pyg.train.run_experiment` on the same dataset and
splits, selected on the validation metric (``NDCG@20`` by default, early stopping with the
configured patience) and reported on the test split at its best validation epoch. Each model runs
with its own paper's / reference implementation's settings (``configs/models/<name>.yaml``): STAIR with the
STAIR paper's (batch 1024, AdamW-style weight decay 0.3), the baselines with MMRec's (batch 2048,
Adam, lr 1e-3, no weight decay; their regularisers are in their losses) and the hyper-parameter
defaults documented in each model class.

Outputs:

* ``benchmarks/results/compare_models_<name>.json``: every run (test and validation metrics, best
  epoch, mean training seconds per epoch, peak memory) and the summary;
* the section ``<!-- compare_models:<name>:begin -->`` ... ``end`` of ``benchmarks/RESULTS.md``
  (only that section is replaced): mean ± standard deviation over seeds of Recall@10/20 and
  NDCG@10/20, seconds per epoch and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
  growth of the peak resident set size over the run, the process high-water mark being reset
  before each run).

Examples::

    python benchmarks/compare_models.py --quick                    # tiny synthetic, ~1 minute
    python benchmarks/compare_models.py                            # synthetic default, 3 seeds
    python benchmarks/compare_models.py --dataset scientific --epochs 200
    python benchmarks/compare_models.py --dataset ml100k --models stair,lightgcn,freedom
    python benchmarks/compare_models.py --config configs/synthetic.yaml --seeds 1,2,3
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# benchmarks/ holds a ``profile.py`` that would shadow the standard library's ``profile`` (which
# torch imports through cProfile): keep the folder off sys.path, import it as a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from benchmarks import _common as C  # noqa: E402

SCRIPT = "compare_models"
DEFAULT_MODELS = ["stair", "bpr", "lightgcn", "vbpr", "freedom", "bm3", "lgmrec"]
HEADLINE = ["Recall@10", "Recall@20", "NDCG@10", "NDCG@20"]

#: Every model's ``model`` section and ``train`` settings come from ``configs/models/<name>.yaml``,
#: the same files ``stair-pyg train --model NAME`` uses.
MODEL_CONFIG_DIR = REPO_ROOT / "configs" / "models"


def model_spec(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The ``model`` section and ``train`` settings of ``configs/models/<model>.yaml``."""
    spec = C.load_config_file(MODEL_CONFIG_DIR / f"{model}.yaml")
    return {"model": dict(spec.get("model", {"name": model})), "train": dict(spec.get("train", {}))}


DATASET_CONFIGS = {
    "synthetic": REPO_ROOT / "configs" / "synthetic.yaml",
    "scientific": REPO_ROOT / "configs" / "scientific.yaml",
    "ml100k": REPO_ROOT / "configs" / "ml100k.yaml",
}

#: ``--quick``: a small synthetic graph and a few epochs (a smoke run of the whole pipeline).
QUICK_DATASET = {"format": "synthetic", "num_users": 300, "num_items": 150,
                 "interactions_per_user": 12, "content_weight": 0.5, "seed": 0}


def base_config(args: argparse.Namespace) -> Dict[str, Any]:
    r"""The experiment configuration the runs share (dataset and train sections)."""
    if args.quick:
        config = {"dataset": dict(QUICK_DATASET),
                  "train": {"epochs": 5, "patience": 5, "eval_every": 1}}
    else:
        path = Path(args.config) if args.config else DATASET_CONFIGS[args.dataset]
        config = C.load_config_file(path)
        config = {"dataset": C.absolute_dataset(config.get("dataset", {}), path),
                  "train": dict(config.get("train", {}))}
    train = config["train"]
    for key in ("batch_size", "lr", "weight_decay", "seed"):  # per model / per run
        train.pop(key, None)
    train.update({"metric": "NDCG@20", "ks": [10, 20, 50], "device": args.device,
                  "checkpoint_every": 0})
    if args.epochs is not None:
        train["epochs"] = int(args.epochs)
    if args.patience is not None:
        train["patience"] = int(args.patience)
    return config


def run_config(base: Dict[str, Any], model: str, seed: int) -> Dict[str, Any]:
    spec = model_spec(model)
    config = copy.deepcopy(base)
    config["model"] = {**spec["model"], "name": model}
    config["train"] = {**config["train"], **spec["train"], "seed": int(seed)}
    return config


def run_one(config: Dict[str, Any], dataset, device: torch.device) -> Dict[str, Any]:
    from stair_pyg.train import run_experiment

    meter = C.MemoryMeter(device)
    start = time.perf_counter()
    with meter:
        result = run_experiment(config, out_dir=None, progress=False, dataset=dataset)
    return {
        "seed": config["train"]["seed"],
        "best_epoch": result["best_epoch"],
        "epochs_run": len(result.get("history", [])) or None,
        "epoch_seconds": float(result["epoch_seconds"]),
        "wall_seconds": time.perf_counter() - start,
        "peak_memory_bytes": meter.peak_bytes(),
        "memory": meter.result,
        "test": {k: float(v) for k, v in result["test"].items() if isinstance(v, (int, float))},
        "valid": {k: float(v) for k, v in result["valid"].items()
                  if isinstance(v, (int, float))},
    }


mean_std = C.mean_std


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    summary: Dict[str, Any] = {"runs": len(runs), "failed": len(runs) - len(ok)}
    if not ok:
        return summary
    for metric in HEADLINE:
        summary[metric] = mean_std([r["test"].get(metric, float("nan")) for r in ok])
    summary["epoch_seconds"] = mean_std([r["epoch_seconds"] for r in ok])
    peaks = [r["peak_memory_bytes"] for r in ok if r["peak_memory_bytes"] is not None]
    summary["peak_memory_bytes"] = max(peaks) if peaks else None
    summary["best_epoch"] = mean_std([r["best_epoch"] for r in ok])
    return summary


def markdown(name: str, results: Dict[str, Any]) -> str:
    env, args = results["environment"], results["args"]
    device = results["device"]
    memory_note = ("`torch.cuda.max_memory_allocated`" if device.startswith("cuda")
                   else "growth of the process's peak RSS during the run")
    lines = [
        f"### Model comparison: `{name}`",
        "",
        f"Test metrics at the best validation epoch (NDCG@20), mean ± std over seeds "
        f"{results['seeds']}; s/epoch = mean training seconds per epoch; peak memory = "
        f"{memory_note} (largest over seeds). Device: {results['device_name']}. "
        f"Dataset: `{results['dataset_spec']}`; up to {results['train']['epochs']} epochs, "
        f"patience {results['train'].get('patience')}.",
        "",
    ]
    rows = []
    for model, summary in results["summary"].items():
        if summary.get("failed") == summary.get("runs"):
            err = results["runs"][model][0].get("error", "failed").splitlines()[0][:80]
            rows.append([model] + ["failed: " + err] + [""] * (len(HEADLINE) + 2))
            continue
        cells = [f"{summary[m]['mean']:.4f} ± {summary[m]['std']:.4f}" for m in HEADLINE]
        eps = summary["epoch_seconds"]
        cells.append(f"{eps['mean']:.2f}")
        cells.append(C.fmt_bytes(summary["peak_memory_bytes"]))
        cells.append(f"{summary['best_epoch']['mean']:.0f}")
        if summary["failed"]:
            cells[-1] += f" ({summary['failed']} failed)"
        rows.append([model] + cells)
    lines.append(C.markdown_table(["model"] + HEADLINE + ["s/epoch", "peak memory", "best epoch"],
                                  rows))
    lines += ["", f"Produced by `python benchmarks/compare_models.py {args}` on {env['time']} "
              f"(torch {env['torch']}, PyG {env['torch_geometric']})."]
    return "\n".join(lines)


def parse_seeds(text: str) -> List[int]:
    text = str(text).strip()
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds must be a count >= 1 or a comma-separated list")
    return list(range(1, n + 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dataset", choices=sorted(DATASET_CONFIGS), default="synthetic",
                       help="a shipped dataset config (default: synthetic)")
    group.add_argument("--config", help="an experiment YAML; its dataset and train sections "
                                        "are used (model section ignored)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated (default: {','.join(DEFAULT_MODELS)}; "
                             "also: content)")
    parser.add_argument("--seeds", type=parse_seeds, default=[1, 2, 3],
                        help="a count (1..n) or a comma-separated list (default: 3)")
    parser.add_argument("--epochs", type=int, help="cap on training epochs (default: config)")
    parser.add_argument("--patience", type=int, help="early-stopping patience (default: config)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny synthetic graph, 5 epochs, 2 seeds (unless --seeds)")
    parser.add_argument("--name", help="section / file name (default: the dataset's name)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the table only; write neither JSON nor RESULTS.md")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick and "--seeds" not in argv:
        args.seeds = [1, 2]
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    from stair_pyg.data import load_dataset
    from stair_pyg.models import MODELS

    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")

    if args.name:
        name = args.name
    elif args.quick:
        name = "synthetic-quick"
    elif args.config:
        name = Path(args.config).stem
    else:
        name = args.dataset
    device = C.resolve_device(args.device)
    base = base_config(args)
    print(f"[compare_models] dataset {base['dataset']} on {device}", flush=True)
    dataset = load_dataset(base["dataset"])

    runs: Dict[str, List[Dict[str, Any]]] = {}
    for model in models:
        runs[model] = []
        for seed in args.seeds:
            config = run_config(base, model, seed)
            try:
                run = run_one(config, dataset, device)
                msg = (f"NDCG@20 {run['test'].get('NDCG@20', float('nan')):.4f} "
                       f"Recall@20 {run['test'].get('Recall@20', float('nan')):.4f} "
                       f"best epoch {run['best_epoch']} {run['epoch_seconds']:.2f} s/epoch")
            except Exception as e:  # keep going: one broken model must not lose the others
                run = {"seed": seed, "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()}
                msg = "FAILED " + run["error"]
            runs[model].append(run)
            print(f"[compare_models] {model:9s} seed {seed}: {msg}", flush=True)

    results = {
        "script": SCRIPT, "name": name, "args": " ".join(argv), "models": models,
        "seeds": args.seeds, "device": str(device), "device_name": C.device_name(device),
        "environment": C.environment(), "dataset_spec": base["dataset"], "train": base["train"],
        "model_configs": {m: model_spec(m) for m in models},
        "runs": runs, "summary": {m: summarise(r) for m, r in runs.items()},
    }
    table = markdown(name, results)
    print(table)
    if not args.no_write:
        path = C.write_json(BENCH_DIR / "results" / f"{SCRIPT}_{name}.json", results)
        C.update_results_section(SCRIPT, name, table)
        print(f"[compare_models] wrote {path} and section '{SCRIPT}:{name}' of {C.RESULTS_MD}")
    failed = sum(s["failed"] for s in results["summary"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
