import os

import numpy as np
import pytest
import torch

from stair_pyg.data.hetero import Splits
from stair_pyg.eval import evaluate, evaluate_embeddings, recommend_topk
from stair_pyg.nn.retrieval import PairIndex
from stair_pyg.eval.metrics import METRICS


def _random_splits(seed, num_users=30, num_items=25, cold=()):
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        items = rng.permutation(num_items)[: int(rng.integers(3, 12))]
        n_valid, n_test = int(rng.integers(0, 3)), int(rng.integers(1, 3))
        split = {"valid": items[:n_valid], "test": items[n_valid:n_valid + n_test],
                 "train": items[n_valid + n_test:]}
        for name, its in split.items():
            for i in its:
                target = name
                if int(i) in cold and name == "train":
                    target = "test"  # cold items never appear in training
                parts[target].append((u, int(i)))
    as_t = {k: torch.tensor(v, dtype=torch.long).t().reshape(2, -1) for k, v in parts.items()}
    return Splits(as_t["train"], as_t["valid"], as_t["test"])


def _bruteforce(user_emb, item_emb, splits, which, ks, cold_only=False):
    r"""Dense float64 scores, Python sets, a per-user sort: the textbook protocol."""
    scores = (user_emb.double() @ item_emb.double().t()).numpy()
    held = getattr(splits, which).t().tolist()
    known = splits.train.t().tolist() + (splits.valid.t().tolist() if which == "test" else [])
    warm = {i for _, i in splits.train.t().tolist()}
    rel = {}
    for u, i in held:
        if not cold_only or i not in warm:
            rel.setdefault(u, set()).add(i)
    seen = {}
    for u, i in known:
        seen.setdefault(u, set()).add(i)
    out = {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    for u, items in rel.items():
        order = [i for i in np.argsort(-scores[u], kind="stable") if i not in seen.get(u, set())]
        for k in ks:
            flags = [i in items for i in order[:k]] + [False] * max(0, k - len(order))
            n_hit = sum(flags)
            out[f"Recall@{k}"] += n_hit / len(items)
            out[f"Precision@{k}"] += n_hit / k
            out[f"HitRate@{k}"] += float(n_hit > 0)
            first = next((r for r, f in enumerate(flags) if f), None)
            out[f"MRR@{k}"] += 0.0 if first is None else 1 / (first + 1)
            dcg = sum(1 / np.log2(r + 2) for r, f in enumerate(flags) if f)
            idcg = sum(1 / np.log2(r + 2) for r in range(min(len(items), k)))
            out[f"NDCG@{k}"] += dcg / idcg
    return {key: value / len(rel) for key, value in out.items()}, len(rel)


def test_pair_index_matches_python_sets():
    torch.manual_seed(0)
    pairs = torch.stack([torch.randint(0, 7, (40,)), torch.randint(0, 9, (40,))])
    index = PairIndex(pairs, 7, 9)
    truth = {tuple(p) for p in pairs.t().tolist()}
    assert len(index) == len(truth)
    users = torch.arange(7)
    grid = index.contains(users, torch.arange(9).expand(7, 9))
    for u in range(7):
        for i in range(9):
            assert bool(grid[u, i]) == ((u, i) in truth)
    row, item = index.entries(torch.tensor([5, 2]))
    got = {(int([5, 2][r]), int(i)) for r, i in zip(row, item)}
    assert got == {p for p in truth if p[0] in (5, 2)}
    assert index.counts(users).tolist() == [sum(1 for p in truth if p[0] == u) for u in range(7)]
    with pytest.raises(ValueError, match="item ids"):
        PairIndex(torch.tensor([[0], [9]]), 7, 9)


@pytest.mark.parametrize("which", ["valid", "test"])
@pytest.mark.parametrize("batch_users", [1, 7, 4096])
def test_full_ranking_matches_bruteforce(which, batch_users):
    splits = _random_splits(0)
    gen = torch.Generator().manual_seed(1)
    user_emb, item_emb = torch.randn(30, 8, generator=gen), torch.randn(25, 8, generator=gen)
    ks = (1, 5, 10, 30)  # 30 > 25 items: positions beyond the catalogue count as misses
    ours = evaluate_embeddings(user_emb, item_emb, splits, which, ks, batch_users=batch_users)
    ref, n_users = _bruteforce(user_emb, item_emb, splits, which, ks)
    assert ours["num_users"] == n_users
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key
    assert not any(key.startswith("cold/") for key in ours)  # no cold items in this split


def test_cold_start_figures():
    cold = {3, 11}
    splits = _random_splits(2, cold=cold)
    assert not set(splits.train[1].tolist()) & cold
    gen = torch.Generator().manual_seed(5)
    user_emb, item_emb = torch.randn(30, 8, generator=gen), torch.randn(25, 8, generator=gen)
    ours = evaluate_embeddings(user_emb, item_emb, splits, "test", (5, 10))
    ref, n_users = _bruteforce(user_emb, item_emb, splits, "test", (5, 10), cold_only=True)
    assert ours["cold/num_users"] == n_users > 0
    assert ours["cold/num_items"] == len(cold & set(splits.test[1].tolist()))
    for key, value in ref.items():
        assert ours["cold/" + key] == pytest.approx(value, abs=1e-9), key


def test_training_items_are_never_recommended():
    splits = _random_splits(3)
    num_users, num_items = 30, 25
    # Representations that rank every training item of every user first.
    user_emb = 0.1 * torch.randn(num_users, num_items, generator=torch.Generator().manual_seed(0))
    user_emb[splits.train[0], splits.train[1]] = 10.0  # (noise breaks ties between the others)
    item_emb = torch.eye(num_items)
    train = {tuple(p) for p in splits.train.t().tolist()}
    for block, items, scores in recommend_topk(user_emb, item_emb, torch.arange(num_users),
                                               splits.train, k=5, batch_users=4):
        for u, row in zip(block.tolist(), items.tolist()):
            assert not any((u, i) in train for i in row)
    # The evaluator masks them too: with training items scored highest, an unmasked ranking would
    # have no hit at all in the top-1 of users with a training item.
    res = evaluate_embeddings(user_emb, item_emb, splits, "valid", (1,))
    ref, _ = _bruteforce(user_emb, item_emb, splits, "valid", (1,))
    assert res["Recall@1"] == pytest.approx(ref["Recall@1"])


def test_test_split_masks_validation_items():
    splits = _random_splits(4)
    num_users, num_items = 30, 25
    user_emb = torch.zeros(num_users, num_items)
    user_emb[splits.valid[0], splits.valid[1]] = 5.0  # validation items would be ranked first
    user_emb[splits.test[0], splits.test[1]] = 1.0
    item_emb = torch.eye(num_items)
    res = evaluate_embeddings(user_emb, item_emb, splits, "test", (3,))
    # Validation items masked: the test items come first, so every user hits at rank 1.
    assert res["HitRate@3"] == pytest.approx(1.0)
    assert res["MRR@3"] == pytest.approx(1.0)


def test_evaluate_uses_model_embeddings_in_eval_mode():
    splits = _random_splits(5)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.u = torch.nn.Parameter(torch.randn(30, 4, generator=gen))
            self.i = torch.nn.Parameter(torch.randn(25, 4, generator=gen))
            self.modes = []

        def get_embedding(self):
            self.modes.append(self.training)
            return self.u, self.i

    model = Fixed()
    res = evaluate(model, splits, "test", ks=(10,))
    assert model.modes == [False] and model.training
    ref = evaluate_embeddings(model.u.detach(), model.i.detach(), splits, "test", (10,))
    assert res == ref


def test_block_plan_follows_the_budget_and_says_why():
    from stair_pyg.eval.evaluator import BYTES_PER_SCORE, block_plan

    cpu = torch.device("cpu")
    block, why = block_plan(100_000, cpu, batch_users=None, memory_bytes=256 * 2 ** 20)
    assert block == 256 * 2 ** 20 // (BYTES_PER_SCORE * 100_000)
    assert "budget" in why and str(block) in why
    block, why = block_plan(100_000, cpu, batch_users=10, memory_bytes=256 * 2 ** 20)
    assert block == 10 and "eval_batch_users" in why
    assert block_plan(10 ** 9, cpu, memory_bytes=1)[0] == 1  # never an empty block
    # Without a budget, CPU blocks stay within the reusable heap size while that leaves enough
    # users per block; a large catalogue gets the memory-bounded block instead.
    from stair_pyg.eval.evaluator import CPU_BLOCK_BYTES, CPU_MIN_BLOCK_USERS

    block, why = block_plan(4_385, cpu, batch_users=4096)
    assert block == CPU_BLOCK_BYTES // (BYTES_PER_SCORE * 4_385) < 4096 and "heap" in why
    big = CPU_BLOCK_BYTES // (BYTES_PER_SCORE * CPU_MIN_BLOCK_USERS) + 1
    block, why = block_plan(big, cpu, batch_users=4096)
    assert block > CPU_MIN_BLOCK_USERS and "free memory" in why


_PEAK_SCRIPT = r"""
import sys, torch
from stair_pyg.data.hetero import Splits
from stair_pyg.eval.evaluator import evaluate_embeddings
U, I, d, budget = 1000, 120_000, 32, int(sys.argv[1])
g = torch.Generator().manual_seed(0)
def pairs(n):
    return torch.stack([torch.randint(0, U, (n,), generator=g),
                        torch.randint(0, I, (n,), generator=g)])
splits = Splits(pairs(50_000), pairs(5_000), pairs(5_000))
user_emb, item_emb = torch.randn(U, d, generator=g), torch.randn(I, d, generator=g)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
tiny = Splits(*(torch.tensor([[0], [i]]) for i in (0, 1, 2)))
evaluate_embeddings(user_emb, item_emb, tiny, "test", batch_users=2)  # warm-up
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
base = status("VmRSS")
evaluate_embeddings(user_emb, item_emb, splits, "test", batch_users=None, memory_bytes=budget)
print(status("VmHWM") - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                    reason="needs Linux /proc to read the peak resident memory")
def test_evaluation_peak_memory_stays_under_the_budget(tmp_path):
    import subprocess
    import sys

    budget = 192 * 2 ** 20  # 1,000 users x 120,000 items would be 460 MiB of scores at once
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(budget)], check=True,
                         capture_output=True, text=True, timeout=300)
    growth = int(out.stdout.split()[-1])
    assert growth < budget, f"peak growth {growth / 2**20:.0f} MiB over a 192 MiB budget"
    # ... and the estimate is honest, not a cap that uses a fraction of what it allows.
    assert growth > 0.7 * budget, f"peak growth only {growth / 2**20:.0f} MiB of 192 MiB"
