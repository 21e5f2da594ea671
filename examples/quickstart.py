r"""Train STAIR from Python in a few lines, with every piece in view.

The library's trainer (``stair-pyg train`` / :func:`stair_pyg.train.run_experiment`) adds model
selection, early stopping, checkpoints and plots; this loop shows what it does underneath:

1. a :class:`~torch_geometric.data.HeteroData` user-item graph (here the embedded synthetic
   generator; :func:`stair_pyg.data.load_mmrec` reads MMRec folders the same way);
2. :class:`~stair_pyg.models.STAIR` built from it: modality initialisation (MI) and the modality
   kNN graph;
3. its :class:`~stair_pyg.optim.StepwiseAdamW` (BSC) and BPR batches with sampled negatives;
4. full-ranking evaluation on the test split.

    python examples/quickstart.py [--epochs 15]
"""
from __future__ import annotations

import argparse

import torch

from stair_pyg.data import make_synthetic
from stair_pyg.eval import evaluate
from stair_pyg.models import STAIR
from stair_pyg.train import NegativeSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)

    data, splits = make_synthetic(num_users=1000, num_items=500, seed=0)
    print(data)

    model = STAIR.from_data(data, embedding_dim=64, num_layers=3, gamma=0.1)
    optimizer = model.configure_optimizer(lr=1e-3, weight_decay=0.3)
    print(model, "\n", model.conv)

    users, items = splits.train
    sampler = NegativeSampler(splits.train, model.num_users, model.num_items)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(users.numel(), generator=generator)
        total = 0.0
        for batch in order.split(args.batch_size):
            u, pos = users[batch], items[batch]
            neg = sampler.sample(u, generator)
            loss = model.recommendation_loss(u, pos, neg)  # BPR on the FSC-propagated embeddings
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.numel()
        if epoch % 5 == 0 or epoch == args.epochs:
            valid = evaluate(model, splits, which="valid", ks=(20,))
            print(f"epoch {epoch:3d}  loss {total / users.numel():.4f}  "
                  f"valid NDCG@20 {valid['NDCG@20']:.4f}")

    test = evaluate(model, splits, which="test", ks=(10, 20))
    print("test", {k: round(v, 4) for k, v in test.items() if "@" in k and "/" not in k})
    top = model.recommend(torch.tensor([0, 1]), k=5, exclude_edge_index=splits.train)
    print("top-5 for users 0 and 1 (training items excluded):", top.tolist())


if __name__ == "__main__":
    main()
