r"""AdamW with STAIR's backward stepwise convolution (BSC)."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from stair_pyg.nn.sparse import SparseAdj, SparseAdjBuffer
from stair_pyg.nn.stepwise import propagate_series, series_coefficients

_FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def has_fused_adamw() -> bool:
    r"""Whether this torch build has the fused AdamW kernel :func:`fused_adamw_direction` uses."""
    return hasattr(torch, "_fused_adamw_")


def fused_adamw_direction(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                          step: Tensor, lr: float, beta1: float, beta2: float, eps: float,
                          weight_decay: float) -> None:
    r"""One AdamW update of :obj:`param` in place by torch's fused kernel (the moments and the
    step counter :obj:`step`, a float32 tensor on :obj:`param`'s device, already counts this
    step).

    This is the one place that calls the private ``torch._fused_adamw_``; a change of its
    signature in a new torch fails the tests of this module loudly."""
    torch._fused_adamw_(  # type: ignore[attr-defined]
        [param], [grad], [exp_avg], [exp_avg_sq], [], [step], amsgrad=False, lr=lr,
        beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps, maximize=False)


class StepwiseAdamW(Optimizer):
    r"""AdamW whose update direction can be smoothed over a graph: the backward stepwise
    convolution (BSC) from the `"STAIR: Manipulating Collaborative and Multimodal Information for
    E-Commerce Recommendation" <https://arxiv.org/abs/2412.11729>`_ paper.

    For every parameter :math:`\mathbf{P}` (step :math:`t`, gradient :math:`\mathbf{G}`):

    .. math::
        \mathbf{M} &\leftarrow \beta_1 \mathbf{M} + (1 - \beta_1) \mathbf{G}, \qquad
        \mathbf{V} \leftarrow \beta_2 \mathbf{V} + (1 - \beta_2) \mathbf{G}^2,

        \mathbf{\Delta} &= \frac{\mathbf{M} / (1 - \beta_1^t)}
        {\sqrt{\mathbf{V} / (1 - \beta_2^t)} + \epsilon},

        \mathbf{P} &\leftarrow \mathbf{P} (1 - \eta \lambda) - \eta \, \mathcal{S}(\mathbf{\Delta}),

    with decoupled weight decay :math:`\lambda`. For a plain parameter group
    :math:`\mathcal{S}` is the identity and the update is exactly :class:`torch.optim.AdamW`'s
    (without :obj:`amsgrad`). A group that carries a graph smooths the direction over it with the
    normalised Neumann series of :func:`~stair_pyg.nn.neumann_smooth`,

    .. math::
        \mathcal{S}(\mathbf{\Delta}) = \frac{1 - w}{1 - w^{L+1}} \odot
        \sum_{l=0}^{L} (w \odot \hat{\mathbf{A}})^l \mathbf{\Delta},

    where :math:`w` is the group's :obj:`beta`: **the weight used inside the series**. STAIR
    uses :math:`w_j = 1 - \beta_j = 0.1 + 0.9 (j/d)^{\gamma}`, the complement of the forward
    convolution's :func:`~stair_pyg.nn.stepwise_beta` (what
    :meth:`stair_pyg.models.STAIR.configure_optimizer` passes). The parameters of a smoothed
    group are stacked along their first dimension (in the order given) into the node signals
    ``[N, d]`` of the graph, e.g. one item-embedding table.

    A smoothed group is given as a dict with the extra keys

    * :obj:`graph`: the already normalised graph :math:`\hat{\mathbf{A}}` ``[N, N]`` over the
      :math:`N` stacked rows, used as it is: a :class:`~stair_pyg.nn.sparse.SparseAdj` (row
      :math:`i` holds the weights of what row :math:`i` receives; build one from an edge list
      with :func:`~stair_pyg.nn.to_sparse_adj`), or a model's
      :class:`~stair_pyg.nn.sparse.SparseAdjBuffer`, read at every step, so that the
      optimizer follows the model to another device;
    * :obj:`beta`: the per-channel weights :math:`w` ``[d]``;
    * :obj:`num_layers`: :math:`L`.

    **State dict.** :meth:`state_dict` holds the moments, steps and hyper-parameters, including
    :obj:`beta` and :obj:`num_layers`, but not the graph (it belongs to the model);
    :meth:`load_state_dict` keeps the graphs of the optimizer it is loaded into, so build the
    optimizer with the same groups (and graphs) first, then load.

    Args:
        params (iterable): Parameters or parameter groups (dicts).
        lr (float, optional): Learning rate :math:`\eta`. (default: :obj:`1e-3`)
        betas (Tuple[float, float], optional): :math:`(\beta_1, \beta_2)`.
            (default: :obj:`(0.9, 0.999)`)
        eps (float, optional): :math:`\epsilon`. (default: :obj:`1e-8`)
        weight_decay (float, optional): Decoupled weight decay :math:`\lambda`.
            (default: :obj:`0.0`)
        fused (bool, optional): Compute the moments and :math:`\mathbf{\Delta}` in one pass with
            torch's fused AdamW kernel (about 7x faster than the step-by-step update on a CPU);
            :obj:`None` uses it where this torch build has it for the parameter's device and
            dtype. The result equals the step-by-step update up to float rounding.
            (default: :obj:`None`)
    """

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, fused: Optional[bool] = None):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"invalid epsilon: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        graph=None, beta=None, num_layers=0)
        self._coefs: Dict[Tuple, List[Tensor]] = {}
        if fused and not has_fused_adamw():
            raise RuntimeError("fused=True needs a torch build with the fused AdamW kernel")
        self.fused = fused
        super().__init__(params, defaults)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        graph = group.get("graph")
        if graph is None:
            return
        if not isinstance(graph, (SparseAdj, SparseAdjBuffer)):
            raise ValueError(f"'graph' must be a SparseAdj or a SparseAdjBuffer, got "
                             f"{type(graph).__name__} (build one from an edge list with "
                             f"stair_pyg.nn.to_sparse_adj)")
        shape = graph.get().shape if isinstance(graph, SparseAdjBuffer) else graph.shape
        if group.get("beta") is None:
            raise ValueError("a smoothed group needs 'beta' (the per-channel weights w)")
        beta = torch.as_tensor(group["beta"]).detach()
        num_layers = int(group.get("num_layers", 0))
        if num_layers < 0:
            raise ValueError(f"'num_layers' must be non-negative, got {num_layers}")
        rows = 0
        for p in group["params"]:
            if p.dim() != 2 or p.size(1) != beta.numel():
                raise ValueError(f"parameters of a smoothed group must have shape "
                                 f"[n, {beta.numel()}] (one column per beta), got "
                                 f"{tuple(p.shape)}")
            rows += p.size(0)
        if tuple(shape) != (rows, rows):
            raise ValueError(f"the graph has shape {tuple(shape)} but the group has {rows} rows")
        group["beta"] = beta
        group["num_layers"] = num_layers

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        r"""Performs one optimisation step.

        Args:
            closure (callable, optional): Re-evaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for index, group in enumerate(self.param_groups):
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            smoothed = group.get("graph") is not None
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if smoothed and len(params) != len(group["params"]):
                raise RuntimeError("every parameter of a smoothed group needs a gradient (its "
                                   "rows are the nodes of the group's graph)")
            directions: List[Tensor] = []
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("StepwiseAdamW does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    # On the parameter's device, as the fused kernel reads it: no copy per step.
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                grad = p.grad
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                if self._use_fused(p):
                    # One pass of torch's kernel. For a smoothed parameter it runs on a zero
                    # scratch tensor without decay, which leaves the step -lr * Delta there.
                    target = torch.zeros_like(p) if smoothed else p
                    fused_adamw_direction(target, grad, exp_avg, exp_avg_sq, state["step"],
                                          lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                          weight_decay=0.0 if smoothed else wd)
                    if smoothed:
                        directions.append(target)
                    continue
                step = float(state["step"])

                if not smoothed:  # a smoothed group decays with its update, below
                    p.mul_(1.0 - lr * wd)
                exp_avg.lerp_(grad, 1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)

                bias_correction1 = 1.0 - beta1 ** step
                bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                if smoothed:  # the step -lr * Delta
                    directions.append(torch.div(exp_avg, denom).mul_(-lr / bias_correction1))
                else:
                    p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

            if smoothed:
                delta = directions[0] if len(directions) == 1 else torch.cat(directions, dim=0)
                graph = group["graph"]
                adj = graph.get() if isinstance(graph, SparseAdjBuffer) else graph
                with torch.no_grad():  # S(-lr * Delta) = -lr * S(Delta): S is linear
                    delta = propagate_series(delta, adj, self._coefficients(group, delta))
                for p, d in zip(params, torch.split(delta, [p.size(0) for p in params])):
                    torch.add(d, p, alpha=1.0 - lr * wd, out=p)  # decay and step in one pass
        return loss

    def _use_fused(self, p: Tensor) -> bool:
        if self.fused is False or not has_fused_adamw():
            return False
        return p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES

    def _coefficients(self, group: Dict[str, Any], like: Tensor) -> List[Tensor]:
        r"""The group's series coefficients, computed once per dtype and device."""
        beta = group["beta"]
        key = (id(beta), beta._version, group["num_layers"], like.dtype, like.device)
        coefs = self._coefs.get(key)
        if coefs is None:
            coefs = self._coefs[key] = series_coefficients(beta, group["num_layers"],
                                                           like.dtype, like.device)
        return coefs

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["param_groups"] = [{key: value for key, value in group.items() if key != "graph"}
                                 for group in state["param_groups"]]
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        graphs = [group.get("graph") for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, graph in zip(self.param_groups, graphs):
            group["graph"] = graph
            if graph is not None and group.get("beta") is None:
                raise ValueError("the loaded state has no 'beta' for a smoothed group")
            if group.get("beta") is not None:
                group["beta"] = torch.as_tensor(group["beta"]).detach()
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and "step" in state:  # torch keeps a loaded step on the CPU
                    state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(
                        p.device)
        self._coefs.clear()

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_coefs", {})


__all__ = ["StepwiseAdamW", "fused_adamw_direction", "has_fused_adamw"]
