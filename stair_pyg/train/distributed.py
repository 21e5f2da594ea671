r"""Data-parallel training on :mod:`torch.distributed`, with the semantics of
:class:`~torch.nn.parallel.DistributedDataParallel` and no engine of its own.

Every rank (process) holds a full replica: the same dataset, the same model built from the same
training graph with the same seed, the same optimizer. Per step, :class:`~stair_pyg.train.Trainer`

1. draws the **global** batch exactly as a single process does (every rank holds the same
   :class:`torch.Generator` state, so every rank draws the same epoch permutation and the same
   negatives);
2. takes the rank's contiguous share of it (:func:`local_share`) and computes the model's loss
   :math:`\ell_r` on that share only, scaled by :math:`n_r / n` (share size over global batch
   size), so that

   .. math::
       \sum_{r=0}^{R-1} \frac{n_r}{n} \nabla \ell_r = \nabla \ell

   for any loss that is a mean over the batch's triples;
3. sums the gradients over ranks with one :func:`torch.distributed.all_reduce` on a flat buffer
   (:func:`all_reduce_gradients`);
4. applies the same optimizer step on every rank (the STAIR step included: the smoothing of
   :class:`~stair_pyg.optim.StepwiseAdamW` is a deterministic function of the gradient).

:class:`~torch.nn.parallel.DistributedDataParallel` is not used because the models' training entry
point is :meth:`~stair_pyg.models.base.Recommender.recommendation_loss`, not :meth:`forward`,
and some models propagate the whole graph inside it: one explicit bucketed all-reduce between
:meth:`backward` and :meth:`step` is the same arithmetic with no wrapper to route calls through.

Only rank 0 evaluates, logs, plots and writes files; the other ranks wait in a collective call
and receive the early-stopping decision, the random number generator state and the final result
from rank 0 (:func:`broadcast_object`).

Processes are started either by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_process_group` reads them) or by
:func:`launch`, which ``stair-pyg train --nproc N`` uses to start N local processes on the
loopback interface and to stop all of them, with a message naming the rank, when one fails.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

#: Environment variable holding the collective-operation timeout in seconds.
TIMEOUT_ENV = "STAIR_PYG_DIST_TIMEOUT"
#: Default timeout of a collective operation (seconds); rank 0's evaluation must fit in it,
#: since the other ranks wait for its result in a collective call.
DEFAULT_TIMEOUT_S = 1800.0


class DistributedError(RuntimeError):
    r"""A failed collective operation: another rank died, or did not answer within the
    timeout."""


def _dist():
    import torch.distributed as dist

    return dist


def env_ranks(environ: Optional[Mapping[str, str]] = None) -> Tuple[int, int, int]:
    r"""``(rank, world_size, local_rank)`` from the ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
    environment variables set by ``torchrun`` or :func:`launch` (``(0, 1, 0)`` when unset).

    Raises:
        ValueError: If a variable is not an integer or the ranks are out of range.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", None)):
        raw = environ.get(name)
        if raw is None or raw == "":
            values[name] = default
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    rank, world_size = values["RANK"], values["WORLD_SIZE"]
    local_rank = rank if values["LOCAL_RANK"] is None else values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"invalid ranks in the environment: RANK={rank}, WORLD_SIZE="
                         f"{world_size}, LOCAL_RANK={local_rank}")
    return rank, world_size, local_rank


def is_distributed() -> bool:
    r"""Whether a process group of more than one rank is initialised."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> Tuple[int, int]:
    r"""``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_backend(device: Union[str, torch.device]) -> str:
    r"""``"nccl"`` for a CUDA device, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def timeout_seconds(timeout: Optional[float] = None) -> float:
    r""":obj:`timeout`, else ``$STAIR_PYG_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S`."""
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                raise ValueError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
        else:
            timeout = DEFAULT_TIMEOUT_S
    if not timeout > 0:
        raise ValueError(f"the collective timeout must be positive, got {timeout}")
    return float(timeout)


def init_process_group(device: Union[str, torch.device, None] = "auto",
                       backend: Optional[str] = None,
                       timeout: Optional[float] = None) -> bool:
    r"""Joins the process group described by the environment (``torchrun`` or :func:`launch`),
    if there is one to join.

    Nothing is done when ``WORLD_SIZE`` is unset or 1, or when a process group is initialised
    already (by the caller, who then also owns its destruction).

    Args:
        device (str or torch.device, optional): The training device (``"auto"``: CUDA when
            available). On CUDA, the rank uses GPU ``LOCAL_RANK``. (default: ``"auto"``)
        backend (str, optional): ``"gloo"`` or ``"nccl"`` (default: :func:`default_backend`).
        timeout (float, optional): Seconds a collective operation may wait for the other ranks
            before it fails (default: :func:`timeout_seconds`).

    Returns:
        :obj:`True` if this call initialised the group (then call
        :func:`destroy_process_group` when done), else :obj:`False`.
    """
    dist = _dist()
    rank, world_size, local_rank = env_ranks()
    if world_size == 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed support")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} is set but {missing} are not: start the "
                           f"processes with torchrun or 'stair-pyg train --nproc N'")
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    backend = backend or default_backend(device)
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("backend 'nccl' needs CUDA devices; use 'gloo' for CPU training")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} "
                               f"CUDA devices are visible: start at most one process per GPU")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_seconds(timeout)))
    return True


def destroy_process_group() -> None:
    r"""Leaves the process group (if one is initialised)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_share(n: int, rank: int, world_size: int) -> slice:
    r"""The contiguous share of rank :obj:`rank` in a global batch of :obj:`n` items: the first
    ``n % world_size`` ranks get ``n // world_size + 1`` items, the others ``n // world_size``
    (as :func:`torch.tensor_split`); a share may be empty when ``n < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    base, extra = divmod(int(n), world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _collective_error(what: str, error: Exception) -> DistributedError:
    rank, world_size = rank_and_world_size()
    return DistributedError(
        f"rank {rank}/{world_size}: {what} failed: another rank has died or did not answer "
        f"within the timeout (set {TIMEOUT_ENV} to change it): {type(error).__name__}: {error}")


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter],
                         extra: Optional[Tensor] = None) -> Optional[Tensor]:
    r"""Sums the gradients of :obj:`parameters` over all ranks, in place, with one
    :func:`~torch.distributed.all_reduce` per dtype on a flat buffer.

    A parameter whose gradient is :obj:`None` on every rank keeps :obj:`None` (so an optimizer
    skips it exactly as in a single process); one that has a gradient on some rank only counts as
    zero on the others. Each parameter's gradient becomes a view of the reduced buffer.

    Args:
        parameters (Iterable[Parameter]): The parameters (only those with ``requires_grad``
            are synchronised); every rank must pass them in the same order.
        extra (torch.Tensor, optional): A small tensor summed in the same call (the step's loss
            sum, for example).

    Returns:
        The summed :obj:`extra` (:obj:`None` if not given).
    """
    dist = _dist()
    params = [p for p in parameters if p.requires_grad]
    buckets: Dict[Tuple[torch.device, torch.dtype], List[torch.nn.Parameter]] = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    if not buckets and extra is None:
        return None
    out_extra = None
    first = True
    for (device, dtype), group in buckets.items():
        pieces = []
        for p in group:
            grad = p.grad
            if grad is None:
                pieces.append(torch.zeros(p.numel(), device=device, dtype=dtype))
            else:
                pieces.append((grad.to_dense() if grad.is_sparse else grad).reshape(-1))
        meta: List[Tensor] = []
        if first:
            # Per-parameter "has a gradient" flags of every bucket and the extra values ride in
            # the first bucket, so one call per dtype does everything.
            flags = torch.tensor([p.grad is not None for p in params], device=device, dtype=dtype)
            meta.append(flags)
            if extra is not None:
                meta.append(extra.detach().reshape(-1).to(device=device, dtype=dtype))
        flat = torch.cat(pieces + meta)
        try:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        except Exception as e:  # gloo: closed connection or timeout; nccl: timeout
            raise _collective_error("gradient all-reduce", e) from e
        offset = 0
        for p in group:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p)
            offset += n
        if first:
            present = flat[offset:offset + len(params)] > 0
            offset += len(params)
            for p, has in zip(params, present.tolist()):
                if not has:
                    p.grad = None
            if extra is not None:
                out_extra = flat[offset:offset + extra.numel()].view_as(extra).to(extra.dtype)
            first = False
    if first and extra is not None:  # no parameter requires a gradient
        out_extra = extra.detach().clone()
        try:
            dist.all_reduce(out_extra, op=dist.ReduceOp.SUM)
        except Exception as e:
            raise _collective_error("loss all-reduce", e) from e
    return out_extra


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    r"""Rank :obj:`src`'s :obj:`obj` (any picklable object) on every rank."""
    dist = _dist()
    box = [obj]
    try:
        dist.broadcast_object_list(box, src=src)
    except Exception as e:
        raise _collective_error("broadcast from rank 0", e) from e
    return box[0]


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    r"""Copies rank :obj:`src`'s parameters and buffers into every rank's :obj:`module`."""
    dist = _dist()
    try:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)
    except Exception as e:
        raise _collective_error("parameter broadcast", e) from e


def rng_states() -> Dict[str, Any]:
    r"""torch's global CPU generator state and, with CUDA, the current device's."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def sync_rng_states(src: int = 0) -> None:
    r"""Gives every rank rank :obj:`src`'s global torch generator states, so that a model's own
    random draws (FREEDOM's pruning, LGMRec's Gumbel noise) stay identical on every rank even
    after draws that only rank :obj:`src` made (an evaluation, for example)."""
    state = broadcast_object(rng_states() if rank_and_world_size()[0] == src else None, src)
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------------------
# Local launcher


def free_port(host: str = "127.0.0.1") -> int:
    r"""A TCP port on :obj:`host` that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch(command: Sequence[str], nproc: int, env: Optional[Mapping[str, str]] = None,
           master_port: Optional[int] = None, grace_seconds: float = 5.0,
           poll_seconds: float = 0.1, log=None) -> int:
    r"""Runs :obj:`command` in :obj:`nproc` local processes that form one process group on the
    loopback interface, as ``torchrun --nproc-per-node`` does on one machine.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
    ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT`` and, unless set already,
    ``OMP_NUM_THREADS`` = CPU cores // :obj:`nproc`. When a process fails (non-zero exit or a
    signal), the others are sent ``SIGTERM``, then ``SIGKILL`` after :obj:`grace_seconds`, and
    the failure is reported naming the rank.

    Args:
        command (Sequence[str]): The program and its arguments, the same for every rank.
        nproc (int): Number of processes.
        env (Mapping[str, str], optional): Environment (default: :data:`os.environ`).
        master_port (int, optional): Rendezvous port (default: :func:`free_port`).
        grace_seconds (float, optional): Time between ``SIGTERM`` and ``SIGKILL``.
        poll_seconds (float, optional): How often the processes are checked.
        log (callable, optional): Where messages go (default: print to stderr).

    Returns:
        0 if every process succeeded, else the failing rank's exit code (128 + the signal number
        for a process killed by a signal); 130 on :class:`KeyboardInterrupt`.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be positive, got {nproc}")
    if log is None:
        def log(text: str) -> None:
            print(text, file=sys.stderr, flush=True)
    base = dict(os.environ if env is None else env)
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port or free_port()),
                WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    procs: List[subprocess.Popen] = []
    failed: List[Tuple[int, int]] = []

    def stop_all() -> None:
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for p in alive:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    previous = None
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        def on_term(signum, frame):  # stop the ranks with the launcher
            raise SystemExit(128 + signum)
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        for rank in range(nproc):
            rank_env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(list(command), env=rank_env))
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                break
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_seconds)
        what = ", ".join(f"rank {r} (pid {procs[r].pid}) {_describe_exit(c)}" for r, c in failed)
        log(f"error: {what}; stopping the other rank(s) of {nproc}")
        stop_all()
        code = failed[0][1]
        return code if code > 0 else 128 - code
    except KeyboardInterrupt:
        # The terminal sent SIGINT to every rank too: let them save their state and exit.
        deadline = time.monotonic() + 10 * grace_seconds
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        stop_all()
        return 130
    finally:
        stop_all()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


__all__ = [
    "DistributedError", "TIMEOUT_ENV", "DEFAULT_TIMEOUT_S", "env_ranks", "is_distributed",
    "rank_and_world_size", "default_backend", "timeout_seconds", "init_process_group",
    "destroy_process_group", "local_share", "all_reduce_gradients", "broadcast_object",
    "broadcast_parameters", "rng_states", "sync_rng_states", "free_port", "launch",
]
