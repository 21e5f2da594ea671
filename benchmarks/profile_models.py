r"""Time and memory of every model on one dataset, phase by phase: ``stair-pyg bench``
(:mod:`stair_pyg.profiling.bench`, same options) plus ``--write-results`` (the section
``profile:<dataset>-<device>`` of ``RESULTS.md``) and ``--all`` (every profiling benchmark in
turn: this on ``sports``, ``scaling.py``, ``bench_propagation.py``, ``bench_modality.py``; with
``--quick`` their quick modes, RESULTS.md untouched). Named datasets are looked up in the
checkout's ``../shared/data``."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from _results import BENCH_DIR, DATA_ROOT, REPO_ROOT, intro, keep_figure, write_section
from stair_pyg.profiling import bench


def write_results(result: Dict[str, Any]) -> None:
    dataset, device = result["dataset"]["name"], result["device"].split(":")[0]
    name = f"{Path(dataset).name}-{device}"
    body = intro(f"Profile: `{dataset}` on " "{dev}", result, "CPU figures are ratios to our "
                 "`lightgcn` in the same run (absolute CPU times depend on the machine and its "
                 f"load; run the command to see them). Measured {result['environment']['time']}.")
    spread = [f"{r['model']} {max(r['epoch_s_repeats']) / min(r['epoch_s_repeats']):.2f}"
              for r in result["models"] if len(r.get("epoch_s_repeats", [])) > 1]
    if spread and device == "cpu":
        body += ["", "Load noise, max/min epoch time over the repeats of each model: "
                 + ", ".join(spread) + ". Ratios closer to 1 than this spread are not resolved "
                 "by this run."]
    max_batches = result["settings"].get("max_batches")
    figure = keep_figure(Path(result["out"]) / "profile.png", f"profile-{name}.png")
    body += ["", bench.markdown_report(result, absolute=device == "cuda"), "",
             f"![profile]({figure})", "",
             f"Reproduce: `python benchmarks/profile_models.py --dataset {dataset} --device "
             f"{device}" + (f" --max-batches {max_batches}" if max_batches else "")
             + " --write-results`"]
    write_section("profile", name, body)


def run_all(args: argparse.Namespace) -> int:
    quick = ["--quick"] if args.quick else ["--write-results"]
    steps = [["profile_models.py", "--dataset", "synthetic" if args.quick else "sports",
              *([] if args.quick else ["--max-batches", "20"])],
             ["scaling.py"], ["bench_propagation.py"], ["bench_modality.py"]]
    rc = 0
    for script, *rest in steps:
        argv = [str(BENCH_DIR / script), *rest, *quick, "--device", args.device]
        print("[profile --all] running", " ".join(argv), flush=True)
        rc |= subprocess.run([sys.executable, *argv]).returncode
    return rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_arguments(parser)
    parser.add_argument("--write-results", action="store_true",
                        help="also write this run's section of benchmarks/RESULTS.md")
    parser.add_argument("--all", action="store_true", help="run every profiling benchmark")
    parser.set_defaults(data_root=str(DATA_ROOT))
    args = parser.parse_args(argv)
    if args.all:
        return run_all(args)
    args = bench.finalize_args(args)
    if args.out is None:  # in the checkout's build/, wherever the script runs from
        from stair_pyg.train import resolve_device

        args.out = str(REPO_ROOT / "build" / "bench" /
                       f"profile-{Path(args.dataset).name}-{resolve_device(args.device).type}")
    result = bench.profile_all(args)
    if args.write_results:
        write_results(result)
    return 1 if any("error" in r for r in result["models"]) else 0


if __name__ == "__main__":
    sys.exit(main())
