r"""The user-item graph as a PyG :class:`~torch_geometric.data.HeteroData`.

Every loader, the synthetic generator, every model and the trainer share this layout:

* node types ``"user"`` and ``"item"`` with ``num_nodes`` set;
* :data:`EDGE` ``= ("user", "interacts", "item")``: the **training** interactions only, as
  ``edge_index`` of shape ``[2, E_train]`` (row 0 user ids, row 1 item ids), coalesced;
* :data:`REV_EDGE` ``= ("item", "rev_interacts", "user")``: the same edges flipped (the name that
  :class:`torch_geometric.transforms.ToUndirected` would give them). The library's models read
  :data:`EDGE` only; the reverse store is written for PyG's heterogeneous tooling (``to_hetero``
  models, :class:`~torch_geometric.nn.conv.HeteroConv`, ``LinkNeighborLoader``,
  ``to_homogeneous``), which expect each relation and its reverse. :data:`REV_EDGE` is its one
  name, exported for code that reads it;
* item modality features as attributes of the ``"item"`` store, one float tensor
  ``[num_items, f_m]`` per modality, named ``<modality>_feat`` (``text_feat``, ``image_feat``,
  ``genre_feat``), the same names as MMRec's ``<modality>_feat.npy`` files.

Validation and test interactions never enter the graph: they live in :class:`Splits`, so that no
model can propagate over them by accident.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

EDGE = ("user", "interacts", "item")
REV_EDGE = ("item", "rev_interacts", "user")
FEATURE_SUFFIX = "_feat"


class Splits(NamedTuple):
    r"""Interactions per split, each a ``LongTensor`` of shape ``[2, E]`` (user ids, item ids)."""

    train: Tensor
    valid: Tensor
    test: Tensor


class RecDataset(NamedTuple):
    r"""What every loader returns: the training graph and the three splits."""

    data: HeteroData
    splits: Splits


def build_hetero_data(
    num_users: int,
    num_items: int,
    train: Tensor,
    features: Optional[Dict[str, Tensor]] = None,
    name: Optional[str] = None,
) -> HeteroData:
    r"""Builds the training graph.

    Args:
        num_users (int): Number of users (ids ``0..num_users-1``).
        num_items (int): Number of items (ids ``0..num_items-1``).
        train (torch.Tensor): Training interactions ``[2, E]`` (user ids, item ids).
        features (dict, optional): Modality name to item features ``[num_items, f]``.
        name (str, optional): Dataset name, stored as ``data.name``.
    """
    train = torch.as_tensor(train, dtype=torch.long)
    if train.dim() != 2 or train.size(0) != 2:
        raise ValueError(f"train interactions must have shape [2, E], got {tuple(train.shape)}")
    data = HeteroData()
    data["user"].num_nodes = int(num_users)
    data["item"].num_nodes = int(num_items)
    data[EDGE].edge_index = train
    data[REV_EDGE].edge_index = train.flip(0)
    for modality, x in (features or {}).items():
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() != 2 or x.size(0) != num_items:
            raise ValueError(f"'{modality}' features must have shape [num_items={num_items}, f], "
                             f"got {tuple(x.shape)}")
        data["item"][modality + FEATURE_SUFFIX] = x
    if name is not None:
        data.name = name
    return data


def modality_features(data: HeteroData) -> Dict[str, Tensor]:
    r"""Returns the item modality features of :obj:`data` as ``{modality: Tensor[num_items, f]}``,
    in insertion order."""
    store = data["item"]
    return {key[: -len(FEATURE_SUFFIX)]: value for key, value in store.items()
            if key.endswith(FEATURE_SUFFIX) and isinstance(value, Tensor)}


def train_edge_index(data: HeteroData) -> Tensor:
    r"""The training interactions ``[2, E]`` (user ids, item ids)."""
    return data[EDGE].edge_index


def num_users_items(data: HeteroData) -> tuple:
    return int(data["user"].num_nodes), int(data["item"].num_nodes)
