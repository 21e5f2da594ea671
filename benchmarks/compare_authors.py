r"""stair-pyg against the authors' STAIR (``yhhe2004/STAIR``, run under FreeRec), training time
per epoch on one dataset, alternating the two in one run.

Each of ``--rounds`` rounds runs the authors' ``main.py`` for ``--epochs`` epochs (a subprocess
in the FreeRec environment, ``--freerec-python``), then stair-pyg for as many epochs
(:func:`stair_pyg.train.run_experiment` on the packaged ``scientific`` configuration), both with
``--threads`` torch threads (default 1) and the same hyper-parameters: embedding 64, 3 layers,
batch 1024, lr 1e-3, weight decay 0.3, gamma 0.1, a text kNN graph with k = 5, seed 1. It
reports each side's median training seconds per epoch over all the epochs of all rounds, their
ratio, and the validation NDCG@20 after the last epoch of each round, a check that both train
the same thing (their random streams differ, so the figures need not agree to the last digit; on
``scientific`` after 3 epochs both read 0.0882).

What each side's per-epoch time includes (evaluation excluded on both):

* authors: the wall time of one call of ``CoachForSTAIR.train_per_epoch``, timed by the wrapper
  this script generates: iterating FreeRec's training pipe (shuffling the pairs, sampling a
  negative per pair, batching into tensors; with ``--authors-workers 0``, the default, in the
  training process itself), the forward pass, the backward pass, the optimizer step (the
  authors' ``AdamWSEvo``, which smooths the item gradients over the modality graph) and
  FreeRec's loss monitor;
* stair-pyg: ``history[i]["train_seconds"]`` of :class:`stair_pyg.train.Trainer`: the
  permutation and negative sampling of the epoch, the forward and backward passes and the
  optimizer step of every batch.

Setting up the authors' side (outside the repository; nothing of it is committed)::

    python3.11 -m venv /work/venvs/freerec
    /work/venvs/freerec/bin/pip install torch==2.13.0
    echo 'torch==2.13.0' > /tmp/torch-pin.txt
    /work/venvs/freerec/bin/pip install -c /tmp/torch-pin.txt 'freerec[all]==0.9.7'
    /work/venvs/freerec/bin/pip install --no-deps torchdata==0.7.0
    # the authors' repository yhhe2004/STAIR (its main.py, configs/, optimizers/) in
    # /work/authors-stair

then ``FREEREC_PYTHON=/work/venvs/freerec/bin/python STAIR_AUTHORS_SRC=/work/authors-stair``
(or ``--freerec-python`` / ``--authors-src``). Where either is missing, the script says how to
set it up and exits 0.

The dataset (MMRec format: ``<name>.inter`` with ``x_label`` 0/1/2 for train/valid/test and
``text_feat.npy``) is converted to FreeRec's layout under ``build/compare_authors/``:
``Processed/<name>/{train,valid,test}.txt`` (tab-separated ``USER ITEM TIMESTAMP``, the same
ids) and ``textual_modality.pkl`` (the text features, a float32 tensor). FreeRec finds it as a
generic ``RecDataSet`` (``--root build/compare_authors --dataset <name> --tasktag MATCHING``).

FreeRec 0.9.7 renamed ``--beta1``/``--beta2`` to ``--optim-first-moment-decay``/
``--optim-second-moment-decay``; the authors' ``main.py`` still reads ``cfg.beta1`` and
``cfg.beta2``. The wrapper accepts both spellings and sets ``cfg.beta1``/``cfg.beta2`` from the
new options.

Examples::

    python benchmarks/compare_authors.py --epochs 3 --rounds 2
    python benchmarks/compare_authors.py --epochs 5 --rounds 3 --write-results

Writes ``results.json`` to ``--out`` (default ``build/bench/compare_authors``); with
``--write-results`` also ``benchmarks/results/compare_authors_<dataset>.json`` and the section
``compare_authors:<dataset>`` of ``RESULTS.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _results import (BENCH_DIR, DATA_ROOT, REPO_ROOT, common_arguments, out_dir, peer_env,
                      run_logged, write_section)

SCRIPT = "compare_authors"
FREEREC_VERSION = "0.9.7"
TORCHDATA_VERSION = "0.7.0"
TORCH_VERSION = "2.13.0"
AUTHORS_CONFIG = "configs/Amazon2014Baby_550_MMRec.yaml"
WORK_DIR = REPO_ROOT / "build" / "compare_authors"
MARK = "[compare_authors]"

# The shared hyper-parameters (the packaged scientific config has the same).
HPARAMS = {"embedding_dim": 64, "num_layers": 3, "batch_size": 1024, "lr": 1e-3,
           "weight_decay": 0.3, "gamma": 0.1, "knn_k": 5, "seed": 1}


def setup_instructions(python: Optional[str], src: Optional[str]) -> str:
    r"""How to make the authors' side available: the exact commands."""
    venv = "/work/venvs/freerec"
    return "\n".join([
        "The authors' STAIR runs under FreeRec, in its own environment (outside this repo):",
        f"  python3.11 -m venv {venv}",
        f"  {venv}/bin/pip install torch=={TORCH_VERSION}",
        f"  echo 'torch=={TORCH_VERSION}' > /tmp/torch-pin.txt   # keep pip off other torch builds",
        f"  {venv}/bin/pip install -c /tmp/torch-pin.txt 'freerec[all]=={FREEREC_VERSION}'",
        f"  {venv}/bin/pip install --no-deps torchdata=={TORCHDATA_VERSION}",
        "  and the authors' repository yhhe2004/STAIR (main.py, configs/, optimizers/) in",
        "  /work/authors-stair (its data/*.zip is not needed: the script converts --dataset);",
        f"then pass --freerec-python {venv}/bin/python --authors-src /work/authors-stair",
        "(or set FREEREC_PYTHON and STAIR_AUTHORS_SRC).",
        f"Now: --freerec-python={python or '(unset)'}, --authors-src={src or '(unset)'}.",
    ])


def check_authors_side(python: Optional[str], src: Optional[str]) -> Optional[str]:
    r"""``None`` when the FreeRec interpreter and the authors' ``main.py`` are usable, else why
    not (one line)."""
    if not python:
        return "no FreeRec interpreter given (--freerec-python / FREEREC_PYTHON)"
    if not src:
        return "no authors' source given (--authors-src / STAIR_AUTHORS_SRC)"
    if not Path(python).exists():
        return f"FreeRec interpreter '{python}' does not exist"
    if not (Path(src) / "main.py").is_file() or not (Path(src) / AUTHORS_CONFIG).is_file():
        return f"'{src}' holds no main.py and {AUTHORS_CONFIG} (the authors' STAIR)"
    probe = subprocess.run(
        [python, "-c", "import freerec, torchdata, sklearn; print(freerec.__version__)"],
        capture_output=True, text=True, env=_child_env(1))
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"'{python}' cannot import freerec/torchdata/scikit-learn: {tail}"
    return None


# ---------------------------------------------------------------------------------------------
# Data: MMRec format -> FreeRec's layout


def read_mmrec(folder: Path, name: Optional[str] = None) -> Dict[str, List[List[int]]]:
    r"""The interactions of an MMRec folder, ``{"train"|"valid"|"test": [[user, item, ts]]}``
    in file order (``x_label`` 0/1/2)."""
    name = name or folder.name
    splits: Dict[str, List[List[int]]] = {"train": [], "valid": [], "test": []}
    modes = {0: "train", 1: "valid", 2: "test"}
    with open(folder / f"{name}.inter", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        for row in reader:
            ts = int(float(row["timestamp"])) if row.get("timestamp") not in (None, "") else 0
            splits[modes[int(row["x_label"])]].append(
                [int(row["userID"]), int(row["itemID"]), ts])
    return splits


def convert_dataset(folder: Path, root: Path, name: Optional[str] = None) -> Path:
    r"""Writes the MMRec dataset :obj:`folder` in FreeRec's layout,
    ``root/Processed/<name>/{train,valid,test}.txt`` and ``textual_modality.pkl``; returns that
    folder. A folder converted from the same source files is reused; any other is replaced
    (FreeRec caches its parsed chunks there, which must not outlive the text files).

    FreeRec counts users and items as the distinct ids in the three files, and the authors' code
    copies the feature rows onto item ``i``'s embedding: every user id ``0..U-1`` and item id
    ``0..I-1`` (``I`` = the feature rows) must occur, or :class:`ValueError` is raised."""
    import numpy as np
    import torch

    name = name or folder.name
    target = root / "Processed" / name
    inter, feats = folder / f"{name}.inter", folder / "text_feat.npy"
    stamp = {"source": str(folder.resolve()),
             "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in (inter, feats)}}
    marker = target / "converted_from.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target
    splits = read_mmrec(folder, name)
    x = np.load(feats).astype(np.float32)
    users = {u for rows in splits.values() for u, _, _ in rows}
    items = {i for rows in splits.values() for _, i, _ in rows}
    if users != set(range(len(users))):
        raise ValueError(f"{inter}: user ids are not 0..{len(users) - 1} (FreeRec re-counts them)")
    if items != set(range(x.shape[0])):
        raise ValueError(f"{inter}: the item ids are not exactly 0..{x.shape[0] - 1}, the rows "
                         f"of {feats.name} ({len(items)} distinct ids)")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for mode, rows in splits.items():
        rows = sorted(rows, key=lambda r: (r[0], r[2]))  # by user, then time, as FreeRec saves
        with open(target / f"{mode}.txt", "w") as f:
            f.write("USER\tITEM\tTIMESTAMP\n")
            f.writelines(f"{u}\t{i}\t{t}\n" for u, i, t in rows)
    with open(target / "textual_modality.pkl", "wb") as f:
        pickle.dump(torch.from_numpy(x), f)
    marker.write_text(json.dumps(stamp))
    return target


# ---------------------------------------------------------------------------------------------
# The authors' side: a generated wrapper around their main.py

WRAPPER = r'''
"""Generated by stair-pyg's benchmarks/compare_authors.py: runs the authors' STAIR main.py with
--beta1/--beta2 aliased to FreeRec 0.9.7's renamed options and times each training epoch."""
import importlib.util, os, sys, time

src, argv = sys.argv[1], sys.argv[2:]
ALIASES = {"--beta1": "--optim-first-moment-decay", "--beta2": "--optim-second-moment-decay"}
renamed = []
for arg in argv:
    key, eq, val = arg.partition("=")
    renamed.append(ALIASES.get(key, key) + eq + val)
sys.argv = [os.path.join(src, "main.py")] + renamed  # main.py imports optimizers/: PYTHONPATH=src

import torch
torch.set_num_threads(int(os.environ.get("COMPARE_AUTHORS_THREADS", "1")))
import freerec.parser

_compile = freerec.parser.Parser.compile
def compile_with_aliases(self, *args, **kwargs):
    out = _compile(self, *args, **kwargs)
    self["beta1"] = self["optim_first_moment_decay"]
    self["beta2"] = self["optim_second_moment_decay"]
    return out
freerec.parser.Parser.compile = compile_with_aliases

spec = importlib.util.spec_from_file_location("stair_authors_main", os.path.join(src, "main.py"))
authors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(authors)  # parses sys.argv (cfg.compile) as the script does

_train_per_epoch = authors.CoachForSTAIR.train_per_epoch
def timed_train_per_epoch(self, epoch):
    start = time.perf_counter()
    out = _train_per_epoch(self, epoch)
    seconds = time.perf_counter() - start
    print(f"[compare_authors] train_per_epoch epoch={epoch} seconds={seconds:.6f}", flush=True)
    return out
authors.CoachForSTAIR.train_per_epoch = timed_train_per_epoch
print(f"[compare_authors] threads={torch.get_num_threads()} freerec={freerec.__version__}",
      flush=True)
authors.main()
'''

_EPOCH_RE = re.compile(r"\[compare_authors\] train_per_epoch epoch=(\d+) seconds=([0-9.eE+-]+)")
_VALID_RE = re.compile(r"\[Coach\] >>> VALID\s*@Epoch: (\d+)[^\n]*")
_METRIC_RE = re.compile(r"([A-Za-z]+@\d+|LOSS) Avg: (-?[0-9.]+(?:[eE][+-]?\d+)?)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def parse_authors_log(text: str) -> Dict[str, Any]:
    r"""The wrapper's epoch timings and FreeRec's validation lines from a run's output:
    ``{"train_seconds": [s, ...], "valid": {epoch: {"NDCG@20": v, ...}}}`` (epochs in order,
    metric names in upper case as FreeRec prints them)."""
    text = _ANSI_RE.sub("", text)
    seconds = [(int(e), float(s)) for e, s in _EPOCH_RE.findall(text)]
    valid: Dict[int, Dict[str, float]] = {}
    for m in _VALID_RE.finditer(text):  # the first line of an epoch (FreeRec repeats the best)
        valid.setdefault(int(m.group(1)),
                         {k.upper(): float(v) for k, v in _METRIC_RE.findall(m.group(0))})
    return {"train_seconds": [s for _, s in sorted(seconds)], "valid": valid}


def authors_command(python: str, wrapper: Path, src: Path, root: Path, name: str, epochs: int,
                    workers: int, run_id: str) -> List[str]:
    h = HPARAMS
    return [python, str(wrapper), str(src), "--config", str(src / AUTHORS_CONFIG), "-m", "STAIR",
            "--root", str(root), "--dataset", name, "--tasktag", "MATCHING",
            "--mfiles", "textual_modality.pkl", "--num-neighbors", str(h["knn_k"]),
            "--epochs", str(epochs), "--eval-freq", str(epochs + 1),  # valid at 0 and at the end
            "--num-workers", str(workers), "--device", "cpu", "--seed", str(h["seed"]),
            "--embedding-dim", str(h["embedding_dim"]), "--num-layers", str(h["num_layers"]),
            "--batch-size", str(h["batch_size"]), "--lr", str(h["lr"]),
            "--weight-decay", str(h["weight_decay"]), "--gamma", str(h["gamma"]),
            "--beta1", "0.9", "--beta2", "0.999", "--id", run_id]


def _child_env(threads: int, src: Optional[Path] = None) -> Dict[str, str]:
    r"""The FreeRec side's environment (:func:`peer_env`): :obj:`threads` threads, and on its
    import path only the authors' checkout :obj:`src` (for their ``optimizers`` package)."""
    return peer_env(threads, src, COMPARE_AUTHORS_THREADS=str(threads))


def run_authors(python: str, src: Path, root: Path, name: str, epochs: int, threads: int,
                workers: int, run_id: str, log_dir: Path) -> Dict[str, Any]:
    wrapper = WORK_DIR / "run_authors_stair.py"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(WRAPPER)
    cwd = WORK_DIR / "runs"  # FreeRec writes ./logs and ./infos
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = authors_command(python, wrapper, src, root, name, epochs, workers, run_id)
    output, wall = run_logged(cmd, log_dir / f"{run_id}.log", "the authors' run", cwd=cwd,
                              env=_child_env(threads, src))
    parsed = parse_authors_log(output)
    if len(parsed["train_seconds"]) != epochs:
        raise RuntimeError(f"expected {epochs} timed epochs in the authors' output, found "
                           f"{len(parsed['train_seconds'])} ({log_dir / (run_id + '.log')})")
    last = parsed["valid"].get(epochs, {})
    return {"train_seconds": parsed["train_seconds"], "valid_ndcg20": last.get("NDCG@20"),
            "valid_recall20": last.get("RECALL@20"), "wall_seconds": wall,
            "command": " ".join(cmd[1:])}


# ---------------------------------------------------------------------------------------------
# Our side


def our_config(dataset: Path, epochs: int) -> Dict[str, Any]:
    from stair_pyg.configs import config_path
    from stair_pyg.train import load_config

    cfg = load_config([config_path("scientific")])
    cfg["dataset"] = {"format": "mmrec", "path": str(dataset)}
    cfg["train"].update(epochs=epochs, eval_every=epochs, patience=None, checkpoint_every=0,
                        device="cpu", seed=HPARAMS["seed"])
    return cfg


def run_ours(cfg: Dict[str, Any], ds) -> Dict[str, Any]:
    from stair_pyg.train import run_experiment

    start = time.perf_counter()
    result = run_experiment(cfg, out_dir=None, progress=False, dataset=ds)
    wall = time.perf_counter() - start
    last = result["history"][-1].get("valid", {})
    return {"train_seconds": [float(r["train_seconds"]) for r in result["history"]],
            "valid_ndcg20": last.get("NDCG@20"), "valid_recall20": last.get("Recall@20"),
            "wall_seconds": wall}


def check_config(cfg: Dict[str, Any]) -> None:
    r"""The packaged configuration must hold the shared hyper-parameters."""
    m, t = cfg["model"], cfg["train"]
    got = {"embedding_dim": m["embedding_dim"], "num_layers": m["num_layers"],
           "batch_size": t["batch_size"], "lr": t["lr"], "weight_decay": t["weight_decay"],
           "gamma": m["gamma"], "knn_k": dict(m["knn_k"]).get("text"), "seed": t["seed"]}
    diff = {k: (v, HPARAMS[k]) for k, v in got.items() if v != HPARAMS[k]}
    if diff:
        raise SystemExit(f"the scientific config differs from the shared settings: {diff}")


# ---------------------------------------------------------------------------------------------


def summarise(rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for side in ("authors", "ours"):
        secs = [s for r in rounds for s in r[side]["train_seconds"]]
        ndcg = [r[side]["valid_ndcg20"] for r in rounds if r[side]["valid_ndcg20"] is not None]
        out[side] = {"median_train_seconds": statistics.median(secs),
                     "min_train_seconds": min(secs), "max_train_seconds": max(secs),
                     "epochs_timed": len(secs),
                     "valid_ndcg20": ndcg}
    out["ratio"] = out["authors"]["median_train_seconds"] / out["ours"]["median_train_seconds"]
    return out


def report(result: Dict[str, Any], absolute: bool = True) -> str:
    r"""The table: median seconds per training epoch (:obj:`absolute`), or, as ``RESULTS.md``
    gives CPU figures, each median relative to stair-pyg's; then the ratio."""
    s, n = result["summary"], result["epochs"]
    ours = s["ours"]["median_train_seconds"]

    def ndcg(side: str) -> str:
        return ", ".join(f"{v:.4f}" for v in s[side]["valid_ndcg20"]) or "–"

    def cell(d: Dict[str, Any]) -> str:
        lo, med, hi = d["min_train_seconds"], d["median_train_seconds"], d["max_train_seconds"]
        if absolute:
            return f"{med:.3f} ({lo:.3f}-{hi:.3f})"
        return f"{med / ours:.2f}x ({lo / ours:.2f}-{hi / ours:.2f})"

    head = ("median s / training epoch (range)" if absolute
            else "median training epoch, x stair-pyg's median (range)")
    rows = [f"| code | {head} | valid NDCG@20 after {n} epochs (per round) |", "|---|---|---|"]
    labels = {"authors": f"authors' STAIR (FreeRec {result['freerec_version']})",
              "ours": "stair-pyg"}
    for side, label in labels.items():
        rows.append(f"| {label} | {cell(s[side])} | {ndcg(side)} |")
    rows += ["", f"stair-pyg is **{s['ratio']:.2f}x** faster per training epoch (medians of "
             f"{s['ours']['epochs_timed']} epochs each, {result['rounds']} alternating rounds, "
             f"{result['threads']} torch thread(s) each)."]
    return "\n".join(rows)


def publish(result: Dict[str, Any]) -> None:
    r"""Writes ``benchmarks/results/compare_authors_<dataset>.json`` and the section
    ``compare_authors:<dataset>`` of ``RESULTS.md`` (relative figures: a CPU run)."""
    from stair_pyg.profiling.measure import machine_note

    name = result["dataset"]
    path = BENCH_DIR / "results" / f"{SCRIPT}_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    body = [f"### Against the authors' STAIR: `{name}`, training time per epoch (CPU)", "",
            f"{machine_note(result['environment'])} The two codes alternate in one run, so the "
            f"ratio is what matters. Authors: `yhhe2004/STAIR` `main.py` under FreeRec "
            f"{result['freerec_version']}, timed per call of its `train_per_epoch` (data pipe, "
            f"forward, backward, `AdamWSEvo` step). stair-pyg: the trainer's `train_seconds` "
            f"(sampling, forward, backward, step). Evaluation excluded on both; absolute "
            f"seconds in `results/{path.name}`.", "", report(result, absolute=False), "",
            f"Reproduce: `python benchmarks/{SCRIPT}.py --epochs {result['epochs']} --rounds "
            f"{result['rounds']} --write-results` (the FreeRec environment: "
            f"`benchmarks/README.md`)"]
    write_section(SCRIPT, name, body)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser)
    add = parser.add_argument
    add("--freerec-python", default=os.environ.get("FREEREC_PYTHON"),
        help="python of the FreeRec environment (default: $FREEREC_PYTHON)")
    add("--authors-src", default=os.environ.get("STAIR_AUTHORS_SRC"),
        help="the authors' STAIR checkout (default: $STAIR_AUTHORS_SRC)")
    add("--dataset", default=str(DATA_ROOT / "scientific"), help="MMRec-format folder "
        "(default: ../shared/data/scientific)")
    add("--epochs", type=int, default=5, help="training epochs per side and round (default 5)")
    add("--rounds", type=int, default=2, help="alternations authors -> ours (default 2)")
    add("--authors-workers", type=int, default=0,
        help="FreeRec's --num-workers (default 0: data pipe in the training process)")
    parser.set_defaults(threads=1, device="cpu")
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "auto"):
        parser.error("this comparison runs on the CPU only")
    if args.quick:
        args.epochs, args.rounds = 1, 1

    why = check_authors_side(args.freerec_python, args.authors_src)
    if why is not None:
        print(f"{MARK} skipped: {why}.")
        print(setup_instructions(args.freerec_python, args.authors_src))
        return 0

    import torch

    from stair_pyg.data import load_dataset
    from stair_pyg.profiling.measure import environment

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    folder = Path(args.dataset).resolve()
    name = folder.name
    out = out_dir(args, SCRIPT)
    converted = convert_dataset(folder, WORK_DIR, name)
    print(f"{MARK} {name}: FreeRec layout in {converted}", flush=True)
    cfg = our_config(folder, args.epochs)
    check_config(cfg)
    ds = load_dataset(cfg["dataset"])
    env = environment()
    version = subprocess.run([args.freerec_python, "-c", "import freerec; print(freerec."
                              "__version__)"], capture_output=True, text=True,
                             env=_child_env(1)).stdout.strip()
    rounds: List[Dict[str, Any]] = []
    for r in range(args.rounds):
        run_id = f"r{r}-{os.getpid()}-{int(time.time())}"
        a = run_authors(args.freerec_python, Path(args.authors_src).resolve(), WORK_DIR, name,
                        args.epochs, args.threads, args.authors_workers, run_id, out / "logs")
        print(f"{MARK} round {r + 1}/{args.rounds} authors: "
              + ", ".join(f"{s:.3f}" for s in a["train_seconds"])
              + f" s/epoch, valid NDCG@20 {a['valid_ndcg20']}", flush=True)
        o = run_ours(cfg, ds)
        print(f"{MARK} round {r + 1}/{args.rounds} ours:    "
              + ", ".join(f"{s:.3f}" for s in o["train_seconds"])
              + f" s/epoch, valid NDCG@20 {o['valid_ndcg20']:.4f}", flush=True)
        rounds.append({"authors": a, "ours": o})
    result = {"script": SCRIPT, "dataset": name, "epochs": args.epochs, "rounds": args.rounds,
              "threads": args.threads, "authors_workers": args.authors_workers,
              "freerec_version": version, "hyper_parameters": HPARAMS, "device": "cpu",
              "environment": env, "runs": rounds, "summary": summarise(rounds),
              "includes": {
                  "authors": "one CoachForSTAIR.train_per_epoch call: FreeRec's training pipe "
                             "(shuffle, negative sampling, batching), forward, backward, "
                             "AdamWSEvo step, loss monitor",
                  "ours": "Trainer train_seconds: epoch permutation and negative sampling, "
                          "forward, backward, optimizer step"}}
    print(report(result))
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"{MARK} wrote {out / 'results.json'}")
    if args.write_results:
        publish(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
