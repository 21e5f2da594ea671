r"""The feature-only view of items: a content-based BPR model with no item ID factors."""
from __future__ import annotations

from typing import Dict, List, Optional

from torch import Tensor

from stair_pyg.models.vbpr import VBPR


class ContentBPR(VBPR):
    r"""Content-only BPR: items are a learned linear projection of their (concatenated) modality
    features, users a free embedding, with no item ID factors:

    .. math::
        \hat{y}_{ui} = \boldsymbol{\theta}_u^\top (\mathbf{E} \mathbf{f}_i + \mathbf{b})

    This is :class:`~stair_pyg.models.vbpr.VBPR` with :obj:`id_embedding_dim=0` (the visual part of
    VBPR alone, as in the content-based ablations of He and McAuley, AAAI 2016). It measures what
    the item features alone can tell: every item with the same features scores the same, so the
    model cannot use collaborative signal beyond what the features carry.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        features (dict): Modality name to item features ``[I, f_m]`` (at least one).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        reg_weight (float, optional): Weight of MMRec's norm regulariser. (default: :obj:`1e-3`)
        use_bias (bool, optional): Add item and feature biases. (default: :obj:`False`)
        modalities (list of str, optional): Which modalities to use (default: all).

    Shapes:
        - **get_embedding():** ``([U, d (+1)], [I, d (+1)])``
    """

    def __init__(self, num_users: int, num_items: int, features: Dict[str, Tensor],
                 embedding_dim: int = 64, reg_weight: float = 1e-3, use_bias: bool = False,
                 modalities: Optional[List[str]] = None):
        super().__init__(num_users, num_items, features, embedding_dim=embedding_dim,
                         id_embedding_dim=0, reg_weight=reg_weight, use_bias=use_bias,
                         modalities=modalities)
