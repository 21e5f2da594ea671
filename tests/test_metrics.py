import math

import numpy as np
import pytest
import torch

from stair_pyg.eval import parse_metric, ranking_metrics
from stair_pyg.nn.retrieval import PairIndex
from stair_pyg.eval.metrics import (hit_rate_at_k, mrr_at_k, ndcg_at_k, precision_at_k,
                                    recall_at_k)


def _t(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_hand_computed_case():
    hits = _t([[1, 0, 1, 0]])
    rel = torch.tensor([3])
    assert recall_at_k(hits, rel, 4).item() == pytest.approx(2 / 3)
    assert precision_at_k(hits, rel, 4).item() == pytest.approx(0.5)
    assert hit_rate_at_k(hits, rel, 4).item() == 1.0
    assert mrr_at_k(hits, rel, 4).item() == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(hits, rel, 4).item() == pytest.approx(dcg / idcg)
    # At K = 1 only the first position counts.
    assert recall_at_k(hits, rel, 1).item() == pytest.approx(1 / 3)
    assert ndcg_at_k(hits, rel, 1).item() == pytest.approx(1.0)


def test_first_hit_late_and_ideal_dcg_capped_at_k():
    hits = _t([[0, 0, 1], [0, 0, 0]])
    rel = torch.tensor([5, 1])
    assert mrr_at_k(hits, rel, 3).tolist() == pytest.approx([1 / 3, 0.0])
    assert hit_rate_at_k(hits, rel, 3).tolist() == [1.0, 0.0]
    # |rel| = 5 > K = 3: the ideal DCG puts 3 (not 5) relevant items at the top.
    idcg = sum(1 / math.log2(r + 1) for r in range(1, 4))
    assert ndcg_at_k(hits, rel, 3)[0].item() == pytest.approx((1 / math.log2(4)) / idcg)
    assert recall_at_k(hits, rel, 3)[0].item() == pytest.approx(1 / 5)
    assert precision_at_k(hits, rel, 3)[0].item() == pytest.approx(1 / 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exceeds"):
        recall_at_k(_t([[1, 0]]), torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="positive"):
        ndcg_at_k(_t([[1, 0]]), torch.tensor([1]), 0)


def _reference(ranked_items, relevant, ks):
    r"""Straightforward per-user loop in float64 (independent of the tensor code)."""
    out = {}
    users = [u for u in range(len(ranked_items)) if len(relevant[u]) > 0]
    for k in ks:
        acc = {"Recall": 0.0, "NDCG": 0.0, "Precision": 0.0, "HitRate": 0.0, "MRR": 0.0}
        for u in users:
            top = ranked_items[u][:k]
            rel = relevant[u]
            flags = [item in rel for item in top]
            n_hit = sum(flags)
            acc["Recall"] += n_hit / len(rel)
            acc["Precision"] += n_hit / k
            acc["HitRate"] += float(n_hit > 0)
            first = next((i for i, f in enumerate(flags) if f), None)
            acc["MRR"] += 0.0 if first is None else 1.0 / (first + 1)
            dcg = sum(1.0 / np.log2(i + 2) for i, f in enumerate(flags) if f)
            idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(rel), k)))
            acc["NDCG"] += dcg / idcg
        for name, value in acc.items():
            out[f"{name}@{k}"] = value / len(users)
    return out


def _random_case(seed, num_users=40, num_items=30, k_max=10):
    rng = np.random.default_rng(seed)
    ranked = [rng.permutation(num_items)[:k_max].tolist() for _ in range(num_users)]
    relevant = []
    for u in range(num_users):
        n = int(rng.integers(0, 12))  # some users have none, some more than K
        relevant.append(set(rng.choice(num_items, size=n, replace=False).tolist()))
    return ranked, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_bruteforce_reference(seed):
    ranked, relevant = _random_case(seed)
    ks = (1, 3, 5, 10)
    hits = torch.tensor([[item in relevant[u] for item in ranked[u]] for u in range(len(ranked))])
    num_rel = torch.tensor([len(r) for r in relevant])
    ours = ranking_metrics(hits, num_rel, ks)
    ref = _reference(ranked, relevant, ks)
    assert set(ours) == set(ref)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("seed", [3, 4])
def test_against_torch_geometric_metrics(seed):
    # PyG 2.8.1's LinkPred* metrics define Recall (hits / |rel|), Precision (hits / k, also when
    # fewer than k items are relevant), NDCG (binary relevance, ideal DCG over min(|rel|, k)),
    # MRR (reciprocal rank of the first hit within k) and HitRatio exactly as we do, and like us
    # average over examples with at least one ground-truth item. No definitional difference.
    metrics = pytest.importorskip("torch_geometric.metrics")
    ranked, relevant = _random_case(seed, num_users=50, num_items=40, k_max=20)
    num_users = len(ranked)
    pred = torch.tensor(ranked)
    pairs = torch.tensor([(u, i) for u in range(num_users) for i in sorted(relevant[u])]).t()
    index = PairIndex(pairs, num_users, 40)
    hits = index.contains(torch.arange(num_users), pred)
    ours = ranking_metrics(hits, index.counts(torch.arange(num_users)), (5, 20))
    classes = {"Recall": "LinkPredRecall", "NDCG": "LinkPredNDCG",
               "Precision": "LinkPredPrecision", "MRR": "LinkPredMRR",
               "HitRate": "LinkPredHitRatio"}
    for name, cls_name in classes.items():
        cls = getattr(metrics, cls_name)
        for k in (5, 20):
            metric = cls(k)
            metric.update(pred[:, :k], pairs)
            assert float(metric.compute()) == pytest.approx(ours[f"{name}@{k}"], abs=1e-6), \
                (name, k)


def test_parse_metric():
    assert parse_metric("NDCG@20") == ("NDCG", 20)
    assert parse_metric("recall@10") == ("Recall", 10)
    assert parse_metric("hit@5") == ("HitRate", 5)
    with pytest.raises(ValueError, match="NAME@K"):
        parse_metric("NDCG")
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("AUC@10")
