r"""Dataset summary (``stair-pyg describe``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from stair_pyg.data.hetero import RecDataset, modality_features, num_users_items
from stair_pyg.data.splits import SPLIT_NAMES
from stair_pyg.data.validate import cold_start


def _coverage(x: torch.Tensor, record: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    r"""``covered`` / ``filled`` rows of one modality: from the ``features.json`` record that
    ``stair-pyg prepare`` wrote, when it matches the matrix's shape, else ``covered`` = the
    non-zero rows (``filled`` unknown, :obj:`None`)."""
    rows, dim = int(x.shape[0]), int(x.shape[1])
    out: Dict[str, Any] = {"dim": dim, "rows": rows}
    if record and record.get("rows") == rows and record.get("dim") == dim:
        out.update(covered=int(record["covered"]), filled=int(record["filled"]),
                   fill=record.get("fill"), source="features.json")
        if record.get("report"):
            out["report"] = record["report"]
    else:
        out.update(covered=int((x != 0).any(dim=1).sum()), filled=None, fill=None,
                   source="non-zero rows")
    return out


def read_feature_record(folder: Union[str, Path, None]) -> Dict[str, Any]:
    r"""The ``features.json`` of a dataset folder (``{}`` when absent or unreadable: it is a
    report, never needed to load the data)."""
    if folder is None:
        return {}
    path = Path(folder)
    path = path if path.is_dir() else path.parent
    try:
        record = json.loads((path / "features.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(dataset: RecDataset, folder: Union[str, Path, None] = None) -> Dict[str, Any]:
    r"""Summarises a dataset; :obj:`folder` is its MMRec folder, whose ``features.json`` (written
    by ``stair-pyg prepare``) gives the filled feature rows.

    Returns:
        A dict with ``name``, ``users``, ``items``, ``interactions`` (``{"train", "valid",
        "test", "total"}``), ``density`` (total interactions / (users x items)),
        ``cold_start`` (:func:`~stair_pyg.data.validate.cold_start`: users and items in valid /
        test never seen in train, and how many valid / test interactions involve them),
        ``items_without_train`` (items with no training interaction) and ``features``
        (``{modality: [rows, dim]}``).
    """
    data, splits = dataset
    record = read_feature_record(folder)
    num_users, num_items = num_users_items(data)
    counts = {name: int(split.size(1)) for name, split in zip(SPLIT_NAMES, splits)}
    counts["total"] = sum(counts.values())
    trained = splits.train[1].unique().numel()
    return {
        "name": getattr(data, "name", None),
        "users": num_users,
        "items": num_items,
        "interactions": counts,
        "density": counts["total"] / max(num_users * num_items, 1),
        "cold_start": cold_start(*splits),
        "items_without_train": num_items - int(trained),
        "features": {m: list(x.shape) for m, x in modality_features(data).items()},
        "coverage": {m: _coverage(x, record.get(m))
                     for m, x in modality_features(data).items()},
    }


def format_summary(summary: Dict[str, Any]) -> str:
    r"""Renders :func:`describe`'s dict as a plain-text table."""
    c = summary["cold_start"]
    n = summary["interactions"]
    rows = [
        ("dataset", str(summary["name"])),
        ("users", f"{summary['users']:,}"),
        ("items", f"{summary['items']:,}"),
        ("interactions", f"{n['total']:,}"),
        ("  train", f"{n['train']:,}"),
        ("  valid", f"{n['valid']:,}"),
        ("  test", f"{n['test']:,}"),
        ("density", f"{summary['density']:.5f}"),
        ("cold users valid/test", f"{c['valid_users']:,} / {c['test_users']:,}"),
        ("cold items valid/test", f"{c['valid_items']:,} / {c['test_items']:,}"),
        ("cold interactions valid/test",
         f"{c['valid_interactions']:,} / {c['test_interactions']:,}"),
        ("items without train", f"{summary['items_without_train']:,}"),
    ]
    feats = summary["features"]
    if feats:
        coverage = summary.get("coverage", {})
        for m, shape in feats.items():
            rows.append((f"feature {m}", " x ".join(str(d) for d in shape)))
            c = coverage.get(m)
            if c:
                share = c["covered"] / max(c["rows"], 1)
                rows.append((f"  {m} coverage", f"{c['covered']:,} / {c['rows']:,} items "
                             f"({share:.1%})" + ("" if c["filled"] is not None
                                                 else " (non-zero rows)")))
                if c["filled"]:
                    where = f"; ids in {c['report']}" if c.get("report") else ""
                    rows.append((f"  {m} filled", f"{c['filled']:,} rows ({c['fill']}{where})"))
    else:
        rows.append(("features", "none"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
