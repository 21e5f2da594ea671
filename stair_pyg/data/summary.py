r"""Dataset summary (``stair-pyg describe``)."""
from __future__ import annotations

from typing import Any, Dict

from stair_pyg.data.hetero import RecDataset, modality_features, num_users_items
from stair_pyg.data.splits import SPLIT_NAMES
from stair_pyg.data.validate import cold_start


def describe(dataset: RecDataset) -> Dict[str, Any]:
    r"""Summarises a dataset.

    Returns:
        A dict with ``name``, ``users``, ``items``, ``interactions`` (``{"train", "valid",
        "test", "total"}``), ``density`` (total interactions / (users x items)),
        ``cold_start`` (:func:`~stair_pyg.data.validate.cold_start`: users and items in valid /
        test never seen in train, and how many valid / test interactions involve them),
        ``items_without_train`` (items with no training interaction) and ``features``
        (``{modality: [rows, dim]}``).
    """
    data, splits = dataset
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
        rows += [(f"feature {m}", " x ".join(str(d) for d in shape))
                 for m, shape in feats.items()]
    else:
        rows.append(("features", "none"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
