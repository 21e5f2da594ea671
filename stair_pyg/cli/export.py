r"""``stair-pyg export``: a trained model's final representations, ready to serve.

Example::

    stair-pyg export --checkpoint runs/scientific-stair/best.pt --out serve/
    stair-pyg recommend --export serve/ --all --output recs.parquet --format parquet

``--out`` receives, for any model:

* ``user_embeddings.npy`` ``[U, d]`` and ``item_embeddings.npy`` ``[I, d]`` (float32): the
  representations :meth:`~stair_pyg.models.base.Recommender.get_embedding` returns, whose inner
  products are the model's scores;
* ``users.tsv`` (``userID``, row order) and ``items.tsv`` (``itemID  raw_id  added``: row ``i``
  is item ``i``; ``raw_id`` is the dataset's id, or for items placed by ``add-items`` the raw id
  given then; ``added`` is 1 for those);
* ``seen.npy`` ``[2, E]`` (int64): every known interaction (train, valid, test), the pairs
  ``recommend`` excludes;
* ``meta.json``: model, dimensions, the checkpoint it came from;
* with the optional ``faiss`` extra, ``items.faiss``: a maximum-inner-product index over the
  items built through PyG's :class:`~torch_geometric.nn.pool.MIPSKNNIndex` (exact;
  ``--index ivfpq`` an approximate IVF-PQ one, ``--index none`` none).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stair_pyg.cli._args import device, output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt of a run")
    parser.add_argument("--out", type=output_dir, required=True, metavar="DIR",
                        help="output folder (created)")
    parser.add_argument("--index", choices=["auto", "flat", "ivfpq", "none"], default="auto",
                        help="inner-product index: flat (exact), ivfpq (approximate), none; "
                             "auto (default): flat where faiss is installed, else none")
    parser.add_argument("--device", type=device, default="cpu", metavar="{auto,cpu,cuda,cuda:N}")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from stair_pyg.data import DataError
    from stair_pyg.nn.retrieval import has_faiss, mips_index
    from stair_pyg.train import CheckpointError, load_trained

    if args.index in ("flat", "ivfpq") and not has_faiss():
        print(f"error: --index {args.index} needs faiss: pip install 'stair-pyg[faiss]'",
              file=sys.stderr)
        return 2
    try:
        model, dataset, state = load_trained(args.checkpoint, args.device)
    except (CheckpointError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with torch.no_grad():
        user_emb, item_emb = model.get_embedding()
    user_np = user_emb.detach().float().cpu().numpy()
    item_np = item_emb.detach().float().cpu().numpy()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "user_embeddings.npy", user_np)
    np.save(out / "item_embeddings.npy", item_np)
    np.save(out / "seen.npy", torch.cat(list(dataset.splits), dim=1).cpu().numpy()
            .astype(np.int64))
    with open(out / "users.tsv", "w") as f:
        f.write("userID\n")
        f.writelines(f"{u}\n" for u in range(user_np.shape[0]))
    raw = [str(i) for i in range(item_np.shape[0])]
    added = [0] * item_np.shape[0]
    for batch in state.get("added_items", {}).get("batches", []):
        for r, rid in enumerate(batch["raw_ids"]):
            raw[int(batch["first_id"]) + r] = str(rid)
            added[int(batch["first_id"]) + r] = 1
    with open(out / "items.tsv", "w") as f:
        f.write("itemID\traw_id\tadded\n")
        f.writelines(f"{i}\t{raw[i]}\t{added[i]}\n" for i in range(item_np.shape[0]))
    kind = ("flat" if has_faiss() else "none") if args.index == "auto" else args.index
    if kind != "none":
        import faiss

        index = mips_index(torch.from_numpy(item_np), kind)
        faiss.write_index(index.index, str(out / "items.faiss"))
    meta = {"model": state["model_name"], "checkpoint": str(args.checkpoint),
            "num_users": int(user_np.shape[0]), "num_items": int(item_np.shape[0]),
            "dim": int(item_np.shape[1]), "num_added_items": int(sum(added)), "index": kind,
            "score": "inner product of user_embeddings and item_embeddings rows"}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"exported {user_np.shape[0]} users and {item_np.shape[0]} items "
          f"(d = {item_np.shape[1]}) to {out}" + ("" if kind == "none" else
                                                  f", with a {kind} index (items.faiss)"))
    return 0
