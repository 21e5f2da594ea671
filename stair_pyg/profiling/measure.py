r"""Timing, memory and the conditions of a run.

Timing: :class:`PhaseTimer` times named phases with a pair of CUDA events each on a GPU (read once
by :meth:`~PhaseTimer.totals`, no synchronisation inside the timed loop) and with
:func:`time.perf_counter` on CPU; :func:`time_call` is the median of repeated calls timed by
:class:`torch_geometric.profile.timeit`.

Memory: CUDA's ``max_memory_allocated`` / ``max_memory_reserved`` after a reset; on CPU the peak
resident set (``VmHWM`` of ``/proc/self/status``), reset by writing ``5`` to
``/proc/self/clear_refs`` so that each section has its own high-water mark (PyTorch's CPU
allocator does not report to :mod:`tracemalloc`).
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    r"""Accumulates the time of named phases: ``with timer.phase("forward"): ...``, or
    :meth:`start` / :meth:`stop` from hooks."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self._open: Dict[str, Any] = {}
        self._pairs: Dict[str, List[Any]] = {}

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self, name: str) -> None:
        self._open[name] = self._mark()

    def stop(self, name: str) -> None:
        self._pairs.setdefault(name, []).append((self._open.pop(name), self._mark()))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)

    def totals(self) -> Dict[str, float]:
        r"""Seconds per phase, summed over every time the phase ran (synchronises once)."""
        if self.cuda and self._pairs:
            torch.cuda.synchronize(self.device)
        return {name: sum(s.elapsed_time(e) / 1e3 if self.cuda else e - s for s, e in pairs)
                for name, pairs in self._pairs.items()}


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int = 3,
              warmup: int = 1) -> float:
    r"""The median seconds of :obj:`fn` over :obj:`repeats` calls after :obj:`warmup` untimed
    ones, each timed by :class:`torch_geometric.profile.timeit` (which synchronises CUDA)."""
    from torch_geometric.profile import timeit

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        with timeit(log=False) as t:
            fn()
        times.append(t.duration)
    return statistics.median(times)


def _status_bytes(field: str, pid: Any = "self") -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> Optional[int]:
    r"""Peak resident set of this process since start or the last reset (``VmHWM``; without
    ``/proc``, ``ru_maxrss``, never reset)."""
    peak = _status_bytes("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = int(peak if platform.system() == "Darwin" else peak * 1024)
    return peak


def process_memory_bytes(pid: int) -> Optional[int]:
    r"""Resident memory of process :obj:`pid` seen from another: the larger of its ``VmRSS``
    and ``VmHWM`` (a spike between two reads is not missed), or :mod:`psutil`'s ``rss`` without
    ``/proc``. :obj:`None` when the process is gone."""
    if Path("/proc/self/status").exists():
        values = [v for v in (_status_bytes(f, pid) for f in ("VmRSS", "VmHWM")) if v is not None]
        return max(values, default=None)
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # ImportError, NoSuchProcess, AccessDenied
        return None


def reset_peak_rss() -> bool:
    r"""Resets ``VmHWM`` to the current RSS; :obj:`False` where the kernel does not allow it
    (then peaks are process-wide: run each measurement in its own process)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    r"""Peak memory of a code section, in :attr:`result`: on CUDA ``base_allocated``,
    ``peak_allocated`` and ``peak_reserved``; everywhere ``base_rss``, ``peak_rss`` (the process
    high-water mark) and ``rss_reset`` (whether it could be reset); ``peak``: the headline."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.result: Dict[str, Any] = {}

    def __enter__(self) -> "MemoryMeter":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.result["base_allocated"] = torch.cuda.memory_allocated(self.device)
        self.result["rss_reset"] = reset_peak_rss()
        self.result["base_rss"] = _status_bytes("VmRSS")
        return self

    def so_far(self) -> Optional[int]:
        r"""CUDA peak allocated, or the CPU peak RSS growth over the base, up to now."""
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device)
        peak, base = peak_rss_bytes(), self.result.get("base_rss")
        return None if peak is None or base is None else max(peak - base, 0)

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.result["peak_allocated"] = torch.cuda.max_memory_allocated(self.device)
            self.result["peak_reserved"] = torch.cuda.max_memory_reserved(self.device)
        self.result["peak_rss"] = peak_rss_bytes()
        self.result["peak"] = self.so_far()

    def peak_bytes(self) -> Optional[int]:
        return self.result.get("peak")


def _missing(x: Optional[float]) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_bytes(n: Optional[float]) -> str:
    if _missing(n):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_seconds(s: Optional[float]) -> str:
    if _missing(s):
        return "n/a"
    if s >= 1:
        return f"{s:.0f} s" if s >= 100 else f"{s:.2f} s"
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"


try:  # the 1-minute load average when the benchmark started (this module is imported then)
    _START_LOAD: Optional[float] = os.getloadavg()[0]
except (OSError, AttributeError):
    _START_LOAD = None


def environment() -> Dict[str, Any]:
    import torch_geometric

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": _START_LOAD}


def machine_note(env: Dict[str, Any]) -> str:
    r"""One sentence on the conditions of a CPU run: cores and the load average at its start."""
    load, cores = env.get("load_average"), env.get("cpu_count") or 1
    return f"CPU run on a {cores}-core machine" + (
        "." if load is None else f" (1-minute load average {load:.2f} when it started).")
