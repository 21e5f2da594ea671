r"""``stair-pyg train``: train a model from a YAML configuration.

Examples::

    stair-pyg train --config scientific                # a packaged config, by name
    stair-pyg train --config synthetic --set train.epochs=20
    stair-pyg train --config scientific --model freedom   # + FREEDOM's packaged defaults
    stair-pyg train --config my.yaml --config my_model.yaml   # files of your own, merged in order
    stair-pyg train --out runs/scientific-stair --resume      # continue an interrupted run
    stair-pyg train --config scientific --nproc 4      # 4 data-parallel processes
    torchrun --nproc-per-node 4 "$(command -v stair-pyg)" train --config scientific

``--config NAME`` is a file when one of that name exists, else (a bare name, ``.yaml`` optional)
the packaged config of :mod:`stair_pyg.configs`; ``--model NAME`` merges the packaged
``stair_pyg/configs/models/NAME.yaml`` after the ``--config`` files. Both are read from the
installed package (``importlib.resources``), so they work from any directory; to change a model's
defaults, pass a file of your own as a later ``--config``. The packaged dataset configs hold
``dataset.path: ../shared/data/...``, relative to the current directory (the checkout root), or
given with ``--set dataset.path=...``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stair_pyg.cli._args import config_file, device, output_dir, positive_float, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=config_file, action="append", metavar="FILE|NAME",
                        help="YAML config (dataset, model, train sections), or the name of a "
                             "packaged one (synthetic, scientific, ml100k, ml100k-tuned); repeat "
                             "to merge several in order (a later model section naming another "
                             "model replaces the earlier one); with --resume it defaults to "
                             "OUT/config.yaml")
    parser.add_argument("--model", metavar="NAME",
                        help="train model NAME with its packaged defaults "
                             "(stair_pyg/configs/models/NAME.yaml, merged after --config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config entry, dotted key and YAML value, e.g. "
                             "--set train.lr=1e-4 --set model.knn_k={text: 3} (repeatable)")
    parser.add_argument("--out", type=output_dir,
                        help="output folder, created with its parents if missing (default: "
                             "runs/<config name>-<model>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint.pt")
    parser.add_argument("--device", type=device, metavar="{auto,cpu,cuda,cuda:N}",
                        help="overrides train.device (auto: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar and no per-epoch lines")
    parser.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                        help="data-parallel training in N local processes (torch.distributed on "
                             "127.0.0.1; one per GPU on CUDA); under torchrun leave it at 1")
    parser.add_argument("--backend", choices=["gloo", "nccl"],
                        help="torch.distributed backend (default: nccl on CUDA, gloo on CPU)")
    parser.add_argument("--eval-memory", type=positive_float, metavar="GIB",
                        help="overrides train.eval_memory_gib: the memory budget of one block of "
                             "users in the full-ranking evaluation (the block size follows)")


def run(args: argparse.Namespace) -> int:
    from stair_pyg.data import DataError
    from stair_pyg.train import (CheckpointError, ConfigError, DistributedError, load_config,
                                 run_experiment)
    from stair_pyg.train.trainer import metrics_markdown

    config_paths = list(args.config or [])
    if not config_paths:
        if not (args.resume and args.out is not None):
            print("error: --config is required (or --resume with --out)", file=sys.stderr)
            return 2
        config_paths = [args.out / "config.yaml"]
    if args.model:
        from stair_pyg.configs import model_config_path, model_names

        model_path = model_config_path(args.model)
        if model_path is None:
            print(f"error: --model {args.model}: no packaged defaults for that model (models: "
                  f"{', '.join(model_names())})", file=sys.stderr)
            return 2
        config_paths.append(model_path)
    config_path = config_paths[0]
    overrides = list(args.overrides)
    if args.eval_memory is not None:
        overrides.append(f"train.eval_memory_gib={args.eval_memory}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    try:
        config = load_config(config_paths, overrides)
    except ConfigError as e:
        hint = ""
        if "'dataset.path'" in str(e) and _is_packaged(config_paths[0]):
            hint = ("\nhint: a packaged config's dataset.path is taken from the current "
                    "directory (the checkout root); elsewhere give --set dataset.path=FOLDER")
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    train_device = str(config.get("train", {}).get("device", "auto"))
    if train_device.startswith("cuda") and not _cuda_available():
        print(f"error: train.device is '{train_device}' but CUDA is not available here; use "
              f"--device cpu or auto", file=sys.stderr)
        return 2
    out = args.out
    if out is None:
        try:
            out = output_dir(str(Path("runs") / f"{Path(config_path).stem}-"
                                                f"{config['model']['name']}"))
        except argparse.ArgumentTypeError as e:
            print(f"error: default output folder: {e}; give --out", file=sys.stderr)
            return 2
    if args.nproc != 1:
        return _launch(args, config, out)
    try:
        result = run_experiment(config, out_dir=out, resume=args.resume,
                                progress=not args.no_progress, backend=args.backend)
    except (ConfigError, CheckpointError, DataError, DistributedError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # under torchrun / --nproc: rank 0 reports
        return 0
    print(metrics_markdown(result))
    print(f"results in {out}/ (metrics.json, metrics.md, history.jsonl, curves.png, best.pt)")
    return 0


def _is_packaged(path: Path) -> bool:
    from stair_pyg.configs import config_names, config_path

    return any(Path(path) == config_path(name) for name in config_names())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _launch(args: argparse.Namespace, config: dict, out: Path) -> int:
    r"""``--nproc N``: runs this command in N processes (without ``--nproc``) on the resolved
    configuration, through :func:`stair_pyg.train.distributed.launch`."""
    import tempfile

    from stair_pyg.train import save_config
    from stair_pyg.train.distributed import launch

    if "RANK" in os.environ:
        print("error: --nproc starts its own processes; under torchrun leave it out",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="stair-pyg-launch-") as tmp:
        config_path = Path(tmp) / "config.yaml"
        save_config(config, config_path)
        command = [sys.executable, "-c", "import sys; from stair_pyg.cli import main; "
                   "sys.exit(main())", "train", "--config", str(config_path), "--out", str(out)]
        command += ["--resume"] if args.resume else []
        command += ["--no-progress"] if args.no_progress else []
        command += ["--backend", args.backend] if args.backend else []
        return launch(command, args.nproc)
