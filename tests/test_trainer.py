import json

import numpy as np
import pytest
import torch

from stair_pyg.data import make_synthetic
from stair_pyg.data.hetero import EDGE, RecDataset, Splits, build_hetero_data
from stair_pyg.eval import evaluate
from stair_pyg.models.base import Recommender, bpr_loss
from stair_pyg.nn.sparse import SparseAdj
from stair_pyg.train import Trainer, build_model, run_experiment
from stair_pyg.train import experiment as trainer_module


def tiny_dataset(seed=0, num_users=60, num_items=40, features=True):
    r"""Random interactions, per-user 70/15/15 split, random text features."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        items = rng.permutation(num_items)[: int(rng.integers(6, 14))]
        parts["valid"].append([(u, int(items[0]))])
        parts["test"].append([(u, int(items[1]))])
        parts["train"].append([(u, int(i)) for i in items[2:]])
    t = {k: torch.tensor([p for ps in v for p in ps]).t() for k, v in parts.items()}
    feats = {"text": torch.from_numpy(rng.normal(size=(num_items, 16)).astype(np.float32))}
    data = build_hetero_data(num_users, num_items, t["train"], feats if features else None)
    return RecDataset(data, Splits(t["train"], t["valid"], t["test"]))


def bpr_config(**train):
    cfg = {"dataset": {"format": "synthetic"},
           "model": {"name": "bpr", "embedding_dim": 16, "reg_weight": 1e-4},
           "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "seed": 3, "device": "cpu",
                     "ks": [5, 10], "metric": "NDCG@10", "patience": 50,
                     "checkpoint_every": 100}}
    cfg["train"].update(train)
    return cfg


def test_deterministic_for_a_seed():
    ds = tiny_dataset()
    a = run_experiment(bpr_config(), dataset=ds, progress=False)
    b = run_experiment(bpr_config(), dataset=ds, progress=False)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    c = run_experiment(bpr_config(seed=4), dataset=ds, progress=False)
    assert [r["loss"] for r in c["history"]] != [r["loss"] for r in a["history"]]


def test_training_learns_and_writes_outputs(tmp_path):
    ds = tiny_dataset()
    out = tmp_path / "run"
    res = run_experiment(bpr_config(epochs=6), out_dir=out, dataset=ds, progress=False)
    losses = [r["loss"] for r in res["history"]]
    assert losses[-1] < losses[0]
    for name in ("config.yaml", "history.jsonl", "checkpoint.pt", "best.pt", "metrics.json",
                 "metrics.md", "curves.png"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 7))
    assert all({"loss", "train_seconds", "valid", "eval_seconds"} <= set(r) for r in lines)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["best_epoch"] == res["best_epoch"]
    assert summary["test"]["NDCG@10"] == pytest.approx(res["test"]["NDCG@10"])
    assert "| NDCG@10 |" in (out / "metrics.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["epoch_seconds"] > 0


class Scripted(Recommender):
    r"""A model whose representations at epoch e are fixed in advance: at ``valid_epoch`` they
    rank every user's validation item first, at ``test_epoch`` the test item; otherwise noise.
    The phase is a persistent buffer, so the best weights carry it."""

    def __init__(self, splits, num_users, num_items, valid_epoch, test_epoch):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("phase", torch.zeros((), dtype=torch.long))
        gen = torch.Generator().manual_seed(0)
        self.noise = (torch.randn(num_users, num_items, generator=gen), torch.eye(num_items))
        self.oracle = {}
        for k, split in ((1, splits.valid), (2, splits.test)):
            u = torch.zeros(num_users, num_items)
            u[split[0], split[1]] = 100.0
            self.oracle[k] = u
        self.schedule = {valid_epoch: 1, test_epoch: 2}
        self._hparams = {}

    def pre_epoch(self, epoch):
        self.phase.fill_(self.schedule.get(epoch, 0))

    def get_embedding(self):
        user, item = self.noise
        if int(self.phase) > 0:
            user = user + self.oracle[int(self.phase)]
        return user, item

    def recommendation_loss(self, users, pos, neg):
        return bpr_loss(self.w * 0 + 1, self.w * 0) + (self.w ** 2).sum()


def test_selects_on_validation_never_on_test_and_stops_early():
    ds = tiny_dataset(features=False)
    model = Scripted(ds.splits, 60, 40, valid_epoch=2, test_epoch=3)
    trainer = Trainer(model, ds, {"epochs": 20, "patience": 3, "batch_size": 256, "seed": 0,
                                  "device": "cpu", "ks": [10], "metric": "NDCG@10"},
                      progress=False)
    res = trainer.fit()
    assert res["best_epoch"] == 2
    assert res["epochs_run"] == 5 and res["stopped_early"]  # 3 evaluations without improvement
    assert res["valid"]["NDCG@10"] == pytest.approx(1.0)
    # The test figure is that of the epoch-2 weights, not of epoch 3 (whose test NDCG is 1).
    model.pre_epoch(2)
    at_best = evaluate(model, ds.splits, "test", ks=(10,))
    model.pre_epoch(3)
    at_test_optimum = evaluate(model, ds.splits, "test", ks=(10,))
    assert at_test_optimum["NDCG@10"] == pytest.approx(1.0)
    assert res["test"]["NDCG@10"] == pytest.approx(at_best["NDCG@10"])
    assert res["test"]["NDCG@10"] < 0.9
    history_values = [r["valid"]["NDCG@10"] for r in res["history"]]
    assert int(np.argmax(history_values)) + 1 == res["best_epoch"]


def _propagation_graphs(module):
    r"""Every sparse matrix a model can propagate over, however it stores it: a plain
    SparseAdj attribute, a sparse buffer, a holder module with get(), or an adjacency() method."""
    if callable(getattr(module, "adjacency", None)):
        yield module.adjacency()
    for sub in module.modules():
        for value in vars(sub).values():
            if isinstance(value, SparseAdj):
                yield value
        if callable(getattr(sub, "get", None)):
            value = sub.get()
            if isinstance(value, SparseAdj):
                yield value
        for buf in sub.buffers(recurse=False):
            if buf is not None and buf.layout in (torch.sparse_csr, torch.sparse_coo):
                yield SparseAdj(buf)


@pytest.mark.parametrize("name", ["stair", "lightgcn"])
def test_no_leakage_into_the_propagation_graph(monkeypatch, name):
    from stair_pyg.models import get_model

    try:
        get_model(name)
    except ImportError:
        pytest.skip(f"model '{name}' is not available")
    ds = tiny_dataset()
    built = {}
    original = trainer_module.build_model

    def spy(model_config, data, device=None):
        built["data"] = data
        built["model"] = original(model_config, data, device)
        return built["model"]

    monkeypatch.setattr(trainer_module, "build_model", spy)
    cfg = bpr_config(epochs=1)
    cfg["model"] = {"name": name, "embedding_dim": 8}
    if name == "stair":
        cfg["model"]["knn_k"] = {"text": 3}
    run_experiment(cfg, dataset=ds, progress=False)
    num_users, num_items = 60, 40
    train = {tuple(p) for p in ds.splits.train.t().tolist()}
    held = {tuple(p) for s in (ds.splits.valid, ds.splits.test) for p in s.t().tolist()} - train
    assert held
    graph_pairs = {tuple(p) for p in built["data"][EDGE].edge_index.t().tolist()}
    assert graph_pairs == train
    found = False
    for adj in _propagation_graphs(built["model"]):
        if adj.shape != (num_users + num_items, num_users + num_items):
            continue
        found = True
        dense = adj.to_dense()
        ui = dense[:num_users, num_users:]
        nz = {tuple(p) for p in torch.nonzero(ui).tolist()}
        assert nz == train
        assert not nz & held
    assert found, "no user-item propagation graph found on the model"


def test_model_moves_with_to_and_hooks_still_register_after_training_starts():
    ds = make_synthetic(num_users=40, num_items=30, seed=0)
    model = build_model({"name": "stair"}, ds.data)
    trainer = Trainer(model, ds, {"epochs": 1, "device": "cpu"}, progress=False)
    assert trainer.model is model
    trainer.train_epoch(1)
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(1))
    model(torch.tensor([0, 1]), torch.tensor([2, 3]))
    handle.remove()
    assert calls == [1]
    # The graphs are sub-module buffers: Module.to moves them, the state_dict does not hold them.
    model.double()
    assert model.adjacency().adj.dtype == torch.float64
    assert not any("adj" in key for key in model.state_dict())
