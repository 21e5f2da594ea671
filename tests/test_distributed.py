r"""Data-parallel training on torch.distributed (gloo, loopback): equivalence with one process,
resume on another number of ranks, and failing ranks that end the job instead of hanging.

The 2-rank runs start this file as a script (``python tests/test_distributed.py worker ...``)
through :func:`stair_pyg.train.distributed.launch`, the launcher of ``stair-pyg train --nproc``.
"""
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from stair_pyg.data import make_synthetic
from stair_pyg.train import (Trainer, build_model, load_checkpoint, resolve_config,
                             run_experiment, seed_everything)
from stair_pyg.train import distributed as D

DATA = dict(num_users=80, num_items=50, interactions_per_user=8, modalities={"text": 16},
            noise={"text": 1.0}, seed=0)
EPOCHS = 3
# STAIR and BPR-MF as asked; LGMRec draws Gumbel noise in every forward pass, evaluation included,
# so it also checks that the ranks' generators follow rank 0's.
MODELS = ("stair", "bpr", "lgmrec")
ROOT = Path(__file__).resolve().parents[1]


def dataset():
    return make_synthetic(**DATA)


def batch_size() -> int:
    r"""A global batch size whose last batch holds one triple: rank 1's share of it is empty."""
    num_train = dataset().splits.train.size(1)
    return next(b for b in range(40, 100) if num_train % b == 1)


def config(model, **train):
    model_cfg = {"name": model, "embedding_dim": 16}
    if model == "stair":
        model_cfg.update(num_layers=2, knn_k={"text": 3})
    else:  # EmbLoss, the regulariser of BPR-MF and LGMRec, is a norm of the whole batch, not a
        model_cfg.update(reg_weight=0.0)  # mean over its triples: see docs/SCALING.md
    cfg = {"dataset": dict(DATA, format="synthetic"), "model": model_cfg,
           "train": {"epochs": EPOCHS, "batch_size": batch_size(), "lr": 0.01, "seed": 3,
                     "device": "cpu", "ks": [10], "metric": "NDCG@10", "patience": 50,
                     "checkpoint_every": 1, "weight_decay": 0.1 if model == "stair" else 0.0}}
    cfg["train"].update(train)
    return cfg


def child_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------
# Worker side (runs in the launched processes)


def worker(scenario: str, out: Path) -> None:
    assert D.init_process_group("cpu")
    rank, world_size = D.rank_and_world_size()
    assert world_size == 2
    ds = dataset()
    try:
        if scenario == "equivalence":
            for model in MODELS:  # a Trainer inside a process group the caller initialised
                cfg = resolve_config(config(model), check_paths=False)
                seed_everything(cfg["train"]["seed"])
                trainer = Trainer(build_model(cfg["model"], ds.data), ds, cfg["train"],
                                  out_dir=out / model, progress=False, config=cfg,
                                  model_name=model)
                num_batches = -(-ds.splits.train.size(1) // batch_size())

                def save_last_step(epoch, batch, model=model, trainer=trainer):
                    if epoch == EPOCHS and batch == num_batches - 1:  # before rank 0 evaluates
                        torch.save(trainer.model.state_dict(), out / f"{model}-rank{rank}.pt")

                trainer.on_batch = save_last_step
                trainer.fit()

            def interrupt(epoch, batch):
                if epoch == 2 and batch == 1:
                    raise KeyboardInterrupt

            try:
                run_experiment(config("stair", epochs=4), out_dir=out / "interrupted",
                               dataset=ds, progress=False, on_batch=interrupt)
            except KeyboardInterrupt:
                pass
        elif scenario == "hang":
            def hang(epoch, batch):
                if rank == 1 and epoch == 1 and batch == 2:
                    time.sleep(600)

            run_experiment(config("bpr"), dataset=ds, progress=False, on_batch=hang)
    finally:
        D.destroy_process_group()


def launch_worker(scenario, out, **env):
    lines = []
    start = time.monotonic()
    code = D.launch([sys.executable, str(Path(__file__).resolve()), "worker", scenario,
                     str(out)], 2, env=child_env(**env), grace_seconds=2.0, log=lines.append)
    return code, "\n".join(lines), time.monotonic() - start


# ------------------------------------------------------------------------------------------
# Tests


def test_local_share_covers_the_batch_in_rank_order():
    for n in (0, 1, 5, 64, 65):
        for world_size in (1, 2, 3, 8):
            shares = [D.local_share(n, r, world_size) for r in range(world_size)]
            assert [i for s in shares for i in range(s.start, s.stop)] == list(range(n))
            sizes = [s.stop - s.start for s in shares]
            assert max(sizes) - min(sizes) <= 1
            assert sizes == [t.numel() for t in torch.tensor_split(torch.arange(n), world_size)]
    with pytest.raises(ValueError, match="rank 2"):
        D.local_share(4, 2, 2)


def test_env_ranks_and_timeout(monkeypatch):
    assert D.env_ranks({}) == (0, 1, 0)
    assert D.env_ranks({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ValueError, match="RANK=4"):
        D.env_ranks({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="not an integer"):
        D.env_ranks({"WORLD_SIZE": "two"})
    monkeypatch.setenv(D.TIMEOUT_ENV, "7.5")
    assert D.timeout_seconds() == 7.5 and D.timeout_seconds(2) == 2.0
    monkeypatch.delenv(D.TIMEOUT_ENV)
    assert D.timeout_seconds() == D.DEFAULT_TIMEOUT_S
    assert D.default_backend("cpu") == "gloo" and D.default_backend("cuda") == "nccl"
    # Without WORLD_SIZE > 1 there is nothing to join; with it, a rendezvous address is needed.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert D.init_process_group("cpu") is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        D.init_process_group("cpu")


def test_all_reduce_gradients_keeps_missing_gradients_missing():
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{D.free_port()}", rank=0,
                            world_size=1, timeout=timedelta(seconds=30))
    try:
        used, unused = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(4))
        frozen = torch.nn.Parameter(torch.ones(1), requires_grad=False)
        (used * torch.arange(6.0).view(2, 3)).sum().backward()
        total = D.all_reduce_gradients([used, unused, frozen], extra=torch.tensor(2.5,
                                                                                dtype=torch.float64))
        assert torch.equal(used.grad, torch.arange(6.0).view(2, 3))
        assert unused.grad is None and frozen.grad is None
        assert total.dtype == torch.float64 and float(total) == 2.5
        assert D.broadcast_object({"a": 1}) == {"a": 1}
    finally:
        dist.destroy_process_group()


def test_launcher_stops_the_other_ranks_and_names_the_failed_one():
    script = ("import os, sys, time\n"
              "if os.environ['RANK'] == '1': sys.exit(3)\n"
              "time.sleep(60)\n")
    lines = []
    start = time.monotonic()
    code = D.launch([sys.executable, "-c", script], 3, grace_seconds=2.0, log=lines.append)
    assert code == 3
    assert time.monotonic() - start < 30
    assert "rank 1" in lines[0] and "exited with code 3" in lines[0]
    assert D.launch([sys.executable, "-c", "import os; assert os.environ['WORLD_SIZE'] == '2'"],
                    2, log=lines.append) == 0


def _model_state(path):
    return load_checkpoint(path)["model_state"]


def _assert_states_close(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol,
                                   msg=lambda m, key=key: f"{key}: {m}")


def _assert_metrics_close(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_two_ranks_equal_one_process_and_resume_on_one_rank(tmp_path):
    import json

    code, log, _ = launch_worker("equivalence", tmp_path)
    assert code == 0, log
    ds = dataset()
    for model in MODELS:
        out = tmp_path / model
        reference = run_experiment(config(model), out_dir=tmp_path / f"{model}-single",
                                   dataset=ds, progress=False)
        summary = json.loads((out / "metrics.json").read_text())
        assert summary["best_epoch"] == reference["best_epoch"]
        _assert_metrics_close(summary["valid"], reference["valid"])
        _assert_metrics_close(summary["test"], reference["test"])
        history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
        assert [r["loss"] for r in history] == pytest.approx(
            [r["loss"] for r in reference["history"]], rel=1e-5)
        # Final and best weights equal those of the single process (LGMRec's softmax with
        # temperature 0.2 amplifies the rounding differences of the summation order) ...
        tol = dict(rtol=1e-4, atol=1e-5) if model == "lgmrec" else {}
        _assert_states_close(_model_state(out / "checkpoint.pt"),
                             _model_state(tmp_path / f"{model}-single" / "checkpoint.pt"), **tol)
        _assert_states_close(_model_state(out / "best.pt"),
                             _model_state(tmp_path / f"{model}-single" / "best.pt"), **tol)
        # ... and both replicas held exactly the same weights after the last step.
        rank0 = torch.load(tmp_path / f"{model}-rank0.pt")
        rank1 = torch.load(tmp_path / f"{model}-rank1.pt")
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
        _assert_states_close(rank0, _model_state(out / "checkpoint.pt"), rtol=0, atol=0)
        # Only rank 0 wrote outputs: one line per epoch, no stray temporary files.
        assert sorted(p.name for p in out.iterdir()) == sorted(
            p.name for p in (tmp_path / f"{model}-single").iterdir())

    # A 2-rank run stopped in epoch 2 continues on one rank along the single-process trajectory.
    out = tmp_path / "interrupted"
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    resumed = run_experiment(config("stair", epochs=4), out_dir=out, resume=True, dataset=ds,
                             progress=False)
    reference = run_experiment(config("stair", epochs=4), dataset=ds, progress=False)
    assert resumed["best_epoch"] == reference["best_epoch"]
    _assert_metrics_close(resumed["test"], reference["test"])
    assert [r["loss"] for r in resumed["history"]] == pytest.approx(
        [r["loss"] for r in reference["history"]], rel=1e-5)


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _rank_of(pid):
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(int(e[5:]) for e in environ if e.startswith(b"RANK="))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_killing_a_rank_ends_the_job_with_an_error(tmp_path):
    import yaml

    cfg = config("stair", epochs=500, checkpoint_every=0)  # runs until killed
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    cli = [sys.executable, "-c", "import sys; from stair_pyg.cli import main; sys.exit(main())"]
    proc = subprocess.Popen(cli + ["train", "--config", str(path), "--out", str(out),
                                   "--nproc", "2", "--no-progress"],
                            env=child_env(), stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while not ((out / "history.jsonl").exists()
                   and (out / "history.jsonl").read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        victim = next(p for p in _children(proc.pid) if _rank_of(p) == 1)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - killed < 30
    assert proc.returncode != 0
    assert "rank 1" in stderr and "SIGKILL" in stderr, stderr[-3000:]


def test_a_hanging_rank_times_out_with_a_clear_error(tmp_path, capfd):
    code, log, seconds = launch_worker("hang", tmp_path, **{D.TIMEOUT_ENV: "6"})
    assert code != 0
    assert "rank 0" in log and "exited with code 1" in log, log
    assert seconds < 60
    err = capfd.readouterr().err  # the ranks inherit the test's stderr
    assert "DistributedError: rank 0/2: gradient all-reduce failed" in err, err[-3000:]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    worker(sys.argv[2], Path(sys.argv[3]))
