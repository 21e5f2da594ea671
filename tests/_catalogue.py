r"""A small shop catalogue built on the fly for the image and catalogue tests: generated images
with known content (some broken), tiny randomly initialised vision models of every supported kind
saved to a folder, Amazon-format review and metadata files, and an HTTP server on 127.0.0.1."""
from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

#: Colours of the generated product images: item i is COLOURS[i % len(COLOURS)].
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 210), (240, 220, 20), (20, 20, 20),
           (250, 250, 250)]
NUM_ITEMS = 30
NUM_USERS = 24


def item_id(i: int) -> str:
    return f"B{i:05d}"


def make_images(folder: Path, num_items: int = NUM_ITEMS) -> Dict[str, str]:
    r"""Writes one image per item into :obj:`folder`, named by raw item id; returns
    ``{item: problem}`` for the items whose image is deliberately unusable. Good images: solid
    colour with a diagonal stripe, alternating PNG / JPEG, plus awkward modes (CMYK, palette
    with transparency, LA, RGBA, 16-bit greyscale) that must decode."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    broken: Dict[str, str] = {}
    for i in range(num_items):
        arr = np.zeros((40 + i, 48, 3), dtype=np.uint8)
        arr[:] = COLOURS[i % len(COLOURS)]
        for r in range(min(arr.shape[0], 48)):
            arr[r, r] = 255 - np.array(COLOURS[i % len(COLOURS)])
        img = Image.fromarray(arr)
        name = item_id(i)
        if i % 2 == 0:
            img.save(folder / f"{name}.png")
        else:
            img.save(folder / f"{name}.jpg", quality=95)
    # awkward but valid modes
    (folder / f"{item_id(3)}.jpg").unlink()
    Image.new("RGB", (32, 32), COLOURS[0]).convert("CMYK").save(folder / f"{item_id(3)}.jpeg")
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(folder / f"{item_id(4)}.png", transparency=0)
    Image.new("LA", (32, 32), (128, 100)).save(folder / f"{item_id(6)}.png")
    Image.new("RGBA", (32, 32), (10, 200, 10, 50)).save(folder / f"{item_id(8)}.png")
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)).save(
        folder / f"{item_id(10)}.png")
    # broken: zero bytes, truncated JPEG, not an image, huge (bomb guard), missing file
    (folder / f"{item_id(5)}.jpg").write_bytes(b"")
    broken[item_id(5)] = "empty file"
    data = (folder / f"{item_id(7)}.jpg").read_bytes()
    (folder / f"{item_id(7)}.jpg").write_bytes(data[: len(data) // 2])
    broken[item_id(7)] = "truncated"
    (folder / f"{item_id(9)}.jpg").write_text("<html>not found</html>")
    broken[item_id(9)] = "not an image"
    (folder / f"{item_id(12)}.png").unlink()
    Image.new("1", (6000, 6000)).save(folder / f"{item_id(12)}.png")  # 36 Mpx, a few kB
    broken[item_id(12)] = "too large"
    (folder / f"{item_id(14)}.png").unlink()
    broken[item_id(14)] = "no image"
    return broken


MAX_PIXELS_FOR_TESTS = 1_000_000  # the 6000x6000 image above is a "bomb" at this bound


def _bytes_to_unicode() -> Dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def save_tiny_models(folder: Path) -> Dict[str, Path]:
    r"""Saves a tiny randomly initialised model of each supported kind (seeded): transformers
    CLIP vision tower, ViT, DINOv2, ResNet, each with its image processor, and a
    sentence-transformers CLIP (a transformers CLIP model + processor with a byte-level
    tokenizer, which sentence-transformers loads as a multimodal Transformer module)."""
    import torch
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel,
                              CLIPProcessor, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModel,
                              ConvNextImageProcessor, Dinov2Config, Dinov2Model, ResNetConfig,
                              ResNetModel, ViTConfig, ViTImageProcessor, ViTModel)

    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4, image_size=32, patch_size=8)
    crop = {"height": 32, "width": 32}
    paths = {}
    specs = {
        "clip_vision": (CLIPVisionModel, CLIPVisionConfig(**small),
                        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=crop)),
        "vit": (ViTModel, ViTConfig(**small), ViTImageProcessor(size=crop)),
        "dinov2": (Dinov2Model, Dinov2Config(hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, image_size=32, patch_size=8),
                   BitImageProcessor(size={"shortest_edge": 32}, crop_size=crop)),
        "resnet": (ResNetModel, ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                                             depths=[1, 1], layer_type="basic"),
                   ConvNextImageProcessor(size={"shortest_edge": 32})),
    }
    for kind, (cls, config, processor) in specs.items():
        torch.manual_seed(0)
        path = folder / kind
        cls(config).save_pretrained(path)
        processor.save_pretrained(path)
        paths[kind] = path
    path = folder / "st_clip"
    path.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"]),
        vision_config=small, projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=crop),
                  tokenizer=tokenizer).save_pretrained(path)
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(str(path), device="cpu").save(str(path))  # writes modules.json
    paths["st_clip"] = path
    return paths


def interactions(num_users: int = NUM_USERS, num_items: int = NUM_ITEMS,
                 per_user: int = 8, seed: int = 0) -> List[Tuple[str, str, int, int]]:
    r"""``(user, item, rating, unix time)`` with every item bought at least once."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        items = set(rng.choice(num_items, per_user, replace=False).tolist())
        items.add(u % num_items)
        items.add((u + num_users) % num_items)
        for t, i in enumerate(sorted(items)):
            rows.append((f"U{u:03d}", item_id(i), int(rng.integers(1, 6)), 1_400_000_000 + t))
    return rows


def write_gz(path: Path, lines: List[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_amazon(folder: Path, release: str, image_url: "str | None" = None,
                 num_items: int = NUM_ITEMS) -> Tuple[Path, Path]:
    r"""Reviews and metadata of :obj:`release` for the generated catalogue; image URLs
    ``{image_url}/B00000.png`` (or the ``.jpg``) when given."""
    folder.mkdir(parents=True, exist_ok=True)
    reviews, meta = [], []
    for user, item, rating, ts in interactions():
        if release == "2023":
            reviews.append(json.dumps({"rating": float(rating), "title": "ok", "text": "fine",
                                       "images": [], "asin": item + "-v", "parent_asin": item,
                                       "user_id": user, "timestamp": ts * 1000,
                                       "verified_purchase": True, "helpful_vote": 0}))
        else:
            reviews.append(json.dumps({"reviewerID": user, "asin": item, "overall": float(rating),
                                       "unixReviewTime": ts, "reviewText": "fine",
                                       **({"vote": "2"} if release == "2018" else {})}))
    for i in range(num_items):
        ext = "png" if i % 2 == 0 else "jpg"
        url = None if image_url is None else f"{image_url}/{item_id(i)}.{ext}"
        title, brand = f"Product {i} colour {i % len(COLOURS)}", f"Brand{i % 3}"
        if release == "2014":
            rec = {"asin": item_id(i), "title": title, "brand": brand, "price": 9.99,
                   "categories": [["Baby", "Toys"], ["Gifts"]],
                   "description": f"A fine\nproduct {i}", "related": {"also_bought": []}}
            if url:
                rec["imUrl"] = url
            meta.append(repr(rec))  # Python literal, as in the 2014 release
        elif release == "2018":
            meta.append(json.dumps({"asin": item_id(i), "title": title, "brand": brand,
                                    "category": ["Baby", "Toys"],
                                    "description": ["A fine", f"product {i}"],
                                    "imageURL": [url] if url else [],
                                    "imageURLHighRes": [url] if url else []}))
        else:
            meta.append(json.dumps({
                "main_category": "Baby", "title": title, "store": brand,
                "categories": ["Baby", "Toys"], "features": ["soft"],
                "description": ["A fine", f"product {i}"], "parent_asin": item_id(i),
                "images": ([{"thumb": "x", "large": url, "variant": "PT01", "hi_res": None},
                            {"thumb": "x", "large": url, "variant": "MAIN", "hi_res": url}]
                           if url else [])}))
    ext = "jsonl" if release == "2023" else "json"
    return (write_gz(folder / f"reviews_{release}.{ext}.gz", reviews),
            write_gz(folder / f"meta_{release}.{ext}.gz", meta))


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path = Path(".")
    hits: Dict[str, int] = {}

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, kind: str, length: "int | None" = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        self.hits[path] = self.hits.get(path, 0) + 1
        if path.startswith("/flaky/"):
            if self.hits[path] < 2:
                return self._send(503, b"busy", "text/plain")
            path = path[len("/flaky"):]
        if path == "/html":
            return self._send(200, b"<html>shop</html>", "text/html")
        if path == "/big":
            return self._send(200, b"x" * 10, "image/png", length=10 ** 9)
        if path == "/escape":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return None
        f = self.root / path.lstrip("/")
        if not path.lstrip("/") or ".." in path or not f.is_file():
            return self._send(404, b"no", "text/plain")
        kind = "image/png" if f.suffix == ".png" else "image/jpeg"
        return self._send(200, f.read_bytes(), kind)


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    r"""Serves :obj:`root` on 127.0.0.1 (a free port) with a few special paths: ``/flaky/X``
    (503 once, then X), ``/html`` (text/html), ``/big`` (claims 1 GB), ``/escape`` (a redirect
    to ``file://``). Yields the base URL."""
    handler = type("Handler", (_Handler,), {"root": root, "hits": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
