r"""``stair-pyg bench``: the profiling benchmark of ``benchmarks/profile.py``.

The benchmark scripts live in the repository's ``benchmarks/`` folder, beside the package, not
inside it. This command runs ``benchmarks/profile.py`` (same options: ``stair-pyg bench --help``)
when the package is used from a checkout (an editable install, or ``PYTHONPATH`` pointing at it);
an installation without that folder says so and how to get it.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

HELP = "Profiling benchmark: time and memory per model (see benchmarks/profile.py)"


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _load_profile() -> Optional[ModuleType]:
    r"""``benchmarks/profile.py`` of the checkout this package lives in, or :obj:`None`."""
    root = _repo_root()
    if not (root / "benchmarks" / "profile.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    # Imported as ``benchmarks.profile`` (never as a top-level ``profile``, which would shadow
    # the standard library module of that name).
    return importlib.import_module("benchmarks.profile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    module = _load_profile()
    if module is not None:
        module.add_arguments(parser)
    else:
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    module = _load_profile()
    if module is None:
        print("stair-pyg bench: the benchmark scripts are not installed with the package; they "
              f"live in the repository's benchmarks/ folder (looked for "
              f"{_repo_root() / 'benchmarks' / 'profile.py'}).\n"
              "Clone the repository and run `pip install -e .` there (or run "
              "`python benchmarks/profile.py` in the checkout).", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)
