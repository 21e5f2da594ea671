r"""The ``stair-pyg`` command.

Each sub-command lives in its own module of this package, exposing ``add_arguments(parser)`` and
``run(args) -> int``; its one-line help is its entry in :data:`COMMANDS` (the one place for it).
Modules are imported only when their command runs, so that ``stair-pyg describe`` does not pay
for what ``stair-pyg train`` needs. Argument types shared by the commands (positive integers,
output paths, devices) are in :mod:`stair_pyg.cli._args`.

While a command runs, the library's own warnings (:class:`stair_pyg.data.DataWarning` notices
about the input data, and any other :class:`UserWarning` that stair-pyg emits) are shown as one
plain ``note: <message>`` line on stderr, without the source line that Python's default display
adds; other warnings are shown as usual. The library itself keeps emitting ordinary
:mod:`warnings`, for programs to filter or record.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional

_PACKAGE = str(Path(__file__).resolve().parents[1])

COMMANDS = {
    "prepare": "Raw interactions + item text and images (Amazon data, a product table) -> an "
               "MMRec-format folder with text and image features",
    "describe": "Summary of a dataset: users, items, interactions per split, cold start, features",
    "train": "Train a model from a YAML config (--set key=value overrides)",
    "evaluate": "Full-ranking evaluation of a checkpoint",
    "recommend": "Top-k recommendations from a checkpoint (seen items excluded)",
    "add-items": "Add items with features but no interactions to a trained model",
    "export": "Final user/item embeddings (.npy) and, with faiss, an inner-product index",
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


def is_library_warning(category: type, filename: str) -> bool:
    r"""Whether a warning is stair-pyg's own: a :class:`UserWarning` whose class is defined in
    the package (:class:`~stair_pyg.data.DataWarning`) or that is raised from its source."""
    if not issubclass(category, UserWarning):
        return False
    if getattr(category, "__module__", "").split(".")[0] == "stair_pyg":
        return True
    try:
        return str(Path(filename).resolve()).startswith(_PACKAGE)
    except (OSError, ValueError):
        return False


def _notice_hook(previous: Callable[..., Any]) -> Callable[..., None]:
    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: Optional[str] = None) -> None:
        if is_library_warning(category, filename):
            if os.environ.get("RANK", "0") != "0":
                return  # data-parallel training: every rank loads the same data; rank 0 tells
            text = " ".join(str(message).split("\n"))
            print(f"note: {text}", file=sys.stderr if file is None else file, flush=True)
        elif previous is getattr(warnings, "_showwarning_orig", None) and \
                hasattr(warnings, "_showwarnmsg_impl"):
            # Inside warnings.catch_warnings(record=True): keep recording the others.
            warnings._showwarnmsg_impl(  # type: ignore[attr-defined]
                warnings.WarningMessage(message, category, filename, lineno, file, line))
        else:
            previous(message, category, filename, lineno, file, line)
    return show


def show_library_notices() -> Callable[..., Any]:
    r"""From now on, shows stair-pyg's own warnings as one ``note: <message>`` line each (see
    the module docstring), as every command does while it runs; the benchmark scripts call it
    once. Returns the previous :func:`warnings.showwarning`, to restore it."""
    previous = warnings.showwarning
    warnings.showwarning = _notice_hook(previous)
    return previous


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints usage / version / error
        parser.print_help()
        return 2
    name = argv[0]
    module = importlib.import_module(f"stair_pyg.cli.{name.replace('-', '_')}")
    sub = argparse.ArgumentParser(prog=f"stair-pyg {name}", description=COMMANDS[name])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    previous = show_library_notices()
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
