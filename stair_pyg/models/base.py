r"""The small interface through which the trainer, the evaluator and the CLI use every model."""
from __future__ import annotations

import copy
import functools
import inspect
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.nn.retrieval import PairIndex, topk_items


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss
    :math:`-\frac{1}{B}\sum_b \log \sigma(s^+_b - s^-_b)`, computed stably as
    :math:`\mathrm{softplus}(s^- - s^+)`."""
    return torch.nn.functional.softplus(neg_score - pos_score).mean()


class _Stacked(torch.autograd.Function):
    r"""Two row blocks that lie one after the other in memory as the one tensor they form, a
    view (no copy); the gradient splits into views of the incoming one."""

    @staticmethod
    def forward(ctx, top: Tensor, bottom: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rows = top.size(0)
        return top.as_strided((top.size(0) + bottom.size(0), top.size(1)), top.stride())

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad[:ctx.rows], grad[ctx.rows:]


def _adjacent(top: Tensor, bottom: Tensor) -> bool:
    return (top.dim() == 2 and bottom.dim() == 2 and top.size(1) == bottom.size(1)
            and top.dtype == bottom.dtype and top.device == bottom.device
            and top.is_contiguous() and bottom.is_contiguous()
            and top.untyped_storage().data_ptr() == bottom.untyped_storage().data_ptr()
            and bottom.storage_offset() == top.storage_offset() + top.numel())


def stacked_rows(top: Tensor, bottom: Tensor) -> Tensor:
    r"""``torch.cat([top, bottom])`` of two ``[n, d]`` tables, differentiable in both: a view,
    without the copy, where :obj:`bottom` follows :obj:`top` in the same memory (tables placed by
    :func:`share_storage`), else the concatenation. The same values either way."""
    if _adjacent(top, bottom):
        return _Stacked.apply(top, bottom)
    return torch.cat([top, bottom])


@torch.no_grad()
def share_storage(top: torch.nn.Parameter, bottom: torch.nn.Parameter) -> None:
    r"""Moves two ``[n, d]`` parameters into one block of memory, :obj:`bottom`'s rows after
    :obj:`top`'s (values, identities and gradients unchanged), so that :func:`stacked_rows`
    reads them without a copy. A model whose propagation runs over users and items as one node
    set (user rows first) calls it on its two tables: on a CPU that saves a copy of both tables
    per training step (3% of a STAIR step on ``scientific``). Converting the model later
    (another device or dtype) separates them again; :func:`stacked_rows` then concatenates."""
    block = torch.cat([top, bottom])
    top.data = block[:top.size(0)]
    bottom.data = block[top.size(0):]


def _plain(value: Any) -> Any:
    # Hyper-parameters as checkpoints store them: tuples become lists, mappings plain dicts.
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


class Recommender(torch.nn.Module):
    r"""Base class of every model in :mod:`stair_pyg.models`.

    A model scores a user-item pair by the inner product of the representations that
    :meth:`get_embedding` returns. The method names are those of PyG's
    :class:`~torch_geometric.nn.models.LightGCN` for the same jobs. Subclasses implement:

    * :meth:`from_data` (classmethod): builds and initialises the model from the training graph
      (a :class:`~torch_geometric.data.HeteroData` in the layout of :mod:`stair_pyg.data.hetero`),
      holding any graph it propagates over as a
      :class:`~stair_pyg.nn.sparse.SparseAdjBuffer` (so that ``model.to(device)`` moves it and
      checkpoints hold parameters only);
    * :meth:`get_embedding`: final user and item representations ``([U, d'], [I, d'])``;
    * :meth:`recommendation_loss`: the training loss of one batch of
      ``(user, positive, negative)`` triples;
    * :meth:`reset_parameters`: the initialisation of the parameters;
    * :meth:`configure_optimizer` (optional): the optimizer (default: Adam, weight decay as L2);
    * :meth:`pre_epoch` (optional): work done once per epoch (edge re-sampling, for example).

    The base class gives :meth:`forward` / :meth:`predict_link` (scores of user-item pairs),
    :meth:`recommend` (top-:math:`k` lists) and :attr:`hparams`: the constructor's
    hyper-parameters (its arguments with defaults), captured when the model is built, which
    :meth:`from_data` takes back to rebuild the model.
    """

    num_users: int
    num_items: int
    #: Whether the model reads the items' modality features (``data["item"].<name>_feat``).
    uses_item_features: bool = False
    _hparams: Dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)
        names = [p.name for p in list(signature.parameters.values())[1:]
                 if p.default is not inspect.Parameter.empty]

        @functools.wraps(init)
        def __init__(self, *args: Any, **kw: Any) -> None:
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            dim = bound.arguments.get("embedding_dim")
            if isinstance(dim, int) and not isinstance(dim, bool) and dim < 1:
                raise ValueError(f"'embedding_dim' must be positive, got {dim}")
            init(self, *args, **kw)
            if type(self).__init__ is __init__:  # the outermost constructor records
                self._hparams = {name: _plain(bound.arguments[name]) for name in names}

        cls.__init__ = __init__  # type: ignore[method-assign]

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "Recommender":
        raise NotImplementedError

    @property
    def hparams(self) -> Dict[str, Any]:
        r"""The hyper-parameters the model was built with (a copy)."""
        return _plain(getattr(self, "_hparams", {}))

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        r"""Final user and item representations ``([U, d'], [I, d'])``."""
        raise NotImplementedError

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        r"""The training loss of a batch of ``(user, positive item, negative item)`` ids
        ``[B]`` each."""
        raise NotImplementedError

    def add_items(self, features: Dict[str, Tensor]) -> Tensor:
        r"""Adds items that have modality features but no interactions (ids :math:`I, \dots,
        I + n - 1`, in row order) and returns their ids, leaving every existing score
        unchanged. Models that see items through their ID embeddings only cannot place an item
        without interactions and raise :class:`NotImplementedError`."""
        raise NotImplementedError(
            f"{type(self).__name__} represents items by ID embeddings learnt from interactions "
            f"only: it cannot place a new item from its features without retraining; use a "
            f"model that reads item features (stair, content, vbpr, freedom, bm3, lgmrec)")

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        r"""``{modality: columns}`` of the item features :meth:`add_items` needs (empty for
        models that do not read features)."""
        return {}

    #: State entries recomputed from the training data that a checkpoint may lack.
    derived_state_keys: Any = ()

    def configure_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        r"""Adam with :obj:`weight_decay` as L2 (MMRec's optimizer), torch's fused kernel where
        every parameter allows it (CPU or CUDA floats): one pass over all parameters instead of
        one per tensor and per operation (on CPU torch's default is the per-tensor loop, about
        8 ms of a 40 ms FREEDOM step on ``scientific``)."""
        params = [p for p in self.parameters() if p.requires_grad]
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                     for p in params)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)

    def pre_epoch(self, epoch: int) -> None:
        return None

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Scores :math:`\mathbf{e}_u^\top \mathbf{e}_i` of the pairs ``(users[b], items[b])``
        ``[B]``."""
        user_emb, item_emb = self.get_embedding()
        return (user_emb[users] * item_emb[items]).sum(dim=-1)

    @torch.no_grad()
    def predict_link(self, users: Tensor, items: Tensor, prob: bool = False) -> Tensor:
        r"""Scores of the pairs ``(users[b], items[b])``, or with :obj:`prob` their sigmoid."""
        score = self(users, items)
        return score.sigmoid() if prob else score

    @torch.no_grad()
    def recommend(self, users: Optional[Tensor] = None, k: int = 20,
                  exclude_edge_index: Optional[Tensor] = None,
                  batch_size: int = 4096) -> Tensor:
        r"""Top-:obj:`k` items per user by score, best first.

        Users are scored in blocks of :obj:`batch_size` rows, so memory is
        :math:`O(\text{batch\_size} \cdot I)` whatever the number of users.

        Args:
            users (torch.Tensor, optional): User ids ``[B]``. (default: all users)
            k (int, optional): Items per user. (default: :obj:`20`)
            exclude_edge_index (torch.Tensor, optional): Interactions ``[2, E]`` (user ids,
                item ids) never recommended, usually the training interactions.
                (default: :obj:`None`)
            batch_size (int, optional): Users scored at once. (default: :obj:`4096`)

        Returns:
            Item ids ``[B, k]``.
        """
        if not 0 < k <= self.num_items:
            raise ValueError(f"k must be in 1..{self.num_items}, got {k}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        user_emb, item_emb = self.get_embedding()
        users = torch.arange(self.num_users) if users is None else users
        users = users.to(user_emb.device)
        exclude = None
        if exclude_edge_index is not None:
            exclude = PairIndex(exclude_edge_index.to(user_emb.device), self.num_users,
                                self.num_items)
        out = [items for _, items, _ in topk_items(user_emb, item_emb, users, exclude, k,
                                                   batch_size)]
        return torch.cat(out) if out else users.new_empty(0, k)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())
        return f"{self.__class__.__name__}({self.num_users}, {self.num_items}, {args})"
