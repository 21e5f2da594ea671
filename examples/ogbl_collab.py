r"""Link prediction on OGB's ``ogbl-collab`` with STAIR's ``StepwiseConv``, scored by OGB's own
``Evaluator`` (Hits@50).

Model: node features (128-d) -> ``Linear`` -> ``StepwiseConv`` over the training graph ->
dot-product link score, trained with binary cross-entropy against random negative pairs.

Needs ``ogb`` (``pip install ogb``, or ``pip install stair-pyg[ogb]``). The dataset is not
downloaded by this script. Fetch it yourself and place it like this::

    wget http://snap.stanford.edu/ogb/data/linkproppred/collab.zip
    unzip collab.zip -d DATA_ROOT            # creates DATA_ROOT/collab
    mv DATA_ROOT/collab DATA_ROOT/ogbl_collab  # the folder name ogb expects

    python examples/ogbl_collab.py --root DATA_ROOT

(``DATA_ROOT/ogbl_collab/RELEASE_v1.txt`` must exist.) ``--synthetic`` runs the same model,
training loop and evaluator on a small generated graph in the same format (the dict of
``PygLinkPropPredDataset.get_edge_split()``), which is what CI runs::

    python examples/ogbl_collab.py --synthetic
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.data import Data

from stair_pyg.nn import StepwiseConv

COLLAB_URL = "http://snap.stanford.edu/ogb/data/linkproppred/collab.zip"


class StepwiseLinkPredictor(torch.nn.Module):
    r"""``Linear`` feature encoder, one ``StepwiseConv`` (:math:`L` hops), dot-product scores."""

    def __init__(self, in_channels: int, dim: int, num_layers: int, gamma: float):
        super().__init__()
        self.encoder = torch.nn.Linear(in_channels, dim)
        self.conv = StepwiseConv(dim, num_layers=num_layers, gamma=gamma, cached=True)

    def forward(self, x: Tensor, adj: EdgeIndex) -> Tensor:
        return self.conv(self.encoder(x), adj)

    @staticmethod
    def score(h: Tensor, pairs: Tensor) -> Tensor:
        r"""Logits of node pairs ``[B, 2]``."""
        return (h[pairs[:, 0]] * h[pairs[:, 1]]).sum(dim=-1)


def synthetic_collab(num_nodes: int = 600, num_features: int = 128, seed: int = 0
                     ) -> Tuple[Data, Dict[str, Dict[str, Tensor]]]:
    r"""A small co-authorship-like graph in the layout of ``ogbl-collab``: ``data.x``,
    ``data.edge_index`` (training edges, both directions), ``data.edge_weight``, and the split
    dict with ``train: {edge, weight, year}``, ``valid``/``test: {edge, edge_neg, weight, year}``
    (edges as ``[E, 2]``)."""
    gen = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, 8, (num_nodes,), generator=gen)
    centers = torch.randn(8, num_features, generator=gen)
    x = centers[groups] + 1.5 * torch.randn(num_nodes, num_features, generator=gen)
    x = x / num_features ** 0.5
    src = torch.randint(0, num_nodes, (num_nodes * 12,), generator=gen)
    dst = torch.randint(0, num_nodes, (num_nodes * 12,), generator=gen)
    keep = (groups[src] == groups[dst]) & (src < dst)  # collaborations inside groups
    pairs = torch.unique(torch.stack([src[keep], dst[keep]], dim=1), dim=0)
    pairs = pairs[torch.randperm(pairs.size(0), generator=gen)]
    n_eval = pairs.size(0) // 10
    valid, test, train = pairs[:n_eval], pairs[n_eval:2 * n_eval], pairs[2 * n_eval:]

    def negatives(count: int) -> Tensor:
        return torch.randint(0, num_nodes, (count, 2), generator=gen)

    def part(edges: Tensor, with_neg: bool) -> Dict[str, Tensor]:
        out = {"edge": edges, "weight": torch.ones(edges.size(0), dtype=torch.long),
               "year": torch.full((edges.size(0),), 2019, dtype=torch.long)}
        if with_neg:
            out["edge_neg"] = negatives(20 * edges.size(0))
        return out

    split = {"train": part(train, False), "valid": part(valid, True), "test": part(test, True)}
    edge_index = torch.cat([train.t(), train.t().flip(0)], dim=1)
    data = Data(x=x, edge_index=edge_index, num_nodes=num_nodes,
                edge_weight=torch.ones(edge_index.size(1)))
    return data, split


def load_collab(root: Path) -> Tuple[Data, Dict[str, Dict[str, Tensor]]]:
    folder = root / "ogbl_collab"
    if not (folder / "RELEASE_v1.txt").is_file():
        sys.stderr.write(
            f"ogbl-collab not found under {folder}.\n"
            f"This script does not download it. Fetch {COLLAB_URL},\n"
            f"unzip it into {root} and rename the folder 'collab' to 'ogbl_collab', so that\n"
            f"{folder / 'RELEASE_v1.txt'} exists; then run again with --root {root}.\n"
            f"(Or run with --synthetic to try the model on a small generated graph.)\n")
        raise SystemExit(2)
    from ogb.linkproppred import PygLinkPropPredDataset
    # ogb 1.3.6 stores processed PyG objects that torch>=2.6's weights-only torch.load refuses;
    # these are the user's own files from OGB, loaded the way ogb was written to load them.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    dataset = PygLinkPropPredDataset(name="ogbl-collab", root=str(root))
    return dataset[0], dataset.get_edge_split()


def train_epoch(model, optimizer, x, adj, train_edges: Tensor, batch_size: int,
                num_nodes: int, gen: torch.Generator) -> float:
    model.train()
    total, count = 0.0, 0
    for perm in torch.randperm(train_edges.size(0), generator=gen).split(batch_size):
        h = model(x, adj)
        pos = train_edges[perm].to(x.device)
        neg = torch.randint(0, num_nodes, pos.shape, generator=gen).to(x.device)
        pos_out, neg_out = model.score(h, pos), model.score(h, neg)
        loss = F.binary_cross_entropy_with_logits(pos_out, torch.ones_like(pos_out)) + \
            F.binary_cross_entropy_with_logits(neg_out, torch.zeros_like(neg_out))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * perm.numel()
        count += perm.numel()
    return total / count


@torch.no_grad()
def evaluate(model, evaluator, x, adj, split, batch_size: int) -> Dict[str, float]:
    model.eval()
    h = model(x, adj)
    results = {}
    for name in ("valid", "test"):
        pos = torch.cat([model.score(h, b.to(x.device)).cpu()
                         for b in split[name]["edge"].split(batch_size)])
        neg = torch.cat([model.score(h, b.to(x.device)).cpu()
                         for b in split[name]["edge_neg"].split(batch_size)])
        results[name] = evaluator.eval({"y_pred_pos": pos, "y_pred_neg": neg})["hits@50"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description="ogbl-collab link prediction with StepwiseConv")
    parser.add_argument("--root", type=Path, default=Path("data/ogb"),
                        help="folder that holds ogbl_collab/")
    parser.add_argument("--synthetic", action="store_true",
                        help="small generated graph in the ogbl-collab format (CI)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        from ogb.linkproppred import Evaluator
    except ImportError:
        sys.stderr.write("this example needs ogb: pip install ogb\n")
        return 2

    torch.manual_seed(args.seed)
    if args.synthetic:
        data, split = synthetic_collab(seed=args.seed)
        epochs, batch_size = args.epochs or 20, args.batch_size or 512
    else:
        data, split = load_collab(args.root)
        epochs, batch_size = args.epochs or 100, args.batch_size or 64 * 1024
    device = torch.device(args.device)
    x = data.x.to(device)
    num_nodes = x.size(0)
    adj = EdgeIndex(data.edge_index, sparse_size=(num_nodes, num_nodes)).to(device)
    evaluator = Evaluator(name="ogbl-collab")  # Hits@50
    model = StepwiseLinkPredictor(x.size(1), args.dim, args.layers, args.gamma).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)

    before = evaluate(model, evaluator, x, adj, split, batch_size)
    print(f"untrained: valid Hits@50 {before['valid']:.4f}, test Hits@50 {before['test']:.4f}")
    best = {"valid": -1.0, "test": 0.0, "epoch": 0}
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, optimizer, x, adj, split["train"]["edge"], batch_size,
                           num_nodes, gen)
        result = evaluate(model, evaluator, x, adj, split, batch_size)
        if result["valid"] > best["valid"]:
            best = {"valid": result["valid"], "test": result["test"], "epoch": epoch}
        if epoch == 1 or epoch % 10 == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}: loss {loss:.4f}, valid Hits@50 {result['valid']:.4f}, "
                  f"test Hits@50 {result['test']:.4f}")
    print(f"best valid Hits@50 {best['valid']:.4f} at epoch {best['epoch']}, "
          f"test Hits@50 {best['test']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
