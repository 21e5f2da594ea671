r"""Full-ranking evaluation: every user with held-out interactions ranks **all** items.

The protocol of MMRec and RecBole's full sort: for the users of a split (those with at least one
validation, resp. test, interaction), every item is scored by the inner product of the model's
user and item representations, the items the user is known to have interacted with outside that
split are removed from the ranking (training items for validation; training and validation items
for test), and the top :math:`K` is compared with the held-out items.

Users are processed in blocks, so that the score matrix of one block, ``[block, num_items]``, is
the largest object ever formed: the block size is the smaller of ``batch_users`` and what a
memory budget holds, at :data:`BYTES_PER_SCORE` bytes per user-item score (see :func:`block_plan`):
an explicit budget (``train.eval_memory_gib``, ``--eval-memory``), or else a quarter of the memory
free on the device.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from stair_pyg.data.hetero import Splits
from stair_pyg.eval.metrics import metric_sums
from stair_pyg.nn.retrieval import PairIndex, topk_items

COLD_PREFIX = "cold/"


def available_memory(device: torch.device) -> int:
    r"""Bytes free on :obj:`device` (CUDA: free device memory; CPU: available physical memory,
    2 GiB where it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX systems
        return 2 << 30


#: Bytes a block allocates per user-item score: the float32 scores (4) and the top-k pass's
#: copy of them (4), measured at 8.0-8.3 bytes per score for 10^5 items on CPU
#: (``tests/test_evaluator.py`` checks a budget holds), plus a margin for the block's index work.
BYTES_PER_SCORE = 9


#: Without an explicit budget on CPU, a block's scores stay under glibc's largest mmap threshold
#: (32 MiB, which :func:`~stair_pyg.train.allocator.tune_cpu_allocator` sets) where that leaves
#: at least :data:`CPU_MIN_BLOCK_USERS` users: such blocks are reused from the heap instead of
#: being mapped afresh and page-faulted in every time (``scientific``'s validation pass took
#: 1.5-1.8x longer in blocks of 4,096 users, 72 MB of scores, than in blocks of 1,024).
CPU_BLOCK_BYTES = 32 * 2 ** 20
CPU_MIN_BLOCK_USERS = 256


def block_plan(num_items: int, device: torch.device, batch_users: Optional[int] = None,
               memory_bytes: Optional[int] = None) -> Tuple[int, str]:
    r"""Users per block and why: at most :obj:`batch_users`, and at most as many as fit
    ``[block, num_items]`` scores at :data:`BYTES_PER_SCORE` bytes each into
    :obj:`memory_bytes` (default: a quarter of the memory free on :obj:`device` now, so the
    block then depends on what else runs; give a budget for a fixed one; on CPU the default
    also keeps blocks within :data:`CPU_BLOCK_BYTES` where they stay large enough)."""
    per_user = BYTES_PER_SCORE * max(num_items, 1)
    if memory_bytes is None:
        budget, source = available_memory(device) // 4, "a quarter of the free memory"
        if device.type == "cpu" and CPU_BLOCK_BYTES // per_user >= CPU_MIN_BLOCK_USERS:
            budget, source = min(budget, CPU_BLOCK_BYTES), "blocks kept on the CPU heap"
    else:
        budget, source = int(memory_bytes), "the evaluation memory budget"
    bound = max(budget // per_user, 1)
    if batch_users and batch_users <= bound:
        return max(1, batch_users), (f"{batch_users} users per block (eval_batch_users; "
                                     f"{source}, {budget / 2**20:.0f} MiB, holds {bound})")
    return bound, (f"{bound} users per block: {source}, {budget / 2**20:.0f} MiB, at "
                   f"{BYTES_PER_SCORE} bytes per score over {num_items} items")


def block_size(num_items: int, device: torch.device, batch_users: Optional[int] = None,
               memory_bytes: Optional[int] = None) -> int:
    r"""The users per block of :func:`block_plan`."""
    return block_plan(num_items, device, batch_users, memory_bytes)[0]


@torch.no_grad()
def evaluate_embeddings(
    user_emb: Tensor,
    item_emb: Tensor,
    splits: Splits,
    which: str = "test",
    ks: Sequence[int] = (10, 20, 50),
    batch_users: Optional[int] = 4096,
    cold_start: bool = True,
    memory_bytes: Optional[int] = None,
) -> Dict[str, float]:
    r"""Full-ranking metrics of given representations on one split.

    Args:
        user_emb (torch.Tensor): User representations ``[U, d]``.
        item_emb (torch.Tensor): Item representations ``[I, d]``; scores are inner products.
        splits (Splits): Train / valid / test interactions.
        which (str, optional): ``"valid"`` (training items masked) or ``"test"`` (training and
            validation items masked). (default: :obj:`"test"`)
        ks (Sequence[int], optional): Cut-offs :math:`K`. (default: :obj:`(10, 20, 50)`)
        batch_users (int, optional): Largest number of users scored at once (further bounded by
            the memory budget). (default: :obj:`4096`)
        cold_start (bool, optional): Also report metrics restricted to held-out interactions with
            *cold* items (items without training interactions), under keys ``"cold/<metric>"``,
            when the split has any; the ranking is the same full ranking.
            (default: :obj:`True`)
        memory_bytes (int, optional): The memory budget of a block (:func:`block_plan`).
            (default: a quarter of the free memory)

    Returns:
        ``{"Recall@20": ..., "NDCG@20": ..., ..., "num_users": n}`` plus, when cold items occur,
        ``"cold/Recall@20"``, ..., ``"cold/num_users"``, ``"cold/num_items"``.
    """
    if which not in ("valid", "test"):
        raise ValueError(f"'which' must be 'valid' or 'test', got '{which}'")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] <= 0:
        raise ValueError(f"'ks' must be positive integers, got {ks}")
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise ValueError(f"embeddings must be [U, d] and [I, d], got {tuple(user_emb.shape)} "
                         f"and {tuple(item_emb.shape)}")
    num_users, num_items = user_emb.size(0), item_emb.size(0)
    device = user_emb.device
    heldout = getattr(splits, which).to(device)
    known = splits.train if which == "valid" else torch.cat([splits.train, splits.valid], 1)
    target = PairIndex(heldout, num_users, num_items)
    exclude = PairIndex(known.to(device), num_users, num_items)

    cold_target = None
    if cold_start:
        warm = torch.zeros(num_items, dtype=torch.bool, device=device)
        warm[splits.train[1].to(device)] = True
        cold_pairs = heldout[:, ~warm[heldout[1]]]
        if cold_pairs.size(1) > 0:
            cold_target = PairIndex(cold_pairs, num_users, num_items)

    k_max = ks[-1]
    sums: Dict[str, float] = {}
    cold_sums: Dict[str, float] = {}
    n_users = n_cold_users = 0
    step = block_size(num_items, user_emb.device, batch_users, memory_bytes)
    for block, top_items, top_scores in topk_items(user_emb, item_emb, target.users(), exclude,
                                                   k_max, step):
        valid_rank = torch.isfinite(top_scores)
        hits = target.contains(block, top_items) & valid_rank
        if hits.size(1) < k_max:  # fewer items than K: the missing positions are misses
            hits = torch.cat([hits, hits.new_zeros(hits.size(0), k_max - hits.size(1))], 1)
        for key, value in metric_sums(hits, target.counts(block), ks).items():
            sums[key] = sums.get(key, 0.0) + value
        n_users += block.numel()
        if cold_target is not None:
            count = cold_target.counts(block)
            keep = count > 0
            if bool(keep.any()):
                cold_hits = cold_target.contains(block[keep], top_items[keep]) & valid_rank[keep]
                if cold_hits.size(1) < k_max:
                    cold_hits = torch.cat([cold_hits, cold_hits.new_zeros(
                        cold_hits.size(0), k_max - cold_hits.size(1))], 1)
                for key, value in metric_sums(cold_hits, count[keep], ks).items():
                    cold_sums[key] = cold_sums.get(key, 0.0) + value
                n_cold_users += int(keep.sum())

    out: Dict[str, float] = {key: value / max(n_users, 1) for key, value in sums.items()}
    out["num_users"] = n_users
    if cold_target is not None:
        out.update({COLD_PREFIX + key: value / max(n_cold_users, 1)
                    for key, value in cold_sums.items()})
        out[COLD_PREFIX + "num_users"] = n_cold_users
        out[COLD_PREFIX + "num_items"] = int(torch.unique(cold_target.items).numel())
    return out


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    splits: Splits,
    which: str = "test",
    ks: Sequence[int] = (10, 20, 50),
    batch_users: Optional[int] = 4096,
    cold_start: bool = True,
    memory_bytes: Optional[int] = None,
) -> Dict[str, float]:
    r"""Full-ranking metrics of a :class:`~stair_pyg.models.base.Recommender` on one split.

    Calls :meth:`model.get_embedding` once in evaluation mode and hands the result to
    :func:`evaluate_embeddings` (see there for the arguments and the protocol).
    """
    was_training = model.training
    model.eval()
    try:
        user_emb, item_emb = model.get_embedding()
    finally:
        model.train(was_training)
    return evaluate_embeddings(user_emb.detach(), item_emb.detach(), splits, which, ks,
                               batch_users, cold_start, memory_bytes)


@torch.no_grad()
def recommend_topk(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Tensor,
    exclude: Optional[Tensor] = None,
    k: int = 20,
    batch_users: Optional[int] = 4096,
) -> Iterable[Tuple[Tensor, Tensor, Tensor]]:
    r"""Top-:math:`K` items of each of :obj:`users`, block by block.

    Args:
        user_emb (torch.Tensor): User representations ``[U, d]``.
        item_emb (torch.Tensor): Item representations ``[I, d]``.
        users (torch.Tensor): User ids to recommend for ``[N]``.
        exclude (torch.Tensor, optional): Pairs ``[2, E]`` that must not be recommended (the items
            a user has already seen).
        k (int, optional): List length. (default: :obj:`20`)
        batch_users (int, optional): Largest block of users. (default: :obj:`4096`)

    Yields:
        ``(block_users [b], items [b, k'], scores [b, k'])`` with :math:`k' = \min(k, I)`; where a
        user has fewer than :math:`k'` unseen items, the surplus positions have score
        :math:`-\infty` and must be dropped.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    users = torch.as_tensor(users, dtype=torch.long, device=user_emb.device)
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= user_emb.size(0)):
        raise ValueError(f"user ids must lie in [0, {user_emb.size(0)})")
    index = None
    if exclude is not None:
        index = PairIndex(exclude.to(user_emb.device), user_emb.size(0), item_emb.size(0))
    yield from topk_items(user_emb, item_emb, users, index, k,
                          block_size(item_emb.size(0), user_emb.device, batch_users))
