r"""Recommendation models, one a file, all behind :class:`~stair_pyg.models.base.Recommender`.

Models are looked up by name (as in a config's ``model.name``) with :func:`get_model`; the classes
are imported lazily.
"""
from __future__ import annotations

import importlib
from typing import Dict, Type

from stair_pyg.models.base import Recommender, bpr_loss

MODELS: Dict[str, str] = {
    "stair": "stair_pyg.models.stair:STAIR",
    "bpr": "stair_pyg.models.bpr:BPRMF",
    "lightgcn": "stair_pyg.models.lightgcn:LightGCN",
    "vbpr": "stair_pyg.models.vbpr:VBPR",
    "freedom": "stair_pyg.models.freedom:FREEDOM",
    "bm3": "stair_pyg.models.bm3:BM3",
    "lgmrec": "stair_pyg.models.lgmrec:LGMRec",
    "content": "stair_pyg.models.content:ContentBPR",
}


def get_model(name: str) -> Type[Recommender]:
    r"""The model class registered under :obj:`name` (case-insensitive)."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {sorted(MODELS)}")
    module, cls = MODELS[key].split(":")
    return getattr(importlib.import_module(module), cls)


def __getattr__(attr: str):
    for path in MODELS.values():
        module, cls = path.split(":")
        if cls == attr:
            return getattr(importlib.import_module(module), cls)
    raise AttributeError(attr)


__all__ = ["Recommender", "bpr_loss", "get_model", "MODELS"]
