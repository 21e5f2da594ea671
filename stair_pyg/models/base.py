r"""The small interface through which the trainer, the evaluator and the CLI use every model."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.nn.sparse import SparseAdj


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss
    :math:`-\frac{1}{B}\sum_b \log \sigma(s^+_b - s^-_b)`, computed stably as
    :math:`\mathrm{softplus}(s^- - s^+)`."""
    return torch.nn.functional.softplus(neg_score - pos_score).mean()


class Recommender(torch.nn.Module):
    r"""Base class of every model in :mod:`stair_pyg.models`.

    A model scores a user-item pair by the inner product of the representations that
    :meth:`embeddings` returns. Subclasses implement:

    * :meth:`from_data` (classmethod): builds and initialises the model from the training graph
      (a :class:`~torch_geometric.data.HeteroData` in the layout of :mod:`stair_pyg.data.hetero`),
      registering any graph it propagates over as a non-persistent buffer;
    * :meth:`embeddings`: final user and item representations ``([U, d'], [I, d'])``;
    * :meth:`loss`: the training loss of one batch of ``(user, positive, negative)`` triples;
    * :meth:`configure_optimizer` (optional): the optimizer (default: Adam, weight decay as L2).
    * :meth:`pre_epoch` (optional): work done once per epoch (edge re-sampling, for example).

    Hyper-parameters are plain constructor arguments, recorded in :attr:`hparams` so that a
    checkpoint can rebuild the model.

    Graphs kept as :class:`~stair_pyg.nn.sparse.SparseAdj` attributes (of the model or of any of
    its sub-modules) follow ``model.to(device)`` like buffers do, but stay out of the
    ``state_dict``: a checkpoint holds parameters only, and the graphs are rebuilt from the data.
    """

    num_users: int
    num_items: int
    #: Whether the model reads the items' modality features (``data["item"].<name>_feat``).
    uses_item_features: bool = False

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "Recommender":
        raise NotImplementedError

    @property
    def hparams(self) -> Dict[str, Any]:
        return dict(getattr(self, "_hparams", {}))

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        raise NotImplementedError

    def configure_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    def pre_epoch(self, epoch: int) -> None:
        return None

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, SparseAdj):
                    adj = fn(value.adj)
                    adj_t = adj if value.symmetric else fn(value.adj_t)
                    setattr(module, name, SparseAdj(adj, adj_t, symmetric=value.symmetric))
        return self

    @torch.no_grad()
    def score(self, users: Tensor, items: Tensor | None = None) -> Tensor:
        r"""Scores ``[len(users), I]`` (or ``[len(users), len(items)]``)."""
        user_emb, item_emb = self.embeddings()
        item_emb = item_emb if items is None else item_emb[items]
        return user_emb[users] @ item_emb.t()
