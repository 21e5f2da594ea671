r"""``stair-pyg describe``: users, items, interactions per split, density, cold-start counts and
feature shapes of a dataset.

Examples::

    stair-pyg describe ../shared/data/scientific
    stair-pyg describe ratings.csv --format csv --split loo
    stair-pyg describe synthetic --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict

HELP = "Summary of a dataset: users, items, interactions per split, cold start, features"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="dataset folder or file, or 'synthetic' for the embedded "
                        "default")
    parser.add_argument("--format", choices=("auto", "mmrec", "recbole", "csv", "synthetic"),
                        default="auto", help="default: guessed from the files")
    parser.add_argument("--split", choices=("random", "loo", "column"), default=None,
                        help="split for recbole/csv input (default: random)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def guess_format(path: Path) -> str:
    r"""``mmrec`` for a folder (or ``.inter``) whose header has ``x_label``, ``recbole`` for
    ``name:type`` headers, ``csv`` otherwise."""
    inter = path
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if not found:
            raise FileNotFoundError(f"no '*.inter' file in folder {str(path)!r}")
        inter = found[0]
    if inter.suffix != ".inter":
        return "csv"
    with open(inter, encoding="utf-8") as f:
        header = f.readline()
    if "x_label" in header.split():
        return "mmrec"
    return "recbole" if ":" in header else "csv"


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError, describe, format_summary, load_dataset

    spec: Dict[str, Any]
    if args.path == "synthetic" or args.format == "synthetic":
        spec = {"format": "synthetic"}
    else:
        path = Path(args.path)
        try:
            fmt = guess_format(path) if args.format == "auto" else args.format
        except (FileNotFoundError, OSError) as e:
            print(f"stair-pyg describe: error: {e}", file=sys.stderr)
            return 1
        spec = {"format": fmt, "path": str(path)}
        if args.split is not None and fmt in ("csv", "recbole"):
            spec["split"] = args.split
    try:
        summary = describe(load_dataset(spec))
    except (DataError, FileNotFoundError) as e:
        print(f"stair-pyg describe: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
