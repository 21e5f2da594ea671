r"""``stair-pyg prepare``: raw interactions + item text and images -> an MMRec-format folder.

Examples::

    stair-pyg prepare ratings.csv --text items.tsv --out data/mydata
    stair-pyg prepare orders.csv --catalog products.csv --images catalog \
        --image-model models/clip-ViT-B-32 --out data/shop
    stair-pyg prepare reviews_Baby_5.json.gz --meta meta_Baby.json.gz --images catalog \
        --image-model models/clip-ViT-B-32 --k-core 5 --out data/baby
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
                        "optional; RecBole .inter works too), or Amazon reviews (JSON lines, "
                        ".json[l][.gz]: 2014, 2018 or 2023 release)")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", dest="item_text", default=None,
                      help="item<TAB>text file keyed by the same raw item ids (optional)")
    text.add_argument("--meta", default=None,
                      help="Amazon metadata (meta_*.json.gz of 2014/2018, meta_*.jsonl of 2023): "
                           "item text (MMRec's template) and image URLs")
    text.add_argument("--catalog", default=None,
                      help="product table (CSV, TSV or Parquet: item, title, description, ..., "
                           "image): item text and images")
    parser.add_argument("--release", choices=("auto", "2014", "2018", "2023"), default="auto",
                        help="Amazon release of the reviews/--meta (default: recognised from "
                             "the first record)")
    parser.add_argument("--text-fields", type=_fields, default=None, metavar="F1,F2,...",
                        help="fields of --meta / columns of --catalog that make an item's text, "
                             "in order (default: title,brand,categories,description, MMRec's)")
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
    parser.add_argument("--k-core", type=non_negative_int, default=None, metavar="K",
                        help="both bounds at K (5: the 5-core of MMRec's Amazon datasets)")
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
                        help="text and image encoder device: cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--missing-text", choices=("error", "empty"), default="error",
                        help="items without text: fail, or encode an empty text")
    parser.add_argument("--images", default=None, metavar="SOURCE",
                        help="image features: a folder of images named by raw item id, a TSV "
                             "item<TAB>path-or-URL, or 'catalog' for the images of --meta / "
                             "--catalog (URLs are downloaded into --image-cache)")
    parser.add_argument("--image-model", default=None, metavar="PATH",
                        help="local image model: a sentence-transformers CLIP folder, a "
                             "transformers vision model folder (CLIP, ViT, DINOv2, ResNet), or "
                             "torchvision weights with --image-encoder torchvision:ARCH")
    parser.add_argument("--image-encoder", type=_image_encoder, default="auto",
                        help="auto (from the folder), transformers, sentence-transformers or "
                             "torchvision:ARCH (default: auto)")
    parser.add_argument("--image-batch-size", type=positive_int, default=32,
                        help="images per forward pass (default: 32)")
    parser.add_argument("--missing-image", choices=("mean", "zero", "error"), default="mean",
                        help="items without a usable image: the mean image feature (MMRec's "
                             "rule; neutral after STAIR's whitening), a zero row, or fail "
                             "(default: mean)")
    parser.add_argument("--image-cache", default=None, metavar="DIR",
                        help="download cache (default: OUT/image_cache; a rerun resumes)")
    parser.add_argument("--download-workers", type=positive_int, default=8,
                        help="concurrent downloads and decoding threads (default: 8)")
    parser.add_argument("--max-image-pixels", type=positive_int, default=None,
                        help="refuse larger images (default: Pillow's 89,478,485)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset files of an existing output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fields(text: str) -> list:
    fields = [f.strip() for f in str(text).split(",")]
    if not all(fields):
        raise argparse.ArgumentTypeError(f"expected comma-separated field names, got '{text}'")
    return fields


def _image_encoder(text: str) -> str:
    value = str(text).strip()
    if value in ("auto", "transformers", "sentence-transformers"):
        return value
    if value.startswith("torchvision:") and value[len("torchvision:"):]:
        return value
    raise argparse.ArgumentTypeError(f"expected auto, transformers, sentence-transformers or "
                                     f"torchvision:ARCH (e.g. torchvision:resnet50), got '{text}'")


def options_from_args(args: argparse.Namespace) -> "InteractionOptions":
    r"""The :class:`~stair_pyg.data.options.InteractionOptions` that the command line gives."""
    from stair_pyg.data.options import InteractionOptions

    return InteractionOptions(
        encoding=args.encoding, sep=args.sep, header=False if args.no_header else "infer",
        user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
        timestamp_col=args.timestamp_col, label_col=args.label_col, split=args.split,
        seed=args.seed, ratios=tuple(args.ratios), rating_threshold=args.rating_threshold,
        min_user_interactions=args.min_user_interactions if args.k_core is None else args.k_core,
        min_item_interactions=args.min_item_interactions if args.k_core is None else args.k_core)


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError, describe, format_summary, load_mmrec
    from stair_pyg.data.images import MAX_PIXELS
    from stair_pyg.data.prepare import prepare_dataset

    if args.images is not None and args.image_model is None:
        print("stair-pyg prepare: error: --images needs --image-model PATH (a local model "
              "folder; nothing is downloaded from a model hub)", file=sys.stderr)
        return 2
    if args.images == "catalog" and args.meta is None and args.catalog is None:
        print("stair-pyg prepare: error: --images catalog takes the images named in --meta or "
              "--catalog; give one of them, or a folder / TSV of images", file=sys.stderr)
        return 2
    try:
        out = prepare_dataset(
            args.interactions, args.out, item_text=args.item_text, name=args.name,
            meta=args.meta, catalog=args.catalog,
            release=None if args.release == "auto" else args.release,
            text_fields=args.text_fields, model=args.model, batch_size=args.batch_size,
            device=args.device, missing_text=args.missing_text, images=args.images,
            image_model=args.image_model, image_encoder=args.image_encoder,
            image_batch_size=args.image_batch_size, missing_image=args.missing_image,
            image_cache=args.image_cache, download_workers=args.download_workers,
            max_image_pixels=args.max_image_pixels or MAX_PIXELS,
            overwrite=args.overwrite, progress=not args.no_progress,
            options=options_from_args(args))
        summary = describe(load_mmrec(out, name=args.name), folder=out)
    except (DataError, FileExistsError, OSError, ImportError) as e:
        print(f"stair-pyg prepare: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    print(format_summary(summary))
    report = out / "missing_images.tsv"
    if report.is_file():
        rows = [line.split("\t") for line in report.read_text(encoding="utf-8").splitlines()[1:]]
        if rows:
            shown = ", ".join(f"{r[1]} ({r[3]})" for r in rows[:10])
            more = f", ... ({len(rows):,} in all)" if len(rows) > 10 else ""
            print(f"no usable image for {len(rows):,} item(s), filled with "
                  f"'{args.missing_image}': {shown}{more}; see {report}")
    return 0
