r"""Compose STAIR's forward stepwise convolution with your own PyG models.

1. A LightGCN-style recommender written with PyG's ``LGConv``, and the same model with
   ``StepwiseConv`` dropped in instead (one line changes).
2. A heterogeneous model on a ``HeteroData`` user-item graph: users have free embeddings, items
   are encoded from their features by a ``Linear`` layer; ``StepwiseConv`` propagates over the
   homogeneous view (``HeteroData.to_homogeneous``) and the result is split back per node type.

Both train a few BPR steps on a small synthetic bipartite graph (a few seconds on a CPU).

    python examples/compose_stepwise_conv.py
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import LGConv

from stair_pyg.nn import StepwiseConv


def synthetic_graph(num_users: int, num_items: int, num_features: int, seed: int = 0):
    r"""Users with a latent taste click items whose (noisy) features match it."""
    gen = torch.Generator().manual_seed(seed)
    taste = torch.randn(num_users, 8, generator=gen)
    latent = torch.randn(num_items, 8, generator=gen)
    affinity = taste @ latent.t() + 0.5 * torch.randn(num_users, num_items, generator=gen)
    items = affinity.topk(6, dim=1).indices  # 6 interactions per user
    users = torch.arange(num_users).repeat_interleave(6)
    features = latent @ torch.randn(8, num_features, generator=gen)
    features = features + 0.1 * torch.randn(num_items, num_features, generator=gen)
    return torch.stack([users, items.reshape(-1)]), features


class LightGCNStyle(torch.nn.Module):
    r"""A user's own recommender: embeddings propagated by a graph layer, scored by dot product.

    With ``conv="lgconv"`` it is LightGCN (mean over :math:`L` applications of ``LGConv``); with
    ``conv="stepwise"`` the propagation is STAIR's ``StepwiseConv`` (all :math:`L` hops inside
    one layer, a different weight per channel).
    """

    def __init__(self, num_nodes: int, dim: int, num_layers: int, conv: str):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_nodes, dim)
        torch.nn.init.normal_(self.embedding.weight, std=0.1)
        self.num_layers = num_layers
        if conv == "lgconv":
            self.convs = torch.nn.ModuleList([LGConv() for _ in range(num_layers)])
            self.conv = None
        else:
            self.convs = None
            self.conv = StepwiseConv(dim, num_layers=num_layers, gamma=0.1)  # <- the swap

    def forward(self, edge_index: Tensor) -> Tensor:
        x = self.embedding.weight
        if self.conv is not None:
            return self.conv(x, edge_index)
        out = x
        for conv in self.convs:
            x = conv(x, edge_index)
            out = out + x
        return out / (self.num_layers + 1)


class HeteroRecommender(torch.nn.Module):
    r"""Users: free embeddings. Items: a ``Linear`` encoder of their features. One
    ``StepwiseConv`` over the homogeneous view of the heterogeneous graph."""

    def __init__(self, num_users: int, item_features: int, dim: int, num_layers: int):
        super().__init__()
        self.user = torch.nn.Embedding(num_users, dim)
        torch.nn.init.normal_(self.user.weight, std=0.1)
        self.item_encoder = torch.nn.Linear(item_features, dim)
        self.conv = StepwiseConv(dim, num_layers=num_layers, gamma=0.2, cached=True)

    def forward(self, data: HeteroData):
        x_dict = {"user": self.user.weight, "item": self.item_encoder(data["item"].x)}
        data["user"].h, data["item"].h = x_dict["user"], x_dict["item"]
        homo = data.to_homogeneous(node_attrs=["h"])  # users first, then items
        out = self.conv(homo.h, homo.edge_index)
        return out[homo.node_type == 0], out[homo.node_type == 1]


def bpr_step(user_emb: Tensor, item_emb: Tensor, edges: Tensor, gen: torch.Generator) -> Tensor:
    neg = torch.randint(0, item_emb.size(0), (edges.size(1),), generator=gen)
    u = user_emb[edges[0]]
    return F.softplus((u * item_emb[neg]).sum(-1) - (u * item_emb[edges[1]]).sum(-1)).mean()


def train_homogeneous(conv: str, edges: Tensor, num_users: int, num_items: int, steps: int):
    torch.manual_seed(0)
    n = num_users + num_items
    shifted = torch.stack([edges[0], edges[1] + num_users])
    edge_index = torch.cat([shifted, shifted.flip(0)], dim=1)  # both directions
    model = LightGCNStyle(n, 32, num_layers=3, conv=conv)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        out = model(edge_index)
        loss = bpr_step(out[:num_users], out[num_users:], edges, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_heterogeneous(edges: Tensor, features: Tensor, num_users: int, steps: int):
    torch.manual_seed(0)
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].x = features
    data["user", "interacts", "item"].edge_index = edges
    data["item", "rev_interacts", "user"].edge_index = edges.flip(0)
    model = HeteroRecommender(num_users, features.size(1), 32, num_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        user_emb, item_emb = model(data)
        loss = bpr_step(user_emb, item_emb, edges, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main() -> int:
    parser = argparse.ArgumentParser(description="StepwiseConv inside your own PyG models")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    edges, features = synthetic_graph(args.users, args.items, num_features=16)
    for conv in ("lgconv", "stepwise"):
        losses = train_homogeneous(conv, edges, args.users, args.items, args.steps)
        print(f"homogeneous, {conv:<8}: BPR loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if not losses[-1] < losses[0]:
            raise SystemExit(f"{conv}: the loss did not decrease")
    losses = train_heterogeneous(edges, features, args.users, args.steps)
    print(f"heterogeneous, stepwise: BPR loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    if not losses[-1] < losses[0]:
        raise SystemExit("heterogeneous model: the loss did not decrease")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
