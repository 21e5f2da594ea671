r"""What the scripts of this folder share beyond :mod:`stair_pyg.profiling`: the checkout's
paths, their common options, and writing a section of ``RESULTS.md`` (imported as a sibling:
``python benchmarks/<script>.py`` puts this folder first on the import path)."""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from stair_pyg.profiling.measure import MemoryMeter, machine_note
from stair_pyg.profiling.report import update_results_section, write_json

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


def config_file(value: str) -> Path:
    r"""A ``--config`` value: a YAML file, or the name of a packaged config
    (:func:`stair_pyg.configs.find_config`)."""
    from stair_pyg.configs import find_config

    path = find_config(str(value))
    if path is None:
        raise SystemExit(f"error: --config {value}: no such file and no packaged config of that "
                         f"name")
    return path


def model_defaults(model: str) -> Dict[str, Any]:
    r"""The packaged defaults of :obj:`model` (what ``stair-pyg train --model NAME`` merges)."""
    from stair_pyg.configs import model_config_path

    path = model_config_path(model)
    if path is None:
        raise SystemExit(f"error: no packaged defaults for model '{model}'")
    return load_config_file(path)

_COMMON = {
    "--device": dict(default="auto", help="auto | cpu | cuda (default: auto)"),
    "--threads": dict(type=int, default=None, help="torch.set_num_threads"),
    "--out": dict(default=None, help="output folder (default: build/bench/<script>-<device>)"),
    "--write-results": dict(action="store_true", help="also write this run's section of "
                            "benchmarks/RESULTS.md"),
    "--quick": dict(action="store_true", help="tiny sizes, seconds (a smoke run)"),
}


def common_arguments(parser: argparse.ArgumentParser, *flags: str) -> argparse.ArgumentParser:
    r"""Adds the options every script spells the same way (all of them without :obj:`flags`)."""
    for flag in flags or _COMMON:
        parser.add_argument(flag, **_COMMON[flag])
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
    r"""A section's heading (:obj:`title`, its ``{dev}`` replaced by GPU or CPU) and its sentence
    on the machine: absolute figures from a GPU run, on CPU the conditions of the run and
    :obj:`cpu_note` (what the CPU figures are)."""
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
    r"""Writes ``results.json`` and ``table.md`` (``report(result, absolute=True)``) to
    :obj:`out` and prints the table; with :obj:`write`, also the section
    ``<result["script"]>:<section>`` of ``RESULTS.md``: the :func:`intro`, the lines
    :obj:`before`, the report (absolute on a GPU, relative on CPU), the lines :obj:`after` and
    the command that reproduces it."""
    write_json(out / "results.json", result)
    table = report(result, True)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if write:
        body = intro(title, result, cpu_note) + ["", *before, report(
            result, result["device"].startswith("cuda")), "", *after,
            f"Reproduce: `{reproduce} --write-results`"]
        write_section(result["script"], section, body)


def train_run(config: Dict[str, Any], dataset) -> Dict[str, Any]:
    r"""One :func:`stair_pyg.train.run_experiment` of :obj:`config` on :obj:`dataset`: best
    epoch, epochs run, seconds per epoch, wall seconds, peak memory (CUDA peak allocated; CPU
    growth of the peak RSS) and the numeric validation and test metrics."""
    from stair_pyg.train import resolve_device, run_experiment

    meter = MemoryMeter(resolve_device(config["train"].get("device", "auto")))
    start = time.perf_counter()
    with meter:
        result = run_experiment(config, out_dir=None, progress=False, dataset=dataset)
    numbers = lambda d: {k: float(v) for k, v in d.items() if isinstance(v, (int, float))}  # noqa
    return {"seed": config["train"].get("seed"), "best_epoch": result["best_epoch"],
            "epochs_run": len(result.get("history", [])) or None,
            "epoch_seconds": float(result["epoch_seconds"]),
            "wall_seconds": time.perf_counter() - start, "peak_memory_bytes": meter.peak_bytes(),
            "memory": meter.result, "valid": numbers(result["valid"]),
            "test": numbers(result["test"])}


def load_config_file(path: Path) -> Dict[str, Any]:
    r"""An experiment YAML file; a missing file stops the script with a one-line message."""
    import yaml

    if not Path(path).is_file():
        raise SystemExit(f"config file '{path}' does not exist")
    return yaml.safe_load(Path(path).read_text()) or {}


def dataset_section(path: Path) -> Dict[str, Any]:
    r"""The ``dataset`` section of the config :obj:`path`, a relative ``path`` in it made
    absolute (looked up from the current folder, the config's folder and the checkout root)."""
    dataset = dict(load_config_file(path).get("dataset", {}))
    if "path" in dataset and not Path(dataset["path"]).is_absolute():
        for root in (Path.cwd(), Path(path).parent, REPO_ROOT):
            if (root / dataset["path"]).exists():
                dataset["path"] = str((root / dataset["path"]).resolve())
                break
    return dataset
