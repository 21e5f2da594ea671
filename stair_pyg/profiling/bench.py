r"""Time and memory of every model on one dataset, phase by phase, side by side in one run
(``stair-pyg bench``; ``python -m stair_pyg.profiling``).

Every model of :data:`~stair_pyg.models.MODELS` (but the content-only ablation) and PyG's own
:class:`torch_geometric.nn.models.LightGCN` as shipped (:class:`PyGLightGCN`) is built by
:func:`stair_pyg.train.build_model` and trained by the :class:`~stair_pyg.train.Trainer`'s own
step, timed in four phases: negative **sampling** (an epoch's triples drawn at once, as the
trainer draws them, and each batch's slice of them), **forward** (``model.recommendation_loss``),
**backward** (the rest of ``train_step``: ``zero_grad`` and ``backward``) and
optimizer **step**; plus ``pre_epoch``. Warm-up batches are excluded, the median of ``--repeats``
is kept, and ``--max-batches`` times a subset of the epoch and extrapolates. One full-ranking
evaluation of the test split is timed, and the peak memory of build + training (+ evaluation)
measured, each model in its own watched process by default (``--isolate``). Ratios are to our
``lightgcn``. Outputs in ``--out``: ``results.json``, ``table.md``, ``profile.png``, and with
``--trace`` (default on CUDA) a ``torch.profiler`` chrome trace of one step per model.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from stair_pyg.models import MODELS, get_model
from stair_pyg.profiling import measure as M
from stair_pyg.profiling.report import markdown_table, ratio, stacked_bar_plot, write_json
from stair_pyg.profiling.watchdog import MEMORY_POLL_S, run_watched, worker_record

#: PyG's LightGCN as shipped, through two adjacencies.
PYG_MODELS = {"pyg_lightgcn": "edge_index", "pyg_lightgcn_csr": "csr"}
#: The registry's models that a comparison runs: all but the content-only ablation.
COMPARED = [m for m in MODELS if m != "content"]
DEFAULT_MODELS = COMPARED + list(PYG_MODELS)
MULTIMODAL = {m for m in MODELS if MODELS[m].uses_item_features}
REFERENCE = "lightgcn"
PHASES = ["sampling", "forward", "backward", "step"]
REAL_DATASETS = ["scientific", "ml100k", "baby", "sports"]
#: Datasets without real item features: synthetic MMRec-sized ones are generated, timing-only.
FEATURELESS_DATASETS = {"baby", "sports"}
#: Item feature dimensions of MMRec's Amazon datasets (image: 4096-d VGG, text: 384-d SBERT).
MMREC_FEATURE_DIMS = {"image": 4096, "text": 384}


def uses_item_features(name: str) -> bool:
    return name not in PYG_MODELS and get_model(name).uses_item_features


def synthetic_graph(num_interactions: int, users_per_interaction: float = 1 / 6,
                    items_per_interaction: float = 1 / 12, zipf: float = 0.8, seed: int = 0,
                    feature_dims: Optional[Dict[str, int]] = None):
    r"""A random :class:`~stair_pyg.data.hetero.RecDataset` of about :obj:`num_interactions`
    training pairs (``sports``' ratios: 6 per user, 12 per item), Zipf-like item popularity,
    Gaussian item features of :obj:`feature_dims` (drawn last: the same graph without them), one
    held-out item for a tenth of the users in each of valid and test."""
    from stair_pyg.data.hetero import RecDataset, Splits, build_hetero_data

    gen = torch.Generator().manual_seed(seed)
    num_users = max(8, int(round(num_interactions * users_per_interaction)))
    num_items = max(8, int(round(num_interactions * items_per_interaction)))
    draw = int(num_interactions * 1.15) + 16
    users = torch.randint(0, num_users, (draw,), generator=gen)
    users[:num_users] = torch.arange(num_users)  # every user appears
    weights = torch.arange(1, num_items + 1, dtype=torch.float64).pow(-zipf)
    items = torch.multinomial(weights, draw, replacement=True, generator=gen)
    items = torch.randperm(num_items, generator=gen)[items]  # popular ids spread at random
    items[:num_items] = torch.randperm(num_items, generator=gen)  # every item appears
    pairs = torch.unique(users * num_items + items)
    pairs = pairs[torch.randperm(pairs.numel(), generator=gen)[:num_interactions]].sort().values
    edge_index = torch.stack([pairs // num_items, pairs % num_items])
    held = max(1, num_users // 10)
    held_users = torch.randperm(num_users, generator=gen)[:2 * held]
    held_items = torch.randint(0, num_items, (2 * held,), generator=gen)
    valid = torch.stack([held_users[:held], held_items[:held]])
    test = torch.stack([held_users[held:], held_items[held:]])
    features = {name: torch.randn(num_items, dim, generator=gen)
                for name, dim in (feature_dims or {}).items()}
    data = build_hetero_data(num_users, num_items, edge_index, features,
                             name=f"scaling-{num_interactions}")
    return RecDataset(data, Splits(edge_index, valid, test))


def load_bench_dataset(args: argparse.Namespace, features: bool = True):
    r"""``(RecDataset, info)`` for ``--dataset``: an MMRec folder, or ``synthetic``. Without
    item features of its own it gets Gaussian ones of MMRec's dimensions, timing-only, unless
    :obj:`features` is :obj:`False` (the isolated parent and the workers of models that use none:
    15 GB at :math:`10^7` interactions). ``info["features"]``: the shapes a multimodal model
    sees; ``info["features_loaded"]``: whether this process holds them."""
    from stair_pyg.data import load_dataset
    from stair_pyg.data.hetero import modality_features

    name = args.dataset
    info: Dict[str, Any] = {"name": name, "timing_only_features": True}
    t0 = time.perf_counter()
    if name == "synthetic":
        ds = synthetic_graph(args.num_interactions, seed=args.seed,
                             feature_dims=MMREC_FEATURE_DIMS if features else None)
    else:
        path = Path(name) if Path(name).exists() else Path(args.data_root or ".") / name
        if not path.exists():
            raise SystemExit(f"dataset '{name}' not found (looked for {path}); choose one of "
                             f"{REAL_DATASETS + ['synthetic']} under --data-root, or give an "
                             "MMRec folder")
        ds = load_dataset({"format": "mmrec", "path": str(path)})
        info["path"] = str(path)
    info["load_s"] = time.perf_counter() - t0
    data = ds.data
    num_items = int(data["item"].num_nodes)
    shapes = {k: list(v.shape) for k, v in modality_features(data).items()}
    if name == "synthetic" or not shapes or Path(name).name in FEATURELESS_DATASETS:
        gen = torch.Generator().manual_seed(args.seed + 1)
        for modality, dim in MMREC_FEATURE_DIMS.items():
            if features and f"{modality}_feat" not in data["item"]:
                data["item"][f"{modality}_feat"] = torch.randn(num_items, dim, generator=gen)
            shapes.setdefault(modality, [num_items, dim])
    else:
        info["timing_only_features"] = False
    info.update(num_users=int(data["user"].num_nodes), num_items=num_items,
                num_train=int(ds.splits.train.size(1)), num_test=int(ds.splits.test.size(1)),
                features=shapes, features_loaded=bool(modality_features(data)))
    return ds, info


class PyGLightGCN(torch.nn.Module):
    r""":class:`torch_geometric.nn.models.LightGCN` as shipped, trained as in PyG's
    ``examples/lightgcn.py``: users then items in one node set, the undirected training
    ``edge_index`` given to every forward (``gcn_norm`` in every call), :func:`torch.randint`
    negatives, ``recommendation_loss(..., node_id=edge_label_index.unique())`` and Adam. With
    ``adjacency="csr"`` it gets a torch sparse CSR adjacency instead."""

    hparams: Dict[str, Any] = {}

    def __init__(self, data, embedding_dim: int = 64, num_layers: int = 3,
                 adjacency: str = "edge_index"):
        super().__init__()
        from torch_geometric.nn.models import LightGCN

        from stair_pyg.data.hetero import num_users_items, train_edge_index

        self.num_users, self.num_items = num_users_items(data)
        ei = train_edge_index(data)
        src = torch.cat([ei[0], ei[1] + self.num_users])
        dst = torch.cat([ei[1] + self.num_users, ei[0]])
        n = self.num_users + self.num_items
        edge_index = torch.stack([src, dst])
        if adjacency == "csr":
            edge_index = torch.sparse_coo_tensor(
                torch.stack([dst, src]), torch.ones(src.numel()), (n, n)).coalesce().to_sparse_csr()
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.model = LightGCN(num_nodes=n, embedding_dim=embedding_dim, num_layers=num_layers)

    def sample_negatives(self, users: torch.Tensor, generator=None) -> torch.Tensor:
        return torch.randint(self.num_items, users.shape, generator=generator)

    def recommendation_loss(self, users, pos_items, neg_items):
        edge_label_index = torch.stack([torch.cat([users, users]),
                                        torch.cat([pos_items, neg_items]) + self.num_users])
        pos_rank, neg_rank = self.model(self.edge_index, edge_label_index).chunk(2)
        return self.model.recommendation_loss(pos_rank, neg_rank,
                                              node_id=edge_label_index.unique())

    def configure_optimizer(self, lr: float, weight_decay: float):
        return torch.optim.Adam(self.parameters(), lr=lr)

    def pre_epoch(self, epoch: int) -> None:
        return None

    def get_embedding(self):
        emb = self.model.get_embedding(self.edge_index)
        return emb[:self.num_users], emb[self.num_users:]


def _model_config(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    r"""``--embedding-dim``/``--num-layers`` where the model takes them, then its ``--hparam``
    values (an unknown key stops the run)."""
    from stair_pyg.keywords import accepted_keywords, check_keywords

    fns = ((PyGLightGCN.__init__,) if name in PYG_MODELS
           else (get_model(name).from_data, get_model(name).__init__))
    hparams = args.model_hparams.get(name, {})
    check_keywords(hparams, *fns, section=name, owner=f"model '{name}'", error=SystemExit,
                   hidden=("data", "adjacency", "num_users", "num_items"))
    accepted, open_ended = accepted_keywords(*fns)
    common = {"embedding_dim": args.embedding_dim, "num_layers": args.num_layers}
    return {**{k: v for k, v in common.items() if k in accepted or open_ended}, **hparams}


def build(name: str, data, args: argparse.Namespace) -> torch.nn.Module:
    r"""The model :obj:`name`, built on the profiled device (as in training)."""
    from stair_pyg.train import build_model, resolve_device

    if name in PYG_MODELS:
        return PyGLightGCN(data, adjacency=PYG_MODELS[name], **_model_config(name, args))
    return build_model({"name": name, **_model_config(name, args)}, data,
                       device=resolve_device(args.device))


class Stepper:
    r"""``step(timer)``: one :meth:`Trainer.train_step` on the next batch of a shuffled epoch,
    ``sampling``, ``train_step``, ``forward`` and ``step`` (through the optimizer's step hooks)
    timed by :obj:`timer` (:obj:`None`: untimed).

    An epoch's triples are drawn at once by :meth:`Trainer.draw_epoch`, as
    :meth:`Trainer.train_epoch` draws them, in :meth:`new_epoch`, which a caller times on its
    own: a batch's ``sampling`` is then only its slice of the epoch. A step past the epoch's
    last batch draws the next epoch first."""

    def __init__(self, trainer, batch_size: int):
        self.trainer, self.batch_size = trainer, batch_size
        model = trainer.model
        self._negatives = getattr(model, "sample_negatives", None)  # None: the trainer's
        self._timer: Optional[M.PhaseTimer] = None
        self._batches: Iterator[List[torch.Tensor]] = iter(())
        loss = model.recommendation_loss

        def timed_loss(*batch):
            if self._timer is None:
                return loss(*batch)
            with self._timer.phase("forward"):
                return loss(*batch)

        def hook(action: str):
            def run(*_):
                if self._timer is not None:
                    getattr(self._timer, action)("step")
            return run

        model.recommendation_loss = timed_loss
        trainer.optimizer.register_step_pre_hook(hook("start"))
        trainer.optimizer.register_step_post_hook(hook("stop"))

    def new_epoch(self) -> None:
        r"""Draws the next epoch's shuffled ``(users, positives, negatives)``
        (:meth:`Trainer.draw_epoch`)."""
        epoch = self.trainer.draw_epoch(self._negatives)
        self._batches = ([t[b:b + self.batch_size] for t in epoch]
                         for b in range(0, epoch[0].numel(), self.batch_size))

    def _next_batch(self) -> List[torch.Tensor]:
        batch = next(self._batches, None)
        if batch is None:
            self.new_epoch()
            batch = next(self._batches)
        return batch

    def __call__(self, timer: Optional[M.PhaseTimer] = None) -> None:
        self._timer = timer
        if timer is None:
            self.trainer.train_step(*self._next_batch())
            return
        with timer.phase("sampling"):
            batch = self._next_batch()
        with timer.phase("train_step"):
            self.trainer.train_step(*batch)


def _phases(totals: Dict[str, float]) -> Dict[str, float]:
    forward, step = totals.get("forward", 0.0), totals.get("step", 0.0)
    return {"sampling": totals.get("sampling", 0.0), "forward": forward,
            "backward": max(totals.get("train_step", 0.0) - forward - step, 0.0), "step": step}


def _trace(fn, device: torch.device, path: Path) -> Dict[str, Any]:
    r"""Runs :obj:`fn` under :mod:`torch.profiler`: its chrome trace to :obj:`path`, the operator
    table beside it, the top operators by self time returned. (PyG's ``torch_profile`` writes
    into the current folder and keeps the profiler, so the table could not be read back.)"""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        M.synchronize(device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(path))
    path.with_suffix(".txt").write_text(averages.table(sort_by=attr, row_limit=25))
    own = lambda e: getattr(e, attr, 0) or 0  # noqa: E731
    total = sum(own(e) for e in averages) or 1.0
    return {"trace": str(path), "top_ops": [
        {"op": e.key, "self_ms": own(e) / 1e3, "share": own(e) / total}
        for e in sorted(averages, key=own, reverse=True)[:8]]}


def profile_model(name: str, ds, args: argparse.Namespace, device: torch.device,
                  out_dir: Path) -> Dict[str, Any]:
    r"""Every measurement of one model (see the module docstring)."""
    from torch_geometric.profile import count_parameters

    from stair_pyg.eval import evaluate
    from stair_pyg.train import Trainer, seed_everything

    seed_everything(args.seed)
    rec: Dict[str, Any] = {"model": name, "multimodal": uses_item_features(name)}
    meter = M.MemoryMeter(device)
    with meter:
        t0 = time.perf_counter()
        model = build(name, ds.data, args)
        trainer = Trainer(model, ds, {"device": str(device), "lr": args.lr, "seed": args.seed,
                                      "weight_decay": args.weight_decay,
                                      "batch_size": args.batch_size,
                                      "tune_malloc": args.tune_malloc},
                          progress=False, model_name=name)
        M.synchronize(device)
        rec["build_s"] = time.perf_counter() - t0
        rec["parameters"] = count_parameters(model)
        step = Stepper(trainer, args.batch_size)
        nb = math.ceil(ds.splits.train.size(1) / args.batch_size)
        timed = min(nb, args.max_batches or nb)
        repeats = max(1, args.repeats)
        rec.update(num_batches=nb, timed_batches=timed, repeats=repeats,
                   warmup_batches=args.warmup, extrapolated=timed < nb)
        model.train()
        model.pre_epoch(0)
        step.new_epoch()
        for _ in range(args.warmup):
            step()
        M.synchronize(device)
        per_repeat: List[Dict[str, float]] = []
        pre_epoch_s: List[float] = []
        for r in range(repeats):
            pre_epoch_s.append(M.time_call(lambda: model.pre_epoch(r + 1), device, 1, 0))
            # The epoch's draw, once (the timed batches, at most an epoch, slice it): its time
            # joins the batches' sampling at 1 / scale, so that it counts once in the epoch.
            draw_s = M.time_call(step.new_epoch, device, 1, 0)
            timer = M.PhaseTimer(device)
            for _ in range(timed):
                step(timer)
            phases = _phases(timer.totals())
            phases["sampling"] += draw_s * timed / nb
            per_repeat.append(phases)
        per_repeat.sort(key=lambda t: sum(t.values()))  # the median repeat: its phases add up
        scale = nb / timed
        rec["phase_s"] = {p: v * scale for p, v in per_repeat[len(per_repeat) // 2].items()}
        rec["pre_epoch_s"] = statistics.median(pre_epoch_s)
        rec["epoch_s"] = sum(rec["phase_s"].values()) + rec["pre_epoch_s"]
        rec["batch_ms"] = 1e3 * sum(rec["phase_s"].values()) / nb
        rec["epoch_s_repeats"] = [sum(t.values()) * scale for t in per_repeat]
        rec["train_peak_bytes"] = meter.so_far()  # before the evaluation's score blocks
        rec["eval_s"] = float("nan") if args.skip_eval else M.time_call(
            lambda: evaluate(model, ds.splits, "test", ks=(10, 20, 50),
                             batch_users=args.eval_batch_users, cold_start=False),
            device, repeats=args.eval_repeats, warmup=1)
        if args.trace:
            rec["traced_phase"] = "training step"
            rec.update(_trace(step, device, out_dir / "traces" / f"{name}-step.json"))
    rec["memory"] = meter.result
    rec["peak_bytes"] = meter.peak_bytes()
    return rec


def _safe_profile(name, ds, args, device, out_dir) -> Dict[str, Any]:
    try:
        return profile_model(name, ds, args, device, out_dir)
    except Exception:  # a model that fails is reported, the others still run
        return {"model": name, "error": traceback.format_exc()}


#: The seconds a STAIR epoch on ``sports`` may take on the CPU (two threads): the goal of the
#: CPU propagation work (it was 10 s before that).
SPORTS_EPOCH_GOAL_S = 4.0


def add_ratios(result: Dict[str, Any]) -> None:
    r"""Ratios to our LightGCN, and the goals: STAIR's epoch within 1.2x LightGCN's and below
    every multimodal baseline's; its peak memory below theirs; a ``sports`` epoch within
    :data:`SPORTS_EPOCH_GOAL_S`."""
    by = {r["model"]: r for r in result["models"] if "error" not in r}
    ref, stair, result["goals"] = by.get(REFERENCE), by.get("stair"), {}
    div = lambda r, k: r[k] / ref[k] if r.get(k) and ref.get(k) else float("nan")  # noqa
    for r in by.values() if ref else []:
        r["ratio"] = {"epoch": r["epoch_s"] / ref["epoch_s"], "eval": div(r, "eval_s"),
                      "memory": div(r, "peak_bytes"), "train_memory": div(r, "train_peak_bytes"),
                      **{p: r["phase_s"][p] / ref["epoch_s"] for p in PHASES}}
    if stair is None or ref is None:
        return
    # Training peaks where every model has one (the evaluation is shared), else with evaluation.
    key = ("train_peak_bytes" if all(r.get("train_peak_bytes") is not None for r in by.values())
           else "peak_bytes")
    mm = [m for m in by if m in MULTIMODAL and m != "stair"]
    out = {"epoch_within_1.2x_lightgcn": stair["ratio"]["epoch"] <= 1.2,
           "epoch_below_multimodal": {m: stair["epoch_s"] < by[m]["epoch_s"] for m in mm},
           "memory_below_multimodal": {m: (stair.get(key) or 0) < (by[m].get(key) or 0)
                                       for m in mm}}
    if Path(result["dataset"]["name"]).name == "sports":
        out["sports_epoch_within_goal"] = stair["epoch_s"] <= SPORTS_EPOCH_GOAL_S
    result["goals"] = out


def _met(ok: bool) -> str:
    return f"**{'met' if ok else 'not met'}**"


def _yes_no(d: Dict[str, bool]) -> str:
    return ", ".join(f"{m} {'yes' if ok else '**no**'}" for m, ok in d.items()) or (
        "n/a (no multimodal baseline present)")


def markdown_report(result: Dict[str, Any], absolute: bool) -> str:
    r"""The per-model table: seconds and bytes with :obj:`absolute`, else ratios to LightGCN."""
    info, recs, s = result["dataset"], result["models"], result["settings"]
    lines = [
        f"Dataset `{info['name']}`: {info['num_users']:,} users, {info['num_items']:,} items, "
        f"{info['num_train']:,} training interactions; features "
        + ", ".join(f"{k} {v[1]}-d" for k, v in info["features"].items())
        + (" — **synthetic, timing-only**" if info["timing_only_features"] else "") + ".",
        f"Device: {result['device_name']} (`{result['device']}`); batch {s['batch_size']}, "
        f"d {s['embedding_dim']}, {s['num_layers']} layers; median of {s['repeats']} repeats "
        f"after {s['warmup']} warm-up batches."]
    if not s.get("isolate") and not result["device"].startswith("cuda"):
        lines.append("Models ran in one process (`--no-isolate`): CPU peak memory is indicative "
                     "only (memory freed by one model is reused by the next).")
    featureless = [r["model"] for r in recs if r.get("features_loaded") is False]
    if featureless:
        lines.append("Ran without the item features, which they do not use (their processes "
                     "never held them): " + ", ".join(f"`{m}`" for m in featureless) + ".")
    r0 = next((r for r in recs if r.get("extrapolated")), None)
    if r0:
        lines.append(f"**Epoch times are extrapolated** from {r0['timed_batches']} timed batches "
                     f"of {r0['num_batches']} per repeat.")
    headers = ["model", "params"] + PHASES + (
        ["epoch", "× LightGCN", "eval (full rank)"] if absolute
        else ["epoch × LightGCN", "eval × LightGCN"]) + [
        "train peak", "peak incl. eval", "mem × LightGCN"] + (["build"] if absolute else [])
    rows = []
    for r in recs:
        if "error" in r:
            rows.append([r["model"], "error: " + r["error"].strip().splitlines()[-1][:80]]
                        + [""] * (len(headers) - 2))
            continue
        q = r.get("ratio", {})
        if absolute:
            cells = [M.fmt_seconds(r["phase_s"][p]) for p in PHASES] + [
                M.fmt_seconds(r["epoch_s"]), ratio(q.get("epoch")), M.fmt_seconds(r["eval_s"])]
        else:
            cells = [ratio(q.get(p)) for p in PHASES] + [ratio(q.get("epoch")),
                                                          ratio(q.get("eval"))]
        cells += [M.fmt_bytes(r.get("train_peak_bytes")), M.fmt_bytes(r["peak_bytes"]),
                  ratio(q.get("memory"))] + ([M.fmt_seconds(r["build_s"])] if absolute else [])
        rows.append([r["model"], f"{r['parameters']:,}"] + cells)
    lines += ["", markdown_table(headers, rows), ""]
    if not absolute:
        lines += ["Phase columns: the phase's time as a multiple of LightGCN's whole epoch.", ""]
    lines.append("Memory: growth of the peak over the loaded dataset (CUDA: peak allocated); "
                 "\"train peak\" covers build + training, \"peak incl. eval\" adds one "
                 "full-ranking evaluation (score blocks of `--eval-batch-users` x items), which "
                 "dominates for the small models; \"mem × LightGCN\" compares the latter.")
    top = [(r["model"], r["top_ops"][:3]) for r in recs if r.get("top_ops")]
    if top:
        lines += ["", "One training step per model (torch.profiler, top operators by self "
                  "time):", ""]
        lines += [f"- {m}: " + ", ".join(f"`{o['op']}` {100 * o['share']:.0f}%" for o in ops)
                  for m, ops in top]
    g = result.get("goals")
    if g:
        lines += ["", f"Goals: STAIR epoch ≤ 1.2× LightGCN: {_met(g['epoch_within_1.2x_lightgcn'])}"
                  f"; epoch below multimodal baselines: {_yes_no(g['epoch_below_multimodal'])}"
                  f"; peak memory below them: {_yes_no(g['memory_below_multimodal'])}"
                  + (f"; sports epoch ≤ {SPORTS_EPOCH_GOAL_S:g} s: "
                     f"{_met(g['sports_epoch_within_goal'])}"
                     if "sports_epoch_within_goal" in g else "") + "."]
    return "\n".join(lines)


def plot(result: Dict[str, Any], path: Path) -> Path:
    r"""Stacked phases (+ evaluation) per model, and peak memory beside; on CPU relative to our
    LightGCN's epoch (absolute CPU seconds depend on the machine and its load)."""
    recs = [r for r in result["models"] if "error" not in r]
    unit, ylabel = 1.0, "seconds per epoch (+ one evaluation)"
    ref = next((r for r in recs if r["model"] == REFERENCE), None)
    if not result["device"].startswith("cuda") and ref is not None and ref["epoch_s"]:
        unit, ylabel = ref["epoch_s"], "epoch (+ one evaluation) / LightGCN's epoch"
    stacks = {p: [r["phase_s"][p] / unit for r in recs] for p in PHASES}
    stacks["eval"] = [(r["eval_s"] or 0.0) / unit for r in recs]
    title = (f"{result['dataset']['name']} on {result['device_name'][:60]}"
             + (" (extrapolated epoch)" if any(r.get("extrapolated") for r in recs) else ""))
    return stacked_bar_plot(path, [r["model"] for r in recs], stacks, ylabel, title,
                            ("peak memory (MiB)", [(r["peak_bytes"] or 0) / 2**20 for r in recs]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--dataset", default="sports", help="scientific | ml100k | baby | sports (under "
        "--data-root) | synthetic | an MMRec folder (default: sports)")
    add("--data-root", default=None, help="folder of the named datasets (benchmarks/"
        "profile_models.py: the checkout's ../shared/data)")
    add("--num-interactions", type=int, default=200_000, help="of --dataset synthetic")
    add("--models", default=None, help=f"comma-separated subset of {DEFAULT_MODELS}")
    add("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    for flag, kind, default in (("--batch-size", int, 1024), ("--embedding-dim", int, 64),
                                ("--num-layers", int, 3), ("--lr", float, 1e-3),
                                ("--weight-decay", float, 0.0), ("--seed", int, 1),
                                ("--eval-repeats", int, 3), ("--eval-batch-users", int, 4096),
                                ("--warmup", int, 3), ("--repeats", int, 3),
                                ("--threads", int, None)):
        add(flag, type=kind, default=default)
    add("--hparam", action="append", default=[], metavar="MODEL.KEY=VALUE",
        help="extra constructor hyper-parameter, e.g. stair.gamma=0.1 (YAML value)")
    add("--max-batches", type=int, default=None,
        help="time this many batches per repeat and extrapolate to the epoch")
    add("--skip-eval", action="store_true", help="do not time the evaluation")
    add("--trace", action=argparse.BooleanOptionalAction, default=None,
        help="torch.profiler trace of one training step per model (default: on for CUDA)")
    add("--isolate", action=argparse.BooleanOptionalAction, default=None,
        help="each model in its own process, for clean peak memory (default: on, not --quick)")
    add("--no-tune-malloc", dest="tune_malloc", action="store_false",
        help="leave glibc's malloc thresholds as they are")
    add("--memory-limit-gib", type=float, default=None,
        help=f"with --isolate: kill a worker whose resident memory (read every {MEMORY_POLL_S} "
             "s) exceeds this; reported as a memory failure")
    add("--out", default=None,
        help="output folder (default: build/bench/profile-<dataset>-<device>)")
    add("--quick", action="store_true", help="tiny synthetic graph, a few batches (smoke test)")
    for hidden in ("--worker", "--worker-out", "--worker-settings"):
        add(hidden, default=None, help=argparse.SUPPRESS)


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    import yaml

    if args.quick:
        args.dataset = "synthetic" if args.dataset == "sports" else args.dataset
        args.num_interactions = min(args.num_interactions, 3000)
        args.max_batches = args.max_batches or 2
        args.warmup, args.repeats, args.eval_repeats = 1, 1, 1
        args.batch_size = min(args.batch_size, 256)
        args.isolate = False if args.isolate is None else args.isolate
        args.threads = args.threads or 1  # a smoke test: no thread oversubscription
    args.isolate = True if args.isolate is None else args.isolate
    from stair_pyg.train import resolve_device, tune_cpu_allocator

    cuda = resolve_device(args.device).type == "cuda"
    args.trace = cuda if args.trace is None else args.trace
    if args.tune_malloc and not cuda:
        tune_cpu_allocator()  # what run_experiment does, done before the dataset is loaded
    args.model_hparams = {}
    for item in args.hparam:
        key, sep, value = item.partition("=")
        model, dot, attr = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--hparam expects MODEL.KEY=VALUE, got '{item}'")
        args.model_hparams.setdefault(model, {})[attr] = yaml.safe_load(value)
    for name in args.model_hparams:
        _model_config(name, args)  # an unknown key fails here, not in every worker
    if args.memory_limit_gib is not None and (not args.isolate or args.memory_limit_gib <= 0):
        raise SystemExit("--memory-limit-gib needs --isolate and a positive value")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


_NOT_PASSED = ("worker", "worker_out", "worker_settings", "model_hparams", "memory_limit_gib",
               "models", "quick")


def _run_worker(args: argparse.Namespace, device: torch.device, out_dir: Path) -> int:
    r"""One model in this process, its record to ``--worker-out``."""
    ds, info = load_bench_dataset(args, features=uses_item_features(args.worker))
    load_peak = M.peak_rss_bytes()  # before profile_model resets the high-water mark
    rec = _safe_profile(args.worker, ds, args, device, out_dir)
    rec["features_loaded"] = info["features_loaded"]
    peaks = [v for v in (load_peak, rec.get("memory", {}).get("peak_rss")) if v is not None]
    if peaks:  # loading included: what the machine must hold for this model
        rec["process_peak_bytes"] = max(peaks)
    write_json(Path(args.worker_out), rec)
    return 0


def profile_all(args: argparse.Namespace) -> Dict[str, Any]:
    r"""Profiles every model of ``--models``; writes ``results.json``, ``table.md`` and
    ``profile.png`` to ``--out`` and returns the result (``result["out"]``: the folder)."""
    from stair_pyg.train import resolve_device
    from stair_pyg.train.allocator import release_free_memory

    device = resolve_device(args.device)
    out_dir = Path(args.out or Path("build") / "bench" /
                   f"profile-{Path(args.dataset).name}-{device.type}")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",") if args.models else DEFAULT_MODELS
    unknown = [m for m in models if m not in DEFAULT_MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {DEFAULT_MODELS}")
    # Isolated, every worker loads the data itself: this process holds no item features.
    ds, info = load_bench_dataset(args, features=not args.isolate)
    if args.isolate:
        del ds
        release_free_memory()
    print(f"[profile] {info['name']}: {info['num_users']} users, {info['num_items']} items, "
          f"{info['num_train']} training interactions, features {info['features']}"
          + (" (synthetic, timing-only)" if info["timing_only_features"] else ""), flush=True)
    limit = None if args.memory_limit_gib is None else args.memory_limit_gib * 2**30
    settings = {k: v for k, v in vars(args).items() if k not in _NOT_PASSED}
    records = []
    for name in models:
        t0 = time.perf_counter()
        if args.isolate:
            path = out_dir / "workers" / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "stair_pyg.profiling", "--worker", name,
                    "--worker-out", str(path), "--worker-settings",
                    json.dumps({**settings, "isolate": False, "out": str(out_dir)})]
            rec = worker_record(name, run_watched(argv, limit), path, limit)
        else:
            rec = dict(_safe_profile(name, ds, args, device, out_dir),
                       features_loaded=info["features_loaded"])
        records.append(rec)
        status = ("error: " + rec["error"].strip().splitlines()[-1]) if "error" in rec else (
            f"epoch {M.fmt_seconds(rec['epoch_s'])}, eval {M.fmt_seconds(rec['eval_s'])}, "
            f"peak {M.fmt_bytes(rec['peak_bytes'])}")
        print(f"[profile] {name:18s} {status}  ({time.perf_counter() - t0:.0f} s wall)", flush=True)
    result = {"script": "profile", "dataset": info, "device": str(device),
              "device_name": M.device_name(device), "environment": M.environment(),
              "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
              "reference": REFERENCE, "models": records}
    add_ratios(result)
    write_json(out_dir / "results.json", result)
    table = markdown_report(result, absolute=True)
    (out_dir / "table.md").write_text(table + "\n")
    plot(result, out_dir / "profile.png")
    print(table)
    print(f"[profile] wrote {out_dir / 'results.json'}, table.md, profile.png")
    return dict(result, out=str(out_dir))


def run(args: argparse.Namespace) -> int:
    if args.worker_settings:  # a worker of an isolated run: the parent's settings
        args = argparse.Namespace(**{**vars(args), **json.loads(args.worker_settings)})
    args = finalize_args(args)
    if args.worker:
        from stair_pyg.train import resolve_device

        return _run_worker(args, resolve_device(args.device), Path(args.out or "."))
    result = profile_all(args)
    return 1 if any("error" in r for r in result["models"]) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
