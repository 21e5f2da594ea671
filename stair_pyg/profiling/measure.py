r"""Timing, memory and the conditions of a run.

Timing: :class:`PhaseTimer` times named phases with a pair of CUDA events each on a GPU (read once
by :meth:`~PhaseTimer.totals`, no synchronisation inside the timed loop) and with
:func:`time.perf_counter` on CPU; :func:`time_call` is the median of repeated calls timed by
:class:`torch_geometric.profile.timeit`.

Memory: CUDA's ``max_memory_allocated`` / ``max_memory_reserved`` after a reset; on CPU the peak
resident set (``VmHWM`` of ``/proc/self/status``), reset by writing ``5`` to
``/proc/self/clear_refs`` so that each section has its own high-water mark. PyTorch's CPU
allocator does not report to :mod:`tracemalloc`, which is used only around dataset loading.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    r"""Accumulates the time of named phases: ``with timer.phase("forward"): ...``, or
    :meth:`start` / :meth:`stop` from hooks.

    Args:
        device (torch.device): The device the timed work runs on.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
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
              warmup: int = 1) -> Dict[str, float]:
    r"""Calls :obj:`fn` ``warmup`` times untimed, then ``repeats`` times timed by
    :class:`torch_geometric.profile.timeit` (which synchronises CUDA around each call).
    Returns ``{"median", "min", "max"}`` in seconds and ``"repeats"``."""
    from torch_geometric.profile import timeit

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        with timeit(log=False) as t:
            fn()
        times.append(t.duration)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "repeats": len(times)}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if len(values) else float("nan")


def _status_kib(field: str, pid: str = "self") -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> Optional[int]:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> Optional[int]:
    r"""Peak resident set of this process since start or the last :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    try:  # no /proc: ru_maxrss (KiB on Linux, bytes on macOS), never reset
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if platform.system() == "Darwin" else peak * 1024)
    except Exception:  # pragma: no cover
        return None


def process_memory_bytes(pid: int) -> Optional[int]:
    r"""Resident memory of process :obj:`pid` as another process sees it: the larger of its
    ``VmRSS`` and ``VmHWM`` (so that a spike between two reads is not missed), or :mod:`psutil`'s
    ``rss`` without ``/proc``. :obj:`None` when the process is gone (or a zombie)."""
    if Path("/proc/self/status").exists():
        values = [_status_kib(f, str(pid)) for f in ("VmRSS", "VmHWM")]
        values = [v * 1024 for v in values if v is not None]
        return max(values) if values else None
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
    ``peak_allocated`` and ``peak_reserved``; everywhere ``base_rss`` and ``peak_rss`` (the
    process high-water mark during the section) and ``rss_reset`` (whether it could be reset)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.result: Dict[str, Any] = {}

    def __enter__(self) -> "MemoryMeter":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.result["base_allocated"] = torch.cuda.memory_allocated(self.device)
        self.result["rss_reset"] = reset_peak_rss()
        self.result["base_rss"] = current_rss_bytes()
        return self

    def so_far(self) -> Optional[int]:
        r"""The headline figure up to now: CUDA peak allocated, or CPU peak RSS growth over the
        base."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        peak, base = peak_rss_bytes(), self.result.get("base_rss")
        return None if peak is None or base is None else max(peak - base, 0)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["peak_allocated"] = torch.cuda.max_memory_allocated(self.device)
            self.result["peak_reserved"] = torch.cuda.max_memory_reserved(self.device)
        self.result["peak_rss"] = peak_rss_bytes()
        self.result["peak"] = self.so_far()

    def peak_bytes(self) -> Optional[int]:
        return self.result.get("peak")


@contextmanager
def tracemalloc_peak(out: Dict[str, Any], key: str) -> Iterator[None]:
    r"""Records the :mod:`tracemalloc` peak (Python, NumPy, pandas; not PyTorch's CPU
    allocator) of the section into ``out[key]``."""
    import tracemalloc

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield
    finally:
        out[key] = tracemalloc.get_traced_memory()[1]
        if not was_tracing:
            tracemalloc.stop()


def fmt_bytes(n: Optional[float]) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_seconds(s: Optional[float]) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
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


def load_average() -> Optional[float]:
    r"""The 1-minute load average (Linux): what else ran beside a CPU benchmark."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


#: The load average when the benchmark process started (this module is imported at start-up).
_START_LOAD = load_average()


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
    if load is None:
        return f"CPU run on a {cores}-core machine."
    return f"CPU run on a {cores}-core machine (1-minute load average {load:.2f} when it started)."
