r"""Image features for ``stair-pyg prepare --images``: where each item's image is, a resumable
download cache for images named by URL, defensive decoding, and the encoders.

**Sources.** :func:`read_image_sources` reads a folder of image files named by raw item id
(``B000123.jpg``, any of :data:`IMAGE_EXTENSIONS`) or a TSV ``item<TAB>path-or-URL`` (relative
paths are relative to the TSV's folder). The product readers of :mod:`stair_pyg.data.amazon`
give the same ``{raw item id: path or URL}`` mapping from the catalogue itself.

**Downloads** (:func:`download_images`): ``http(s)`` URLs only, into ``cache_dir`` under a file
name that is the SHA-256 of the URL (so no URL or redirect can name a path outside the cache),
written to a temporary file in the cache and renamed into place once complete (an interrupted run
leaves no half image: the next run downloads only what is missing). Bounded concurrency
(``workers`` threads), a timeout per request, ``retries`` with exponential back-off on network
errors, HTTP 429 and 5xx (never on other 4xx), a ``Content-Type`` that must be ``image/*`` (or
absent / ``application/octet-stream``), and a size bound checked on ``Content-Length`` and while
reading. Redirects are followed to ``http(s)`` URLs only.

**Decoding** (:func:`load_image`) never raises: a missing, empty, truncated, non-image or
over-large file (more than ``max_pixels``, Pillow's decompression-bomb guard, checked from the
header before any pixel is decoded) gives the reason instead of an image. Images are turned
upright (EXIF orientation), animated ones give their first frame, large JPEGs are decoded at a
reduced scale that keeps both sides at least :data:`DRAFT_SIDE` (448) pixels, shapes with sides
beyond :data:`MAX_ASPECT` (25:1) and sides below :data:`MIN_SIDE` (8 px, the 1x1 "no image"
placeholders of shops) are refused, and every mode becomes RGB:
CMYK and YCbCr are converted, palette images with transparency and LA/RGBA/PA are composited on
white (a product photo's transparent background is white on the shop page), 16-bit and float
greyscale are scaled to 8 bits.

**Encoders** (:func:`load_image_encoder`), all from a local path, nothing fetched from a hub:

* ``"transformers"``: a Hugging Face vision model folder (``AutoModel`` + ``AutoImageProcessor``):
  CLIP (full model: ``get_image_features``, the projected embedding that shares the text tower's
  space; vision tower alone: its ``pooler_output``, the post-layernorm class token), ViT (the
  class token of ``last_hidden_state``: ViT's ``pooler`` is an extra dense+tanh head that most
  fine-tuned checkpoints do not train), DINOv2 (``pooler_output``, the layernormed class token),
  ResNet/ConvNeXt (``pooler_output``, global average pooling, flattened); any other model its
  ``pooler_output``, else the mean of ``last_hidden_state`` over tokens;
* ``"sentence-transformers"``: a sentence-transformers CLIP folder (``clip-ViT-B-32``, the same
  family as the text encoder of :mod:`stair_pyg.data.features`, so text and image can share a
  space), its ``encode`` of PIL images;
* ``"torchvision:<arch>"``: a torchvision model (``resnet50``, ``vit_b_16``, ...) with weights
  from a local state-dict file, classifier replaced by the identity, the ImageNet preprocessing
  (resize 256, centre crop 224, ImageNet mean/std); only where ``import torchvision`` works;
* ``"auto"`` (the default) picks sentence-transformers for a folder with ``modules.json``,
  transformers for a folder with ``config.json``.

Encoding is batched, under :func:`torch.inference_mode` with the model in ``eval()`` mode, items
in itemID order and batch boundaries fixed by ``batch_size``: the same model, inputs and device
give the same matrix.

**Items without a usable image** (:data:`MISSING_POLICIES`): ``"mean"`` (the default; MMRec's and
LATTICE's rule for the Amazon features) gives them the mean of the encoded rows, which whitening
(STAIR's MI) maps to zero, so that the item is neutral in that modality rather than looking like
an image of its own; ``"zero"`` a zero row; ``"error"`` stops with a
:class:`~stair_pyg.data.errors.DataError` naming the items. Neither fill is neutral in the kNN
modality graph: equal (mean) rows are each other's nearest neighbours, and a zero row's cosine
is 0 to every item, so its neighbours are arbitrary ties. With many filled items, prefer
``"error"`` and fix the images, or drop the image modality (``knn_k: {image: 0}``).
"""
from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from stair_pyg.data.errors import DataError, shown, warn_data
from stair_pyg.data.files import read_keyed_lines

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MISSING_POLICIES = ("mean", "zero", "error")
ENCODERS = ("auto", "transformers", "sentence-transformers", "torchvision:<arch>")
#: Pillow's own default decompression-bomb bound (about 89 megapixels).
MAX_PIXELS = 89_478_485
MAX_BYTES = 32 * 1024 * 1024
#: Longer side / shorter side above which an image is refused: encoders resize the shorter side
#: to their input size, so a 1x5000 strip would become a gigapixel tensor.
MAX_ASPECT = 25
#: Images with a side below this many pixels (1x1 "no image" placeholders) are refused.
MIN_SIDE = 8
#: Large JPEGs are decoded at a reduced scale (1/2, 1/4, 1/8) that keeps both sides >= this,
#: twice the 224 px input of common encoders: faster, same result for every run.
DRAFT_SIDE = 448
_ID_HEADERS = ("item", "item_id", "itemid", "id", "asin", "parent_asin", "sku", "product_id")


def is_url(text: str) -> bool:
    r"""Whether :obj:`text` is an ``http://`` or ``https://`` URL."""
    return str(text).strip().lower().startswith(("http://", "https://"))


def read_image_sources(source: PathLike, encoding: str = "utf-8") -> Dict[str, str]:
    r"""``{raw item id: image path or URL}`` from a folder of images named by raw item id, or a
    TSV of ``item<TAB>path-or-URL`` lines (a first line naming the columns, ``item``/``asin``/...,
    is a header; paths relative to the TSV's folder; repeated ids keep their first image, with a
    :class:`~stair_pyg.data.errors.DataWarning`). In a folder, files whose extension is not one
    of :data:`IMAGE_EXTENSIONS` are ignored; two images of one item (``a.jpg``, ``a.png``) keep
    the first in name order, with a notice."""
    path = Path(source)
    if path.is_dir():
        found: Dict[str, str] = {}
        repeated = 0
        for f in sorted(path.iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                if f.stem in found:
                    repeated += 1
                    continue
                found[f.stem] = str(f)
        if not found:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder; "
                            f"name each image by its raw item id, e.g. 'B000123.jpg'", file=path)
        if repeated:
            warn_data(f"{path}: {repeated} item(s) have several images; the first by file name "
                      f"is used", stacklevel=2)
        return found
    raw, repeated = read_keyed_lines(path, encoding, "--encoding", "item<TAB>path-or-URL",
                                     lambda key: key.lower() in _ID_HEADERS, "empty path")
    out: Dict[str, str] = {}
    for key, value in raw.items():
        value = value.strip()
        out[key] = value if is_url(value) else str((path.parent / value)
                                                    if not Path(value).is_absolute() else value)
    if not out:
        raise DataError("no 'item<TAB>path-or-URL' lines", file=path)
    if repeated:
        warn_data(f"{path}: {repeated} repeated item id(s); the first image of each is kept",
                  stacklevel=2)
    return out


# ---------------------------------------------------------------------------------------------
# Downloads

class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if not is_url(newurl):
            raise urllib.error.URLError(f"redirect to a non-http(s) URL refused: "
                                        f"{shown(newurl, 60)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)
_ACCEPTED_TYPES = ("", "application/octet-stream", "binary/octet-stream")


def cache_path(url: str, cache_dir: PathLike) -> Path:
    r"""The cache file of :obj:`url`: ``cache_dir/<sha256 of the URL>`` (no part of the URL
    itself reaches the file system)."""
    return Path(cache_dir) / hashlib.sha256(url.encode("utf-8")).hexdigest()


class _Permanent(Exception):
    r"""A failure that another try will not fix (HTTP 4xx, wrong type, too large)."""


def _fetch(url: str, target: Path, timeout: float, max_bytes: int) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "stair-pyg image fetch"})
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
            raise
        if 300 <= e.code < 400:  # urllib refuses redirects to non-http(s) schemes this way
            raise _Permanent(f"redirect refused (only to http(s) URLs): {e.msg}") from None
        raise _Permanent(f"HTTP {e.code}") from None
    with response:
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind in _ACCEPTED_TYPES):
            raise _Permanent(f"not an image (Content-Type {kind!r})")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise _Permanent(f"too large ({int(length):,} bytes > {max_bytes:,})")
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=str(target.parent))
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise _Permanent(f"too large (more than {max_bytes:,} bytes)")
                    f.write(chunk)
            if size == 0:
                raise _Permanent("empty response (0 bytes)")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def download_images(
    urls: Sequence[str],
    cache_dir: PathLike,
    *,
    workers: int = 8,
    timeout: float = 20.0,
    retries: int = 3,
    backoff: float = 0.5,
    max_bytes: int = MAX_BYTES,
    progress: bool = True,
) -> Dict[str, Union[Path, str]]:
    r"""Downloads :obj:`urls` into :obj:`cache_dir` (created), skipping those already there.

    Args:
        urls (sequence of str): ``http(s)`` URLs (repeats are fetched once).
        cache_dir (str or Path): The cache folder; nothing is written outside it.
        workers (int): Concurrent downloads. (default: ``8``)
        timeout (float): Seconds per connection attempt and read. (default: ``20``)
        retries (int): Further tries after a network error, HTTP 429 or 5xx, waiting
            ``backoff * 2**try`` seconds (+ up to 10% jitter) in between. (default: ``3``)
        backoff (float): First wait in seconds. (default: ``0.5``)
        max_bytes (int): Largest accepted file. (default: 32 MiB)
        progress (bool): tqdm progress bar. (default: :obj:`True`)

    Returns:
        ``{url: cached file}`` for the images now in the cache, ``{url: reason}`` for the others.
    """
    from tqdm.auto import tqdm

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for part in cache.glob(".part-*"):  # left by a killed run (an hour old: not a live one's)
        try:
            if time.time() - part.stat().st_mtime > 3600:
                part.unlink()
        except OSError:
            pass
    unique = list(dict.fromkeys(str(u).strip() for u in urls))
    result: Dict[str, Union[Path, str]] = {}
    todo = []
    for url in unique:
        target = cache_path(url, cache)
        if not is_url(url):
            result[url] = "not an http(s) URL"
        elif target.is_file() and target.stat().st_size > 0:
            result[url] = target
        else:
            todo.append(url)
    lock = threading.Lock()

    def one(url: str) -> Tuple[str, Union[Path, str]]:
        target = cache_path(url, cache)
        for attempt in range(retries + 1):
            try:
                _fetch(url, target, timeout, max_bytes)
                return url, target
            except _Permanent as e:
                return url, str(e)
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                if isinstance(e, urllib.error.HTTPError):
                    reason = f"HTTP {e.code}"
                if attempt == retries:
                    return url, f"download failed after {retries + 1} tries: {reason}"
                time.sleep(backoff * 2 ** attempt * (1 + 0.1 * random.random()))
        return url, "download failed"  # pragma: no cover

    if todo:
        with tqdm(total=len(todo), desc="downloading images", unit="img",
                  disable=not progress) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
            for url, got in pool.map(one, todo):
                with lock:
                    result[url] = got
                bar.update(1)
    return result


# ---------------------------------------------------------------------------------------------
# Decoding

def load_image(path: PathLike, max_pixels: int = MAX_PIXELS) -> Tuple[Optional[Any], str]:
    r"""Opens an image defensively: ``(RGB PIL image, "")``, or ``(None, reason)`` when the file
    is missing, empty, not an image, truncated, or has more than :obj:`max_pixels` pixels (see
    the module notes for the mode conversions). Never raises."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return None, "no such file" if isinstance(e, FileNotFoundError) else \
            f"cannot read ({e.strerror or e})"
    if not path.is_file():
        return None, "not a file"
    if size == 0:
        return None, "empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w <= 0 or h <= 0:
                return None, f"image of size {w}x{h}"
            if w * h > max_pixels:
                return None, f"too large ({w}x{h} = {w * h:,} pixels > {max_pixels:,})"
            if min(w, h) < MIN_SIDE:
                return None, f"too small ({w}x{h}; a placeholder or tracking pixel?)"
            if max(w, h) > MAX_ASPECT * min(w, h):
                return None, f"degenerate shape {w}x{h} (sides more than {MAX_ASPECT}:1)"
            if img.format == "JPEG":
                img.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))  # DCT-domain downscale, >= 448 px
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return to_rgb(img), ""
    except Image.DecompressionBombError:
        return None, f"too large (decompression bomb guard, > {max_pixels:,} pixels)"
    except Image.UnidentifiedImageError:
        return None, "not an image (unrecognised format)"
    except OSError as e:
        text = str(e)
        return None, "truncated image" if "truncated" in text.lower() else f"cannot decode ({text})"
    except Exception as e:  # noqa: BLE001 - a decoder failure on one file must not stop a run
        return None, f"cannot decode ({type(e).__name__}: {e})"


def to_rgb(img: Any) -> Any:
    r"""An RGB copy of a PIL image: alpha (LA, RGBA, PA, palette with transparency) composited
    on white, CMYK/YCbCr/L/1 converted, 16-bit and float greyscale scaled to 8 bits."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("LA", "PA", "RGBa", "La"):
        img, mode = img.convert("RGBA"), "RGBA"
    if mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(((arr - lo) * scale).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


# ---------------------------------------------------------------------------------------------
# Encoders

class ImageEncoder:
    r"""A loaded image model: :meth:`encode` maps a list of RGB PIL images to a ``float32``
    ``[n, dim]`` matrix. ``name`` says what was loaded (for ``features.json``)."""

    name: str = ""

    def encode(self, images: List[Any]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def dim(self) -> int:
        r"""The output dimension (one white 8x8 image is encoded to find it)."""
        if getattr(self, "_dim", None) is None:
            from PIL import Image

            self._dim = int(self.encode([Image.new("RGB", (8, 8), "white")]).shape[1])
        return self._dim


class TransformersImageEncoder(ImageEncoder):
    r"""A Hugging Face vision model folder (``AutoModel`` + ``AutoImageProcessor``); the pooled
    output of the module notes."""

    def __init__(self, path: PathLike, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.device = torch.device(device)
        self.model_type = str(getattr(self.model.config, "model_type", ""))
        self.name = f"transformers:{self.model_type}:{path}"

    def encode(self, images: List[Any]) -> np.ndarray:
        import torch

        inputs = self.processor(images=images, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        with torch.inference_mode():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=pixels)
                if not isinstance(out, torch.Tensor):  # transformers >= 5: a model output
                    out = out.pooler_output
            else:
                res = self.model(pixel_values=pixels)
                pooled = getattr(res, "pooler_output", None)
                if self.model_type == "vit" or pooled is None:
                    hidden = res.last_hidden_state
                    out = hidden[:, 0] if self.model_type == "vit" else (
                        hidden.mean(dim=1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3)))
                else:
                    out = pooled
            out = out.reshape(out.shape[0], -1)
        return out.float().cpu().numpy()


class SentenceTransformerImageEncoder(ImageEncoder):
    r"""A sentence-transformers CLIP folder; :meth:`encode` is its ``encode`` of PIL images."""

    def __init__(self, path: PathLike, device: str = "cpu", batch_size: int = 32) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device)
        self.batch_size = batch_size
        self.name = f"sentence-transformers:{path}"

    def encode(self, images: List[Any]) -> np.ndarray:
        out = self.model.encode(images, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=False, normalize_embeddings=False)
        return np.asarray(out, dtype=np.float32)


def torchvision_available() -> bool:
    r"""Whether ``import torchvision`` works here (its wheels must match the installed torch)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a mismatched wheel raises RuntimeError/OSError too
        return False
    return True


class TorchvisionImageEncoder(ImageEncoder):
    r"""A torchvision architecture with weights from a local state-dict file, its classifier
    replaced by the identity, and the ImageNet preprocessing."""

    def __init__(self, arch: str, weights: PathLike, device: str = "cpu") -> None:
        import torch

        if not torchvision_available():
            raise ImportError("torchvision encoders need a torchvision that imports with this "
                              "torch (pip install torchvision matching torch); use a "
                              "transformers or sentence-transformers model instead")
        import torchvision
        from torchvision import transforms

        try:
            model = torchvision.models.get_model(arch, weights=None)
        except ValueError:
            raise DataError(f"unknown torchvision model {arch!r}") from None
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        for attr in ("fc", "heads", "classifier", "head"):
            if hasattr(model, attr):
                head = getattr(model, attr)
                if attr == "classifier" and isinstance(head, torch.nn.Sequential):
                    head[-1] = torch.nn.Identity()
                else:
                    setattr(model, attr, torch.nn.Identity())
                break
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.transform = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        self.name = f"torchvision:{arch}:{weights}"

    def encode(self, images: List[Any]) -> np.ndarray:
        import torch

        batch = torch.stack([self.transform(im) for im in images]).to(self.device)
        with torch.inference_mode():
            out = self.model(batch)
        return out.reshape(out.shape[0], -1).float().cpu().numpy()


def load_image_encoder(model: PathLike, encoder: str = "auto", device: str = "cpu",
                       batch_size: int = 32, progress: bool = True) -> ImageEncoder:
    r"""Loads an image encoder from a local path (see the module notes for :obj:`encoder`:
    ``"auto"``, ``"transformers"``, ``"sentence-transformers"`` or ``"torchvision:<arch>"``).
    ``progress=False`` turns off transformers' weight-loading bars (a process-wide setting).
    Raises :class:`FileNotFoundError` for a missing path, :class:`ImportError` for a missing
    package, and :class:`~stair_pyg.data.errors.DataError` for a folder that is no model."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not progress:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image model {str(path)!r} does not exist (give a local model "
                                f"folder or weights file; nothing is downloaded)")
    if encoder.startswith("torchvision:"):
        if not path.is_file():
            raise DataError("a torchvision encoder takes a state-dict file (.pth) saved with "
                            "torch.save(model.state_dict(), ...)", file=path)
        return TorchvisionImageEncoder(encoder.split(":", 1)[1], path, device)
    if encoder == "auto":
        if (path / "modules.json").is_file():
            encoder = "sentence-transformers"
        elif (path / "config.json").is_file():
            encoder = "transformers"
        else:
            raise DataError("not a model folder (no modules.json of sentence-transformers, no "
                            "config.json of transformers); for torchvision weights pass "
                            "--image-encoder torchvision:<arch>", file=path)
    try:
        if encoder == "sentence-transformers":
            return SentenceTransformerImageEncoder(path, device, batch_size)
        if encoder == "transformers":
            return TransformersImageEncoder(path, device)
    except ImportError as e:
        raise ImportError(f"the {encoder} image encoder needs its package: {e}") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot load a {encoder} image model from this folder: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        file=path) from None
    raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")


# ---------------------------------------------------------------------------------------------
# The matrix

@dataclass
class ImageFeatures:
    r"""What :func:`encode_images` returns: the ``float32 [num_items, dim]`` matrix and, for each
    row that was filled (no usable image), the reason; ``encoder`` names the model."""

    features: np.ndarray
    problems: Dict[int, str] = field(default_factory=dict)
    encoder: str = ""
    fill: str = "mean"


def encode_images(
    sources: Sequence[Optional[str]],
    encoder: ImageEncoder,
    *,
    batch_size: int = 32,
    missing_image: str = "mean",
    cache_dir: Optional[PathLike] = None,
    workers: int = 8,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    ids: Optional[Sequence[str]] = None,
    source: Optional[PathLike] = None,
    download: Optional[Callable[..., Dict[str, Union[Path, str]]]] = None,
) -> ImageFeatures:
    r"""Encodes one image per row: ``sources[i]`` is row ``i``'s image (a path, an ``http(s)``
    URL, or :obj:`None` for none).

    URLs are first fetched with :func:`download_images` into :obj:`cache_dir` (required when
    there are URLs); images are decoded with :func:`load_image` (``workers`` threads) and encoded
    ``batch_size`` at a time, so only one batch of pixels is held in memory.

    Args:
        sources (sequence): The image of each row.
        encoder (ImageEncoder): From :func:`load_image_encoder`.
        batch_size (int): Images per forward pass. (default: ``32``)
        missing_image (str): ``"mean"``, ``"zero"`` or ``"error"`` for rows without a usable
            image (module notes). (default: ``"mean"``)
        cache_dir (str or Path, optional): Download cache. (default: :obj:`None`)
        workers (int): Download and decoding threads. (default: ``8``)
        max_pixels (int): Larger images are refused. (default: Pillow's ``89,478,485``)
        progress (bool): Progress bars. (default: :obj:`True`)
        ids (sequence of str, optional): Raw item id per row, for the error message.
        source (str or Path, optional): Where the images were named, for the error message.
        download (callable, optional): Replaces :func:`download_images` (same signature).
    """
    from tqdm.auto import tqdm

    if missing_image not in MISSING_POLICIES:
        raise ValueError(f"missing_image must be one of {MISSING_POLICIES}, got "
                         f"{missing_image!r}")
    n = len(sources)
    problems: Dict[int, str] = {}
    paths: List[Optional[Path]] = [None] * n
    urls = sorted({s for s in sources if s is not None and is_url(s)})
    fetched: Mapping[str, Union[Path, str]] = {}
    if urls:
        if cache_dir is None:
            raise ValueError("images given by URL need a cache_dir")
        fetched = (download or download_images)(urls, cache_dir, workers=workers,
                                                progress=progress)
    for i, s in enumerate(sources):
        if s is None or not str(s).strip():
            problems[i] = "no image"
        elif is_url(s):
            got = fetched.get(s.strip(), "not downloaded")
            if isinstance(got, Path):
                paths[i] = got
            else:
                problems[i] = f"download: {got}"
        else:
            paths[i] = Path(s)
    rows = [i for i in range(n) if paths[i] is not None]
    out: Optional[np.ndarray] = None
    good = np.zeros(n, dtype=bool)
    with tqdm(total=len(rows), desc="encoding images", unit="img", disable=not progress) as bar, \
            ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            decoded = list(pool.map(lambda i: load_image(paths[i], max_pixels), chunk))
            images = []
            kept = []
            for i, (img, why) in zip(chunk, decoded):
                if img is None:
                    problems[i] = why
                else:
                    images.append(img)
                    kept.append(i)
            if images:
                emb, kept = _encode_batch(encoder, images, kept, problems)
                if out is None:
                    out = np.zeros((n, emb.shape[1]), dtype=np.float32)
                out[kept] = emb
                good[kept] = True
            bar.update(len(chunk))
    if missing_image == "error" and problems:
        first = sorted(problems)[:5]
        named = ", ".join(f"{ids[i] if ids is not None else i} ({problems[i]})" for i in first)
        raise DataError(f"{len(problems)} item(s) have no usable image (first: {named}); pass "
                        f"--missing-image mean or zero (missing_image=...) to fill them",
                        file=source)
    if out is None:
        raise DataError(f"none of the {n} item(s) has a usable image"
                        + (f" (first problem: {problems[min(problems)]})" if problems else ""),
                        file=source)
    if problems and missing_image == "mean":
        out[~good] = out[good].mean(axis=0)
    return ImageFeatures(out, dict(sorted(problems.items())), encoder.name, missing_image)


def _encode_batch(encoder: ImageEncoder, images: List[Any], rows: List[int],
                  problems: Dict[int, str]) -> Tuple[np.ndarray, List[int]]:
    r"""Encodes one batch; when the batch fails, each image alone, so that one image the model's
    preprocessing cannot take is reported instead of stopping the run. A failure of every image
    (a device out of memory, a broken model) is raised."""
    try:
        return np.asarray(encoder.encode(images), dtype=np.float32), rows
    except Exception as error:  # noqa: BLE001 - retried image by image below
        embs, kept = [], []
        for img, i in zip(images, rows):
            try:
                embs.append(np.asarray(encoder.encode([img]), dtype=np.float32))
                kept.append(i)
            except Exception as e:  # noqa: BLE001
                problems[i] = f"cannot encode ({type(e).__name__}: {str(e)[:80]})"
        if not kept:
            for i in rows:
                problems.pop(i, None)
            raise error
        return np.concatenate(embs), kept


def benchmark_images(encoder: ImageEncoder, num_images: int = 256, size: int = 256,
                     batch_size: int = 32, seed: int = 0) -> Dict[str, float]:
    r"""Throughput of :obj:`encoder` on :obj:`num_images` random ``size x size`` JPEG files
    (written to a temporary folder, so decoding is measured too): ``{"images_per_s",
    "items_per_hour", "seconds"}``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k in range(num_images):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            f = Path(tmp) / f"{k}.jpg"
            Image.fromarray(arr).save(f, quality=90)
            files.append(str(f))
        encode_images(files[:batch_size], encoder, batch_size=batch_size, progress=False)
        start = time.perf_counter()
        encode_images(files, encoder, batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
    rate = num_images / seconds
    return {"images_per_s": rate, "items_per_hour": rate * 3600, "seconds": seconds}


__all__ = ["IMAGE_EXTENSIONS", "MISSING_POLICIES", "ENCODERS", "MAX_PIXELS", "is_url",
           "read_image_sources", "cache_path", "download_images", "load_image", "to_rgb",
           "ImageEncoder", "TransformersImageEncoder", "SentenceTransformerImageEncoder",
           "TorchvisionImageEncoder", "torchvision_available", "load_image_encoder",
           "ImageFeatures", "encode_images", "benchmark_images", "MAX_ASPECT", "MIN_SIDE",
           "DRAFT_SIDE"]
