r"""``stair-pyg prepare``: raw interactions + raw item text -> an MMRec-format folder.

Example::

    stair-pyg prepare ratings.csv --text items.tsv --out data/mydata
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stair_pyg.data.options import InteractionOptions



def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stair_pyg.cli._args import (SplitRatios, encoder_device, non_negative_float,
                                     non_negative_int, output_dir, positive_int)

    parser.add_argument("interactions", help="CSV/TSV of user,item[,rating,timestamp] (header "
                        "optional; RecBole .inter works too)")
    parser.add_argument("--text", dest="item_text", default=None,
                        help="item<TAB>text file keyed by the same raw item ids (optional)")
    parser.add_argument("--out", type=output_dir, required=True,
                        help="output folder (must be new or empty; created with its parents)")
    parser.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    parser.add_argument("--split", choices=("random", "loo", "column"), default="random",
                        help="per-user random 8:1:1 (MMRec protocol), leave-one-out by timestamp, "
                             "or the file's label column (default: random)")
    parser.add_argument("--seed", type=non_negative_int, default=999,
                        help="random split seed (default: 999)")
    parser.add_argument("--ratios", type=non_negative_float, nargs=3, action=SplitRatios,
                        default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "VALID", "TEST"))
    parser.add_argument("--min-user-interactions", type=non_negative_int, default=3,
                        help="drop users with fewer items; 0 disables (default: 3)")
    parser.add_argument("--min-item-interactions", type=non_negative_int, default=0,
                        help="k-core bound for items (default: 0)")
    parser.add_argument("--rating-threshold", type=float, default=None,
                        help="keep interactions with rating >= this")
    parser.add_argument("--sep", default=None, help="separator (default: sniffed)")
    parser.add_argument("--encoding", default="utf-8",
                        help="text encoding of the input files (default: utf-8; a UTF-8 "
                             "byte-order mark is accepted)")
    parser.add_argument("--no-header", action="store_true",
                        help="the interactions file has no header (columns by position)")
    for col in ("user", "item", "rating", "timestamp", "label"):
        parser.add_argument(f"--{col}-col", default=None, help=f"name of the {col} column")
    parser.add_argument("--model", default=None, help="local sentence-transformers model folder "
                        "(default: the offline all-MiniLM-L6-v2 package)")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="text encoder batch size (default: 128)")
    parser.add_argument("--device", type=encoder_device, default="cpu",
                        help="text encoder device: cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--missing-text", choices=("error", "empty"), default="error",
                        help="items without text: fail, or encode an empty text")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset files of an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> "InteractionOptions":
    r"""The :class:`~stair_pyg.data.options.InteractionOptions` that the command line gives."""
    from stair_pyg.data.options import InteractionOptions

    return InteractionOptions(
        encoding=args.encoding, sep=args.sep, header=False if args.no_header else "infer",
        user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
        timestamp_col=args.timestamp_col, label_col=args.label_col, split=args.split,
        seed=args.seed, ratios=tuple(args.ratios), rating_threshold=args.rating_threshold,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions)


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError, describe, format_summary, load_mmrec
    from stair_pyg.data.prepare import prepare_dataset

    try:
        out = prepare_dataset(
            args.interactions, args.out, item_text=args.item_text, name=args.name,
            model=args.model, batch_size=args.batch_size, device=args.device,
            missing_text=args.missing_text, overwrite=args.overwrite,
            progress=not args.no_progress, options=options_from_args(args))
        summary = describe(load_mmrec(out, name=args.name))
    except (DataError, FileExistsError, OSError, ImportError) as e:
        print(f"stair-pyg prepare: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    print(format_summary(summary))
    return 0
