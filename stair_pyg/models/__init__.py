r"""Recommendation models, one a file, all behind :class:`~stair_pyg.models.base.Recommender`.

:data:`MODELS` maps the names used in a config's ``model.name`` to the classes;
:func:`get_model` looks one up case-insensitively. ``cls.uses_item_features`` says whether a
model reads the items' modality features.
"""
from __future__ import annotations

from typing import Dict, Type

from stair_pyg.models.base import Recommender, bpr_loss
from stair_pyg.models.bm3 import BM3
from stair_pyg.models.bpr import BPRMF
from stair_pyg.models.content import ContentBPR
from stair_pyg.models.freedom import FREEDOM
from stair_pyg.models.lgmrec import LGMRec
from stair_pyg.models.lightgcn import LightGCN
from stair_pyg.models.stair import STAIR
from stair_pyg.models.vbpr import VBPR

MODELS: Dict[str, Type[Recommender]] = {
    "stair": STAIR,
    "bpr": BPRMF,
    "lightgcn": LightGCN,
    "vbpr": VBPR,
    "freedom": FREEDOM,
    "bm3": BM3,
    "lgmrec": LGMRec,
    "content": ContentBPR,
}


def get_model(name: str) -> Type[Recommender]:
    r"""The model class registered under :obj:`name` (case-insensitive)."""
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {sorted(MODELS)}")
    return MODELS[key]


__all__ = ["Recommender", "bpr_loss", "get_model", "MODELS", "STAIR", "BPRMF", "LightGCN",
           "VBPR", "FREEDOM", "BM3", "LGMRec", "ContentBPR"]
