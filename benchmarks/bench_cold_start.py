r"""New items without retraining: STAIR + ``add_items`` against the models that see cold items
through their features, on the cold-item protocol (``dataset.cold_items``).

For every seed :math:`s`, a fraction (``--cold``, default 0.1) of the items is held out entirely
(:func:`stair_pyg.data.splits.hold_out_items` with ``cold_items_seed = s``): no training or
validation interaction, all of theirs in test. The item ids are reordered so that the held-out
items come last (a relabelling; every model sees the same one). Then, all on the same splits,
selected on validation NDCG@20 with early stopping, reported on test (overall; ``cold/``: the
held-out items' test interactions; ``warm/``: the other items' test interactions; every item
ranked in each):

* ``stair+add_items``: STAIR trained on the catalogue *without* the held-out items, saved,
  reloaded (:func:`stair_pyg.train.load_trained`), given the held-out items' features through
  :meth:`STAIR.add_items` (no retraining);
* ``stair-features-only``: STAIR trained with the held-out items in the catalogue
  (their features in MI and the modality graph, no interactions);
* ``content``, ``vbpr``, ``freedom``: trained with the held-out items in the catalogue (they
  represent them from their features);
* ``stair-before-add_items``: the same STAIR before ``add_items`` (warm catalogue only), on the
  warm items' test pairs;
* ``stair-no-cold-split``: STAIR under the dataset's own split (nothing held out), the
  reference for the overall figures. Its test split differs from the cold-split one (it lacks
  the held-out items' former training interactions), so the comparison of overall NDCG@20 is
  between protocols, not on the same test pairs.

Every model uses its packaged defaults (``stair_pyg/configs/models/<name>.yaml``, the settings of
its paper or reference implementation), with ``--epochs`` as the epoch budget.

Examples::

    python benchmarks/bench_cold_start.py --dataset synthetic --seeds 0,1,2
    python benchmarks/bench_cold_start.py --dataset scientific --epochs 60 --seeds 0,1,2
    python benchmarks/bench_cold_start.py --quick        # tiny synthetic, one seed, seconds

Writes ``benchmarks/results/cold_start_<dataset>.json`` and prints a Markdown table (mean ± std
over seeds).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

from _results import BENCH_DIR, DATA_ROOT

from stair_pyg.configs import config_path, model_config_path
from stair_pyg.data import load_dataset
from stair_pyg.data.hetero import (RecDataset, Splits, build_hetero_data,
                                   modality_features)
from stair_pyg.eval import evaluate
from stair_pyg.train import load_config, load_trained, run_experiment

METRICS = ["Recall@20", "NDCG@20", "warm/NDCG@20", "cold/Recall@20", "cold/NDCG@20"]


def reorder_items(ds: RecDataset, order: torch.Tensor, keep: int) -> RecDataset:
    r"""The dataset with item ``order[j]`` renamed ``j``, keeping only the first :obj:`keep`
    items (interactions with the others dropped; their features too)."""
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(order.numel())

    def relabel(edges: torch.Tensor) -> torch.Tensor:
        edges = torch.stack([edges[0], new_id[edges[1]]])
        edges = edges[:, edges[1] < keep]
        return edges[:, torch.argsort(edges[0] * keep + edges[1])]

    splits = Splits(*(relabel(s) for s in ds.splits))
    feats = {m: x[order[:keep]].contiguous() for m, x in modality_features(ds.data).items()}
    data = build_hetero_data(int(ds.data["user"].num_nodes), keep, splits.train, feats)
    return RecDataset(data, splits)


def model_config(base: Dict[str, Any], name: str, epochs: int, seed: int) -> Dict[str, Any]:
    cfg = load_config([config_path(base["_config"]), model_config_path(name)])
    cfg["dataset"] = {"format": "synthetic"}  # unused: the dataset object is passed in
    cfg["train"].update(epochs=epochs, seed=seed, device="cpu", checkpoint_every=0,
                        patience=base["patience"])
    if "train_overrides" in base:
        cfg["train"].update(base["train_overrides"])
    return cfg


def pick(metrics: Dict[str, Any], warm: Dict[str, Any] = None) -> Dict[str, float]:
    out = {k: float(metrics.get(k, float("nan"))) for k in METRICS}
    out["warm/NDCG@20"] = float((warm or {}).get("NDCG@20", float("nan")))
    return out


def scores(model, splits: Splits, warm_test: torch.Tensor) -> Dict[str, float]:
    r"""Test metrics over all test pairs (and ``cold/``), and NDCG@20 over the test pairs of
    the warm items only (``warm/``), every item ranked."""
    full = evaluate(model, splits, which="test", ks=(20,))
    warm = evaluate(model, Splits(splits.train, splits.valid, warm_test), which="test", ks=(20,),
                    cold_start=False)
    return pick(full, warm)


def run_seed(spec: Dict[str, Any], base: Dict[str, Any], seed: int, cold: float, epochs: int,
             models: List[str]) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    full = load_dataset(spec)
    split = load_dataset(dict(spec, cold_items=cold, cold_items_seed=seed))
    num_items = int(split.data["item"].num_nodes)
    held = split.data["item"].cold_items
    is_cold = torch.zeros(num_items, dtype=torch.bool)
    is_cold[held] = True
    order = torch.cat([torch.nonzero(~is_cold).view(-1), held])
    warm_count = num_items - held.numel()
    everything = reorder_items(split, order, num_items)
    warm_only = reorder_items(split, order, warm_count)
    warm_test = warm_only.splits.test  # the test pairs of warm items

    def trained(name: str, ds: RecDataset):
        with tempfile.TemporaryDirectory() as tmp:
            run_experiment(model_config(base, name, epochs, seed), out_dir=tmp, dataset=ds,
                           progress=False)
            return load_trained(Path(tmp) / "best.pt", "cpu", dataset=ds)[0]

    def timed(label: str, fn) -> None:
        start = time.perf_counter()
        out[label] = fn()
        out[label]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"  seed {seed} {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[label].items()
                                                     if k != "seconds")
              + f" ({out[label]['seconds']} s)", flush=True)

    def add_items() -> Dict[str, float]:
        model = trained("stair", warm_only)
        # before: the warm catalogue alone, on the warm items' test pairs
        out["stair-before-add_items"] = pick({}, evaluate(model, warm_only.splits, which="test",
                                                         ks=(20,), cold_start=False))
        feats = modality_features(everything.data)
        model.add_items({m: x[warm_count:] for m, x in feats.items()})
        return scores(model, everything.splits, warm_test)

    for name in models:
        if name == "stair+add_items":
            timed(name, add_items)
        elif name == "stair-no-cold-split":
            timed(name, lambda: pick(run_experiment(model_config(base, "stair", epochs, seed),
                                                    dataset=full, progress=False)["test"]))
        else:
            model = "stair" if name.startswith("stair") else name
            timed(name, lambda: scores(trained(model, everything), everything.splits,
                                       warm_test))
    return out


def summarise(runs: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, str]]:
    table: Dict[str, Dict[str, str]] = {}
    for name in runs[0]:
        row = {}
        for key in METRICS + ["seconds"]:
            values = [r[name].get(key, float("nan")) for r in runs]
            values = [v for v in values if v == v]
            if not values:
                row[key] = "–"
                continue
            mean = statistics.mean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            row[key] = f"{mean:.1f}" if key == "seconds" else f"{mean:.4f} ± {std:.4f}"
        table[name] = row
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic",
                        help="synthetic (the embedded default) or scientific")
    parser.add_argument("--path", default=None, help="folder of the scientific data "
                        "(default: ../shared/data/scientific)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cold", type=float, default=0.1, help="held-out item fraction")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--models", default="stair+add_items,stair-features-only,"
                        "content,vbpr,freedom,stair-no-cold-split")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic, one seed")
    parser.add_argument("--out", default=None, help="JSON file (default: "
                        "benchmarks/results/cold_start_<dataset>.json)")
    args = parser.parse_args(argv)

    base: Dict[str, Any] = {"patience": args.patience}
    if args.dataset == "synthetic":
        spec: Dict[str, Any] = dict(load_config([config_path("synthetic")])["dataset"])
        spec["cold_start_items"] = 0.0  # the protocol's own held-out items only
        base["_config"] = "synthetic"
    elif args.dataset == "scientific":
        path = args.path or str(DATA_ROOT / "scientific")
        spec = {"format": "mmrec", "path": path}
        base["_config"] = "scientific"
    else:
        parser.error("--dataset must be synthetic or scientific")
    seeds = [int(s) for s in args.seeds.split(",")]
    epochs = args.epochs
    if args.quick:
        spec.update(num_users=150, num_items=100, interactions_per_user=10,
                    modalities={"text": 32, "image": 16})
        seeds, epochs = seeds[:1], min(epochs, 3)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    print(f"cold-start benchmark: {args.dataset}, {args.cold:.0%} of items held out, seeds "
          f"{seeds}, at most {epochs} epochs (patience {args.patience})", flush=True)
    runs = [run_seed(spec, base, seed, args.cold, epochs, models) for seed in seeds]
    table = summarise(runs)
    lines = ["| model | " + " | ".join(METRICS) + " | seconds |",
             "|---" * (len(METRICS) + 2) + "|"]
    lines += [f"| {name} | " + " | ".join(row[k] for k in METRICS) + f" | {row['seconds']} |"
              for name, row in table.items()]
    print("\n".join(lines))
    out = Path(args.out) if args.out else BENCH_DIR / "results" / f"cold_start_{args.dataset}"\
        f"{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": args.dataset, "cold": args.cold, "seeds": seeds,
                               "epochs": epochs, "patience": args.patience, "runs": runs,
                               "summary": table, "markdown": "\n".join(lines)}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
