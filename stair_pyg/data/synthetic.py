r"""The embedded synthetic default: a deterministic multimodal recommendation dataset in which
both a *content* structure (explainable by item features) and a *collaborative* structure (that
no feature explains) are planted, so that the gap between feature-aware models (STAIR, VBPR,
FREEDOM, ...) and pure collaborative filtering (BPR, LightGCN) can be steered.

Generative process, for :math:`U` users, :math:`I` items and :math:`K` topics:

1. **Item topics.** :math:`\theta_i \sim \mathrm{Dirichlet}(\alpha \mathbf{1}_K)`.
2. **Modalities.** For each modality :math:`m` of dimension :math:`f_m`, a random projection
   :math:`P_m \in \mathbb{R}^{K \times f_m}` with standard normal entries gives
   :math:`x^m_i = \theta_i P_m / s_m + \sigma_m \varepsilon_i`, :math:`\varepsilon_i \sim
   \mathcal{N}(0, I)`, where :math:`s_m` scales the signal to unit standard deviation per entry and
   :math:`\sigma_m` is the modality's own noise level.
3. **Content preference.** :math:`\phi_u \sim \mathrm{Dirichlet}(\alpha \mathbf{1}_K)`,
   :math:`c_{ui} = \phi_u^\top \theta_i`.
4. **Collaborative preference.** Users fall into user clusters :math:`a_u`, items into item
   clusters :math:`b_i`, both drawn uniformly and *independently of the topics*; a standard normal
   cluster affinity :math:`A` gives :math:`g_{ui} = A_{a_u b_i}`.
5. **Popularity.** A random item ranking :math:`r_i` gives the log-popularity
   :math:`-\rho \log(1 + r_i)` (Zipf-like with exponent :math:`\rho`).
6. **Choices.** With :math:`z(\cdot)` a per-user z-score and :math:`\tau` the sharpness,

   .. math::
       p_u = w \, \mathrm{softmax}(\tau z(c_u) - \rho \log(1 + r)) +
             (1 - w) \, \mathrm{softmax}(\tau z(g_u) - \rho \log(1 + r)),

   and user :math:`u` picks :math:`n_u` distinct items from :math:`p_u` (Gumbel top-:math:`k`,
   i.e. sampling without replacement), :math:`n_u = \max(n_{min}, \mathrm{Poisson})` with mean
   ``interactions_per_user``. :math:`w` is ``content_weight``: ``1`` = choices fully explained by
   content, ``0`` = purely collaborative.
7. **Split.** Per-user random 8:1:1 (:func:`~stair_pyg.data.splits.random_split`). A fraction
   ``cold_start_items`` of the items is *cold*: all their interactions go to valid or test
   (equally likely), none to train; their features are there.

Everything is drawn from one ``numpy`` ``PCG64(seed)`` generator in a fixed order, so a seed gives
bitwise identical tensors.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from stair_pyg.data.hetero import RecDataset
from stair_pyg.data.splits import TEST, VALID, random_split

DEFAULT_MODALITIES = {"text": 384, "image": 512}
DEFAULT_NOISE = {"text": 1.0, "image": 2.0}
_CHUNK = 1024  # users per chunk when sampling choices (fixed: part of the random stream)


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_synthetic(
    num_users: int = 2000,
    num_items: int = 1000,
    num_topics: int = 16,
    interactions_per_user: float = 20.0,
    content_weight: float = 0.5,
    modalities: Optional[Dict[str, int]] = None,
    noise: Optional[Dict[str, float]] = None,
    popularity: float = 0.5,
    num_user_clusters: int = 16,
    num_item_clusters: int = 16,
    topic_concentration: float = 0.1,
    sharpness: float = 4.0,
    min_interactions: int = 5,
    cold_start_items: float = 0.0,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    name: str = "synthetic",
) -> RecDataset:
    r"""Generates the synthetic dataset described in :mod:`stair_pyg.data.synthetic`.

    The default (2,000 users, 1,000 items, ~20 interactions each, a 384-d ``text`` and a 512-d
    ``image`` modality) trains STAIR in about a minute on two CPU cores.

    Args:
        num_users (int): Number of users. (default: ``2000``)
        num_items (int): Number of items. (default: ``1000``)
        num_topics (int): Latent topics :math:`K` behind the item features. (default: ``16``)
        interactions_per_user (float): Mean number of distinct items per user.
            (default: ``20.0``)
        content_weight (float): :math:`w \in [0, 1]`, the share of choices driven by topic
            affinity (explainable from features) rather than by the feature-independent user /
            item clusters. (default: ``0.5``)
        modalities (dict, optional): Modality name to feature dimension; each becomes
            ``data["item"].<name>_feat``. (default: ``{"text": 384, "image": 512}``)
        noise (dict, optional): Modality name to noise level :math:`\sigma_m` relative to a
            unit-scale signal; modalities not listed get ``1.0``.
            (default: ``{"text": 1.0, "image": 2.0}``)
        popularity (float): Zipf exponent :math:`\rho` of the popularity skew; ``0`` = none.
            (default: ``0.5``)
        num_user_clusters (int): User clusters of the collaborative part. (default: ``16``)
        num_item_clusters (int): Item clusters of the collaborative part. (default: ``16``)
        topic_concentration (float): Dirichlet :math:`\alpha` of item topics and user topic
            preferences; small = each item / user has few topics. (default: ``0.1``)
        sharpness (float): :math:`\tau`, how strongly preferences beat chance. (default: ``4.0``)
        min_interactions (int): Least number of items per user. (default: ``5``)
        cold_start_items (float): Fraction of items with no training interaction (their
            interactions all land in valid / test). (default: ``0.0``)
        ratios (sequence of float): Train/valid/test proportions. (default: ``(0.8, 0.1, 0.1)``)
        seed (int): Random seed. (default: ``0``)
        name (str): ``data.name``. (default: ``"synthetic"``)
    """
    from stair_pyg.data.mmrec import dataset_from_labels

    if not 0.0 <= content_weight <= 1.0:
        raise ValueError(f"content_weight must lie in [0, 1], got {content_weight}")
    if not 0.0 <= cold_start_items < 1.0:
        raise ValueError(f"cold_start_items must lie in [0, 1), got {cold_start_items}")
    if num_users < 1 or num_items < 2 or num_topics < 1:
        raise ValueError("need num_users >= 1, num_items >= 2 and num_topics >= 1")
    if min_interactions < 1 or min_interactions > num_items:
        raise ValueError(f"min_interactions must lie in [1, num_items], got {min_interactions}")
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    if noise is None:
        noise = {m: DEFAULT_NOISE.get(m, 1.0) for m in modalities}
    unknown = set(noise) - set(modalities)
    if unknown:
        raise ValueError(f"noise given for unknown modalities {sorted(unknown)}; modalities are "
                         f"{sorted(modalities)}")

    rng = np.random.Generator(np.random.PCG64(seed))
    alpha = np.full(num_topics, topic_concentration)
    theta = rng.dirichlet(alpha, size=num_items)                      # [I, K]
    features = {}
    for modality, dim in modalities.items():
        proj = rng.standard_normal((num_topics, int(dim)))
        signal = theta @ proj
        signal /= signal.std() if signal.std() > 0 else 1.0
        x = signal + noise.get(modality, 1.0) * rng.standard_normal((num_items, int(dim)))
        features[modality] = x.astype(np.float32)
    phi = rng.dirichlet(alpha, size=num_users)                        # [U, K]
    user_cluster = rng.integers(num_user_clusters, size=num_users)
    item_cluster = rng.integers(num_item_clusters, size=num_items)
    affinity = rng.standard_normal((num_user_clusters, num_item_clusters))
    log_pop = -popularity * np.log1p(rng.permutation(num_items).astype(np.float64))
    lam = max(interactions_per_user - min_interactions, 0.0)
    counts = np.minimum(min_interactions + rng.poisson(lam, size=num_users), num_items)

    users, items = [], []
    for start in range(0, num_users, _CHUNK):
        stop = min(start + _CHUNK, num_users)
        content = _zscore(phi[start:stop] @ theta.T)
        collab = _zscore(affinity[user_cluster[start:stop]][:, item_cluster])
        p = (content_weight * _softmax(sharpness * content + log_pop)
             + (1.0 - content_weight) * _softmax(sharpness * collab + log_pop))
        keys = np.log(p + 1e-300) + rng.gumbel(size=p.shape)
        order = np.argsort(-keys, axis=1, kind="stable")
        n = counts[start:stop]
        take = np.arange(num_items)[None, :] < n[:, None]
        users.append(np.repeat(np.arange(start, stop), n))
        items.append(order[take])
    user = np.concatenate(users)
    item = np.concatenate(items)

    num_cold = int(round(cold_start_items * num_items))
    cold = np.zeros(num_items, dtype=bool)
    cold[rng.choice(num_items, size=num_cold, replace=False)] = True
    split_seed = int(rng.integers(2**31 - 1))
    label = np.empty(user.shape[0], dtype=np.int64)
    warm = ~cold[item]
    label[warm] = random_split(user[warm], item[warm], ratios=ratios, seed=split_seed)
    label[~warm] = np.where(rng.random(int((~warm).sum())) < 0.5, VALID, TEST)
    return dataset_from_labels(user, item, label, num_users, num_items, features, name=name,
                               report_cold_start=False)
