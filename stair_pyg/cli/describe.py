r"""``stair-pyg describe``: users, items, interactions per split, density, cold-start counts and,
per modality, the feature shape, coverage (items with a real feature row) and the rows filled for
items without text or image (from the ``features.json`` that ``stair-pyg prepare`` writes).

Examples::

    stair-pyg describe ../shared/data/scientific
    stair-pyg describe ratings.csv --format csv --split loo
    stair-pyg describe synthetic --json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, Optional



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="dataset folder or file, or 'synthetic' for the embedded "
                        "default")
    parser.add_argument("--format", choices=("auto", "mmrec", "recbole", "csv", "synthetic"),
                        default="auto", help="default: guessed from the files")
    parser.add_argument("--split", choices=("random", "loo", "column"), default=None,
                        help="split for recbole/csv input (default: random)")
    parser.add_argument("--encoding", default=None,
                        help="text encoding of recbole/csv input (default: utf-8; a UTF-8 "
                             "byte-order mark is accepted)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def guess_format(path: Path, encoding: Optional[str] = None) -> str:
    r"""``mmrec`` for a folder (or ``.inter``) whose tab-separated header has ``x_label``,
    ``recbole`` for a header of ``name:type`` fields, ``csv`` for any other file.

    A folder must hold an ``.inter`` file that is MMRec or RecBole; otherwise a
    :class:`~stair_pyg.data.DataError` names the file and says why it fits neither (empty,
    no ``x_label``, not tab-separated, fields without ``:type``). So does an ``.inter`` file
    whose header names ``x_label`` but is not MMRec's."""
    from stair_pyg.data import DataError
    from stair_pyg.data.files import check_file, read_text
    from stair_pyg.data.mmrec import header_problem as mmrec_problem
    from stair_pyg.data.recbole import header_problem as recbole_problem
    from stair_pyg.data.validate import find_data_file

    folder = path.is_dir()
    if folder:
        found = sorted(path.glob("*.inter"))
        if not found:
            raise DataError("no '*.inter' file in this folder (an MMRec or RecBole dataset is a "
                            "folder with '<name>.inter'; give a CSV/TSV table as a file)",
                            file=path)
        inter = find_data_file(path, None, ".inter")
    else:
        inter = check_file(path)
        if inter.suffix != ".inter":
            return "csv"
    first = read_text(inter, encoding, "--encoding").split("\n", 1)[0].rstrip("\r")
    mmrec = mmrec_problem(first)
    if mmrec is None:
        return "mmrec"
    recbole = recbole_problem(first)
    if recbole is None:
        return "recbole"
    names_label = "x_label" in re.split(r"[\t,;| ]+", first.strip())
    if not folder and first.strip() and not names_label:
        return "csv"  # a plain table named .inter
    raise DataError(f"neither an MMRec nor a RecBole .inter file. MMRec: {mmrec}. RecBole: "
                    f"{recbole}. (Use --format csv to read it as a plain table.)", file=inter,
                    line=1)


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError, describe, format_summary, load_dataset

    spec: Dict[str, Any]
    try:
        if args.path == "synthetic" or args.format == "synthetic":
            spec = {"format": "synthetic"}
        else:
            path = Path(args.path)
            fmt = guess_format(path, args.encoding) if args.format == "auto" else args.format
            spec = {"format": fmt, "path": str(path)}
            if args.split is not None and fmt in ("csv", "recbole"):
                spec["split"] = args.split
            if args.encoding is not None and fmt in ("csv", "recbole"):
                spec["encoding"] = args.encoding
        summary = describe(load_dataset(spec),
                           folder=spec.get("path") if spec["format"] == "mmrec" else None)
    except (DataError, OSError) as e:
        print(f"stair-pyg describe: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
