r"""``stair-pyg add-items``: items with features but no interactions added to a trained model.

Example::

    stair-pyg add-items --checkpoint runs/scientific-stair/best.pt --features new_items/ \
        --out runs/scientific-stair/with-new.pt

``--features`` is a folder of ``<modality>_feat.npy`` files (one row per new item, the training
modalities and dimensions) and optionally ``item_ids.txt`` (raw ids, one a line, in row order;
see :mod:`stair_pyg.data.new_items`). New items get the ids ``I, I+1, ...`` in row order; the
mapping ``raw_id -> itemID`` is written beside ``--out`` as ``<out stem>.items.tsv`` (or to
``--mapping``). The new checkpoint serves ``recommend``, ``evaluate`` and ``export`` like the
original, and can take further ``add-items``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stair_pyg.cli._args import device, make_parent, output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt or checkpoint.pt of a run (or of an earlier add-items)")
    parser.add_argument("--features", type=Path, required=True, metavar="DIR",
                        help="folder of <modality>_feat.npy for the new items "
                             "(+ optional item_ids.txt)")
    parser.add_argument("--out", type=output_file, required=True, metavar="FILE",
                        help="the new checkpoint (missing parent folders are created)")
    parser.add_argument("--mapping", type=output_file, default=None, metavar="FILE",
                        help="raw id -> itemID table (default: <out stem>.items.tsv)")
    parser.add_argument("--device", type=device, default="cpu", metavar="{auto,cpu,cuda,cuda:N}")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError
    from stair_pyg.data.new_items import load_new_item_features
    from stair_pyg.train import CheckpointError, add_items_to_checkpoint, load_trained

    if args.out.resolve() == args.checkpoint.resolve():
        print("error: --out must differ from --checkpoint (the original is kept)",
              file=sys.stderr)
        return 2
    try:
        loaded = load_trained(args.checkpoint, args.device)
        model = loaded[0]
        dims = model.item_feature_dims
        if not dims:
            model.add_items({})  # raises the model's own reason (an ID-only model)
        features, raw_ids = load_new_item_features(args.features, dims)
        info = add_items_to_checkpoint(args.checkpoint, features, args.out, raw_ids,
                                       loaded=loaded)
    except (CheckpointError, DataError, FileNotFoundError, ValueError,
            NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mapping = args.mapping or args.out.with_name(args.out.stem + ".items.tsv")
    with open(make_parent(mapping), "w") as f:
        f.write("raw_id\titemID\n")
        f.writelines(f"{raw}\t{info['first_id'] + r}\n" for r, raw in enumerate(info["raw_ids"]))
    print(f"added {info['num_added']} items (ids {info['first_id']}..{info['num_items'] - 1}) "
          f"to {args.out}; mapping in {mapping}")
    return 0
