r"""``stair-pyg bench``: time and memory of every model, phase by phase
(:mod:`stair_pyg.profiling.bench`; ``stair-pyg bench --help`` lists the options). It is part of
the package and runs from any installation; the checkout's ``benchmarks/profile_models.py`` adds
``--all`` and ``--write-results`` (the sections of ``benchmarks/RESULTS.md``) on top of it."""
from __future__ import annotations

import argparse



def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stair_pyg.profiling.bench import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from stair_pyg.profiling.bench import run as profile

    return profile(args)
