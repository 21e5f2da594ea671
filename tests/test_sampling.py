import pytest
import torch

from stair_pyg.train.sampling import NegativeSampler


def _pairs(seed=0, num_users=50, num_items=30):
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, num_users, (400,), generator=gen)
    items = torch.randint(0, num_items, (400,), generator=gen)
    return torch.stack([users, items])


def test_negatives_are_never_training_positives():
    pairs = _pairs()
    sampler = NegativeSampler(pairs, 50, 30)
    positives = {tuple(p) for p in pairs.t().tolist()}
    users = pairs[0].repeat(20)
    neg = sampler.sample(users, torch.Generator().manual_seed(1))
    assert neg.shape == users.shape and neg.dtype == torch.long
    assert int(neg.min()) >= 0 and int(neg.max()) < 30
    assert not any((u, i) in positives for u, i in zip(users.tolist(), neg.tolist()))


def test_deterministic_given_generator():
    pairs = _pairs()
    sampler = NegativeSampler(pairs, 50, 30)
    users = pairs[0]
    a = sampler.sample(users, torch.Generator().manual_seed(7))
    b = sampler.sample(users, torch.Generator().manual_seed(7))
    c = sampler.sample(users, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_uniform_over_non_positives():
    # User 0 has items {0, 1, 2} of 10: each of the other 7 must come up with probability 1/7.
    pairs = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 5]])
    sampler = NegativeSampler(pairs, 2, 10)
    neg = sampler.sample(torch.zeros(70000, dtype=torch.long), torch.Generator().manual_seed(0))
    freq = torch.bincount(neg, minlength=10).double() / neg.numel()
    assert freq[:3].sum() == 0
    assert torch.allclose(freq[3:], torch.full((7,), 1 / 7, dtype=torch.float64), atol=0.01)


def test_user_with_every_item_raises():
    pairs = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]])
    sampler = NegativeSampler(pairs, 2, 3)
    assert set(sampler.sample(torch.tensor([1] * 50)).tolist()) <= {1, 2}
    with pytest.raises(ValueError, match="all 3 items"):
        sampler.sample(torch.tensor([1, 0]))
