r"""Items added to trained models (``add_items``, ``stair-pyg add-items``), export and serving
(``stair-pyg export``, ``recommend --export``, the faiss index)."""
import json

import numpy as np
import pytest
import torch
import yaml

from stair_pyg.cli import main
from stair_pyg.configs import config_path
from stair_pyg.data import make_synthetic
from stair_pyg.data.hetero import modality_features
from stair_pyg.models import MODELS, STAIR
from stair_pyg.nn.retrieval import has_faiss
from stair_pyg.train import load_trained


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(num_users=100, num_items=60, interactions_per_user=8,
                          modalities={"text": 16, "image": 8}, seed=0)


def _trained_stair(ds, steps=30):
    torch.manual_seed(0)
    model = STAIR.from_data(ds.data, embedding_dim=16)
    opt = model.configure_optimizer(lr=1e-2, weight_decay=0.1)
    train = ds.splits.train
    for _ in range(steps):
        neg = torch.randint(0, model.num_items, (train.size(1),))
        loss = model.recommendation_loss(train[0], train[1], neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_stair_add_items_keeps_old_scores_and_places_copies_near_their_originals(tiny):
    model = _trained_stair(tiny)
    with torch.no_grad():
        users0, items0 = model.get_embedding()
    feats = modality_features(tiny.data)
    new = {m: x[[3, 7, 11]].clone() for m, x in feats.items()}
    ids = model.add_items(new)
    assert ids.tolist() == [60, 61, 62] and model.num_items == 63
    users_w, items_w = model.user_embedding.weight, model.item_embedding.weight
    assert items_w.data_ptr() == users_w.data_ptr() + users_w.numel() * users_w.element_size()
    with torch.no_grad():
        users1, items1 = model.get_embedding()
    assert torch.equal(users0, users1) and torch.equal(items0, items1[:60])  # bit for bit
    cos = torch.nn.functional.cosine_similarity(items1[60:], items0[[3, 7, 11]])
    assert bool((cos >= 0.9).all()), cos
    # the modality graph now spans every item (BSC can train the new rows too)
    assert model.item_adj.get().shape == (63, 63)
    assert model.recommend(torch.tensor([0, 1]), k=5).shape == (2, 5)


def test_stair_add_items_matches_the_documented_formula(tiny):
    # Independent float64 reference of the docstring's steps 1-4 for one new item.
    model = _trained_stair(tiny, steps=10)
    feats = modality_features(tiny.data)
    gen = torch.Generator().manual_seed(5)
    new = {m: x[[4]] + 0.3 * torch.randn(1, x.size(1), generator=gen) for m, x in feats.items()}
    with torch.no_grad():
        _, final = model.get_embedding()
    ks = {"text": 5, "image": 1}
    final, e0 = final.double(), model.item_embedding.weight.detach().double()

    def mi(x):  # whitening refitted independently (SVD of the centred features)
        out = 0
        for m, km in ks.items():
            base = feats[m].double()
            mean = base.mean(0)
            u, s, vh = torch.linalg.svd(base - mean, full_matrices=False)
            keep = min(16, s.numel())  # image: 8 columns -> 8 zero columns of 16
            proj = vh[:keep].t() / s[:keep] * (60 / 16) ** 0.5
            w = (base - mean) @ proj
            sign = torch.where(w.max(0).values >= -w.min(0).values, 1.0, -1.0).double()
            proj = torch.cat([proj * sign, proj.new_zeros(proj.size(0), 16 - keep)], 1)
            out = out + km * ((x[m].double() - mean) @ proj)
        return out / sum(ks.values())

    z_base, z_new = mi(feats), mi(new)
    a = torch.zeros(60, dtype=torch.float64)
    for m, km in ks.items():
        base = torch.nn.functional.normalize(feats[m].double(), dim=1)
        sim = base @ new[m].double()[0]
        a[sim.topk(km).indices] += 1
    a = a / a.sum()
    delta = (e0 * z_base).sum(0) / (z_base ** 2).sum(0)
    beta = model.conv.beta.double()
    c0 = (1 - beta) / (1 - beta ** 4)
    target = a @ final + c0 * delta * (z_new[0] - a @ z_base)
    model.add_items(new)
    with torch.no_grad():
        _, items = model.get_embedding()
    torch.testing.assert_close(items[60].double(), target, rtol=1e-4, atol=1e-5)


def test_content_models_place_new_items_and_id_only_models_refuse(tiny):
    feats = modality_features(tiny.data)
    new = {m: x[[3, 7]].clone() for m, x in feats.items()}
    for name in ("content", "vbpr", "freedom", "bm3"):
        torch.manual_seed(0)
        model = MODELS[name].from_data(tiny.data, embedding_dim=8).eval()
        with torch.no_grad():
            users0, items0 = model.get_embedding()
        assert model.add_items(new).tolist() == [60, 61], name
        with torch.no_grad():
            users1, items1 = model.get_embedding()
        assert torch.equal(users0, users1) and torch.equal(items0, items1[:60]), name
        assert items1.shape[0] == 62 and torch.isfinite(items1).all(), name
        if name == "content":  # features only: a copy is the same item
            torch.testing.assert_close(items1[60:], items0[[3, 7]])
    lgm = MODELS["lgmrec"].from_data(tiny.data, embedding_dim=8).eval()
    assert lgm.add_items(new).tolist() == [60, 61]
    assert lgm.get_embedding()[1].shape[0] == 62
    for name in ("bpr", "lightgcn"):
        with pytest.raises(NotImplementedError, match="ID embeddings"):
            MODELS[name].from_data(tiny.data).add_items(new)


@pytest.mark.parametrize("bad, match", [
    ({"text": torch.zeros(2, 16)}, r"missing \['image'\]"),
    ({"text": torch.zeros(2, 16), "image": torch.zeros(2, 8), "audio": torch.zeros(2, 3)},
     r"unknown \['audio'\]"),
    ({"text": torch.zeros(2, 15), "image": torch.zeros(2, 8)}, "15 columns.*trained with 16"),
    ({"text": torch.zeros(2, 16), "image": torch.zeros(3, 8)}, "disagree"),
    ({"text": torch.full((2, 16), float("nan")), "image": torch.zeros(2, 8)}, "NaN/Inf"),
    ({"text": torch.zeros(16), "image": torch.zeros(2, 8)}, "2-d"),
])
def test_bad_new_features_are_refused_with_the_modality_named(tiny, bad, match):
    model = STAIR.from_data(tiny.data, embedding_dim=16)
    with pytest.raises(ValueError, match=match):
        model.add_items(bad)
    assert model.num_items == 60  # nothing changed


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    cfg = yaml.safe_load(config_path("synthetic").read_text())
    cfg["dataset"].update(num_users=120, num_items=80, interactions_per_user=10,
                          modalities={"text": 16, "image": 8})
    cfg["model"]["embedding_dim"] = 16
    cfg["train"].update(epochs=2, batch_size=256, device="cpu")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp / "tiny.yaml"), "--out", str(tmp / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    return tmp


def test_add_items_cli_round_trips_through_the_checkpoint(run_dir, capsys):
    best = run_dir / "run" / "best.pt"
    model, dataset, _ = load_trained(best, "cpu")
    feats = modality_features(dataset.data)
    folder = run_dir / "new"
    folder.mkdir(exist_ok=True)
    for m, x in feats.items():
        np.save(folder / f"{m}_feat.npy", x[[5, 9]].numpy())
    (folder / "item_ids.txt").write_text("sku-a\nsku-b\n")
    out = run_dir / "with-new.pt"
    assert main(["add-items", "--checkpoint", str(best), "--features", str(folder),
                 "--out", str(out)]) == 0
    assert "added 2 items (ids 80..81)" in capsys.readouterr().out
    mapping = (run_dir / "with-new.items.tsv").read_text().splitlines()
    assert mapping == ["raw_id\titemID", "sku-a\t80", "sku-b\t81"]

    reloaded, _, state = load_trained(out, "cpu")
    assert reloaded.num_items == 82 and state["added_items"]["batches"][0]["first_id"] == 80
    with torch.no_grad():
        u0, i0 = model.get_embedding()
        u1, i1 = reloaded.get_embedding()
    assert torch.equal(u0, u1) and torch.equal(i0, i1[:80])
    direct = model.add_items({m: torch.from_numpy(np.load(folder / f"{m}_feat.npy"))
                              for m in feats})
    assert direct.tolist() == [80, 81]
    with torch.no_grad():
        torch.testing.assert_close(model.get_embedding()[1], i1, rtol=0, atol=0)
    # a second batch stacks on the first
    out2 = run_dir / "with-more.pt"
    assert main(["add-items", "--checkpoint", str(out), "--features", str(folder),
                 "--out", str(out2)]) == 0
    assert load_trained(out2, "cpu")[0].num_items == 84
    # evaluate and export take the grown checkpoint; export names the added items' raw ids
    assert main(["evaluate", "--checkpoint", str(out2), "--device", "cpu"]) == 0
    assert main(["export", "--checkpoint", str(out), "--out", str(run_dir / "exp-new"),
                 "--index", "none"]) == 0
    items = (run_dir / "exp-new" / "items.tsv").read_text().splitlines()
    assert items[0] == "itemID\traw_id\tadded" and items[-2:] == ["80\tsku-a\t1", "81\tsku-b\t1"]
    assert np.load(run_dir / "exp-new" / "item_embeddings.npy").shape == (82, 16)
    capsys.readouterr()


def test_add_items_cli_bad_inputs_give_one_line_errors(run_dir, capsys, tmp_path):
    best = run_dir / "run" / "best.pt"
    cases = {}
    d = tmp_path / "cols"
    d.mkdir()
    np.save(d / "text_feat.npy", np.ones((2, 5), np.float32))
    np.save(d / "image_feat.npy", np.ones((2, 8), np.float32))
    cases[d] = "5 columns; the model was trained with 16"
    d = tmp_path / "nan"
    d.mkdir()
    np.save(d / "text_feat.npy", np.full((2, 16), np.nan, np.float32))
    np.save(d / "image_feat.npy", np.ones((2, 8), np.float32))
    cases[d] = "NaN"
    d = tmp_path / "missing"
    d.mkdir()
    np.save(d / "text_feat.npy", np.ones((2, 16), np.float32))
    cases[d] = r"missing ['image_feat.npy']"
    d = tmp_path / "ids"
    d.mkdir()
    np.save(d / "text_feat.npy", np.ones((2, 16), np.float32))
    np.save(d / "image_feat.npy", np.ones((2, 8), np.float32))
    (d / "item_ids.txt").write_text("a\n")
    cases[d] = "1 ids for 2 feature rows"
    for folder, message in cases.items():
        assert main(["add-items", "--checkpoint", str(best), "--features", str(folder),
                     "--out", str(tmp_path / "x.pt")]) == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith("error: "), err
        assert message in err and "Traceback" not in err, err


def test_export_and_recommend_from_it_match_model_recommend(run_dir, capsys):
    best = run_dir / "run" / "best.pt"
    out = run_dir / "export"
    assert main(["export", "--checkpoint", str(best), "--out", str(out), "--index",
                 "flat" if has_faiss() else "none"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["num_items"] == 80 and np.load(out / "item_embeddings.npy").dtype == np.float32
    model, dataset, _ = load_trained(best, "cpu")
    seen = torch.cat(list(dataset.splits), dim=1)
    expected = model.recommend(k=10, exclude_edge_index=seen)
    capsys.readouterr()
    for extra in ([], ["--exact"]):
        assert main(["recommend", "--export", str(out), "--all", "--k", "10", "--format",
                     "jsonl", "--output", str(run_dir / "recs.jsonl"), *extra]) == 0
        rows = [json.loads(line) for line in (run_dir / "recs.jsonl").read_text().splitlines()]
        got = torch.tensor([r["items"] for r in rows])
        assert [r["userID"] for r in rows] == list(range(model.num_users))
        assert torch.equal(got, expected), extra
    assert main(["recommend", "--export", str(out), "--all", "--k", "10",
                 "--output", str(run_dir / "recs.tsv")]) == 0
    lines = (run_dir / "recs.tsv").read_text().splitlines()
    assert lines[0] == "userID\titemID\trank\tscore" and len(lines) == 1 + 10 * model.num_users
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    code = main(["recommend", "--export", str(out), "--users", "0,1", "--k", "3", "--format",
                 "parquet", "--output", str(run_dir / "recs.parquet")])
    if pq is None:
        assert code == 2 and "pyarrow" in capsys.readouterr().err
    else:
        assert code == 0
        table = pq.read_table(run_dir / "recs.parquet").to_pydict()
        assert table["userID"] == [0, 0, 0, 1, 1, 1]
        assert table["itemID"] == expected[:2, :3].reshape(-1).tolist()


@pytest.mark.skipif(not has_faiss(), reason="needs the optional faiss extra")
def test_flat_index_search_equals_blocked_exact_search():
    from stair_pyg.nn.retrieval import PairIndex, index_topk, mips_index, topk_items

    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(50, 8, generator=gen), torch.randn(300, 8, generator=gen)
    seen = torch.stack([torch.randint(0, 50, (400,), generator=gen),
                        torch.randint(0, 300, (400,), generator=gen)])
    exclude = PairIndex(seen, 50, 300)
    ids = torch.arange(50)
    exact = torch.cat([i for _, i, _ in topk_items(users, items, ids, exclude, 20, 16)])
    index = mips_index(items, "flat")
    got = torch.cat([i for _, i, _ in index_topk(index, users, ids, exclude, 20, 16)])
    assert torch.equal(got, exact)
    approx = mips_index(torch.randn(4000, 8, generator=gen), "ivfpq")
    assert next(index_topk(approx, users, ids, None, 5, 16))[1].shape == (16, 5)


def test_cold_item_split_holds_items_out_of_train_and_valid():
    from stair_pyg.data import load_dataset
    from stair_pyg.eval import evaluate
    from stair_pyg.models import ContentBPR

    spec = {"format": "synthetic", "num_users": 100, "num_items": 60,
            "interactions_per_user": 8, "modalities": {"text": 16, "image": 8}, "seed": 0}
    base = load_dataset(spec)
    ds = load_dataset(dict(spec, cold_items=0.2, cold_items_seed=1))
    cold = ds.data["item"].cold_items
    assert cold.numel() == round(0.2 * torch.unique(base.splits.train[1]).numel())
    assert not torch.isin(ds.splits.train[1], cold).any()
    assert not torch.isin(ds.splits.valid[1], cold).any()
    moved = torch.cat(list(base.splits), 1)
    moved = moved[:, torch.isin(moved[1], cold)]
    assert torch.isin(ds.splits.test[1], cold).sum() == moved.size(1)  # all of theirs in test
    assert sum(s.size(1) for s in ds.splits) == sum(s.size(1) for s in base.splits)
    metrics = evaluate(ContentBPR.from_data(ds.data, embedding_dim=8), ds.splits, which="test",
                       ks=(20,))
    assert metrics["cold/num_items"] == cold.numel() and "Recall@20" in metrics
    with pytest.raises(ValueError, match="cold_items"):
        load_dataset(dict(spec, cold_items=1.5))


def test_cold_start_benchmark_quick(tmp_path, bench_script):
    out = tmp_path / "cold.json"
    assert bench_script("bench_cold_start").main(
        ["--quick", "--epochs", "1", "--models", "stair+add_items,content",
         "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert set(run) == {"stair+add_items", "stair-before-add_items", "content"}
    assert 0.0 <= run["stair+add_items"]["cold/Recall@20"] <= 1.0


def test_serving_benchmark_quick(tmp_path, bench_script):
    out = tmp_path / "serving.json"
    assert bench_script("bench_serving").main(["--items", "3000", "--users", "64", "--clusters",
                                               "20", "--pq", "4", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["exact"]["recall@20"] == 1.0
    if has_faiss():
        assert row["faiss-flat"]["recall@20"] == pytest.approx(1.0)
        assert 0.0 < row["faiss-ivfpq"]["recall@20"] <= 1.0
