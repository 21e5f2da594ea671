r"""Parity with the reference toolbox MMRec (https://github.com/enoche/MMRec), side by side: for
each model, MMRec's own implementation and ours train on the same data with the same
hyper-parameters and protocol, and their per-epoch validation curves are printed next to each
other.

Protocol (both sides): seed 999, Adam with lr 1e-3 and no weight decay, batch 2048, validation
every epoch, model selection and early stopping on validation Recall@20, at most ``--epochs``
epochs, one torch thread, CPU. MMRec stops after ``stopping_step + 1`` evaluations without
improvement (``utils.utils.early_stopping``: ``cur_step > max_step``); ours after ``patience``.
MMRec gets ``stopping_step = --patience`` and ours ``patience = --patience + 1``, so both stop at
the same point of their curves. MMRec counts epochs from 0; its epoch ``e`` is printed as
``e + 1``, as ours are.

Hyper-parameters: ours are the packaged model defaults (``stair_pyg/configs/models/<name>.yaml``
over the model class's defaults), each a point of MMRec's grid in
``src/configs/model/<MODEL>.yaml``; MMRec runs that single point (its list-valued keys are given
as one-element lists, so its grid search has one combination). The names map as
``embedding_dim`` -> ``embedding_size`` (and FREEDOM/BM3's ``feat_embed_dim``), ``num_layers`` ->
``n_layers``; the other names are MMRec's.

MMRec is never a dependency of this project and none of its code is here: it runs in its own
virtual environment (``--mmrec-python``, default ``$MMREC_PYTHON``) from its source folder
(``--mmrec-src``: the checkout's ``src`` folder or the checkout itself, default
``$MMREC_SRC``), through a small driver written at run time into a temporary folder, which calls
MMRec's ``utils.quick_start.quick_start`` with a config dictionary. Its ``data_path`` is a
temporary folder of symbolic links to the dataset's files (so the kNN-graph cache that MMRec's
FREEDOM writes beside the data stays out of the shared data). Its validation curve is parsed
from its log output (:func:`parse_mmrec_log`). Without a configured MMRec the script says how to
set one up and exits 0. The recipe used for ``benchmarks/RESULTS.md``
(numpy 1.23 as MMRec's code needs; ``torchvision`` only for raw images, so a stub)::

    git clone https://github.com/enoche/MMRec /work/mmrec-src
    python3.11 -m venv /work/venvs/mmrec
    /work/venvs/mmrec/bin/pip install torch==2.13.0 numpy==1.23.5 scipy==1.12.0 \
        pandas==2.2.3 pyyaml matplotlib==3.8.4 contourpy==1.2.1 pillow lmdb
    # stub torchvision (empty package with transforms/ and transforms/functional.py defining
    # pad, resize, Compose) in that venv's site-packages
    MMREC_PYTHON=/work/venvs/mmrec/bin/python MMREC_SRC=/work/mmrec-src \
        python benchmarks/parity_mmrec.py --models freedom,bm3,lightgcn --write-results

Writes ``benchmarks/results/parity_mmrec_<dataset>.json`` (both curves of every model) and,
with ``--write-results``, the section ``parity_mmrec:<dataset>`` of ``RESULTS.md`` (every 5th
epoch and the best ones, not the whole curves). A run of some models keeps the other models'
entries of an earlier run of the same protocol in that JSON; ``--reuse-mmrec`` takes MMRec's
curve from there when its config is unchanged (only ours reruns); ``--from-json`` runs nothing
and reports (with ``--write-results``: writes the section from) the stored curves, including an
earlier version of ours kept as ``ours_before`` and the ``notes`` (the results' reading).
``--quick``: 2 epochs per side (a smoke run).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _results import BENCH_DIR, DATA_ROOT, REPO_ROOT, peer_env, run_logged, write_section

METRICS = ("Recall@20", "NDCG@20")

#: Our model name -> MMRec's.
MMREC_NAME = {"freedom": "FREEDOM", "bm3": "BM3", "lightgcn": "LightGCN"}

#: Our hyper-parameter name -> MMRec's config key(s), per model. Keys absent here and from
#: MMRec's model config are ours alone (e.g. ``knn_method``, ``train_features``) and must be
#: at MMRec's behaviour (:func:`check_ours_matches`).
NAME_MAP: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "freedom": {"embedding_dim": ("embedding_size", "feat_embed_dim"), "knn_k": ("knn_k",),
                "mm_image_weight": ("mm_image_weight",), "n_mm_layers": ("n_mm_layers",),
                "n_ui_layers": ("n_ui_layers",), "dropout": ("dropout",),
                "reg_weight": ("reg_weight",)},
    "bm3": {"embedding_dim": ("embedding_size", "feat_embed_dim"), "num_layers": ("n_layers",),
            "dropout": ("dropout",), "reg_weight": ("reg_weight",),
            "cl_weight": ("cl_weight",)},
    "lightgcn": {"embedding_dim": ("embedding_size",), "num_layers": ("n_layers",),
                 "reg_weight": ("reg_weight",)},
}

#: Our hyper-parameters with no MMRec counterpart, and the value that is MMRec's behaviour.
OURS_ONLY = {"freedom": {"knn_method": "exact", "train_features": True, "modalities": None},
             "bm3": {"train_features": True, "modalities": None}, "lightgcn": {}}

#: The grid keys of MMRec's model configs that take a list (its grid search iterates them).
MMREC_GRID = {"freedom": ("dropout", "reg_weight"), "bm3": ("n_layers", "reg_weight", "dropout"),
              "lightgcn": ("n_layers", "reg_weight")}

SETUP = """\
MMRec is not configured, so the parity run is skipped. To set it up (outside this repository):
  git clone https://github.com/enoche/MMRec <dir>            # its source (never a dependency)
  python3.11 -m venv <venv> && <venv>/bin/pip install torch==2.13.0 numpy==1.23.5 \\
      scipy==1.12.0 pandas==2.2.3 pyyaml matplotlib==3.8.4 contourpy==1.2.1 pillow lmdb
  put a stub 'torchvision' package (transforms, transforms.functional with pad/resize) in
      <venv>'s site-packages (MMRec imports it only for raw images)
then run with --mmrec-python <venv>/bin/python --mmrec-src <dir>
(or set MMREC_PYTHON and MMREC_SRC)."""

# The driver MMRec runs in (written to a temporary folder at run time; MMRec's configurator reads
# ./configs, so it runs from MMRec's src folder, which PYTHONPATH also puts on the import path).
DRIVER = """\
import json, os, sys
import torch
torch.set_num_threads(1)
src, cfg_file = sys.argv[1], sys.argv[2]
os.chdir(src)
from utils.quick_start import quick_start
with open(cfg_file) as f:
    cfg = json.load(f)
model, dataset = cfg.pop("model"), cfg.pop("dataset")
quick_start(model=model, dataset=dataset, config_dict=cfg, save_model=False)
"""


# ---------------------------------------------------------------------------------------------
# MMRec's side

_EVAL = re.compile(r"epoch (\d+) evaluating \[")
_TRAIN = re.compile(r"epoch \d+ training \[time: ([0-9.]+)s")
_PAIR = re.compile(r"([A-Za-z]+@\d+): (-?[0-9.]+(?:e-?\d+)?|nan)")
_STOP = re.compile(r"best eval result in epoch (\d+)")


def parse_mmrec_log(text: str) -> Dict[str, Any]:
    r"""MMRec's per-epoch validation (and test) metrics from its log output.

    MMRec's trainer logs, for every evaluated epoch ``e`` (0-based),
    ``epoch e evaluating [time: ..., valid_score: ...]``, then ``valid result:`` and on the next
    line the metrics as ``recall@20: 0.1234    ndcg@20: ...`` (``dict2str``), then the same for
    ``test result:``; ``+++++Finished training, best eval result in epoch e`` when it stops
    early. Returns ``{"history": [{"epoch": e + 1, "valid": {"Recall@20": ...}, "test":
    {...}}, ...], "best_epoch": b + 1 or None}`` with metric names as ours (``Recall@20``,
    ``NDCG@20``, ``Precision@20``, ``MAP@20``), and ``"train_seconds"``: the training time of
    every epoch, from ``epoch e training [time: 1.23s, ...]`` (evaluation excluded)."""
    history: List[Dict[str, Any]] = []
    train_seconds: List[float] = []
    stopped = None
    current: Optional[Dict[str, Any]] = None
    pending: Optional[str] = None  # "valid"/"test": its metrics are still to come
    for line in text.splitlines():
        m = _TRAIN.search(line)
        if m:
            train_seconds.append(float(m.group(1)))
            continue
        m = _EVAL.search(line)
        if m:
            current, pending = {"epoch": int(m.group(1)) + 1}, None
            history.append(current)
            continue
        m = _STOP.search(line)
        if m:
            stopped = int(m.group(1)) + 1
            continue
        if "best valid result:" in line:  # the run's summary after the last epoch
            current = pending = None
            continue
        if current is None:
            continue
        for split in ("valid", "test"):
            if f"{split} result:" in line:
                pending, line = split, line.split("result:", 1)[1]
        if pending is not None:
            pairs = _PAIR.findall(line)
            if pairs:
                current[pending] = {_our_name(k): float(v) for k, v in pairs}
                pending = None
    history = [h for h in history if "valid" in h]
    return {"history": history, "best_epoch": stopped, "train_seconds": train_seconds}


def _our_name(key: str) -> str:
    name, k = key.split("@")
    return {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision",
            "map": "MAP"}.get(name.lower(), name) + "@" + k


def find_mmrec(python: Optional[str], src: Optional[str]) -> Tuple[Optional[Path], Optional[Path],
                                                                   Optional[str]]:
    r"""``(python, src folder, None)`` when MMRec is usable, else ``(None, None, why)``."""
    if not python or not src:
        return None, None, "no MMRec python or source folder given"
    py, root = Path(python).expanduser(), Path(src).expanduser()
    if not py.exists():
        return None, None, f"MMRec python '{py}' does not exist"
    for cand in (root, root / "src"):
        if (cand / "utils" / "quick_start.py").is_file() and (cand / "configs").is_dir():
            return py, cand, None
    return None, None, f"'{root}' is not an MMRec checkout (no src/utils/quick_start.py)"


def mmrec_config(model: str, hparams: Dict[str, Any], data_root: Path, dataset: str,
                 args: argparse.Namespace) -> Dict[str, Any]:
    r"""The config dictionary for MMRec's ``quick_start``: its overall defaults are kept (Adam,
    lr 1e-3, batch 2048, no weight decay, constant learning-rate schedule), the dataset's keys
    (MMRec has no config file for it), the protocol and the model's single grid point."""
    cfg: Dict[str, Any] = {
        "model": MMREC_NAME[model], "dataset": dataset,
        "gpu_id": 0, "use_gpu": False, "seed": [args.seed],
        "data_path": str(data_root) + os.sep,
        "USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID", "TIME_FIELD": "timestamp",
        "inter_file_name": f"{dataset}.inter", "field_separator": "\t",
        "text_feature_file": "text_feat.npy", "vision_feature_file": "image_feat.npy",
        "epochs": args.epochs, "stopping_step": args.patience, "eval_step": 1,
        "valid_metric": "Recall@20", "learning_rate": 1e-3, "train_batch_size": 2048,
        "weight_decay": 0.0, "learner": "adam",
    }
    for ours, theirs in NAME_MAP[model].items():
        for key in theirs:
            value = hparams[ours]
            cfg[key] = [value] if key in MMREC_GRID[model] else value
    return cfg


def run_mmrec(model: str, hparams: Dict[str, Any], dataset_dir: Path, python: Path, src: Path,
              args: argparse.Namespace, log_dir: Path) -> Dict[str, Any]:
    r"""Runs MMRec's implementation in its venv; returns its parsed curve and the config used."""
    name = dataset_dir.name
    with tempfile.TemporaryDirectory(prefix="parity_mmrec_") as tmp:
        tmp = Path(tmp)
        data_root = tmp / "data"
        (data_root / name).mkdir(parents=True)
        for f in dataset_dir.iterdir():  # links, not copies; MMRec's caches land in tmp
            if f.is_file():
                (data_root / name / f.name).symlink_to(f.resolve())
        cfg = mmrec_config(model, hparams, data_root, name, args)
        (tmp / "config.json").write_text(json.dumps(cfg))
        (tmp / "driver.py").write_text(DRIVER)
        env = peer_env(1, src, PYTHONDONTWRITEBYTECODE="1")
        text, seconds = run_logged([str(python), str(tmp / "driver.py"), str(src),
                                    str(tmp / "config.json")], log_dir / f"mmrec_{model}.log",
                                   f"MMRec {MMREC_NAME[model]}", env=env, cwd=src)
    parsed = parse_mmrec_log(text)
    cfg = {k: v for k, v in cfg.items() if k != "data_path"}
    return {**parsed, "config": cfg, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# Our side

def our_hparams(model: str) -> Dict[str, Any]:
    r"""The hyper-parameters our packaged defaults give :obj:`model`: its class's defaults,
    overridden by ``stair_pyg/configs/models/<model>.yaml``."""
    from stair_pyg.configs import model_config_path
    from stair_pyg.models import get_model
    from stair_pyg.train.config import load_yaml

    sig = inspect.signature(get_model(model).__init__)
    params = {k: p.default for k, p in sig.parameters.items()
              if p.default is not inspect.Parameter.empty}
    path = model_config_path(model)
    if path is not None:
        params.update({k: v for k, v in load_yaml(path).get("model", {}).items() if k != "name"})
    return params


def check_ours_matches(model: str, hparams: Dict[str, Any]) -> None:
    for key, value in OURS_ONLY[model].items():
        if key in hparams and hparams[key] != value:
            raise ValueError(f"{model}: '{key}' = {hparams[key]!r} has no MMRec counterpart "
                             f"(MMRec behaves as {value!r})")


#: MMRec's training loader draws negatives from the items of its training split
#: (``utils/dataloader.py``: ``all_items = train_df.itemID.unique()``), so ours does the same
#: here (the library's default draws from every item; on ``scientific`` 3 of 4,385 items differ).
NEGATIVES = "interacted"


def run_ours(model: str, dataset, args: argparse.Namespace) -> Dict[str, Any]:
    from stair_pyg.configs import model_config_path
    from stair_pyg.train import run_experiment
    from stair_pyg.train.config import load_yaml

    packaged = load_yaml(model_config_path(model))
    train = dict(packaged.get("train", {}))
    train.update(epochs=args.epochs, seed=args.seed, patience=args.patience + 1,
                 metric="Recall@20", eval_every=1, ks=[10, 20, 50], device="cpu",
                 checkpoint_every=0, batch_size=2048, lr=1e-3, weight_decay=0.0,
                 negatives=NEGATIVES)
    cfg = {"dataset": {"format": "mmrec", "path": str(args.dataset)},
           "model": dict(packaged["model"]), "train": train}
    start = time.perf_counter()
    result = run_experiment(cfg, out_dir=None, progress=False, dataset=dataset)
    seconds = time.perf_counter() - start
    history = [{"epoch": r["epoch"], "valid": {m: r["valid"][m] for m in METRICS}}
               for r in result["history"] if "valid" in r]
    return {"history": history, "best_epoch": result["best_epoch"], "config": cfg,
            "seconds": seconds,
            "train_seconds": [float(r["train_seconds"]) for r in result["history"]]}


# ---------------------------------------------------------------------------------------------
# Comparison and report

def rel(ours: float, ref: float) -> Optional[float]:
    return None if ref == 0 else (ours - ref) / ref


def best(history: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    r"""The epoch of the highest validation Recall@20 (the first of ties, as both trainers keep)
    and its metrics."""
    if not history:
        return {"epoch": None, **{m: None for m in METRICS}}
    top = max(history, key=lambda r: (r["valid"]["Recall@20"], -r["epoch"]))
    return {"epoch": top["epoch"], **{m: top["valid"][m] for m in METRICS}}


def compare(mmrec: Dict[str, Any], ours: Dict[str, Any]) -> Dict[str, Any]:
    r"""The curves aligned by epoch, their relative differences (ours vs MMRec) and summaries:
    the largest :math:`|\Delta|` over all common epochs and from epoch 5 on, and the mean
    :math:`\Delta` over epochs 10-40."""
    theirs = {r["epoch"]: r["valid"] for r in mmrec["history"]}
    rows = []
    for r in ours["history"]:
        ref = theirs.get(r["epoch"])
        if ref is None:
            continue
        row = {"epoch": r["epoch"]}
        for m in METRICS:
            row[m] = {"mmrec": ref[m], "ours": r["valid"][m], "rel": rel(r["valid"][m], ref[m])}
        rows.append(row)
    summary: Dict[str, Any] = {}
    for m in METRICS:
        diffs = [(row["epoch"], row[m]["rel"]) for row in rows if row[m]["rel"] is not None]
        window = [d for e, d in diffs if 10 <= e <= 40]
        summary[m] = {
            "max_abs_rel": max((abs(d) for _, d in diffs), default=None),
            "max_abs_rel_from_5": max((abs(d) for e, d in diffs if e >= 5), default=None),
            "mean_rel_10_40": sum(window) / len(window) if window else None,
        }
    b_m, b_o = best(mmrec["history"]), best(ours["history"])
    summary["best"] = {"mmrec": b_m, "ours": b_o,
                       "rel": {m: (rel(b_o[m], b_m[m]) if b_m[m] and b_o[m] is not None
                                   else None) for m in METRICS}}
    # Where one side stopped earlier (or the other crossed its own early peak and went on), the
    # best over the epochs both ran compares like with like.
    last = min(len(mmrec["history"]), len(ours["history"]))
    c_m = best([r for r in mmrec["history"] if r["epoch"] <= last])
    c_o = best([r for r in ours["history"] if r["epoch"] <= last])
    summary["best_common"] = {"mmrec": c_m, "ours": c_o, "last_epoch": last,
                              "rel": {m: (rel(c_o[m], c_m[m]) if c_m[m] and c_o[m] is not None
                                          else None) for m in METRICS}}
    summary["epochs_run"] = {"mmrec": len(mmrec["history"]), "ours": len(ours["history"])}
    return {"rows": rows, "summary": summary}


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:+.2f}%"


def _f(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.4f}"


def curve_table(model: str, cmp: Dict[str, Any], every: int = 1,
                mark: Sequence[int] = ()) -> List[str]:
    lines = ["| epoch | MMRec R@20 | ours R@20 | ΔR@20 | MMRec N@20 | ours N@20 | ΔN@20 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in cmp["rows"]:
        e = row["epoch"]
        if every > 1 and e % every and e not in mark and e != 1:
            continue
        r, n = row["Recall@20"], row["NDCG@20"]
        star = " *" if e in mark else ""
        lines.append(f"| {e}{star} | {_f(r['mmrec'])} | {_f(r['ours'])} | {_pct(r['rel'])} | "
                     f"{_f(n['mmrec'])} | {_f(n['ours'])} | {_pct(n['rel'])} |")
    return lines


def summary_table(results: Dict[str, Dict[str, Any]]) -> List[str]:
    lines = ["| model | MMRec best R@20 / N@20 (epoch) | ours best R@20 / N@20 (epoch) | "
             "Δ best R@20 / N@20 | Δ best over the common epochs | "
             "max \\|Δ\\| R@20 (all; from epoch 5) | mean Δ R@20, epochs 10-40 | "
             "epochs run MMRec / ours | median training s/epoch, ours / MMRec |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, res in results.items():
        s = res["compare"]["summary"]
        bm, bo, br = s["best"]["mmrec"], s["best"]["ours"], s["best"]["rel"]
        r, cr = s["Recall@20"], s["best_common"]["rel"]
        lines.append(
            f"| {model} | {_f(bm['Recall@20'])} / {_f(bm['NDCG@20'])} ({bm['epoch']}) | "
            f"{_f(bo['Recall@20'])} / {_f(bo['NDCG@20'])} ({bo['epoch']}) | "
            f"{_pct(br['Recall@20'])} / {_pct(br['NDCG@20'])} | "
            f"{_pct(cr['Recall@20'])} / {_pct(cr['NDCG@20'])} "
            f"(1-{s['best_common']['last_epoch']}) | "
            f"{_pct(r['max_abs_rel'])}; {_pct(r['max_abs_rel_from_5'])} | "
            f"{_pct(r['mean_rel_10_40'])} | "
            f"{s['epochs_run']['mmrec']} / {s['epochs_run']['ours']} | "
            f"{training_ratio(res)} |")
    return lines


def training_ratio(res: Dict[str, Any]) -> str:
    r"""Ours' median training seconds per epoch as a multiple of MMRec's (evaluation excluded on
    both; runs of one invocation, one after the other); ``-`` for records without the times."""
    ours, mmrec = res["ours"].get("train_seconds"), res["mmrec"].get("train_seconds")
    if not ours or not mmrec:
        return "-"
    return f"{statistics.median(ours) / statistics.median(mmrec):.2f}x"


def _commit() -> Optional[str]:
    r"""The checkout's commit (with ``+dirty`` when the tree has changes), for the record."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def hparam_text(model: str, hparams: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={hparams[k]}" for k in NAME_MAP[model])


#: The dataset a run without ``--dataset`` compares on.
DEFAULT_DATASET = DATA_ROOT / "scientific"


def dataset_option(folder: Path) -> str:
    r"""``--dataset FOLDER `` for a reproduce line (relative to the repository root), or nothing
    where ``folder`` is the default."""
    if folder.resolve() == DEFAULT_DATASET.resolve():
        return ""
    return f"--dataset {os.path.relpath(folder.resolve(), REPO_ROOT)} "


def write_report(record: Dict[str, Any], results: Dict[str, Dict[str, Any]],
                 models: Sequence[str], dataset: Path) -> None:
    r"""The section ``parity_mmrec:<dataset>`` of ``RESULTS.md``: the summary table and, per
    model, every 5th epoch of both curves and the best epochs; ``dataset`` is the folder the
    run read, for the reproduce line."""
    name = record["dataset"]
    # A model's earlier implementation kept in the record ("ours_before": its curve and
    # "before_note") is compared with the same MMRec curve, one summary row of its own.
    rows = dict(results)
    for model, res in results.items():
        if "ours_before" in res:
            rows[f"{model} ({res.get('before_note', 'before')})"] = {
                **res, "compare": compare(res["mmrec"], res["ours_before"])}
    pool = ("the items with training interactions (MMRec's pool)"
            if record.get("negatives") == "interacted" else "every item")
    body = [f"### Parity with MMRec on `{name}`", "",
            f"MMRec's own implementation and ours side by side, same hyper-parameters, "
            f"seed {record['seed']}, Adam lr 1e-3, batch 2048, early stopping on validation "
            f"Recall@20 (MMRec's stopping_step {record['patience']}, the same stopping point "
            f"for ours), at most {record['epochs']} epochs, one CPU thread each, negatives "
            f"from {pool}; validation "
            f"metrics, Δ = ours / MMRec - 1. The last column compares the training time per "
            f"epoch (evaluation excluded on both; each model's two runs one after the other, so "
            f"on a CPU shared with other work it is a ratio, not a timing).", "",
            *summary_table(rows), ""]
    for model, res in results.items():
        s = res["compare"]["summary"]["best"]
        marks = [e for e in (s["mmrec"]["epoch"], s["ours"]["epoch"]) if e]
        body += [f"**{model}** ({hparam_text(model, res['hparams'])}; ours at commit "
                 f"`{res.get('commit')}`); every 5th epoch, \\* the best epoch of either:", "",
                 *curve_table(model, res["compare"], every=5, mark=marks), ""]
    body += [*record.get("notes", []), ""] if record.get("notes") else []
    body.append(f"Reproduce: `MMREC_PYTHON=... MMREC_SRC=... python benchmarks/parity_mmrec.py "
                f"{dataset_option(dataset)}--models {','.join(models)} --epochs {record['epochs']} "
                f"--write-results`")
    write_section("parity_mmrec", name, body)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="freedom,bm3,lightgcn",
                   help="comma-separated, of " + ", ".join(MMREC_NAME))
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                   help="an MMRec-format dataset folder (default: ../shared/data/scientific)")
    p.add_argument("--mmrec-python", default=os.environ.get("MMREC_PYTHON"),
                   help="the python of MMRec's venv (default: $MMREC_PYTHON)")
    p.add_argument("--mmrec-src", default=os.environ.get("MMREC_SRC"),
                   help="MMRec's checkout or its src folder (default: $MMREC_SRC)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=999)
    p.add_argument("--patience", type=int, default=20,
                   help="MMRec's stopping_step (ours gets one more; see the module docstring)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (default: benchmarks/results/parity_mmrec_<dataset>.json)")
    p.add_argument("--write-results", action="store_true",
                   help="also write its section of RESULTS.md")
    p.add_argument("--quick", action="store_true", help="2 epochs per side (a smoke run)")
    p.add_argument("--from-json", action="store_true",
                   help="run nothing: report (and with --write-results write RESULTS.md from) the "
                        "curves stored in the JSON output, recomputing the comparison")
    p.add_argument("--reuse-mmrec", action="store_true",
                   help="take MMRec's curve from the JSON of an earlier run when its config was "
                        "the same (MMRec's run is a function of its config; only ours reruns)")
    args = p.parse_args(argv)
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MMREC_NAME]
    if unknown:
        p.error(f"unknown models {unknown} (choose from {', '.join(MMREC_NAME)})")
    if args.quick:
        args.epochs, args.patience = 2, 2
    if args.from_json:
        out = args.out or BENCH_DIR / "results" / f"parity_mmrec_{args.dataset.name}.json"
        record = json.loads(out.read_text())
        results = {m: {**r, "compare": compare(r["mmrec"], r["ours"])}
                   for m, r in record["models"].items() if m in models}
        for model, res in results.items():
            print(f"\n## {model} (validation; Δ = ours / MMRec - 1)\n")
            print("\n".join(curve_table(model, res["compare"])))
        print()
        print("\n".join(summary_table(results)))
        if args.write_results:
            write_report(record, results, models, args.dataset)
        return 0
    python, src, why = find_mmrec(args.mmrec_python, args.mmrec_src)
    if why is not None:
        print(f"[parity_mmrec] skipped: {why}.\n{SETUP}")
        return 0
    if not (args.dataset / f"{args.dataset.name}.inter").is_file():
        print(f"[parity_mmrec] skipped: no MMRec-format dataset at '{args.dataset}' "
              f"(needs {args.dataset.name}.inter)")
        return 0

    import torch

    from stair_pyg.data import load_dataset
    from stair_pyg.profiling.measure import environment

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dataset = load_dataset({"format": "mmrec", "path": str(args.dataset)})
    name = args.dataset.name
    log_dir = REPO_ROOT / "build" / "bench" / "parity_mmrec"
    out = args.out or BENCH_DIR / "results" / f"parity_mmrec_{name}.json"
    earlier = json.loads(out.read_text()).get("models", {}) if out.is_file() else {}
    results: Dict[str, Dict[str, Any]] = {}
    for model in models:
        hparams = our_hparams(model)
        check_ours_matches(model, hparams)
        print(f"[parity_mmrec] {model}: {hparam_text(model, hparams)}; MMRec ...", flush=True)
        wanted = {k: v for k, v in mmrec_config(model, hparams, Path("."), name, args).items()
                  if k != "data_path"}
        theirs = earlier.get(model, {}).get("mmrec")
        if not (args.reuse_mmrec and theirs and theirs.get("config") == wanted):
            theirs = run_mmrec(model, hparams, args.dataset, python, src, args, log_dir)
        else:
            print(f"[parity_mmrec] {model}: MMRec's curve reused from {out}")
        print(f"[parity_mmrec] {model}: MMRec done ({len(theirs['history'])} epochs, "
              f"{theirs['seconds']:.0f} s); ours ...", flush=True)
        ours = run_ours(model, dataset, args)
        cmp = compare(theirs, ours)
        results[model] = {"hparams": {k: hparams[k] for k in NAME_MAP[model]},
                          "commit": _commit(),
                          "mmrec": theirs, "ours": ours, "compare": cmp}
        print(f"\n## {model} (validation; Δ = ours / MMRec - 1)\n")
        print("\n".join(curve_table(model, cmp)))
        print()
    print("\n".join(summary_table(results)))

    out.parent.mkdir(parents=True, exist_ok=True)
    protocol = {"script": "parity_mmrec", "dataset": name, "epochs": args.epochs,
                "seed": args.seed, "patience": args.patience, "quick": args.quick,
                "negatives": NEGATIVES}
    # Models not run this time keep their entries from an earlier run of the same protocol.
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if all(previous.get(k) == v for k, v in protocol.items()):
        results = {**{m: r for m, r in previous.get("models", {}).items()
                      if m not in results}, **results}
    results = {m: {**r, "compare": compare(r["mmrec"], r["ours"])} for m, r in results.items()}
    record = {**protocol, "environment": environment(), "models": results}
    if previous.get("notes") and all(previous.get(k) == v for k, v in protocol.items()):
        record["notes"] = previous["notes"]  # the reading of the results, kept with them
    out.write_text(json.dumps(record, indent=1))
    print(f"[parity_mmrec] wrote {out}")
    if args.write_results:
        write_report(record, results, list(results), args.dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
