r"""The first run on a GPU: every CUDA path of the library, checked and timed, in one command.

Run it through ``benchmarks/cuda_smoke.sh`` (which picks the machine's Python, installs nothing
but puts this checkout first on the import path, and bounds the whole run by a timeout). Steps,
each timed and logged, results in ``$OUT/cuda_smoke.json`` and the log in ``$OUT/cuda_smoke.log``:

1. ``csr_product``: the CSR product and its backward (:func:`stair_pyg.nn.spmm`) against a dense
   float64 reference on the device; the largest relative error.
2. ``cpu_vs_device``: a few STAIR training steps from the same seed on the CPU and on the device;
   the largest difference of the weights (float32 rounding, ~1e-6, is expected).
3. ``host_syncs``: host synchronisations per STAIR training step, counted with
   ``torch.cuda.set_sync_debug_mode("warn")`` (each one is a warning); 0 is the goal.
4. ``train_resume_evaluate``: the synthetic default trained on the device for 5 epochs,
   interrupted (as by Ctrl-C) in epoch 3, resumed from its checkpoint, and its ``best.pt``
   evaluated on the CPU (the same test NDCG@20 as on the device).
5. ``bench_propagation``, ``profile_sports``: the propagation benchmark and the ``sports`` profile
   (``benchmarks/profile_models.py``) on the device, their tables in the log.

``--device cpu --quick`` runs the same steps on the CPU with small sizes (the test suite runs it so
that this script does not rot); step 3 then reports "not applicable".
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Dict

import torch

BENCH_DIR = Path(__file__).resolve().parent


class Log:
    def __init__(self, path: Path):
        self.file = open(path, "a")

    def __call__(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def step(name: str, results: Dict[str, Any], log: Log, fn: Callable[[], Dict[str, Any]]) -> None:
    log(f"--- {name}")
    start = time.perf_counter()
    try:
        out = fn()
        out["ok"] = out.get("ok", True)
    except Exception as e:  # a failed step is recorded and the run goes on
        out = {"ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()}
    out["seconds"] = round(time.perf_counter() - start, 3)
    results[name] = out
    log(f"{name}: {json.dumps({k: v for k, v in out.items() if k != 'traceback'})}")


def csr_product(device: torch.device, n: int) -> Dict[str, Any]:
    from stair_pyg.nn import spmm, user_item_adjacency

    g = torch.Generator().manual_seed(0)
    users, items = n // 2, n - n // 2
    ei = torch.stack([torch.randint(0, users, (8 * n,), generator=g),
                      torch.randint(0, items, (8 * n,), generator=g)])
    adj = user_item_adjacency(ei, users, items).to(device)
    x = torch.randn(n, 64, generator=g).to(device).requires_grad_()
    out = spmm(adj, x)
    out.square().sum().backward()
    dense = adj.to_dense().double()
    ref_x = x.detach().double().requires_grad_()
    ref = dense @ ref_x
    ref.square().sum().backward()
    err = float((out.detach().double() - ref.detach()).norm() / ref.detach().norm())
    grad_err = float((x.grad.double() - ref_x.grad).norm() / ref_x.grad.norm())
    return {"rel_error": err, "grad_rel_error": grad_err, "ok": err < 1e-5 and grad_err < 1e-5}


def _stair_steps(device: torch.device, dataset, steps: int) -> torch.Tensor:
    from stair_pyg.train import Trainer, build_model, seed_everything

    seed_everything(0)
    model = build_model({"name": "stair", "embedding_dim": 32}, dataset.data, device=device)
    trainer = Trainer(model, dataset, {"device": str(device), "batch_size": 256, "seed": 0},
                      progress=False)
    gen = torch.Generator().manual_seed(0)
    pairs = trainer.train_pairs
    for _ in range(steps):
        idx = torch.randint(0, pairs.size(1), (256,), generator=gen)
        users, pos = pairs[0, idx], pairs[1, idx]
        neg = trainer.sampler.sample(users, gen)
        trainer.train_step(*(t.to(device) for t in (users, pos, neg)))
    return torch.cat([p.detach().cpu().flatten() for p in model.parameters()])


def cpu_vs_device(device: torch.device, dataset, steps: int) -> Dict[str, Any]:
    a = _stair_steps(torch.device("cpu"), dataset, steps)
    b = _stair_steps(device, dataset, steps)
    diff = float((a - b).abs().max())
    return {"steps": steps, "max_weight_difference": diff, "ok": diff < 1e-3}


def host_syncs(device: torch.device, dataset) -> Dict[str, Any]:
    if device.type != "cuda":
        return {"applicable": False}
    from stair_pyg.train import Trainer, build_model

    model = build_model({"name": "stair", "embedding_dim": 64}, dataset.data, device=device)
    trainer = Trainer(model, dataset, {"device": str(device), "batch_size": 1024},
                      progress=False)
    pairs = trainer.train_pairs
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(6):
        idx = torch.randint(0, pairs.size(1), (1024,), generator=gen)
        users, pos = pairs[0, idx], pairs[1, idx]
        batches.append([t.to(device) for t in (users, pos, trainer.sampler.sample(users, gen))])
    trainer.train_step(*batches[0])  # first step: state creation, coefficient caches
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for batch in batches[1:]:
                trainer.train_step(*batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught
             if "synchroniz" in str(w.message).lower()]
    return {"syncs_per_step": len(syncs) / (len(batches) - 1), "examples": syncs[:5]}


def train_resume_evaluate(device: torch.device, out: Path, quick: bool) -> Dict[str, Any]:
    from stair_pyg.configs import config_path
    from stair_pyg.eval import evaluate
    from stair_pyg.train import load_config, load_trained, run_experiment

    overrides = [f"train.device={device.type}", "train.epochs=5", "train.checkpoint_every=1"]
    if quick:
        overrides += ["dataset.num_users=200", "dataset.num_items=120"]
    cfg = load_config(config_path("synthetic"), overrides)
    run = out / "synthetic-stair"

    def interrupt(epoch: int, batch: int) -> None:  # Ctrl-C in the middle of epoch 3
        if epoch == 3 and batch == 0:
            raise KeyboardInterrupt

    try:
        run_experiment(cfg, out_dir=run, progress=False, on_batch=interrupt)
    except KeyboardInterrupt:
        pass
    resumed = run_experiment(cfg, out_dir=run, resume=True, progress=False)
    model, dataset, _ = load_trained(run / "best.pt", device="cpu")
    on_cpu = evaluate(model, dataset.splits, "test", ks=(20,))
    return {"epoch_seconds": resumed["epoch_seconds"], "epochs_run": resumed["epochs_run"],
            "test_ndcg20": resumed["test"]["NDCG@20"], "test_ndcg20_on_cpu": on_cpu["NDCG@20"],
            "ok": resumed["epochs_run"] == 5
            and abs(resumed["test"]["NDCG@20"] - on_cpu["NDCG@20"]) < 1e-3}


def script(args_list, log: Log, timeout: int) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, *args_list], capture_output=True, text=True,
                          timeout=timeout)
    for line in (proc.stdout + proc.stderr).splitlines()[-40:]:
        log("  " + line)
    return {"returncode": proc.returncode, "ok": proc.returncode == 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, no benchmarks")
    parser.add_argument("--out", type=Path, default=Path("build/cuda_smoke"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "cuda_smoke.log")
    env = {"torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    log(f"cuda_smoke on {env}")
    from stair_pyg.data import make_synthetic

    dataset = make_synthetic(num_users=300 if args.quick else 2000,
                             num_items=200 if args.quick else 1000, seed=0)
    results: Dict[str, Any] = {"environment": env, "quick": args.quick}
    step("csr_product", results, log, lambda: csr_product(device, 500 if args.quick else 20000))
    step("cpu_vs_device", results, log,
         lambda: cpu_vs_device(device, dataset, 3 if args.quick else 20))
    step("host_syncs", results, log, lambda: host_syncs(device, dataset))
    step("train_resume_evaluate", results, log,
         lambda: train_resume_evaluate(device, args.out, args.quick))
    if not args.quick:
        step("bench_propagation", results, log, lambda: script(
            [str(BENCH_DIR / "bench_propagation.py"), "--device", args.device,
             "--out", str(args.out / "propagation")], log, 150))
        step("profile_sports", results, log, lambda: script(
            [str(BENCH_DIR / "profile_models.py"), "--dataset", "sports", "--device",
             args.device, "--max-batches", "20", "--out", str(args.out / "profile")], log, 300))
    (args.out / "cuda_smoke.json").write_text(json.dumps(results, indent=2, default=str))
    failed = [name for name, r in results.items() if isinstance(r, dict) and r.get("ok") is False]
    log(f"done: {'all steps ok' if not failed else 'failed: ' + ', '.join(failed)}; results in "
        f"{args.out}/cuda_smoke.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
