r"""What the scripts of this folder share beyond :mod:`stair_pyg.profiling`: the checkout's
paths, their common options, and writing a section of ``RESULTS.md`` (imported as a sibling:
``python benchmarks/<script>.py`` puts this folder first on the import path)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from stair_pyg.cli import show_library_notices
from stair_pyg.profiling.measure import machine_note
from stair_pyg.profiling.report import update_results_section, write_json

# Every script here is an entry point, so the library's data notices read as the CLI shows them:
# one "note: ..." line each, not a warning followed by a line of library source.
show_library_notices()

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


def common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add = parser.add_argument
    add("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    add("--threads", type=int, default=None, help="torch.set_num_threads")
    add("--out", default=None, help="output folder (default: build/bench/<script>-<device>)")
    add("--write-results", action="store_true", help="also write its section of RESULTS.md")
    add("--quick", action="store_true", help="tiny sizes, seconds (a smoke run)")
    return parser


def out_dir(args: argparse.Namespace, name: str) -> Path:
    path = Path(args.out or REPO_ROOT / "build" / "bench" / name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_figure(src: Path, name: str) -> str:
    r"""Copies the plot :obj:`src` to ``benchmarks/results/<name>``; returns its path relative
    to ``RESULTS.md``."""
    dst = BENCH_DIR / "results" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.relative_to(BENCH_DIR).as_posix()


def intro(title: str, result: Dict[str, Any], cpu_note: str) -> List[str]:
    r"""A section's heading (its ``{dev}`` replaced by GPU or CPU) and its sentence on the
    machine: absolute figures from a GPU, on CPU the run's conditions and :obj:`cpu_note`."""
    cuda = result["device"].startswith("cuda")
    note = (f"Absolute figures from `{result['device_name']}`, {result['environment']['time']}."
            if cuda else f"{machine_note(result['environment'])} {cpu_note}")
    return [f"### {title.replace('{dev}', 'GPU' if cuda else 'CPU')}", "", note]


def write_section(script: str, name: str, body: List[str]) -> Path:
    path = update_results_section(RESULTS_MD, script, name, "\n".join(body))
    print(f"[{script}] wrote section '{script}:{name}' of {path}")
    return path


def publish(result: Dict[str, Any], out: Path, report: Callable[[Dict[str, Any], bool], str],
            write: bool, section: str, title: str, cpu_note: str, reproduce: str,
            before: Sequence[str] = (), after: Sequence[str] = ()) -> None:
    r"""Writes ``results.json`` and ``table.md`` (absolute figures) to :obj:`out`; with
    :obj:`write` also the section ``<script>:<section>`` of ``RESULTS.md`` (absolute on a GPU,
    relative on CPU), ending with the command that reproduces it."""
    write_json(out / "results.json", result)
    table = report(result, True)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if write:
        body = intro(title, result, cpu_note) + ["", *before, report(
            result, result["device"].startswith("cuda")), "", *after,
            f"Reproduce: `{reproduce} --write-results`"]
        write_section(result["script"], section, body)


def peer_env(threads: int, src: Optional[Path] = None, **extra: str) -> Dict[str, str]:
    r"""The environment of a peer toolbox's process (its own venv): :obj:`threads` OpenMP/MKL
    threads, and on its import path only :obj:`src` (its checkout), never this project's
    ``PYTHONPATH``; :obj:`extra` variables on top."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **extra)
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run_logged(cmd: Sequence[str], log: Path, what: str, **kwargs: Any) -> Tuple[str, float]:
    r"""Runs a peer toolbox's command (:func:`subprocess.run`, :obj:`kwargs` passed on), keeps
    its output in :obj:`log` and returns ``(output, wall seconds)``; a failure raises
    :class:`RuntimeError` naming :obj:`what`, the log and the output's end."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    output = proc.stdout + "\n" + proc.stderr
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); its output is in "
                           f"{log}:\n{output[-3000:]}")
    return output, seconds
