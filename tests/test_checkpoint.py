import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from stair_pyg.data import make_synthetic
from stair_pyg.train import CheckpointError, load_checkpoint, run_experiment, save_checkpoint
from stair_pyg.train.checkpoint import load_model_state, rng_state, set_rng_state

DATA = dict(num_users=80, num_items=50, interactions_per_user=8, modalities={"text": 16},
            noise={"text": 1.0}, seed=0)


def dataset(**changes):
    return make_synthetic(**dict(DATA, **changes))


def config(model="bpr", **train):
    model_cfg = {"name": model, "embedding_dim": 16}
    if model == "stair":
        model_cfg.update(num_layers=2, knn_k={"text": 3})
    cfg = {"dataset": dict(DATA, format="synthetic"), "model": model_cfg,
           "train": {"epochs": 5, "batch_size": 64, "lr": 0.01, "seed": 3, "device": "cpu",
                     "ks": [10], "metric": "NDCG@10", "patience": 50, "checkpoint_every": 100,
                     "weight_decay": 0.1 if model == "stair" else 0.0}}
    cfg["train"].update(train)
    return cfg


def _strip(result):
    r"""What must agree between runs: metrics, best epoch and per-epoch losses / metrics."""
    return (result["best_epoch"], result["valid"], result["test"],
            [(r["epoch"], r["loss"], r.get("valid")) for r in result["history"]])


def test_save_is_atomic_and_round_trips(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"model_name": "bpr", "model_state": {"w": torch.ones(2)}, "dataset": {},
                     "config": {}, "epoch": 1}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model_state"]["w"], torch.ones(2))

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left over


def test_corrupt_and_foreign_files_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    good = tmp_path / "good.pt"
    save_checkpoint({"model_name": "bpr", "model_state": {"w": torch.ones(1000)},
                     "dataset": {}, "config": {}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a stair-pyg checkpoint"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_model_shape_mismatch_names_the_parameter():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"weight.*\(2, 4\).*\(2, 3\)"):
        load_model_state(model, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)})


def test_rng_state_round_trip():
    import random

    import numpy as np

    gen = torch.Generator().manual_seed(5)
    state = rng_state(gen)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    set_rng_state(state, gen)
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_resume_rejects_other_dataset_model_or_settings(tmp_path):
    out = tmp_path / "run"
    run_experiment(config(epochs=2), out_dir=out, dataset=dataset(), progress=False)
    with pytest.raises(CheckpointError, match="another dataset"):
        run_experiment(config(epochs=3), out_dir=out, resume=True, dataset=dataset(seed=1),
                       progress=False)
    other_shape = config(epochs=3)
    other_shape["model"]["embedding_dim"] = 8
    with pytest.raises(CheckpointError, match="embedding_dim"):
        run_experiment(other_shape, out_dir=out, resume=True, dataset=dataset(), progress=False)
    with pytest.raises(CheckpointError, match="lr"):
        run_experiment(config(epochs=3, lr=0.5), out_dir=out, resume=True, dataset=dataset(),
                       progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_experiment(config(), out_dir=tmp_path / "empty", resume=True, dataset=dataset(),
                       progress=False)
    (out / "checkpoint.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        run_experiment(config(epochs=3), out_dir=out, resume=True, dataset=dataset(),
                       progress=False)


@pytest.mark.parametrize("model", ["bpr", "stair"])
def test_interrupt_mid_epoch_and_resume_gives_identical_results(tmp_path, model):
    if model == "stair":
        pytest.importorskip("stair_pyg.models.stair")
    ds = dataset()
    reference = run_experiment(config(model), dataset=ds, progress=False)

    def interrupt(epoch, batch):
        if epoch == 3 and batch == 1:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config(model), out_dir=out, dataset=ds, progress=False, on_batch=interrupt)
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["epoch"] == 2 and not saved["finished"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    resumed = run_experiment(config(model), out_dir=out, resume=True, dataset=ds, progress=False)
    assert _strip(resumed) == _strip(reference)
    assert len((out / "history.jsonl").read_text().splitlines()) == 5


def test_killed_process_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from stair_pyg.data import make_synthetic
        from stair_pyg.train import run_experiment
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_checkpoint import DATA, config

        def die(epoch, batch):
            if epoch == 4 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        run_experiment(config(checkpoint_every=1), out_dir={str(out)!r},
                       dataset=make_synthetic(**DATA), progress=False, on_batch=die)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 3
    ds = dataset()
    resumed = run_experiment(config(checkpoint_every=1), out_dir=out, resume=True, dataset=ds,
                             progress=False)
    reference = run_experiment(config(checkpoint_every=1), dataset=ds, progress=False)
    assert _strip(resumed) == _strip(reference)


def test_resume_of_a_finished_run_reports_the_same_metrics(tmp_path):
    ds = dataset()
    out = tmp_path / "run"
    first = run_experiment(config(epochs=2), out_dir=out, dataset=ds, progress=False)
    again = run_experiment(config(epochs=2), out_dir=out, resume=True, dataset=ds,
                           progress=False)
    assert _strip(first) == _strip(again)
