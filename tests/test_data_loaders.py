import numpy as np
import pytest
import torch

from stair_pyg.data import (EDGE, REV_EDGE, DataError, DataWarning, describe, format_summary,
                            k_core, leave_one_out_split, load_csv, load_dataset, load_mmrec,
                            load_recbole, random_split)
from stair_pyg.data.splits import deduplicate


def write(path, text):
    path.write_text(text)
    return path


def edges(pairs):
    return torch.tensor(sorted(pairs), dtype=torch.long).t().reshape(2, -1)


MMREC = ("userID\titemID\trating\ttimestamp\tx_label\n"
         "0\t0\t1\t0\t0\n0\t1\t1\t1\t0\n0\t2\t1\t2\t1\n0\t3\t1\t3\t2\n"
         "1\t1\t1\t0\t0\n1\t2\t1\t1\t2\n1\t0\t1\t2\t1\n")


def test_mmrec_loader(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    write(folder / "toy.inter", MMREC)
    text = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.save(folder / "text_feat.npy", text)
    np.save(folder / "image_feat.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    data, splits = load_mmrec(folder)
    assert data["user"].num_nodes == 2 and data["item"].num_nodes == 4
    assert torch.equal(splits.train, edges([(0, 0), (0, 1), (1, 1)]))
    assert torch.equal(splits.valid, edges([(0, 2), (1, 0)]))
    assert torch.equal(splits.test, edges([(0, 3), (1, 2)]))
    assert torch.equal(data[EDGE].edge_index, splits.train)
    assert torch.equal(data[REV_EDGE].edge_index, splits.train.flip(0))
    assert torch.equal(data["item"].text_feat, torch.from_numpy(text))
    assert data["item"].image_feat.dtype == torch.float32
    assert data["item"].image_feat.shape == (4, 3)
    assert data.name == "toy"
    # the .inter file itself and an explicit name work too
    assert torch.equal(load_mmrec(folder / "toy.inter").splits.test, splits.test)
    assert torch.equal(load_mmrec(folder, name="toy").splits.valid, splits.valid)


def test_mmrec_trailing_items_with_features(tmp_path):
    write(tmp_path / "d.inter", MMREC)
    np.save(tmp_path / "text_feat.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    with pytest.warns(DataWarning, match="2 item"):
        data, _ = load_mmrec(tmp_path / "d.inter")
    assert data["item"].num_nodes == 6


def test_csv_random_split_matches_protocol(tmp_path):
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(30), 12)
    items = np.concatenate([rng.choice(50, 12, replace=False) for _ in range(30)])
    raw_u, raw_i = users * 10 + 7, items * 3 + 100  # monotone raw ids: ranks give the same ids
    lines = ["user,item"] + [f"{u},{i}" for u, i in zip(raw_u, raw_i)]
    path = write(tmp_path / "r.csv", "\n".join(lines) + "\n")
    data, splits = load_csv(path, split="random", seed=5)
    # independent reference: the PROVENANCE.md snippet
    ref = {0: [], 1: [], 2: []}
    gen = np.random.Generator(np.random.PCG64(5))
    item_ids = np.unique(items)
    for u in range(30):
        its = np.array(sorted(np.searchsorted(item_ids, items[users == u])))
        n = len(its)
        shuffled = its[gen.permutation(n)]
        nv = max(1, round(0.1 * n))
        nt = max(1, round(0.1 * n))
        ntr = n - nv - nt
        ref[0] += [(u, i) for i in shuffled[:ntr]]
        ref[1] += [(u, i) for i in shuffled[ntr:ntr + nv]]
        ref[2] += [(u, i) for i in shuffled[ntr + nv:]]
    for k in range(3):
        assert torch.equal(splits[k], edges(ref[k]))
    assert data["user"].num_nodes == 30 and data["item"].num_nodes == len(item_ids)


def test_random_split_sizes_and_small_users():
    user = np.repeat(np.arange(4), [1, 2, 3, 25])
    item = np.concatenate([np.arange(n) for n in [1, 2, 3, 25]])
    label = random_split(user, item, seed=0)
    assert (label[user < 2] == 0).all()  # fewer than 3 items: train only
    assert np.bincount(label[user == 2], minlength=3).tolist() == [1, 1, 1]
    # 0.1 * 25 = 2.5 rounds half-to-even to 2
    assert np.bincount(label[user == 3], minlength=3).tolist() == [21, 2, 2]


def test_leave_one_out(tmp_path):
    path = write(tmp_path / "r.tsv",
                 "user_id\titem_id\ttimestamp\n"
                 "a\tx\t5\na\ty\t1\na\tz\t9\na\tw\t3\n"
                 "b\tx\t2\nb\ty\t1\n"
                 "c\tz\t4\n")
    data, splits = load_csv(path, split="loo")
    # users a,b,c -> 0,1,2; items w,x,y,z -> 0,1,2,3
    assert torch.equal(splits.test, edges([(0, 3), (1, 1)]))
    assert torch.equal(splits.valid, edges([(0, 1)]))
    assert torch.equal(splits.train, edges([(0, 0), (0, 2), (1, 2), (2, 3)]))
    label = leave_one_out_split(np.array([0, 0, 0]), np.array([1.0, 1.0, 1.0]))
    assert label.tolist() == [0, 1, 2]  # ties: later rows count as later


def test_csv_label_column_threshold_kcore(tmp_path):
    path = write(tmp_path / "r.csv",
                 "user,item,rating,split\n"
                 "10,1,5,train\n10,2,4,0\n10,3,2,valid\n10,4,5,test\n"
                 "20,1,5,train\n20,3,5,1\n20,4,5,2\n"
                 "30,1,1,train\n30,2,5,train\n")
    data, splits = load_csv(path, split="column", rating_threshold=3)
    # rating < 3 dropped: (10,3) and (30,1)
    assert torch.equal(splits.train, edges([(0, 0), (0, 1), (1, 0), (2, 1)]))
    assert torch.equal(splits.valid, edges([(1, 2)]))
    assert torch.equal(splits.test, edges([(0, 3), (1, 3)]))
    _, splits = load_csv(path, split="column", min_user_interactions=3)
    assert splits.train[0].max() == 1  # user 30 (2 items) filtered


def test_k_core_iterates():
    # item 2 has one user; removing it leaves user 1 with one item, which then goes too
    user = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    item = np.array([0, 1, 3, 1, 2, 0, 1, 3])
    keep = k_core(user, item, min_user_interactions=2, min_item_interactions=2)
    assert keep.tolist() == [True, True, True, False, False, True, True, True]
    assert k_core(user, item, 3, 0).tolist() == [True] * 3 + [False] * 2 + [True] * 3


def test_deduplicate_keeps_first_in_time():
    user = np.array([0, 0, 1, 0])
    item = np.array([5, 6, 5, 5])
    ts = np.array([9.0, 1.0, 0.0, 2.0])
    with pytest.warns(UserWarning, match="merged 1 duplicated"):
        keep = deduplicate(user, item, ts)
    assert keep.tolist() == [False, True, True, True]


def test_recbole_loader(tmp_path):
    write(tmp_path / "toy.inter",
          "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "u1\ti1\t4\t10\nu1\ti2\t5\t11\nu1\ti3\t3\t12\nu1\ti4\t3\t13\n"
          "u2\ti2\t5\t1\nu2\ti3\t5\t2\nu2\ti1\t5\t3\n")
    write(tmp_path / "toy.item",
          "item_id:token\tgenre:token_seq\tvec:float_seq\tprice:float\n"
          "i1\ta b\t1 2\t3.5\ni2\tb\t3 4\t1\ni3\tc\t5 6\t2\ni4\ta\t7 8\t0\ni9\tz\t0 0\t0\n")
    data, splits = load_recbole(tmp_path, split="loo", item_features=["genre", "vec", "price"])
    assert torch.equal(splits.test, edges([(0, 3), (1, 0)]))
    assert torch.equal(splits.valid, edges([(0, 2), (1, 2)]))
    genre = data["item"].genre_feat
    assert genre.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert data["item"].vec_feat.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert data["item"].price_feat.shape == (4, 1)
    with pytest.raises(DataError, match="not 'name:type'"):
        write(tmp_path / "bad.inter", "user_id\titem_id\n1\t2\n")
        load_recbole(tmp_path / "bad.inter")


def test_load_dataset_dispatch(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    write(folder / "toy.inter", MMREC)
    ds = load_dataset({"format": "mmrec", "path": str(folder)})
    assert ds.splits.train.size(1) == 3
    ds = load_dataset({"format": "synthetic", "num_users": 50, "num_items": 40,
                       "interactions_per_user": 8, "modalities": {"text": 8}})
    assert ds.data["item"].text_feat.shape == (40, 8)
    with pytest.raises(ValueError, match=r"unknown key 'dataset.bogus' for format 'mmrec'; "
                                         r"allowed: \['name', 'path'\]"):
        load_dataset({"format": "mmrec", "path": str(folder), "bogus": 1})
    with pytest.raises(ValueError, match=r"unknown key 'dataset.sepp' for format 'csv'.*'sep'"):
        load_dataset({"format": "csv", "path": str(folder), "sepp": ","})
    with pytest.raises(ValueError, match=r"unknown key 'dataset.options'"):
        load_dataset({"format": "csv", "path": str(folder), "options": {}})
    with pytest.raises(ValueError, match="format"):
        load_dataset({"format": "parquet", "path": str(folder)})
    with pytest.raises(ValueError, match=r"needs key\(s\) \['path'\]"):
        load_dataset({"format": "csv"})


def test_describe(tmp_path):
    write(tmp_path / "d.inter", MMREC)
    np.save(tmp_path / "text_feat.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    s = describe(load_mmrec(tmp_path / "d.inter"))
    assert s["users"] == 2 and s["items"] == 4
    assert s["interactions"] == {"train": 3, "valid": 2, "test": 2, "total": 7}
    assert s["density"] == pytest.approx(7 / 8)
    assert s["features"] == {"text": [4, 2]}
    # items 2 and 3 occur in valid/test only
    assert s["cold_start"]["valid_items"] == 1 and s["cold_start"]["test_items"] == 2
    assert s["items_without_train"] == 2
    assert "cold items valid/test" in format_summary(s)


def test_cli_describe(tmp_path, capsys):
    from stair_pyg.cli import main

    write(tmp_path / "d.inter", MMREC)
    assert main(["describe", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "users" in out and "density" in out
    assert main(["describe", str(tmp_path / "nope")]) == 2


def test_csv_headerless_string_ids_and_dates(tmp_path):
    path = write(tmp_path / "r.txt",
                 "bob  pen 4 2024-01-03\nbob cup 5 2024-01-01\nbob ink 3 2024-01-02\n"
                 "amy pen 1 2023-05-01\namy ink 2 2023-05-02\namy cup 2 2023-04-01\n")
    data, splits = load_csv(path, header=False, split="loo")
    # users amy=0, bob=1; items cup=0, ink=1, pen=2 (lexicographic ranks)
    assert torch.equal(splits.test, edges([(0, 1), (1, 2)]))
    assert torch.equal(splits.valid, edges([(0, 2), (1, 1)]))
    assert torch.equal(splits.train, edges([(0, 0), (1, 0)]))


def test_one_options_type_for_every_reader(tmp_path):
    import inspect

    from stair_pyg.data import InteractionOptions
    from stair_pyg.data.csv import process_interactions, read_table
    from stair_pyg.data.options import FIELDS, PIPELINE_FIELDS, READ_FIELDS
    from stair_pyg.data.prepare import prepare_dataset

    # every option is a keyword of the loaders' signatures (what the config checks read)
    assert set(FIELDS) <= set(inspect.signature(load_csv).parameters)
    assert set(FIELDS) <= set(inspect.signature(prepare_dataset).parameters)
    assert set(PIPELINE_FIELDS) | {"encoding"} <= set(inspect.signature(load_recbole).parameters)
    assert not {"sep", "user_col"} & set(inspect.signature(load_recbole).parameters)
    assert set(READ_FIELDS) <= set(inspect.signature(read_table).parameters)
    assert set(PIPELINE_FIELDS) <= set(inspect.signature(process_interactions).parameters)
    # prepare keeps its own default for the user filter
    assert inspect.signature(prepare_dataset).parameters["min_user_interactions"].default == 3
    assert inspect.signature(load_csv).parameters["min_user_interactions"].default == 0
    # YAML lists become tuples; the object is immutable and validated again on replace
    opts = InteractionOptions(ratios=[8, 1, 1])
    assert opts.ratios == (8.0, 1.0, 1.0)
    with pytest.raises(DataError, match="'seed' must be an integer"):
        opts.replace(seed="1")
    with pytest.raises(TypeError):
        load_csv(tmp_path / "r.csv", bogus=1)
    # a config section with the same keys loads the same data
    path = tmp_path / "r.csv"
    write(path, "user,item,timestamp\n" + "".join(f"{u},{i},{i}\n" for u in range(4)
                                                  for i in range(5)))
    a = load_dataset({"format": "csv", "path": str(path), "split": "loo", "ratios": [8, 1, 1]})
    b = load_csv(path, options=InteractionOptions(split="loo"))
    assert all(torch.equal(x, y) for x, y in zip(a.splits, b.splits))
