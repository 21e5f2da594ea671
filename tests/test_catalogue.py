import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from _catalogue import (COLOURS, NUM_ITEMS, NUM_USERS, interactions, item_id,  # noqa: E402
                        make_images, save_tiny_models, serve, write_amazon, write_gz)
from stair_pyg.cli import main
from stair_pyg.data import DataError, describe, load_mmrec
from stair_pyg.data.amazon import (item_text, read_amazon_meta, read_amazon_reviews,
                                   read_catalog)


def read_tsv(path):
    return pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_amazon_releases(tmp_path, release):
    reviews, meta = write_amazon(tmp_path, release, image_url="http://shop.test/img")
    df = read_amazon_reviews(reviews)
    rows = interactions()
    assert df.user.tolist() == [r[0] for r in rows] and df.item.tolist() == [r[1] for r in rows]
    assert df.index.tolist() == list(range(1, len(rows) + 1))  # line numbers
    scale = 1000 if release == "2023" else 1
    assert df.timestamp.astype(float).astype(int).tolist() == [r[3] * scale for r in rows]
    cat = read_amazon_meta(meta)
    assert len(cat.texts) == NUM_ITEMS and len(cat.images) == NUM_ITEMS
    # MMRec's template: title, brand, the first category path, description
    expected = "Product 7 colour 1 Brand1 Baby Toys A fine product 7"
    assert cat.texts[item_id(7)] == expected
    assert cat.images[item_id(7)] == "http://shop.test/img/B00007.jpg"
    chosen = read_amazon_meta(meta, fields=["title", "description"])
    assert chosen.texts[item_id(7)] == "Product 7 colour 1 A fine product 7"
    with pytest.raises(DataError, match=r"text field\(s\) \['titel'\] occur in no record"):
        read_amazon_meta(meta, fields=["titel", "description"])


def test_amazon_text_template_matches_mmrec():
    # MMRec preprocessing/3feat-encoder.ipynb, on a 2014 record (whitespace runs collapsed)
    rec = {"title": "Ghost Inc Glock Armorers Tool", "brand": "Ghost",
           "categories": [["Sports & Outdoors", "Hunting & Fishing"], ["Other"]],
           "description": "Ghost Armorer\nTool (1)."}
    mmrec = rec["title"] + " " + rec["brand"] + " "
    for c in rec["categories"][0]:
        mmrec = mmrec + c + " "
    mmrec = (mmrec + rec["description"]).replace("\n", " ")
    assert item_text(rec, ("title", "brand", "categories", "description"), "2014") == \
        " ".join(mmrec.split())
    assert item_text({"title": "T"}, ("title", "brand", "categories", "description"),
                     "2014") == "T"


def test_amazon_2014_meta_is_read_as_literals_not_code(tmp_path):
    meta = write_gz(tmp_path / "meta.json.gz", [
        repr({"asin": "A1", "title": "t", "imUrl": "http://x/a.jpg"}),
        "__import__('os').system('touch pwned')"])
    with pytest.raises(DataError, match=r"meta.json.gz, line 2: neither JSON nor a Python "
                                        r"literal"):
        read_amazon_meta(meta)
    assert not (tmp_path / "pwned").exists()


def test_generic_catalog_csv_tsv_parquet(tmp_path):
    frame = pd.DataFrame({"SKU": ["p1", "p2", "p3"], "Name": ["Red, big", "Blue", "Green"],
                          "Description": ['Say "hi"\nthere', "", "soft"],
                          "Image": ["img/p1.png", "http://x/p2.jpg", ""], "price": [1, 2, 3]})
    expected = {"p1": 'Red, big Say "hi" there', "p2": "Blue", "p3": "Green soft"}
    frame.to_csv(tmp_path / "shop.csv", index=False)
    frame.to_csv(tmp_path / "shop.tsv", sep="\t", index=False)
    for name in ("shop.csv", "shop.tsv"):
        cat = read_catalog(tmp_path / name)
        assert cat.texts == expected
        assert cat.images == {"p1": str(tmp_path / "img" / "p1.png"), "p2": "http://x/p2.jpg"}
    assert read_catalog(tmp_path / "shop.csv", fields=["price", "name"]).texts["p2"] == "2 Blue"
    assert read_catalog(tmp_path / "shop.csv", fields=["title"]).texts["p1"] == "Red, big"
    with pytest.raises(DataError, match=r"shop.csv, line 1: no column .colour.; the header"):
        read_catalog(tmp_path / "shop.csv", fields=["colour"])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pytest.skip("Parquet needs pyarrow (the 'parquet' extra)")
    frame.to_parquet(tmp_path / "shop.parquet")
    assert read_catalog(tmp_path / "shop.parquet").texts == expected


BAD = [
    # (file name, content (str, or bytes), reader, message)
    ("reviews.json", '{"reviewerID": "u", "asin": "a"}\n{"reviewerID": "u"}\n', "reviews",
     r"reviews.json, line 2: missing 'asin'"),
    ("reviews.json", '{"reviewerID": "u", "asin": "a"}\n[1, 2]\n', "reviews",
     r"reviews.json, line 2: expected one object per line, got list"),
    ("reviews.json", '{"foo": 1}\n', "reviews", r"reviews.json, line 1: not Amazon review data"),
    ("reviews.json", "", "reviews", r"reviews.json: no reviews"),
    ("reviews.json", b'{"reviewerID": "u", "asin": "\xff"}\n', "reviews",
     r"reviews.json, line 1: not valid UTF-8"),
    ("reviews.json.gz", b"\x1f\x8b\x08\x00garbage", "reviews", r"reviews.json.gz, line 1: "),
    ("meta.json", '{"title": "x"}\n', "meta", r"meta.json, line 1: not Amazon metadata"),
    ("meta.json", '{"asin": "a"}\n{"asin": ""}\n', "meta", r"meta.json, line 2: missing 'asin'"),
    ("meta.json", "{'asin': 'a',\n", "meta", r"meta.json, line 1: neither JSON nor a Python"),
    ("shop.csv", "", "catalog", r"shop.csv, line 1: empty file"),
    ("shop.csv", "title,description\nA,B\n", "catalog", r"shop.csv, line 1: no item column"),
    ("shop.csv", "item,price\np1,3\n", "catalog", r"shop.csv, line 1: no text column"),
    ("shop.csv", "item,title\np1,A\n,B\n", "catalog", r"shop.csv, line 3: empty item id"),
    ("shop.csv", 'item,title\np1,"A\n', "catalog", r"shop.csv: cannot parse"),
    ("shop.parquet", b"PAR1 not really", "catalog", r"shop.parquet: not a readable Parquet"),
]


@pytest.mark.parametrize("name,content,reader,message", BAD)
def test_bad_catalogue_input(tmp_path, name, content, reader, message):
    path = tmp_path / name
    if name.endswith(".gz") and isinstance(content, str):
        path.write_bytes(gzip.compress(content.encode()))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    read = {"reviews": read_amazon_reviews, "meta": read_amazon_meta,
            "catalog": read_catalog}[reader]
    before = path.read_bytes()
    with pytest.raises(DataError, match=message):
        read(path)
    assert path.read_bytes() == before  # inputs are only read


def test_truncated_gzip_names_the_line(tmp_path):
    reviews, _ = write_amazon(tmp_path, "2018")
    data = reviews.read_bytes()
    reviews.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"line \d+: truncated gzip file"):
        read_amazon_reviews(reviews)


def test_cli_bad_catalogue_is_one_line(tmp_path, capsys):
    reviews, meta = write_amazon(tmp_path, "2018")
    bad = tmp_path / "meta_bad.json"
    bad.write_text('{"asin": "B00000", "title": "x"}\nnot json\n')
    code = main(["prepare", str(reviews), "--meta", str(bad), "--out", str(tmp_path / "o"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("stair-pyg prepare: error: ") and "meta_bad.json, line 2" in err
    assert main(["prepare", str(reviews), "--images", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "--images needs --image-model" in capsys.readouterr().err
    assert main(["prepare", str(reviews), "--images", "catalog", "--image-model", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "--images catalog takes the images" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    r"""Images (some broken), tiny models, a product table and Amazon 2018 files with URLs."""
    pytest.importorskip("PIL")
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("shop")
    broken = make_images(root / "images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = save_tiny_models(root / "models")
    return root, broken, models


def _train_config(tmp_path, folder):
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": {"format": "mmrec", "path": str(folder)},
        "model": {"name": "stair", "embedding_dim": 8, "num_layers": 2,
                  "knn_k": {"text": 3, "image": 1}},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_every": 1,
                  "checkpoint_every": 1, "ks": [10]}}))
    return path


@pytest.mark.slow
def test_shop_end_to_end(shop, tmp_path, capsys):
    root, broken, models = shop
    # the shop's export: orders + a product table whose image column mixes files and URLs
    orders = tmp_path / "orders.csv"
    orders.write_text("customer,sku,date\n" + "".join(
        f"{u},{i},{t}\n" for u, i, _, t in interactions()))
    sources = read_image_sources_for_table(root / "images")
    with serve(root / "images") as base:
        rows = []
        for i in range(NUM_ITEMS):
            src = sources.get(item_id(i), f"{item_id(i)}.png")
            if i % 3 == 0 and item_id(i) not in broken:
                src = f"{base}/{src.rsplit('/', 1)[-1]}"  # by URL
            rows.append({"sku": item_id(i), "title": f"Product {i}",
                         "description": f"colour {COLOURS[i % len(COLOURS)]}", "image": src})
        rows[1]["image"] = f"{base}/html"  # a URL that is no image
        pd.DataFrame(rows).to_csv(tmp_path / "products.csv", index=False)
        args = ["prepare", str(orders), "--user-col", "customer", "--item-col", "sku",
                "--timestamp-col", "date", "--catalog", str(tmp_path / "products.csv"),
                "--model", str(models["st_clip"]), "--images", "catalog",
                "--image-model", str(models["st_clip"]), "--image-batch-size", "8",
                "--max-image-pixels", "1000000", "--no-progress"]
        assert main(args + ["--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert main(args + ["--out", str(tmp_path / "b")]) == 0
    out = tmp_path / "a"
    assert "image coverage" in printed and "image filled" in printed
    assert "no usable image for 6 item(s), filled with 'mean': B00001 (download: not an" in printed
    items = read_tsv(out / "i_id_mapping.csv")
    assert items.item_id.tolist() == [item_id(i) for i in range(NUM_ITEMS)]  # itemID order
    image = np.load(out / "image_feat.npy")
    text = np.load(out / "text_feat.npy")
    assert image.dtype == np.float32 and image.shape == (NUM_ITEMS, 16)
    assert text.shape == (NUM_ITEMS, 16)  # the same CLIP: text and image share a space
    np.testing.assert_array_equal(image, np.load(tmp_path / "b" / "image_feat.npy"))
    report = read_tsv(out / "missing_images.tsv")
    expected = sorted({int(k[1:]) for k in broken} | {1})
    assert report.itemID.astype(int).tolist() == expected
    assert report.set_index("item_id").loc[item_id(1), "reason"].startswith("download: not an")
    assert report.set_index("item_id").loc[item_id(12), "reason"].startswith("too large")
    good = np.setdiff1d(np.arange(NUM_ITEMS), expected)
    np.testing.assert_allclose(image[expected[0]], image[good].mean(0), rtol=1e-5)  # "mean"
    record = json.loads((out / "features.json").read_text())
    assert record["image"]["filled"] == len(expected) and record["image"]["fill"] == "mean"
    assert record["text"]["filled"] == 0
    summary = describe(load_mmrec(out), folder=out)
    assert summary["coverage"]["image"]["covered"] == NUM_ITEMS - len(expected)
    assert summary["coverage"]["text"]["covered"] == NUM_ITEMS
    assert (out / "image_cache").is_dir()  # downloads stay in the cache folder
    # describe
    assert main(["describe", str(out)]) == 0
    shown_ = capsys.readouterr().out
    assert f"{NUM_ITEMS - len(expected)} / {NUM_ITEMS} items" in shown_
    # train STAIR; MI and the modality graph use both modalities
    from stair_pyg.models.stair import STAIR

    ds = load_mmrec(out)
    both = STAIR.from_data(ds.data, embedding_dim=8, knn_k={"text": 3, "image": 1})
    data_text = ds.data.clone()
    del data_text["item"].image_feat
    text_only = STAIR.from_data(data_text, embedding_dim=8, knn_k={"text": 3, "image": 1})
    assert not torch_equal(both.item_embedding.weight, text_only.item_embedding.weight)
    assert both.item_adj is not None and text_only.item_adj is not None
    assert main(["train", "--config", str(_train_config(tmp_path, out)), "--out",
                 str(tmp_path / "run"), "--no-progress"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").is_file()


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a, b))


def read_image_sources_for_table(folder):
    from stair_pyg.data.images import read_image_sources

    return read_image_sources(folder)


@pytest.mark.parametrize("release", ["2014", "2018", "2023"])
def test_amazon_prepare_with_url_images(shop, tmp_path, capsys, release):
    root, broken, models = shop
    with serve(root / "images") as base:
        reviews, meta = write_amazon(tmp_path / "raw", release, image_url=base)
        out = tmp_path / "out"
        args = ["prepare", str(reviews), "--meta", str(meta), "--out", str(out),
                "--model", str(models["st_clip"]), "--images", "catalog",
                "--image-model", str(models["dinov2"]), "--missing-image", "zero",
                "--max-image-pixels", "1000000", "--k-core", "2", "--no-progress"]
        assert main(args) == 0, capsys.readouterr().err
    ids = read_tsv(out / "i_id_mapping.csv").item_id.tolist()
    image = np.load(out / "image_feat.npy")
    assert image.shape == (len(ids), 32) and len(ids) > NUM_ITEMS - 3
    report = read_tsv(out / "missing_images.tsv")
    # the broken files, and item 3 whose image is B00003.jpeg while the metadata says .jpg
    bad = sorted(ids.index(k) for k in set(broken) | {item_id(3)} if k in ids)
    assert report.itemID.astype(int).tolist() == bad
    assert report.set_index("item_id").loc[item_id(3), "reason"] == "download: HTTP 404"
    assert not image[bad].any()
    assert read_tsv(out / "item_text.tsv").text.iloc[ids.index(item_id(7))].startswith(
        "Product 7 colour 1 Brand1")
    ds = load_mmrec(out)
    assert ds.data["user"].num_nodes == NUM_USERS
    assert set(ds.data["item"].keys()) >= {"image_feat", "text_feat"}
    # a rerun resumes from the cache: nothing to download, output refused without --overwrite
    assert main(args) == 2 and "not empty" in capsys.readouterr().err


def test_cli_image_folder_policies_and_overwrite(shop, tmp_path, capsys):
    root, broken, models = shop
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i, _, _ in interactions()))
    out = tmp_path / "out"
    args = ["prepare", str(csv), "--out", str(out), "--images", str(root / "images"),
            "--image-model", str(models["vit"]), "--max-image-pixels", "1000000",
            "--no-progress"]
    assert main(args + ["--missing-image", "error"]) == 2
    err = capsys.readouterr().err
    assert f"error: {root / 'images'}: 5 item(s) have no usable image (first: B00005 (empty" in err
    assert "Traceback" not in err and not (out / "image_feat.npy").exists()
    assert main(args + ["--missing-image", "zero"]) == 0, capsys.readouterr().err
    image = np.load(out / "image_feat.npy")
    assert image.shape == (NUM_ITEMS, 32) and not image[[5, 7, 9, 12, 14]].any()
    assert json.loads((out / "features.json").read_text())["image"]["fill"] == "zero"
    assert "text" not in json.loads((out / "features.json").read_text())
    # replaced without images: no stale image files are left behind
    assert main(["prepare", str(csv), "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert not (out / "image_feat.npy").exists() and not (out / "missing_images.tsv").exists()
    assert "image" not in describe(load_mmrec(out), folder=out)["coverage"]
