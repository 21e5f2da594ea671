r"""Time and memory of every model on one dataset, phase by phase, side by side in one run.

For each model (STAIR, every baseline of :mod:`stair_pyg.models` that is present, and PyG's own
:class:`torch_geometric.nn.models.LightGCN` "as shipped", trained with BPR through ``edge_index``
exactly as PyG's ``examples/lightgcn.py`` does) this measures:

* one training epoch, split into negative **sampling**, **forward** (``model.loss``), **backward**
  and optimizer **step** (``step`` + ``zero_grad``), plus ``pre_epoch`` work; warm-up batches are
  excluded, the timed batches are repeated and the median repeat is kept; with
  ``--max-batches``/``--epochs-fraction`` a subset of the epoch is timed and extrapolated to the full
  epoch (the output says so);
* one full-ranking evaluation of the test split (every item scored for every test user, training
  and validation items masked), median of repeats after a warm-up;
* peak memory over build + training + evaluation (CUDA: ``max_memory_allocated`` and
  ``max_memory_reserved``; CPU: the peak resident set size growth of the process, each model in its
  own subprocess unless ``--no-isolate``), the worker's whole-process peak, loading included
  (``process_peak_bytes``), and the parameter count;
* ratios of epoch time, evaluation time and peak memory to our ``lightgcn`` in the same run.

With ``--isolate`` (the default) every model runs in its own worker process, which loads the
dataset itself; the parent loads only the graph, for the counts it prints, and never the item
features. The workers of the models that use no features (:obj:`FEATURELESS_MODELS`: ``lightgcn``,
``bpr``, ``pyg_lightgcn``, ``pyg_lightgcn_csr``) do not generate the synthetic ones either; each
record says whether its process held them (``features_loaded``). ``--memory-limit-gib X`` makes
the parent read each worker's resident memory every 0.2 s and kill it (``SIGKILL``) above X GiB;
the model is then reported as a memory failure (``memory_failure``: ``"limit"``, or ``"oom"``
for a ``SIGKILL`` it did not send, i.e. the kernel's out-of-memory killer, or ``"allocation"``
for an allocation that raised) with the resident memory in ``memory_exceeded_bytes``.

Outputs (in ``--out``): ``results.json``, ``table.md``, ``profile.png``; with ``--trace`` (default on
CUDA) a ``torch.profiler`` chrome trace of the slowest phase of each model and a table of its top
operators. ``--write-results`` also writes the section ``profile:<dataset>-<device>`` of
``benchmarks/RESULTS.md`` (ratios on CPU; absolute figures only from a CUDA run, with the GPU named).

Examples::

    python benchmarks/profile.py --quick                       # tiny synthetic graph, < 1 minute
    python benchmarks/profile.py --dataset sports --max-batches 20 --write-results
    python benchmarks/profile.py --dataset sports --device cuda --write-results
    python benchmarks/profile.py --dataset synthetic --num-interactions 1000000 \
        --memory-limit-gib 22                                   # a worker above 22 GiB is killed
    python benchmarks/profile.py --all                          # every benchmark, RESULTS.md
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

_HERE = Path(__file__).resolve().parent
# This folder holds "profile.py", which would shadow the standard library's ``profile`` module
# (imported by cProfile, which torch imports): keep the folder itself off sys.path and import the
# scripts as the namespace package ``benchmarks`` of the repository root.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import torch

from benchmarks import _common as C

# Ours and the baselines through the registry, plus PyG's LightGCN as shipped (two adjacencies).
DEFAULT_MODELS = ["stair", "lightgcn", "pyg_lightgcn", "pyg_lightgcn_csr", "bpr", "vbpr",
                  "freedom", "bm3", "lgmrec"]
MULTIMODAL = {"stair", "vbpr", "freedom", "bm3", "lgmrec"}
PYG_MODELS = {"pyg_lightgcn": "edge_index", "pyg_lightgcn_csr": "csr"}
REFERENCE = "lightgcn"
PHASES = ["sampling", "forward", "backward", "step"]
REAL_DATASETS = ["scientific", "ml100k", "baby", "sports"]
FEATURELESS = {"baby", "sports"}  # no real features: synthetic MMRec-sized ones, timing-only
#: Models that read no item modality features (every one that is not :obj:`MULTIMODAL`:
#: ``LightGCN.from_data`` and ``BPRMF.from_data`` use only the training graph / the user and item
#: counts, :class:`PyGLightGCN` only the graph). Their ``--isolate`` workers do not generate the
#: synthetic features (15 GB at 10^7 interactions).
FEATURELESS_MODELS = set(DEFAULT_MODELS) - MULTIMODAL
#: How often the parent reads a worker's resident memory under ``--memory-limit-gib``.
MEMORY_POLL_S = 0.2


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def load_bench_dataset(args: argparse.Namespace, features: bool = True):
    r"""Returns ``(RecDataset, info)`` for ``--dataset``: a real graph of ``../shared/data`` (or any
    MMRec folder), or ``synthetic`` (:func:`_common.scaling_graph` of ``--num-interactions``).

    Where the dataset has no item features of its own (``synthetic``, and :obj:`FEATURELESS`
    ``baby``/``sports``), Gaussian ones of MMRec's dimensions are generated, timing-only. With
    :obj:`features` set to :obj:`False` they are not generated (at :math:`10^7` interactions they
    are 15 GB): the parent of ``--isolate`` workers, which needs only the counts, and the workers
    of :obj:`FEATURELESS_MODELS`. ``info["features"]`` always gives the shapes that a multimodal
    model sees; ``info["features_loaded"]`` says whether this process holds item features
    (features read from the dataset's own files always are: they are small).
    """
    # Imported before tracemalloc starts (tracing the import of torch_geometric takes seconds,
    # and the traced peak is meant for the loading itself).
    import stair_pyg.data  # noqa: F401
    from stair_pyg.data.hetero import modality_features

    name = args.dataset
    info: Dict[str, Any] = {"name": name, "timing_only_features": False}
    t0 = time.perf_counter()
    mem: Dict[str, Any] = {}
    with C.tracemalloc_peak(mem, "load_tracemalloc_peak"):
        if name == "synthetic":
            # The features are drawn last from the same generator: the graph is the same
            # with or without them.
            ds = C.scaling_graph(args.num_interactions, seed=args.seed,
                                 feature_dims=C.MMREC_FEATURE_DIMS if features else None)
            info["timing_only_features"] = True
        else:
            path = Path(name)
            if not path.exists():
                path = C.DATA_ROOT / name
            if not path.exists():
                raise SystemExit(f"dataset '{name}' not found (looked for {path}); choose one of "
                                 f"{REAL_DATASETS + ['synthetic']} or give an MMRec folder")
            ds = _load_mmrec(path)
            info["path"] = str(path)
    info["load_s"] = time.perf_counter() - t0
    info.update(mem)
    data = ds.data
    num_items = int(data["item"].num_nodes)
    shapes = {k: list(v.shape) for k, v in modality_features(data).items()}
    if name != "synthetic" and (not shapes or path_name(name) in FEATURELESS):
        # MMRec's Amazon dimensions: 4096-d image (VGG) and 384-d text (SBERT) features.
        gen = torch.Generator().manual_seed(args.seed + 1)
        for modality, dim in C.MMREC_FEATURE_DIMS.items():
            if f"{modality}_feat" in data["item"]:
                continue
            if features:
                data["item"][f"{modality}_feat"] = torch.randn(num_items, dim, generator=gen)
            shapes[modality] = [num_items, dim]
        info["timing_only_features"] = True
    if name == "synthetic" and not features:
        shapes = {m: [num_items, dim] for m, dim in C.MMREC_FEATURE_DIMS.items()}
    info["num_users"] = int(data["user"].num_nodes)
    info["num_items"] = num_items
    info["num_train"] = int(ds.splits.train.size(1))
    info["num_test"] = int(ds.splits.test.size(1))
    info["features"] = shapes
    info["features_loaded"] = bool(modality_features(data))
    return ds, info


def path_name(name: str) -> str:
    return Path(name).name


def _load_mmrec(path: Path):
    try:
        from stair_pyg.data import load_dataset  # the documented entry point

        return load_dataset({"format": "mmrec", "path": str(path)})
    except ImportError:
        from stair_pyg.data.mmrec import load_mmrec

        return load_mmrec(path)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class PyGLightGCN(torch.nn.Module):
    r""":class:`torch_geometric.nn.models.LightGCN` as shipped, trained as in PyG's
    ``examples/lightgcn.py``: one homogeneous node set (users, then items), the undirected
    ``edge_index`` of the training graph passed to every forward (normalised by ``gcn_norm``
    inside every call), negatives drawn with :func:`torch.randint` over all items, and
    ``recommendation_loss(pos, neg, node_id=edge_label_index.unique())`` optimised by Adam.

    With ``adjacency="csr"`` the same model receives a torch sparse CSR adjacency instead of
    ``edge_index`` (PyG accepts both).
    """

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
        elif adjacency != "edge_index":
            raise ValueError(f"adjacency must be 'edge_index' or 'csr', got '{adjacency}'")
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.model = LightGCN(num_nodes=n, embedding_dim=embedding_dim, num_layers=num_layers)

    def sample_negatives(self, users: torch.Tensor, generator=None) -> torch.Tensor:
        return torch.randint(self.num_items, users.shape, generator=generator)

    def loss(self, users, pos_items, neg_items):
        u = self.num_users
        edge_label_index = torch.stack([torch.cat([users, users]),
                                        torch.cat([pos_items, neg_items]) + u])
        pos_rank, neg_rank = self.model(self.edge_index, edge_label_index).chunk(2)
        return self.model.recommendation_loss(pos_rank, neg_rank,
                                              node_id=edge_label_index.unique())

    def configure_optimizer(self, lr: float, weight_decay: float):
        return torch.optim.Adam(self.parameters(), lr=lr)

    def pre_epoch(self, epoch: int) -> None:
        return None

    def embeddings(self):
        emb = self.model.get_embedding(self.edge_index)
        return emb[:self.num_users], emb[self.num_users:]


def available_models() -> List[str]:
    from stair_pyg.models import MODELS

    out = []
    for name in DEFAULT_MODELS:
        if name in PYG_MODELS:
            out.append(name)
            continue
        module = MODELS.get(name, "").split(":")[0]
        if module and _module_exists(module):
            out.append(name)
    return out


def _module_exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _accepted(cls: type, hparams: Dict[str, Any]) -> Dict[str, Any]:
    r"""The subset of :obj:`hparams` that ``cls.__init__`` (or ``from_data``) accepts by name."""
    names = set()
    for fn in (cls.__init__, getattr(cls, "from_data", None)):
        if fn is None:
            continue
        params = inspect.signature(fn).parameters
        names |= {k for k, p in params.items()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in hparams.items() if k in names}


def build_model(name: str, data, args: argparse.Namespace) -> torch.nn.Module:
    common = {"embedding_dim": args.embedding_dim, "num_layers": args.num_layers}
    if name in PYG_MODELS:
        return PyGLightGCN(data, adjacency=PYG_MODELS[name], **common)
    from stair_pyg.models import get_model

    cls = get_model(name)
    hparams = _accepted(cls, common)
    hparams.update(args.model_hparams.get(name, {}))
    return cls.from_data(data, **hparams)


# --------------------------------------------------------------------------------------------
# Measurement of one model
# --------------------------------------------------------------------------------------------


class _Sampler:
    r"""Batches of (user, positive, negative) in the order of a shuffled epoch."""

    def __init__(self, model, ds, batch_size: int, seed: int):
        train = ds.splits.train
        self.users, self.items = train[0], train[1]
        self.batch_size = batch_size
        self.num_batches = math.ceil(train.size(1) / batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(train.size(1), generator=self.gen)
        self.cursor = 0
        if hasattr(model, "sample_negatives"):
            self.negatives = model.sample_negatives
        else:
            from stair_pyg.train.sampling import NegativeSampler
            from stair_pyg.data.hetero import num_users_items

            sampler = NegativeSampler(train, *num_users_items(ds.data))
            self.negatives = sampler.sample

    def next(self, device: torch.device):
        if self.cursor >= self.num_batches:
            self.cursor = 0
            self.perm = torch.randperm(self.users.numel(), generator=self.gen)
        idx = self.perm[self.cursor * self.batch_size:(self.cursor + 1) * self.batch_size]
        self.cursor += 1
        users, pos = self.users[idx], self.items[idx]
        neg = self.negatives(users, generator=self.gen)
        return users.to(device), pos.to(device), neg.to(device)


def _train_batch(model, opt, sampler, device, timer: Optional[C.PhaseTimer],
                 trace_phase: Optional[str] = None, trace_path: Optional[Path] = None):
    r"""One optimisation step, phases timed by :obj:`timer`; :obj:`trace_phase` is run under
    :mod:`torch.profiler` instead (its trace written to :obj:`trace_path`)."""
    out: Dict[str, Any] = {}

    def run(phase, fn):
        if phase == trace_phase:
            return _profiled(fn, device, trace_path, out)
        if timer is None:
            return fn()
        with timer.phase(phase):
            return fn()

    batch = run("sampling", lambda: sampler.next(device))
    loss = run("forward", lambda: model.loss(*batch))
    run("backward", loss.backward)

    def step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    run("step", step)
    return out


def _profiled(fn, device: torch.device, path: Optional[Path], out: Dict[str, Any]):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=False, with_stack=False) as prof:
        result = fn()
        C.synchronize(device)
    sort_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(path))
        path.with_suffix(".txt").write_text(averages.table(sort_by=sort_key, row_limit=25))
        out["trace"] = str(path)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = sorted(averages, key=lambda e: getattr(e, attr, 0) or 0, reverse=True)[:8]
    total = sum((getattr(e, attr, 0) or 0) for e in averages) or 1.0
    out["top_ops"] = [{"op": e.key, "self_ms": (getattr(e, attr, 0) or 0) / 1e3,
                       "share": (getattr(e, attr, 0) or 0) / total} for e in rows]
    return result


def _peak_so_far(meter: C.MemoryMeter, device: torch.device) -> Optional[int]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak, base = C.peak_rss_bytes(), meter.result.get("base_rss")
    return None if peak is None or base is None else max(peak - base, 0)


def _evaluate_fn(model, ds, args):
    from stair_pyg.eval.evaluator import evaluate_embeddings

    def run():
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                user_emb, item_emb = model.embeddings()
                return evaluate_embeddings(user_emb, item_emb, ds.splits, "test", (10, 20, 50),
                                           args.eval_batch_users, cold_start=False)
        finally:
            model.train(was)

    return run


def profile_model(name: str, ds, args: argparse.Namespace, device: torch.device,
                  out_dir: Path) -> Dict[str, Any]:
    r"""Every measurement of one model (see the module docstring)."""
    torch.manual_seed(args.seed)
    rec: Dict[str, Any] = {"model": name, "multimodal": name in MULTIMODAL}
    if name not in PYG_MODELS:  # import the module outside the measured section
        from stair_pyg.models import get_model

        get_model(name)
    meter = C.MemoryMeter(device)
    with meter:
        t0 = time.perf_counter()
        model = build_model(name, ds.data, args).to(device)
        C.synchronize(device)
        rec["build_s"] = time.perf_counter() - t0
        rec["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        opt = model.configure_optimizer(args.lr, args.weight_decay)
        model.train()
        sampler = _Sampler(model, ds, args.batch_size, args.seed)
        nb = sampler.num_batches
        timed = nb
        if args.max_batches:
            timed = min(timed, args.max_batches)
        if args.epochs_fraction:
            timed = min(timed, max(1, math.ceil(args.epochs_fraction * nb)))
        repeats = max(1, args.repeats)
        rec.update(num_batches=nb, timed_batches=timed, repeats=repeats,
                   warmup_batches=args.warmup, extrapolated=timed < nb)

        # pre_epoch once untimed (warm-up), then timed per repeat.
        model.pre_epoch(0)
        for _ in range(args.warmup):
            _train_batch(model, opt, sampler, device, None)
        C.synchronize(device)
        per_repeat: List[Dict[str, float]] = []
        pre_epoch_s: List[float] = []
        for r in range(repeats):
            pre_epoch_s.append(C.time_call(lambda: model.pre_epoch(r + 1), device, 1, 0)["median"])
            timer = C.PhaseTimer(device)
            for _ in range(timed):
                _train_batch(model, opt, sampler, device, timer)
            per_repeat.append(timer.totals())
        # Median repeat (by total), so the phases of one repeat add up to its total.
        per_repeat.sort(key=lambda t: sum(t.values()))
        mid = per_repeat[len(per_repeat) // 2]
        scale = nb / timed
        rec["phase_s"] = {p: mid.get(p, 0.0) * scale for p in PHASES}
        rec["pre_epoch_s"] = C.median(pre_epoch_s)
        rec["epoch_s"] = sum(rec["phase_s"].values()) + rec["pre_epoch_s"]
        rec["batch_ms"] = 1e3 * sum(mid.values()) / timed
        rec["epoch_s_repeats"] = [sum(t.values()) * scale for t in per_repeat]

        # Peak of build + training alone (the evaluation's score blocks come next).
        rec["train_peak_bytes"] = _peak_so_far(meter, device)
        eval_fn = _evaluate_fn(model, ds, args)
        if args.skip_eval:
            rec["eval_s"] = float("nan")
        else:
            ev = C.time_call(eval_fn, device, repeats=args.eval_repeats, warmup=1)
            rec["eval_s"] = ev["median"]

        if args.trace:
            phases = dict(rec["phase_s"])
            if not args.skip_eval:
                phases["eval"] = rec["eval_s"]
            slowest = max(phases, key=phases.get)
            rec["traced_phase"] = slowest
            path = out_dir / "traces" / f"{name}-{slowest}.json"
            if slowest == "eval":
                info: Dict[str, Any] = {}
                _profiled(eval_fn, device, path, info)
            else:
                info = _train_batch(model, opt, sampler, device, None, slowest, path)
            rec.update({k: v for k, v in info.items() if k in ("trace", "top_ops")})
    rec["memory"] = meter.result
    rec["peak_bytes"] = meter.peak_bytes()
    del model, opt
    return rec


# --------------------------------------------------------------------------------------------
# Memory watchdog of the --isolate workers
# --------------------------------------------------------------------------------------------


def run_watched(argv: Sequence[str], memory_limit_bytes: Optional[float] = None,
                poll_s: float = MEMORY_POLL_S) -> Dict[str, Any]:
    r"""Runs :obj:`argv` to completion, reading its resident memory every :obj:`poll_s` seconds
    (:func:`_common.process_memory_bytes`: the larger of ``VmRSS`` and ``VmHWM``) and killing it
    with ``SIGKILL`` as soon as that exceeds :obj:`memory_limit_bytes` (:obj:`None`: never).

    Returns ``{"returncode", "stdout", "stderr", "seconds", "peak_seen_bytes",
    "killed_at_bytes"}`` where ``killed_at_bytes`` is the resident memory that triggered the
    kill (:obj:`None` if the watchdog did not kill it) and ``peak_seen_bytes`` the largest
    reading (:obj:`None` if none). The child is killed too if this process is interrupted while
    waiting.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak: Optional[int] = None
    killed_at: Optional[int] = None
    stdout, stderr = "", ""
    try:
        while True:
            try:
                # Retrying communicate() after its timeout loses no output (subprocess docs).
                stdout, stderr = proc.communicate(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            rss = C.process_memory_bytes(proc.pid)
            if rss is None:
                continue
            peak = rss if peak is None else max(peak, rss)
            if memory_limit_bytes is not None and rss > memory_limit_bytes:
                killed_at = rss
                proc.kill()
                stdout, stderr = proc.communicate()
                break
    finally:
        if proc.poll() is None:  # interrupted: leave no worker behind
            proc.kill()
            proc.wait()
    return {"returncode": proc.returncode, "stdout": stdout or "", "stderr": stderr or "",
            "seconds": time.perf_counter() - t0, "peak_seen_bytes": peak,
            "killed_at_bytes": killed_at}


_ALLOCATION_FAILURES = ("MemoryError", "can't allocate memory", "not enough memory",
                        "Cannot allocate memory")


def worker_record(name: str, out: Dict[str, Any], path: Path,
                  memory_limit_bytes: Optional[float] = None) -> Dict[str, Any]:
    r"""The record of one ``--isolate`` worker from :func:`run_watched`'s :obj:`out` and the
    JSON it wrote to :obj:`path` (if any). Memory failures carry ``memory_failure``:
    ``"limit"`` (killed by the watchdog), ``"oom"`` (``SIGKILL`` that the watchdog did not send:
    the kernel's out-of-memory killer) or ``"allocation"`` (an allocation raised), and
    ``memory_exceeded_bytes`` (the resident memory when killed, or last seen)."""
    gib = 2**30
    if out["killed_at_bytes"] is not None:
        return {"model": name, "memory_failure": "limit",
                "error": f"exceeded the memory limit of {memory_limit_bytes / gib:.3g} GiB "
                         f"(killed at {out['killed_at_bytes'] / gib:.3g} GiB after "
                         f"{out['seconds']:.1f} s)",
                "memory_exceeded_bytes": out["killed_at_bytes"],
                "memory_limit_bytes": memory_limit_bytes}
    if out["returncode"] == -9:
        seen = out["peak_seen_bytes"]
        return {"model": name, "memory_failure": "oom",
                "error": "killed by SIGKILL that the memory watchdog did not send: most likely "
                         "the kernel's out-of-memory killer ("
                         + (f"{seen / gib:.3g} GiB resident when last seen, " if seen else "")
                         + f"after {out['seconds']:.1f} s)",
                "memory_exceeded_bytes": seen}
    if path.exists():
        rec = json.loads(path.read_text())
    else:
        rec = {"model": name, "error": f"worker exited {out['returncode']}: "
               + (out["stderr"] or out["stdout"])[-2000:]}
    if "error" in rec and any(s in rec["error"] for s in _ALLOCATION_FAILURES):
        rec["memory_failure"] = "allocation"
        rec["memory_exceeded_bytes"] = out["peak_seen_bytes"]
    if out["peak_seen_bytes"] is not None:
        rec["watchdog_peak_bytes"] = out["peak_seen_bytes"]
    return rec


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="sports",
                        help="scientific | ml100k | baby | sports | synthetic | an MMRec folder "
                             "(default: sports)")
    parser.add_argument("--num-interactions", type=int, default=200_000,
                        help="training interactions of --dataset synthetic (default: 200000)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated subset of {DEFAULT_MODELS} (default: all present)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--hparam", action="append", default=[], metavar="MODEL.KEY=VALUE",
                        help="extra constructor hyper-parameter, e.g. stair.gamma=0.1 (YAML value)")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="time this many batches per repeat and extrapolate to the epoch")
    parser.add_argument("--epochs-fraction", type=float, default=None,
                        help="time this fraction of an epoch per repeat and extrapolate")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up batches")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median kept)")
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--eval-batch-users", type=int, default=4096)
    parser.add_argument("--skip-eval", action="store_true",
                        help="do not time the full-ranking evaluation (scaling sweeps)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--trace", dest="trace", action="store_true", default=None,
                        help="torch.profiler trace of each model's slowest phase "
                             "(default: on for CUDA)")
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                        help="each model in its own subprocess, for clean peak memory "
                             "(default: on, except --quick)")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false")
    parser.add_argument("--no-tune-malloc", dest="tune_malloc", action="store_false",
                        help="leave glibc's malloc thresholds as they are (the Trainer fixes "
                             "them on CPU: stair_pyg.train.allocator)")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="with --isolate: kill (SIGKILL) a worker whose resident memory "
                             f"exceeds this, read every {MEMORY_POLL_S} s; it is reported as a "
                             "memory failure (default: no limit)")
    parser.add_argument("--out", default=None, help="output folder (default: "
                        "build/bench/profile-<dataset>-<device>)")
    parser.add_argument("--write-results", action="store_true",
                        help="also write this run's section of benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true",
                        help="tiny synthetic graph, every model, a few batches (CI smoke test)")
    parser.add_argument("--all", action="store_true",
                        help="run every benchmark (this, scaling, propagation, modality) and write "
                             "benchmarks/RESULTS.md; with --quick, their quick modes (RESULTS.md "
                             "untouched)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)


def finalize_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.quick:
        args.dataset = "synthetic" if args.dataset == "sports" else args.dataset
        args.num_interactions = min(args.num_interactions, 3000)
        args.max_batches = args.max_batches or 2
        args.warmup, args.repeats, args.eval_repeats = 1, 1, 1
        args.batch_size = min(args.batch_size, 256)
        if args.isolate is None:
            args.isolate = False
        args.threads = args.threads or 1  # a smoke test: no thread oversubscription
    if args.isolate is None:
        args.isolate = True
    device = C.resolve_device(args.device)
    if args.trace is None:
        args.trace = device.type == "cuda"
    args.model_hparams = _parse_hparams(args.hparam)
    if args.memory_limit_gib is not None:
        if not args.isolate:
            raise SystemExit("--memory-limit-gib needs --isolate (each model in its own watched "
                             "process)")
        if args.memory_limit_gib <= 0:
            raise SystemExit(f"--memory-limit-gib must be positive, got {args.memory_limit_gib}")
    return args


def _parse_hparams(items: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    import yaml

    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, dot, attr = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--hparam expects MODEL.KEY=VALUE, got '{item}'")
        out.setdefault(model, {})[attr] = yaml.safe_load(value)
    return out


def _worker_argv(args: argparse.Namespace, name: str, path: Path) -> List[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-out",
            str(path), "--no-isolate"]
    skip = {"worker", "worker_out", "isolate", "models", "quick", "all", "write_results",
            "model_hparams", "out", "memory_limit_gib"}
    for key, value in vars(args).items():
        if key == "tune_malloc":
            if not value:
                argv.append("--no-tune-malloc")
            continue
        if key == "trace":
            argv.append("--trace" if value else "--no-trace")
            continue
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "hparam":
            for item in value:
                argv += ["--hparam", item]
        elif value is True:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    argv += ["--out", str(path.parent.parent)]  # traces beside the parent's results
    return argv


def run(args: argparse.Namespace) -> int:
    if args.all:
        return run_all(args)
    args = finalize_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = C.resolve_device(args.device)
    out_dir = Path(args.out or C.REPO_ROOT / "build" / "bench" /
                   f"profile-{path_name(args.dataset)}-{device.type}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu" and args.tune_malloc:
        # What the Trainer does on CPU (train.tune_malloc), for every model alike: without it,
        # each large temporary is mapped afresh and page-faulted in, every step.
        from stair_pyg.train.allocator import tune_cpu_allocator

        tune_cpu_allocator()

    if args.worker:  # one model in this process, result to --worker-out
        ds, info = load_bench_dataset(args, features=args.worker not in FEATURELESS_MODELS)
        load_peak = C.peak_rss_bytes()  # before profile_model resets the high-water mark
        rec = _safe_profile(args.worker, ds, args, device, out_dir)
        rec["features_loaded"] = info["features_loaded"]
        peaks = [v for v in (load_peak, rec.get("memory", {}).get("peak_rss")) if v is not None]
        if peaks:  # loading included: what the machine must hold for this model
            rec["process_peak_bytes"] = max(peaks)
        C.write_json(Path(args.worker_out), rec)
        return 0

    models = args.models.split(",") if args.models else available_models()
    unknown = [m for m in models if m not in DEFAULT_MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {DEFAULT_MODELS}")
    # Isolated: every worker loads the data itself; this process needs only the counts and
    # shapes, so it holds no item features (2 copies of 15 GB at 10^7 interactions otherwise).
    ds, info = load_bench_dataset(args, features=not args.isolate)
    if args.isolate:
        del ds
        _release_memory()
    print(f"[profile] {info['name']}: {info['num_users']} users, {info['num_items']} items, "
          f"{info['num_train']} training interactions, features {info['features']}"
          + (" (synthetic, timing-only)" if info["timing_only_features"] else ""), flush=True)
    limit = None if args.memory_limit_gib is None else args.memory_limit_gib * 2**30
    records = []
    for name in models:
        t0 = time.perf_counter()
        if args.isolate:
            path = out_dir / "workers" / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            out = run_watched(_worker_argv(args, name, path), limit)
            rec = worker_record(name, out, path, limit)
        else:
            rec = _safe_profile(name, ds, args, device, out_dir)
            rec["features_loaded"] = info["features_loaded"]
        records.append(rec)
        status = ("error: " + rec["error"].splitlines()[-1]) if "error" in rec else (
            f"epoch {C.fmt_seconds(rec['epoch_s'])}, eval {C.fmt_seconds(rec['eval_s'])}, "
            f"peak {C.fmt_bytes(rec['peak_bytes'])}")
        print(f"[profile] {name:18s} {status}  ({time.perf_counter() - t0:.0f} s wall)", flush=True)

    result = {"script": "profile", "dataset": info, "device": str(device),
              "device_name": C.device_name(device), "environment": C.environment(),
              "settings": {k: v for k, v in vars(args).items()
                           if k not in ("worker", "worker_out", "model_hparams")},
              "reference": REFERENCE, "models": records}
    add_ratios(result)
    C.write_json(out_dir / "results.json", result)
    table = markdown_report(result, absolute=True)
    (out_dir / "table.md").write_text(table + "\n")
    plot(result, out_dir / "profile.png")
    print(table)
    print(f"[profile] wrote {out_dir / 'results.json'}, table.md, profile.png")
    if args.write_results:
        write_results_section(result, out_dir)
    return 0 if not any("error" in r for r in records) else 1


def _release_memory() -> None:
    r"""Hands freed heap memory back to the operating system (glibc's ``malloc_trim``; a no-op
    elsewhere), so that the isolated parent holds only its libraries while the workers run
    (without it, the transient peak of building the graph stays resident)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _safe_profile(name, ds, args, device, out_dir) -> Dict[str, Any]:
    import traceback

    try:
        return profile_model(name, ds, args, device, out_dir)
    except Exception:  # a model that fails is reported, the others still run
        return {"model": name, "error": traceback.format_exc()}


def add_ratios(result: Dict[str, Any]) -> None:
    ref = next((r for r in result["models"] if r["model"] == REFERENCE and "error" not in r),
               None)
    for r in result["models"]:
        if "error" in r or ref is None:
            continue
        r["ratio"] = {
            "epoch": r["epoch_s"] / ref["epoch_s"],
            "eval": r["eval_s"] / ref["eval_s"] if ref["eval_s"] else float("nan"),
            "memory": (r["peak_bytes"] / ref["peak_bytes"]
                       if r.get("peak_bytes") and ref.get("peak_bytes") else float("nan")),
            "train_memory": (r["train_peak_bytes"] / ref["train_peak_bytes"]
                             if r.get("train_peak_bytes") and ref.get("train_peak_bytes")
                             else float("nan")),
        }
        for p in PHASES:
            r["ratio"][p] = r["phase_s"][p] / ref["epoch_s"]
    result["goals"] = goals(result)


def goals(result: Dict[str, Any]) -> Dict[str, Any]:
    r"""The issue's targets: STAIR epoch within 1.2x LightGCN's and below every multimodal
    baseline's; peak memory below every multimodal baseline's; sports epoch <= 10 s."""
    by = {r["model"]: r for r in result["models"] if "error" not in r}
    stair = by.get("stair")
    if stair is None or REFERENCE not in by:
        return {}
    mm = [m for m in by if m in MULTIMODAL and m != "stair"]
    out = {
        "epoch_within_1.2x_lightgcn": stair["ratio"]["epoch"] <= 1.2,
        "epoch_below_multimodal": {m: stair["epoch_s"] < by[m]["epoch_s"] for m in mm},
        "memory_below_multimodal": {m: _mem(stair, by) < _mem(by[m], by) for m in mm},
    }
    if path_name(result["dataset"]["name"]) == "sports":
        out["sports_epoch_at_most_10s"] = stair["epoch_s"] <= 10.0
    return out


def _mem(rec: Dict[str, Any], by: Dict[str, Dict[str, Any]]) -> float:
    r"""Training peak where every model has it (the evaluation is shared), else the peak
    including evaluation."""
    key = ("train_peak_bytes" if all(r.get("train_peak_bytes") is not None for r in by.values())
           else "peak_bytes")
    return float(rec.get(key) or 0)


def markdown_report(result: Dict[str, Any], absolute: bool) -> str:
    r"""The per-model table. With :obj:`absolute` the seconds and bytes, else ratios to
    LightGCN (ours) only."""
    info = result["dataset"]
    recs = result["models"]
    any_extra = any(r.get("extrapolated") for r in recs if "error" not in r)
    lines = [
        f"Dataset `{info['name']}`: {info['num_users']:,} users, {info['num_items']:,} items, "
        f"{info['num_train']:,} training interactions; features "
        + ", ".join(f"{k} {v[1]}-d" for k, v in info["features"].items())
        + (" — **synthetic, timing-only**" if info["timing_only_features"] else "") + ".",
        f"Device: {result['device_name']} (`{result['device']}`); batch "
        f"{result['settings']['batch_size']}, d {result['settings']['embedding_dim']}, "
        f"{result['settings']['num_layers']} layers; median of {result['settings']['repeats']} "
        f"repeats after {result['settings']['warmup']} warm-up batches.",
    ]
    if not result["settings"].get("isolate") and not result["device"].startswith("cuda"):
        lines.append("Models ran in one process (`--no-isolate`): CPU peak memory is indicative "
                     "only (memory freed by one model is reused by the next).")
    featureless = [r["model"] for r in recs if r.get("features_loaded") is False]
    if featureless:
        lines.append("Ran without the item features, which they do not use (their processes "
                     "never held them): " + ", ".join(f"`{m}`" for m in featureless) + ".")
    if any_extra:
        r0 = next(r for r in recs if "error" not in r)
        lines.append(f"**Epoch times are extrapolated** from {r0['timed_batches']} timed batches "
                     f"of {r0['num_batches']} per repeat.")
    lines.append("")
    if absolute:
        headers = ["model", "params", "sampling", "forward", "backward", "step", "epoch",
                   "× LightGCN", "eval (full rank)", "train peak", "peak incl. eval",
                   "mem × LightGCN", "build"]
    else:
        headers = ["model", "params", "sampling", "forward", "backward", "step",
                   "epoch × LightGCN", "eval × LightGCN", "train peak", "peak incl. eval",
                   "mem × LightGCN"]
    rows = []
    for r in recs:
        if "error" in r:
            rows.append([r["model"], "error: " + r["error"].strip().splitlines()[-1][:80]]
                        + [""] * (len(headers) - 2))
            continue
        ratio = r.get("ratio", {})
        f = lambda x: f"{x:.2f}×" if x is not None and not math.isnan(x) else "n/a"  # noqa: E731
        if absolute:
            rows.append([r["model"], f"{r['parameters']:,}"]
                        + [C.fmt_seconds(r["phase_s"][p]) for p in PHASES]
                        + [C.fmt_seconds(r["epoch_s"]), f(ratio.get("epoch")),
                           C.fmt_seconds(r["eval_s"]), C.fmt_bytes(r.get("train_peak_bytes")),
                           C.fmt_bytes(r["peak_bytes"]), f(ratio.get("memory")),
                           C.fmt_seconds(r["build_s"])])
        else:
            rows.append([r["model"], f"{r['parameters']:,}"]
                        + [f(ratio.get(p)) for p in PHASES]
                        + [f(ratio.get("epoch")), f(ratio.get("eval")),
                           C.fmt_bytes(r.get("train_peak_bytes")), C.fmt_bytes(r["peak_bytes"]),
                           f(ratio.get("memory"))])
    lines.append(C.markdown_table(headers, rows))
    if not absolute:
        lines.append("")
        lines.append("Phase columns: the phase's time as a multiple of LightGCN's whole epoch.")
    lines.append("")
    lines.append("Memory: growth of the peak over the loaded dataset (CUDA: peak allocated); "
                 "\"train peak\" covers build + training, \"peak incl. eval\" adds one "
                 "full-ranking evaluation (score blocks of `--eval-batch-users` x items), which "
                 "dominates for the small models; \"mem × LightGCN\" compares the latter.")
    top = [(r["model"], r["traced_phase"], r["top_ops"][:3]) for r in recs if r.get("top_ops")]
    if top:
        lines.append("")
        lines.append("Slowest phase per model (torch.profiler, top operators by self time):")
        lines.append("")
        for model, phase, ops in top:
            ops_s = ", ".join(f"`{o['op']}` {100 * o['share']:.0f}%" for o in ops)
            lines.append(f"- {model}: {phase} — {ops_s}")
    g = result.get("goals")
    if g:
        lines.append("")
        lines.append("Goals: STAIR epoch ≤ 1.2× LightGCN: "
                     f"**{'met' if g['epoch_within_1.2x_lightgcn'] else 'not met'}**; "
                     "epoch below multimodal baselines: "
                     + _yes_no(g["epoch_below_multimodal"]) + "; peak memory below them: "
                     + _yes_no(g["memory_below_multimodal"])
                     + (f"; sports epoch ≤ 10 s: **{'met' if g['sports_epoch_at_most_10s'] else 'not met'}**"
                        if "sports_epoch_at_most_10s" in g else "") + ".")
    return "\n".join(lines)


def _yes_no(d: Dict[str, bool]) -> str:
    if not d:
        return "n/a (no multimodal baseline present)"
    return ", ".join(f"{m} {'yes' if ok else '**no**'}" for m, ok in d.items())


def plot(result: Dict[str, Any], path: Path) -> Path:
    recs = [r for r in result["models"] if "error" not in r]
    labels = [r["model"] for r in recs]
    # On a CPU, times are shown relative to our LightGCN's epoch (absolute CPU seconds depend on
    # the machine and its load); on a GPU in seconds.
    unit, ylabel = 1.0, "seconds per epoch (+ one evaluation)"
    ref = next((r for r in recs if r["model"] == "lightgcn"), None)
    if not result["device"].startswith("cuda") and ref is not None and ref["epoch_s"]:
        unit, ylabel = ref["epoch_s"], "epoch (+ one evaluation) / LightGCN's epoch"
    stacks = {p: [r["phase_s"][p] / unit for r in recs] for p in PHASES}
    stacks["eval"] = [(r["eval_s"] or 0.0) / unit for r in recs]
    side = ("peak memory (MiB)", [(r["peak_bytes"] or 0) / 2**20 for r in recs])
    title = (f"{result['dataset']['name']} on {result['device_name'][:60]}"
             + (" (extrapolated epoch)" if any(r.get("extrapolated") for r in recs) else ""))
    return C.stacked_bar_plot(path, labels, stacks, ylabel, title, side)


def write_results_section(result: Dict[str, Any], out_dir: Path) -> Path:
    import shutil

    name = f"{path_name(result['dataset']['name'])}-{result['device'].split(':')[0]}"
    cuda = result["device"].startswith("cuda")
    fig_dir = C.BENCH_DIR / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig = fig_dir / f"profile-{name}.png"
    shutil.copyfile(out_dir / "profile.png", fig)
    body = [f"### Profile: `{result['dataset']['name']}` on {'GPU' if cuda else 'CPU'}", ""]
    if not cuda:
        body.append("CPU figures are ratios to our `lightgcn` in the same run (absolute CPU times "
                    "depend on the machine and its load; run the command to see them). "
                    f"Measured {result['environment']['time']}. "
                    + C.machine_note(result["environment"]))
        spread = [f"{r['model']} {max(r['epoch_s_repeats']) / min(r['epoch_s_repeats']):.2f}"
                  for r in result["models"]
                  if "error" not in r and len(r.get("epoch_s_repeats", [])) > 1]
        if spread:
            body.append("")
            body.append("Load noise, max/min epoch time over the repeats of each model: "
                        + ", ".join(spread) + ". Ratios closer to 1 than this spread are not "
                        "resolved by this run.")
    else:
        body.append(f"Absolute figures from `{result['device_name']}`, "
                    f"{result['environment']['time']}.")
    body += ["", markdown_report(result, absolute=cuda), "",
             f"![profile]({fig.relative_to(C.BENCH_DIR).as_posix()})", "",
             "Reproduce: `python benchmarks/profile.py --dataset "
             f"{result['dataset']['name']} --device {result['device'].split(':')[0]}"
             + (f" --max-batches {result['settings']['max_batches']}"
                if result['settings'].get('max_batches') else "")
             + " --write-results`"]
    return C.update_results_section("profile", name, "\n".join(body))


def run_all(args: argparse.Namespace) -> int:
    r"""Every benchmark in turn, each writing its RESULTS.md section."""
    here = Path(__file__).resolve().parent
    quick = ["--quick"] if args.quick else []
    device = ["--device", args.device]
    steps = [
        [str(here / "profile.py"), "--dataset", "synthetic" if args.quick else "sports",
         *device, *quick, *([] if args.quick else ["--max-batches", "20"]), "--write-results"],
        [str(here / "scaling.py"), *device, *quick, "--write-results"],
        [str(here / "bench_propagation.py"), *device, *quick, "--write-results"],
        [str(here / "bench_modality.py"), *quick, "--write-results"],
    ]
    if args.quick:  # a smoke run: outputs in build/bench only, RESULTS.md untouched
        steps = [[a for a in argv if a != "--write-results"] for argv in steps]
    rc = 0
    for argv in steps:
        print("[profile --all] running", " ".join(argv[0:1] + argv[1:]), flush=True)
        rc |= subprocess.run([sys.executable, *argv]).returncode
    return rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
