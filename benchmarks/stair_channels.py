r"""Where STAIR keeps its modality information: channel blocks at initialisation and at the best
epoch.

STAIR's forward stepwise convolution propagates channel :math:`j` with weight
:math:`\beta_j = 1 - (0.1 + 0.9 (j/d)^\gamma)`, so early channels are smoothed over the user-item
graph (collaborative) and late ones hardly at all (they keep what modality initialisation put
there, unless training overwrites it); the smaller :math:`\gamma`, the fewer channels propagate
much (at :math:`\gamma = 0.1`, :math:`\beta_j < 0.2` from :math:`j = d/10` on). This script
trains STAIR once (``--config``, ``--set``), then splits the :math:`d` channels into ``--blocks``
contiguous blocks and reports, for the model at initialisation (modality initialisation, before
any step) and at the best validation epoch:

* **agreement**: for sampled items, the share of their 10 nearest items (cosine, within the
  block) that are also among their 10 nearest by the raw modality features
  (``--modality``, default the first); 1 = the block orders items as the features do,
  chance is about :math:`10 / I`. Given for the item table (what BSC and the optimizer shape)
  and for the propagated items (what scoring uses);
* **test NDCG@20 of the block alone** (scores from that block's channels only) and **without the
  block** (the other channels only): how much the ranking rests on it;
* test NDCG@20 / Recall@20 of the whole model, overall and on cold items (held-out interactions
  with items that have no training interaction), where the split has any.

Examples::

    python benchmarks/stair_channels.py --config scientific --write-results
    python benchmarks/stair_channels.py --config scientific --set model.gamma=1.0
    python benchmarks/stair_channels.py --quick          # tiny synthetic graph, seconds
    python benchmarks/stair_channels.py --name scientific-selected --from-json --write-results

Writes ``results.json`` and ``table.md`` to ``--out`` (default ``build/bench/stair_channels``);
with ``--write-results`` also ``benchmarks/results/stair_channels_<name>.json`` and the section
``stair_channels:<name>`` of ``RESULTS.md``. ``--from-json`` trains nothing: it rebuilds the table
(and with ``--write-results`` the section) from that stored JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from _results import BENCH_DIR, out_dir, write_section
from stair_pyg.configs import find_config
from stair_pyg.data import load_dataset
from stair_pyg.data.hetero import modality_features
from stair_pyg.eval import evaluate_embeddings
from stair_pyg.profiling.measure import environment
from stair_pyg.profiling.report import markdown_table, write_json
from stair_pyg.train import build_model, load_config, load_trained, run_experiment
from stair_pyg.train.config import apply_overrides

SCRIPT = "stair_channels"
QUICK_SET = ["dataset.format=synthetic", "dataset.num_users=300", "dataset.num_items=150",
             "train.epochs=3", "train.patience=3"]


@torch.no_grad()
def neighbour_agreement(emb: Tensor, feat: Tensor, queries: Tensor, k: int = 10) -> float:
    r"""Mean share of each query item's :obj:`k` nearest items by cosine in :obj:`emb` that are
    among its :obj:`k` nearest by cosine in :obj:`feat` (the item itself excluded)."""
    def neighbours(x: Tensor) -> Tensor:
        x = F.normalize(x.double(), dim=1)
        sim = x[queries] @ x.t()
        sim[torch.arange(queries.numel()), queries] = float("-inf")
        return sim.topk(k, dim=1).indices

    near_emb, near_feat = neighbours(emb), neighbours(feat)
    return float((near_emb[:, :, None] == near_feat[:, None, :]).any(-1).double().mean())


def analyse(model: torch.nn.Module, ds: Any, feat: Tensor, blocks: List[range],
            queries: Tensor) -> Dict[str, Any]:
    r"""The per-block figures of one STAIR model (see the module docstring)."""
    model.eval()
    with torch.no_grad():
        user, item = (t.detach().cpu() for t in model.get_embedding())
        table = model.item_embedding.weight.detach().cpu()
    beta = model.conv.beta.detach().cpu()
    whole = evaluate_embeddings(user, item, ds.splits, "test", (20,))
    rows = []
    for block in blocks:
        idx = torch.tensor(list(block))
        rest = torch.tensor([j for j in range(item.size(1)) if j not in block])
        alone = evaluate_embeddings(user[:, idx], item[:, idx], ds.splits, "test", (20,),
                                    cold_start=False)
        without = evaluate_embeddings(user[:, rest], item[:, rest], ds.splits, "test", (20,),
                                      cold_start=False) if rest.numel() else {"NDCG@20": 0.0}
        rows.append({"channels": [block.start, block.stop - 1],
                     "mean_beta": float(beta[idx].mean()),
                     "agreement_table": neighbour_agreement(table[:, idx], feat, queries),
                     "agreement_propagated": neighbour_agreement(item[:, idx], feat, queries),
                     "ndcg20_alone": alone["NDCG@20"], "ndcg20_without": without["NDCG@20"]})
    return {"test": {k: float(v) for k, v in whole.items()}, "blocks": rows}


def report(result: Dict[str, Any]) -> str:
    headers = ["channels", "mean β", "agreement, table (init → best)",
               "agreement, propagated (init → best)", "NDCG@20 block alone (init → best)",
               "NDCG@20 without block (init → best)"]
    rows = []
    for a, b in zip(result["init"]["blocks"], result["best"]["blocks"]):
        rows.append([f"{a['channels'][0]}-{a['channels'][1]}", f"{a['mean_beta']:.2f}",
                     f"{a['agreement_table']:.3f} → {b['agreement_table']:.3f}",
                     f"{a['agreement_propagated']:.3f} → {b['agreement_propagated']:.3f}",
                     f"{a['ndcg20_alone']:.4f} → {b['ndcg20_alone']:.4f}",
                     f"{a['ndcg20_without']:.4f} → {b['ndcg20_without']:.4f}"])
    lines = [markdown_table(headers, rows), ""]
    for when in ("init", "best"):
        test = result[when]["test"]
        cold = (f"; cold items ({test['cold/num_items']:.0f} items, "
                f"{test['cold/num_users']:.0f} users): Recall@20 {test['cold/Recall@20']:.4f}, "
                f"NDCG@20 {test['cold/NDCG@20']:.4f}" if "cold/NDCG@20" in test else
                "; the test split has no cold items")
        moment = ("at initialisation" if when == "init" else
                  f"at the best epoch ({result['best_epoch']})")
        lines.append(f"- {moment}: test Recall@20 {test['Recall@20']:.4f}, "
                     f"NDCG@20 {test['NDCG@20']:.4f}{cold}.")
    lines += ["", f"Agreement: share of an item's 10 nearest items (cosine within the block) "
              f"that are among its 10 nearest by the raw `{result['modality']}` features, over "
              f"{result['queries']} sampled items (chance ≈ {10 / result['num_items']:.3f})."]
    return "\n".join(lines)


def write_results(result: Dict[str, Any]) -> None:
    r"""Store :obj:`result` as ``benchmarks/results/stair_channels_<name>.json`` and write its
    section ``stair_channels:<name>`` of ``RESULTS.md``."""
    name, cfg = result["name"], result["config"]
    write_json(BENCH_DIR / "results" / f"{SCRIPT}_{name}.json", result)
    model = {k: v for k, v in cfg["model"].items() if k != "name"}
    blocks = result["best"]["blocks"]
    d = blocks[-1]["channels"][1] + 1
    metric = cfg["train"].get("metric", "NDCG@20")
    write_section(SCRIPT, name, [
        f"### STAIR's channels: `{name}`, initialisation against the best epoch", "",
        f"STAIR {model}, weight decay {cfg['train'].get('weight_decay')}, best validation "
        f"{metric} at epoch {result['best_epoch']}; {d} channels in {len(blocks)} blocks "
        "(β, the weight of propagation, falls from 0.9 at channel 0 to 0 at the last; the "
        "smaller γ, the sooner).", "", report(result), "",
        f"Reproduce: `{result['command']}`"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--config", default="scientific", help="experiment YAML or packaged config name")
    add("--set", action="append", default=[], help="key=value override (repeatable)")
    add("--blocks", type=int, default=4, help="contiguous channel blocks (default: 4)")
    add("--modality", help="features the agreement is measured against (default: the first)")
    add("--queries", type=int, default=2000, help="items sampled for the agreement")
    add("--name", help="section / file name (default: the config's name)")
    add("--out", help="output folder (default: build/bench/stair_channels)")
    add("--write-results", action="store_true", help="also write its section of RESULTS.md")
    add("--quick", action="store_true", help="tiny synthetic graph, a few epochs")
    add("--from-json", action="store_true",
        help="train nothing: rebuild the table (with --write-results, the section) from "
             "benchmarks/results/stair_channels_<name>.json")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json:
        name = args.name or Path(args.config).stem
        stored = BENCH_DIR / "results" / f"{SCRIPT}_{name}.json"
        if not stored.is_file():
            raise SystemExit(f"error: --from-json: {stored} does not exist (run without "
                             "--from-json and with --write-results first)")
        result = json.loads(stored.read_text())
        print(report(result))
        if args.write_results:
            write_results(result)
        return 0
    path = find_config("synthetic" if args.quick else args.config)
    if path is None:
        raise SystemExit(f"error: --config {args.config}: no such file and no packaged config")
    cfg = load_config(path)
    if cfg["model"].get("name") != "stair":
        cfg["model"] = {"name": "stair"}
    cfg = apply_overrides(cfg, (QUICK_SET if args.quick else []) + args.set
                          + ["train.device=cpu", "train.checkpoint_every=0"])
    out = out_dir(args, SCRIPT)
    ds = load_dataset(cfg["dataset"])
    features = modality_features(ds.data)
    if not features:
        raise SystemExit("error: the dataset has no modality features to compare with")
    modality = args.modality or next(iter(features))
    if modality not in features:
        raise SystemExit(f"error: --modality {modality}: the items have {sorted(features)}")
    feat = features[modality].float()
    torch.manual_seed(int(cfg["train"].get("seed", 0)))
    initial = build_model(cfg["model"], ds.data, device=torch.device("cpu"))
    d = initial.embedding_dim
    if not 1 <= args.blocks <= d:
        raise SystemExit(f"error: --blocks must be between 1 and the {d} channels")
    edges = [round(i * d / args.blocks) for i in range(args.blocks + 1)]
    blocks = [range(a, b) for a, b in zip(edges, edges[1:])]
    num_items = feat.size(0)
    queries = torch.randperm(num_items, generator=torch.Generator().manual_seed(0))[
        :min(args.queries, num_items)]

    init = analyse(initial, ds, feat, blocks, queries)
    run = run_experiment(cfg, out_dir=out / "run", progress=False, dataset=ds)
    trained, _, _ = load_trained(out / "run" / "best.pt", device="cpu", dataset=ds)
    best = analyse(trained, ds, feat, blocks, queries)
    metric = cfg["train"].get("metric", "NDCG@20")
    name = args.name or ("quick" if args.quick else Path(args.config).stem)
    command = " ".join(["python benchmarks/stair_channels.py",
                        *(argv if argv is not None else sys.argv[1:])])
    result = {"script": SCRIPT, "name": name, "command": command, "config": cfg,
              "modality": modality,
              "num_items": num_items, "queries": int(queries.numel()),
              "best_epoch": run["best_epoch"], "init": init, "best": best,
              "curve": [[r["epoch"], r["valid"][metric]] for r in run["history"] if "valid" in r],
              "environment": environment()}
    write_json(out / "results.json", result)
    table = report(result)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if args.write_results:
        write_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
