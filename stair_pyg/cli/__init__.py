r"""The ``stair-pyg`` command.

Each sub-command lives in its own module of this package, exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command
runs, so that ``stair-pyg describe`` does not pay for what ``stair-pyg train`` needs.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = {
    "prepare": "Raw interactions + item text -> an MMRec-format folder with text features",
    "describe": "Summary of a dataset: users, items, interactions per split, cold start, features",
    "train": "Train a model from a YAML config (--set key=value overrides)",
    "evaluate": "Full-ranking evaluation of a checkpoint",
    "recommend": "Top-k recommendations from a checkpoint (seen items excluded)",
    "bench": "Profiling benchmark: time and memory per model, phase by phase",
}


def build_parser() -> argparse.ArgumentParser:
    from stair_pyg import __version__

    parser = argparse.ArgumentParser(
        prog="stair-pyg",
        description="STAIR multimodal recommendation on PyTorch Geometric.")
    parser.add_argument("--version", action="version", version=f"stair-pyg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints usage / version / error
        parser.print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(f"stair_pyg.cli.{name}")
    sub = argparse.ArgumentParser(prog=f"stair-pyg {name}", description=COMMANDS[name])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
