r"""The issue's acceptance test: on the synthetic generator, STAIR uses both kinds of signal.

* **Strong collaborative part** (``content_weight=0.1``, low-dimensional features that carry only
  the topics): STAIR beats the feature-only view of items, :class:`~stair_pyg.models.content.
  ContentBPR` (items = a learned projection of their features, no item IDs). The features are
  16-d per modality so that the projection cannot memorise individual items.
* **Strong content part** (``content_weight=0.9``, sparse users, 20% cold-start items whose
  interactions are all held out): STAIR (its features enter through MI and BSC) beats LightGCN,
  which sees interactions only.

Both at small size, trained through :func:`stair_pyg.train.run_experiment` with the same budget,
two seeds per model; the margins asserted are well below the observed ones (case 1: about 0.3
NDCG@20, case 2: about 0.06).
"""
from __future__ import annotations

import statistics

import pytest

pytestmark = pytest.mark.slow  # about 35 s on two CPU cores

SEEDS = (1, 2)


def _ndcg(dataset_spec, dataset, model: str, seed: int, epochs: int) -> float:
    from stair_pyg.train import run_experiment

    train = {"epochs": epochs, "patience": epochs, "seed": seed, "batch_size": 512, "lr": 1e-2,
             "weight_decay": 0.3 if model == "stair" else 0.0, "ks": [20], "metric": "NDCG@20",
             "device": "cpu", "checkpoint_every": 0}
    config = {"dataset": dataset_spec, "model": {"name": model, "embedding_dim": 32},
              "train": train}
    return run_experiment(config, progress=False, dataset=dataset)["test"]["NDCG@20"]


def _compare(dataset_spec, winner: str, loser: str, epochs: int):
    from stair_pyg.data import load_dataset

    dataset = load_dataset(dataset_spec)
    wins = [_ndcg(dataset_spec, dataset, winner, s, epochs) for s in SEEDS]
    losses = [_ndcg(dataset_spec, dataset, loser, s, epochs) for s in SEEDS]
    return wins, losses


def test_stair_beats_feature_only_items_when_collaborative_signal_dominates():
    spec = {"format": "synthetic", "seed": 0, "num_users": 300, "num_items": 200,
            "interactions_per_user": 12, "content_weight": 0.1,
            "modalities": {"text": 16, "image": 16}}
    stair, content = _compare(spec, "stair", "content", epochs=10)
    assert min(stair) > max(content) + 0.1, (stair, content)


def test_stair_beats_lightgcn_when_content_signal_dominates():
    spec = {"format": "synthetic", "seed": 0, "num_users": 300, "num_items": 200,
            "interactions_per_user": 6, "min_interactions": 3, "content_weight": 0.9,
            "cold_start_items": 0.2}
    stair, lightgcn = _compare(spec, "stair", "lightgcn", epochs=15)
    assert min(stair) > max(lightgcn), (stair, lightgcn)
    assert statistics.fmean(stair) > statistics.fmean(lightgcn) + 0.03, (stair, lightgcn)
