r"""Top-:math:`K` ranking metrics of the MMRec / RecBole full-ranking protocol.

Every function takes the **hit matrix** of a block of users: ``hits[b, r]`` is :obj:`True` when
the item ranked at position :math:`r + 1` for user :math:`b` is one of the user's held-out
(relevant) items, and ``num_relevant[b]`` :math:`= |\mathcal{R}_u|`, the number of held-out items
of the user. Each returns one value per user; a split's figure is the mean over the users that
have at least one held-out item. With :math:`\mathrm{hit}_u(r) \in \{0, 1\}` and
:math:`h_u@K = \sum_{r=1}^{K} \mathrm{hit}_u(r)`:

.. math::
    \mathrm{Recall}_u@K &= \frac{h_u@K}{|\mathcal{R}_u|}, \qquad
    \mathrm{Precision}_u@K = \frac{h_u@K}{K}, \qquad
    \mathrm{HR}_u@K = \mathbb{1}[h_u@K > 0],

    \mathrm{MRR}_u@K &= \max_{r \le K} \frac{\mathrm{hit}_u(r)}{r}, \qquad
    \mathrm{NDCG}_u@K = \frac{\sum_{r=1}^{K} \mathrm{hit}_u(r) / \log_2(r + 1)}
    {\sum_{r=1}^{\min(|\mathcal{R}_u|, K)} 1 / \log_2(r + 1)}.

These are the definitions of MMRec's ``utils/metrics.py`` (``recall_``, ``ndcg_``,
``precision_``) and RecBole's ``Hit`` and ``MRR``.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, Tuple

import torch
from torch import Tensor


def _check(hits: Tensor, k: int) -> Tensor:
    if hits.dim() != 2:
        raise ValueError(f"'hits' must have shape [num_users, K], got {tuple(hits.shape)}")
    if k <= 0:
        raise ValueError(f"K must be a positive integer, got {k}")
    if k > hits.size(1):
        raise ValueError(f"K={k} exceeds the {hits.size(1)} ranked positions in 'hits'")
    return hits[:, :k].to(torch.float64)


def recall_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Share of the user's held-out items found in the top :math:`K`."""
    return _check(hits, k).sum(1) / num_relevant.to(torch.float64).clamp(min=1)


def precision_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Share of the top :math:`K` that is relevant (the divisor is :math:`K` even when fewer
    than :math:`K` items are relevant)."""
    return _check(hits, k).sum(1) / k


def hit_rate_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""1 if at least one held-out item is in the top :math:`K`, else 0."""
    return (_check(hits, k).sum(1) > 0).to(torch.float64)


def mrr_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Reciprocal rank of the first relevant item in the top :math:`K` (0 if none)."""
    h = _check(hits, k)
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=h.device)
    return (h / ranks).max(dim=1).values


def ndcg_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    r"""Normalised discounted cumulative gain with binary relevance; the ideal DCG places
    :math:`\min(|\mathcal{R}_u|, K)` relevant items at the top."""
    h = _check(hits, k)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=h.device))
    dcg = (h * discount).sum(1)
    ideal = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
    idcg = ideal[num_relevant.to(torch.long).clamp(min=0, max=k)]
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))


METRICS: Dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "Recall": recall_at_k,
    "NDCG": ndcg_at_k,
    "Precision": precision_at_k,
    "HitRate": hit_rate_at_k,
    "MRR": mrr_at_k,
}

_NAME = re.compile(r"^([A-Za-z]+)@(\d+)$")


def parse_metric(name: str) -> Tuple[str, int]:
    r"""Splits ``"NDCG@20"`` into ``("NDCG", 20)``, checking the name (case-insensitive)."""
    match = _NAME.match(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"metric '{name}' is not of the form NAME@K, e.g. 'NDCG@20'")
    lookup = {key.lower(): key for key in METRICS}
    lookup["hit"] = "HitRate"
    lookup["hr"] = "HitRate"
    key = lookup.get(match.group(1).lower())
    if key is None:
        raise ValueError(f"unknown metric '{match.group(1)}' in '{name}'; "
                         f"choose one of {sorted(METRICS)}")
    k = int(match.group(2))
    if k <= 0:
        raise ValueError(f"K must be positive in metric '{name}'")
    return key, k


def metric_sums(hits: Tensor, num_relevant: Tensor, ks: Iterable[int]) -> Dict[str, float]:
    r"""Sums over the users of a block of every metric in :data:`METRICS` at every
    :math:`K` in :obj:`ks` (divide by the number of users to get the means).

    Args:
        hits (torch.Tensor): Boolean hit matrix ``[num_users, max(ks)]``.
        num_relevant (torch.Tensor): Held-out items per user ``[num_users]`` (all :math:`\ge 1`).
        ks (Iterable[int]): Cut-offs.
    """
    out: Dict[str, float] = {}
    for k in ks:
        for name, fn in METRICS.items():
            out[f"{name}@{k}"] = float(fn(hits, num_relevant, k).sum())
    return out


def ranking_metrics(hits: Tensor, num_relevant: Tensor,
                    ks: Iterable[int] = (10, 20, 50)) -> Dict[str, float]:
    r"""Means over users of every metric at every :math:`K`; users with no relevant item are
    left out (as in MMRec, which evaluates only users with held-out interactions)."""
    keep = num_relevant > 0
    hits, num_relevant = hits[keep], num_relevant[keep]
    n = int(keep.sum())
    sums = metric_sums(hits, num_relevant, ks)
    return {key: (value / n if n > 0 else 0.0) for key, value in sums.items()}
