import os
import warnings

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image features need pillow (the 'images' extra)")

from _catalogue import (MAX_PIXELS_FOR_TESTS, NUM_ITEMS, item_id, make_images,  # noqa: E402
                        save_tiny_models, serve)
from stair_pyg.data import DataError  # noqa: E402
from stair_pyg.data.images import (cache_path, download_images, encode_images,  # noqa: E402
                                   load_image, load_image_encoder, read_image_sources,
                                   torchvision_available)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return folder, make_images(folder)


def test_decoding_is_defensive(images):
    folder, broken = images
    sources = read_image_sources(folder)
    assert len(sources) == NUM_ITEMS - 1  # item 14 has no file
    assert sources[item_id(3)].endswith(".jpeg")
    for item, path in sources.items():
        img, why = load_image(path, max_pixels=MAX_PIXELS_FOR_TESTS)
        if item in broken:
            assert img is None and broken[item] in why, (item, why)
        else:
            assert img is not None and img.mode == "RGB" and why == "", (item, why)
    # modes: CMYK converted, transparent palette / LA / RGBA composited on white
    cmyk, _ = load_image(sources[item_id(3)])
    assert np.abs(np.asarray(cmyk, dtype=int)[16, 16] - (220, 30, 30)).max() <= 3
    pal, _ = load_image(sources[item_id(4)])
    assert tuple(np.asarray(pal)[0, 0]) == (200, 10, 10)  # index 1, opaque
    rgba, _ = load_image(sources[item_id(8)])
    alpha = 50 / 255
    expected = np.round(np.array([10, 200, 10]) * alpha + 255 * (1 - alpha))
    assert np.abs(np.asarray(rgba, dtype=int)[0, 0] - expected).max() <= 1
    sixteen, _ = load_image(sources[item_id(10)])
    assert np.asarray(sixteen).max() == 255 and np.asarray(sixteen).min() == 0
    from PIL import Image

    extra = folder.parent / f"{folder.name}-extra"
    extra.mkdir(exist_ok=True)
    Image.new("RGB", (1, 1)).save(extra / "pixel.gif")
    Image.new("RGB", (400, 10)).save(extra / "strip.png")
    Image.new("RGB", (2000, 1200), (9, 99, 199)).save(extra / "big.jpg")
    assert load_image(extra / "pixel.gif")[1].startswith("too small (1x1")
    assert load_image(extra / "strip.png")[1].startswith("degenerate shape 400x10")
    big, _ = load_image(extra / "big.jpg")
    assert big.size == (1000, 600)  # decoded at 1/2 scale: 1/4 would make a side < 448
    img, why = load_image(folder / "nope.png")
    assert img is None and why == "no such file"
    img, why = load_image(folder)
    assert img is None and why == "not a file"


def test_image_sources_tsv(tmp_path, images):
    folder, _ = images
    tsv = tmp_path / "images.tsv"
    tsv.write_text(f"item\timage\nA\t{folder / (item_id(0) + '.png')}\nB\thttp://x/b.jpg\n"
                   f"C\trel/c.png\nA\tother.png\n")
    with pytest.warns(UserWarning, match="1 repeated item id"):
        got = read_image_sources(tsv)
    assert got == {"A": str(folder / (item_id(0) + ".png")), "B": "http://x/b.jpg",
                   "C": str(tmp_path / "rel" / "c.png")}
    tsv.write_text("A\ta.png\nB b.png\n")
    with pytest.raises(DataError, match=r"images.tsv, line 2: expected 'item<TAB>path-or-URL'"):
        read_image_sources(tsv)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        read_image_sources(empty)


def test_download_cache(tmp_path, images):
    folder, _ = images
    cache = tmp_path / "cache"
    with serve(folder) as base:
        good = [f"{base}/{item_id(i)}.png" for i in (0, 2)]
        bad = {f"{base}/html": "not an image", f"{base}/big": "too large",
               f"{base}/escape": "redirect refused", f"{base}/missing.png": "HTTP 404",
               "ftp://example.org/a.png": "not an http(s) URL"}
        flaky = f"{base}/flaky/{item_id(4)}.png"
        got = download_images(good + [flaky] + list(bad), cache, workers=4, retries=2,
                              backoff=0.01, max_bytes=10 ** 6, progress=False)
        for url in good + [flaky]:
            assert got[url] == cache_path(url, cache) and got[url].is_file(), got[url]
        assert got[good[0]].read_bytes() == (folder / f"{item_id(0)}.png").read_bytes()
        for url, why in bad.items():
            assert isinstance(got[url], str) and why in got[url], (url, got[url])
        # only complete, hash-named files in the cache folder, nothing elsewhere
        assert sorted(p.name for p in cache.iterdir()) == sorted(
            cache_path(u, cache).name for u in good + [flaky])
        assert not (tmp_path / "etc").exists()
        # resumable: a second run fetches nothing that is already there
        stale, fresh = cache / ".part-killed", cache / ".part-live"
        stale.write_bytes(b"half")
        fresh.write_bytes(b"half")
        os.utime(stale, (1, 1))
        again = download_images(good, cache, progress=False)
        assert again == {u: cache_path(u, cache) for u in good}
        assert not stale.exists() and fresh.exists()  # a killed run's part file is cleared


def test_download_retries_then_gives_up(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    url = f"http://127.0.0.1:{port}/a.png"
    got = download_images([url], tmp_path / "c", retries=2, backoff=0.01, timeout=2,
                          progress=False)
    assert "failed after 3 tries" in got[url]
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("kind,dim", [("clip_vision", 32), ("vit", 32), ("dinov2", 32),
                                      ("resnet", 16), ("st_clip", 16)])
def test_encoders(models, images, kind, dim):
    folder, broken = images
    sources = read_image_sources(folder)
    rows = [sources.get(item_id(i)) for i in range(NUM_ITEMS)]
    encoder = load_image_encoder(models[kind])
    assert encoder.dim == dim
    a = encode_images(rows, encoder, batch_size=7, missing_image="zero",
                      max_pixels=MAX_PIXELS_FOR_TESTS, progress=False)
    b = encode_images(rows, load_image_encoder(models[kind]), batch_size=7,
                      missing_image="zero", max_pixels=MAX_PIXELS_FOR_TESTS, progress=False)
    assert a.features.dtype == np.float32 and a.features.shape == (NUM_ITEMS, dim)
    np.testing.assert_array_equal(a.features, b.features)  # deterministic for a model
    bad_rows = sorted(int(k[1:]) for k in broken)
    assert sorted(a.problems) == bad_rows
    assert not a.features[bad_rows].any()
    good = np.setdiff1d(np.arange(NUM_ITEMS), bad_rows)
    assert (np.abs(a.features[good]).sum(1) > 0).all()
    if kind != "vit":
        return
    # rows do not depend on their batch neighbours: reversed order, same rows
    c = encode_images(rows[::-1], encoder, batch_size=7, missing_image="zero",
                      max_pixels=MAX_PIXELS_FOR_TESTS, progress=False)
    np.testing.assert_allclose(c.features[::-1], a.features, rtol=1e-4, atol=1e-5)


def test_clip_through_transformers_equals_sentence_transformers(models, images):
    folder, _ = images
    sources = read_image_sources(folder)
    rows = [sources[item_id(i)] for i in (0, 1, 2, 11)]
    st = encode_images(rows, load_image_encoder(models["st_clip"]), progress=False)
    hf = encode_images(rows, load_image_encoder(models["st_clip"], "transformers"),
                       progress=False)
    assert hf.encoder.startswith("transformers:clip:")
    np.testing.assert_allclose(hf.features, st.features, rtol=1e-4, atol=1e-5)


def test_a_batch_that_fails_is_encoded_image_by_image(models, images):
    folder, _ = images
    sources = read_image_sources(folder)
    encoder = load_image_encoder(models["resnet"])
    real = encoder.encode

    def fussy(batch):
        if any(im.size == (48, 41) for im in batch):  # item 1's image
            raise ValueError("cannot take this one")
        return real(batch)

    encoder.encode = fussy
    rows = [sources[item_id(i)] for i in (0, 1, 2)]
    out = encode_images(rows, encoder, missing_image="zero", progress=False)
    assert out.problems == {1: "cannot encode (ValueError: cannot take this one)"}
    np.testing.assert_allclose(out.features[[0, 2]], encode_images(
        [rows[0], rows[2]], encoder, progress=False).features, rtol=1e-5)
    encoder.encode = lambda batch: (_ for _ in ()).throw(RuntimeError("out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        encode_images(rows, encoder, progress=False)


def test_missing_image_policies(models, images):
    folder, broken = images
    sources = read_image_sources(folder)
    rows = [sources.get(item_id(i)) for i in range(NUM_ITEMS)]
    encoder = load_image_encoder(models["resnet"])
    kw = dict(max_pixels=MAX_PIXELS_FOR_TESTS, progress=False)
    mean = encode_images(rows, encoder, missing_image="mean", **kw)
    bad = sorted(mean.problems)
    good = np.setdiff1d(np.arange(NUM_ITEMS), bad)
    np.testing.assert_allclose(mean.features[bad], np.broadcast_to(
        mean.features[good].mean(0), (len(bad), mean.features.shape[1])), rtol=1e-6)
    ids = [item_id(i) for i in range(NUM_ITEMS)]
    with pytest.raises(DataError, match=r"5 item\(s\) have no usable image \(first: B00005 "
                                         r"\(empty file"):
        encode_images(rows, encoder, missing_image="error", ids=ids, **kw)
    with pytest.raises(DataError, match="none of the 2 item"):
        encode_images([None, rows[5]], encoder, **kw)


def test_image_encoder_errors(tmp_path, models):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_image_encoder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a model folder"):
        load_image_encoder(tmp_path / "empty")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(DataError, match="state-dict file"):
        load_image_encoder(tmp_path / "empty", "torchvision:resnet18")


@pytest.mark.skipif(not torchvision_available(),
                    reason="torchvision does not import with this torch (its wheels here are "
                           "built for another torch); torchvision encoders are optional")
def test_torchvision_encoder(tmp_path, images):  # pragma: no cover - needs torchvision
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    folder, broken = images
    sources = read_image_sources(folder)
    encoder = load_image_encoder(tmp_path / "r18.pth", "torchvision:resnet18")
    out = encode_images([sources.get(item_id(i)) for i in range(NUM_ITEMS)], encoder,
                        max_pixels=MAX_PIXELS_FOR_TESTS, progress=False)
    assert out.features.shape == (NUM_ITEMS, 512)
