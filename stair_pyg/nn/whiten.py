r"""Whitening of modality features, the first step of STAIR's modality initialisation (MI)."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


#: Entries per float64 block of the Gram route (16 MiB): large enough for an efficient product.
_BLOCK_ENTRIES = 1 << 21


class Whitening(NamedTuple):
    r"""A fitted whitening transform, :math:`\mathbf{x} \mapsto (\mathbf{x} - \boldsymbol{\mu})
    \mathbf{P}`, as :func:`fit_whiten` returns it: the column mean :math:`\boldsymbol{\mu}`
    ``[f]`` and the projection :math:`\mathbf{P}` ``[f, dim]`` (float64), scale and signs
    included, zero columns for the directions that do not exist. Applied to the rows it was
    fitted on it gives :func:`whiten`'s output; applied to new rows (:meth:`apply`) it places
    them in the same coordinates."""

    mean: Tensor
    projection: Tensor

    def apply(self, x: Tensor) -> Tensor:
        r""":math:`(\mathbf{X} - \mathbf{1}\boldsymbol{\mu}^\top) \mathbf{P}` ``[N, dim]``
        in float64."""
        if x.dim() != 2 or x.size(1) != self.mean.numel():
            raise ValueError(f"features must have shape [N, {self.mean.numel()}], got "
                             f"{tuple(x.shape)}")
        mean = self.mean.to(x.device)
        return (x.to(torch.float64) - mean) @ self.projection.to(x.device)


def whiten(x: Tensor, dim: int, method: str = "auto", rtol: float = 1e-6,
           chunk_size: Optional[int] = None) -> Tensor:
    r"""Whitens features as in the `"STAIR" <https://arxiv.org/abs/2412.11729>`_ paper's modality
    initialisation: centre the columns and keep the leading left singular vectors, scaled so that
    every kept column has mean square one,

    .. math::
        \mathbf{X} - \mathbf{1}\bar{\mathbf{x}}^{\top} = \mathbf{U}\mathbf{\Sigma}\mathbf{V}^{\top},
        \qquad \mathbf{W} = \mathbf{U}_{:, :k} \sqrt{N / k},

    with :math:`k` = :obj:`dim`. Columns of :math:`\mathbf{W}` are uncorrelated and
    :math:`\mathbf{W}^{\top}\mathbf{W} = (N / k) \mathbf{I}` on the kept directions.

    **Fewer directions than** :obj:`dim`. The centred matrix has at most :math:`r = \min(N, f)`
    singular directions (fewer when it is rank-deficient: centring alone removes one when
    :math:`N \leq f`). Directions whose singular value is at most :obj:`rtol` times the largest
    one, and directions that do not exist (index :math:`\geq \min(N, f)`, e.g. 19 genre columns
    whitened to 64 dimensions), give **zero columns**; the scale stays :math:`\sqrt{N/k}`, so the
    kept columns are exactly those of the full-rank case. (The authors' code fails here.)

    **Signs.** Singular vectors are defined up to sign; each column is flipped so that its entry of
    largest magnitude is positive, which makes the result the same for both methods and devices.

    **Memory.** Never :math:`N \times N`. :obj:`method="gram"` accumulates the :math:`f \times f`
    Gram matrix of the centred features in float64 over blocks of :obj:`chunk_size` rows and takes
    its :obj:`dim` leading eigenpairs (on CPU only those are computed, in place:
    :math:`O(f^2 + \text{chunk\_size} \cdot f)` working memory besides the output);
    :obj:`method="svd"` takes the thin SVD (:obj:`full_matrices=False`) of the centred
    :math:`N \times f` matrix in float64 (:math:`O(N f)` memory), the reference route.
    :obj:`"auto"` picks :obj:`"gram"` unless :math:`f > N`.

    Args:
        x (torch.Tensor): Features ``[N, f]``.
        dim (int): Number of output columns :math:`k`.
        method (str, optional): :obj:`"auto"`, :obj:`"gram"` or :obj:`"svd"`.
            (default: :obj:`"auto"`)
        rtol (float, optional): Relative singular-value threshold below which a direction counts
            as missing. (default: :obj:`1e-6`)
        chunk_size (int, optional): Rows per block of the Gram route. (default: about 2M
            entries per block)

    Returns:
        ``[N, dim]`` tensor of the dtype of :obj:`x` (float32 for integer input). The transform
        itself, to apply to new rows, is :func:`fit_whiten`'s.
    """
    return fit_whiten(x, dim, method, rtol, chunk_size)[0]


def fit_whiten(x: Tensor, dim: int, method: str = "auto", rtol: float = 1e-6,
               chunk_size: Optional[int] = None) -> Tuple[Tensor, Whitening]:
    r""":func:`whiten` that also returns the fitted transform: ``(W, Whitening(mean,
    projection))`` with :math:`\mathbf{W} = (\mathbf{X} - \mathbf{1}\boldsymbol{\mu}^\top)
    \mathbf{P}` (up to rounding; :math:`\mathbf{W}` is exactly :func:`whiten`'s output).

    With :math:`\mathbf{X} - \mathbf{1}\bar{\mathbf{x}}^\top = \mathbf{U}\mathbf{\Sigma}
    \mathbf{V}^\top`, :math:`\mathbf{U}_{:, :k} = (\mathbf{X} - \mathbf{1}\bar{\mathbf{x}}^\top)
    \mathbf{V}_{:, :k} \mathbf{\Sigma}_{:k}^{-1}`, so
    :math:`\mathbf{P} = \mathbf{V}_{:, :k} \mathbf{\Sigma}_{:k}^{-1} \mathbf{S} \sqrt{N/k}`
    (:math:`\mathbf{S}` the diagonal of column signs), padded with zero columns to :obj:`dim`.
    Arguments as :func:`whiten`."""
    if x.dim() != 2:
        raise ValueError(f"features must be 2-dimensional, got shape {tuple(x.shape)}")
    if dim <= 0:
        raise ValueError(f"'dim' must be positive, got {dim}")
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"'method' must be 'auto', 'gram' or 'svd', got '{method}'")
    n, f = x.shape
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    if n == 0:
        return (torch.zeros(0, dim, dtype=out_dtype, device=x.device),
                Whitening(torch.zeros(f, dtype=torch.float64, device=x.device),
                          torch.zeros(f, dim, dtype=torch.float64, device=x.device)))
    if method == "auto":
        method = "svd" if f > n else "gram"

    mean = x.to(torch.float64).mean(dim=0, keepdim=True) if method == "svd" else \
        _column_mean(x, chunk_size)
    if method == "svd":
        u, s, vh = torch.linalg.svd(x.to(torch.float64) - mean, full_matrices=False)
        keep = _kept(s, dim, rtol)
        w = u[:, :keep]
        proj = vh[:keep].t() / s[:keep]
    else:
        chunk = chunk_size or max(1, _BLOCK_ENTRIES // max(f, 1))
        gram = torch.zeros(f, f, dtype=torch.float64, device=x.device)
        for start in range(0, n, chunk):
            block = x[start:start + chunk].to(torch.float64) - mean
            gram.addmm_(block.t(), block)
        evals, evecs = _top_eigh(gram, dim)  # descending
        del gram
        s = evals.clamp_min(0.0).sqrt()
        keep = _kept(s, dim, rtol)
        proj = evecs[:, :keep] / s[:keep]
        w = torch.empty(n, keep, dtype=torch.float64, device=x.device)
        for start in range(0, n, chunk):
            w[start:start + chunk] = (x[start:start + chunk].to(torch.float64) - mean) @ proj

    # In place from here: w is the largest temporary (N x dim float64), no second copy of it.
    if keep > 0:
        # Sign convention: each column's entry of largest magnitude is positive (an exact tie
        # between +a and -a keeps the column as it is).
        largest, smallest = w.max(dim=0).values, w.min(dim=0).values
        sign = torch.where(largest >= -smallest, 1.0, -1.0).to(w.dtype)
        w.mul_(sign * math.sqrt(n / dim))
        proj = proj * (sign * math.sqrt(n / dim))
    projection = torch.zeros(f, dim, dtype=torch.float64, device=x.device)
    projection[:, :keep] = proj[:, :keep]
    transform = Whitening(mean.view(-1), projection)
    out = torch.zeros(n, dim, dtype=out_dtype, device=x.device)
    out[:, :keep] = w
    return out, transform


def _top_eigh(gram: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    r"""The :obj:`k` largest eigenpairs of a symmetric matrix, largest first.

    On CPU only those are computed (LAPACK's MRRR driver through :func:`scipy.linalg.eigh`, in
    place): working memory :math:`O(f k)` besides the matrix, where a full decomposition needs
    about three more :math:`f \times f` matrices (1.2 GiB in float64 at :math:`f = 4096`)."""
    f = gram.size(0)
    k = min(k, f)
    if gram.device.type == "cpu" and k < f:
        from scipy.linalg import eigh

        # The transpose is Fortran-ordered (no copy) and equals the matrix (symmetric).
        values, vectors = eigh(gram.numpy().T, subset_by_index=[f - k, f - 1], driver="evr",
                               overwrite_a=True, check_finite=False)
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(gram)
        values, vectors = values[f - k:], vectors[:, f - k:]
    return values.flip(0), vectors.flip(1)


def _column_mean(x: Tensor, chunk_size: Optional[int]) -> Tensor:
    n, f = x.shape
    chunk = chunk_size or max(1, _BLOCK_ENTRIES // max(f, 1))
    total = torch.zeros(1, f, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        total += x[start:start + chunk].to(torch.float64).sum(dim=0, keepdim=True)
    return total / n


def _kept(s: Tensor, dim: int, rtol: float) -> int:
    r"""Number of leading directions kept: at most :obj:`dim`, singular value above threshold."""
    if s.numel() == 0 or float(s[0]) == 0.0:
        return 0
    return int(min(dim, int((s > rtol * s[0]).sum())))


__all__ = ["whiten", "fit_whiten", "Whitening"]
