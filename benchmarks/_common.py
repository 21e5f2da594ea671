r"""Shared machinery of the benchmark scripts: timing, memory, synthetic graphs and writers.

Timing
    :class:`PhaseTimer` times named phases. On CUDA it records a pair of CUDA events around each
    phase and reads them once at the end (no synchronisation inside the timed loop); on CPU it
    uses :func:`time.perf_counter`. :func:`time_call` runs a function ``warmup + repeats`` times
    and returns the median of the timed repeats (warm-up excluded).

Memory
    CUDA: :func:`torch.cuda.max_memory_allocated` / :func:`torch.cuda.max_memory_reserved` after
    :func:`torch.cuda.reset_peak_memory_stats`. CPU: the peak resident set size (``VmHWM``) from
    ``/proc/self/status``, reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so
    that each measured section reports its own high-water mark. :func:`process_memory_bytes`
    reads another process's resident memory (the memory watchdog of ``profile.py``). PyTorch's
    CPU allocator does not report to :mod:`tracemalloc`, so :mod:`tracemalloc` is used only
    around NumPy/pandas work (dataset loading), where it is meaningful.

Writers
    :func:`write_json`, :func:`markdown_table`, :func:`update_results_section` (replaces only the
    section of ``benchmarks/RESULTS.md`` between ``<!-- <script>:<name>:begin -->`` and
    ``<!-- <script>:<name>:end -->``, creating the file or appending the section when missing) and
    :func:`bar_plot` / :func:`loglog_plot` (PNG through matplotlib's Agg backend).
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"

# Item feature dimensions of MMRec's Amazon datasets (image: 4096-d VGG, text: 384-d SBERT).
MMREC_FEATURE_DIMS = {"image": 4096, "text": 384}

# --------------------------------------------------------------------------------------------
# Device and timing
# --------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"


class PhaseTimer:
    r"""Accumulates wall time per named phase.

    Use as ``with timer.phase("forward"): ...``. On CUDA, every phase records a start/end
    :class:`torch.cuda.Event` pair and the elapsed times are read by :meth:`totals`, which
    synchronises once; on CPU, :func:`time.perf_counter` is read around the phase (CPU work is
    synchronous, so no synchronisation is needed).

    Args:
        device (torch.device): The device the timed work runs on.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._events: Dict[str, List[Tuple[Any, Any]]] = {}
        self._seconds: Dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._events.setdefault(name, []).append((start, end))
        else:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - t0

    def totals(self) -> Dict[str, float]:
        r"""Seconds per phase, summed over every time the phase ran."""
        out = dict(self._seconds)
        if self._events:
            torch.cuda.synchronize(self.device)
            for name, pairs in self._events.items():
                out[name] = out.get(name, 0.0) + sum(s.elapsed_time(e) for s, e in pairs) / 1e3
        return out


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int = 3,
              warmup: int = 1) -> Dict[str, float]:
    r"""Runs :obj:`fn` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns ``{"median": s, "min": s, "max": s, "repeats": n}`` in seconds.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        timer = PhaseTimer(device)
        with timer.phase("call"):
            fn()
        times.append(timer.totals()["call"])
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "repeats": len(times)}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if len(values) else float("nan")


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> Optional[int]:
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> Optional[int]:
    r"""Peak resident set size of this process since start or the last :func:`reset_peak_rss`."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    try:  # non-Linux fallback: ru_maxrss (KiB on Linux, bytes on macOS), never reset
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if platform.system() == "Darwin" else peak * 1024)
    except Exception:  # pragma: no cover
        return None


def process_memory_bytes(pid: int) -> Optional[int]:
    r"""Resident memory of process :obj:`pid` as another process sees it: the larger of its
    current (``VmRSS``) and peak (``VmHWM``) resident set from ``/proc/<pid>/status``, so that a
    spike between two reads is not missed (the peak can only be lowered by the process itself,
    through ``/proc/self/clear_refs``). Without ``/proc``, :mod:`psutil`'s ``rss`` where
    installed. Returns :obj:`None` when the process is gone or the platform offers neither."""
    if Path("/proc/self/status").exists():  # Linux
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # the process is gone
            return None
        fields = [int(line.split()[1]) * 1024 for line in text.splitlines()
                  if line.startswith(("VmRSS:", "VmHWM:"))]
        return max(fields) if fields else None  # no fields: a zombie
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return None


def reset_peak_rss() -> bool:
    r"""Resets ``VmHWM`` to the current RSS. Returns :obj:`False` where the kernel does not allow
    it (then peaks are process-wide; run each measurement in its own process)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    r"""Peak memory of a code section.

    On CUDA: ``peak_allocated`` / ``peak_reserved`` from the caching allocator, and ``base_allocated``
    (what was allocated when the section started). On CPU: ``peak_rss`` (process high-water mark
    during the section) and ``base_rss`` (RSS when it started); ``peak_rss - base_rss`` is the
    section's own growth. ``rss_reset`` says whether the high-water mark could be reset at start.
    """

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

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["peak_allocated"] = torch.cuda.max_memory_allocated(self.device)
            self.result["peak_reserved"] = torch.cuda.max_memory_reserved(self.device)
        self.result["peak_rss"] = peak_rss_bytes()

    def peak_bytes(self) -> Optional[int]:
        r"""The headline figure: CUDA peak allocated, or CPU peak RSS growth over the base."""
        if self.device.type == "cuda":
            return self.result.get("peak_allocated")
        peak, base = self.result.get("peak_rss"), self.result.get("base_rss")
        if peak is None or base is None:
            return None
        return max(peak - base, 0)


@contextmanager
def tracemalloc_peak(out: Dict[str, Any], key: str = "tracemalloc_peak") -> Iterator[None]:
    r"""Records the :mod:`tracemalloc` peak (Python, NumPy and pandas allocations; not PyTorch's
    CPU allocator) of the section into ``out[key]``."""
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
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"  # pragma: no cover


def fmt_seconds(s: Optional[float]) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "n/a"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


# --------------------------------------------------------------------------------------------
# Synthetic graphs for scaling (independent of the dataset loaders, fast at 10^7 edges)
# --------------------------------------------------------------------------------------------


def scaling_graph(num_interactions: int, users_per_interaction: float = 1 / 6,
                  items_per_interaction: float = 1 / 12, zipf: float = 0.8, seed: int = 0,
                  feature_dims: Optional[Dict[str, int]] = None):
    r"""A random implicit-feedback graph with about :obj:`num_interactions` distinct training
    pairs, users and items growing in proportion (defaults: the ``sports`` ratios, 6 interactions
    per user and 12 per item), item popularity Zipf-like with exponent :obj:`zipf`, and Gaussian
    item features of :obj:`feature_dims` (timing-only: they carry no signal).

    Returns a :class:`stair_pyg.data.hetero.RecDataset` whose valid/test splits hold one held-out
    item for a tenth of the users (enough to time the full-ranking evaluation).
    """
    from stair_pyg.data.hetero import RecDataset, Splits, build_hetero_data

    gen = torch.Generator().manual_seed(seed)
    num_users = max(8, int(round(num_interactions * users_per_interaction)))
    num_items = max(8, int(round(num_interactions * items_per_interaction)))
    draw = int(num_interactions * 1.15) + 16
    users = torch.randint(0, num_users, (draw,), generator=gen)
    users[:num_users] = torch.arange(num_users)  # every user appears
    weights = torch.arange(1, num_items + 1, dtype=torch.float64).pow(-zipf)
    items = torch.multinomial(weights, draw, replacement=True, generator=gen)
    items = torch.randperm(num_items, generator=gen)[items]  # popular ids spread at random
    items[:num_items] = torch.randperm(num_items, generator=gen)  # every item appears
    pairs = torch.unique(users * num_items + items)
    pairs = pairs[torch.randperm(pairs.numel(), generator=gen)[:num_interactions]]
    pairs = pairs.sort().values
    edge_index = torch.stack([pairs // num_items, pairs % num_items])
    held = max(1, num_users // 10)
    held_users = torch.randperm(num_users, generator=gen)[:2 * held]
    held_items = torch.randint(0, num_items, (2 * held,), generator=gen)
    valid = torch.stack([held_users[:held], held_items[:held]])
    test = torch.stack([held_users[held:], held_items[held:]])
    features = {name: torch.randn(num_items, dim, generator=gen)
                for name, dim in (feature_dims or {}).items()}
    data = build_hetero_data(num_users, num_items, edge_index, features,
                             name=f"scaling-{num_interactions}")
    return RecDataset(data, Splits(edge_index, valid, test))


# --------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    r"""Least-squares fit of :math:`\log y = a + b \log x`; returns ``(b, a)`` (slope, intercept).
    Non-positive or missing points are ignored; ``(nan, nan)`` with fewer than two points."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y)
           if a and b and a > 0 and b > 0 and not math.isnan(b)]
    if len(pts) < 2:
        return float("nan"), float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return float("nan"), float("nan")
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return slope, my - slope * mx


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def environment() -> Dict[str, Any]:
    import torch_geometric

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": _START_LOAD,
    }


def load_average() -> Optional[float]:
    r"""The 1-minute load average (Linux), a measure of what else ran beside a CPU benchmark."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


#: The load average when the benchmark process started (this module is imported at start-up).
_START_LOAD = load_average()


def machine_note(env: Dict[str, Any]) -> str:
    r"""One sentence on the conditions of a CPU run: the machine's cores and the 1-minute load
    average when the run started (well above the core count, other work competed for them)."""
    load, cores = env.get("load_average"), env.get("cpu_count") or 1
    if load is None:
        return f"CPU run on a {cores}-core machine."
    return f"CPU run on a {cores}-core machine (1-minute load average {load:.2f} when it started)."


def load_config_file(path: Path) -> Dict[str, Any]:
    r"""An experiment YAML file; a missing file stops the script with a one-line message."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"config file '{path}' does not exist")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def absolute_dataset(dataset: Dict[str, Any], config_path: Path) -> Dict[str, Any]:
    r"""A copy of a config's ``dataset`` section whose relative ``path`` is made absolute, looked
    up from the current directory, the config's folder and the repository root, in that order."""
    dataset = dict(dataset)
    if "path" in dataset and not Path(dataset["path"]).is_absolute():
        for root in (Path.cwd(), Path(config_path).parent, REPO_ROOT):
            if (root / dataset["path"]).exists():
                dataset["path"] = str((root / dataset["path"]).resolve())
                break
    return dataset


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    r"""Mean, sample standard deviation (0 for one value) and count, NaNs and Nones left out."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def write_json(path: Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (torch.device, Path)):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Optional[Sequence[str]] = None) -> str:
    r"""A GitHub Markdown table; :obj:`align` per column: ``"l"`` or ``"r"`` (default: first
    column left, the rest right)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(sep) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


_RESULTS_HEADER = """# Benchmark results

Every section below is written by the script named in its markers
(`<!-- script:name:begin -->` ... `<!-- script:name:end -->`); re-running a script replaces its
own section only. How to reproduce: see `benchmarks/README.md`.
"""


def update_results_section(script: str, name: str, body: str,
                           path: Optional[Path] = None) -> Path:
    r"""Replaces the text between ``<!-- script:name:begin -->`` and ``<!-- script:name:end -->``
    in :obj:`path` (default ``benchmarks/RESULTS.md``) by :obj:`body`, leaving the rest of the file
    untouched. The file is created, or the section appended, when missing."""
    path = Path(path or RESULTS_MD)
    begin, end = f"<!-- {script}:{name}:begin -->", f"<!-- {script}:{name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else _RESULTS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stacked_bar_plot(path: Path, labels: Sequence[str], stacks: Dict[str, Sequence[float]],
                     ylabel: str, title: str, side: Optional[Tuple[str, Sequence[float]]] = None
                     ) -> Path:
    r"""Stacked bars (one stack per key of :obj:`stacks`), optionally a second panel
    :obj:`side` = ``(ylabel, values)`` (e.g. peak memory)."""
    plt = _pyplot()
    ncols = 2 if side else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 + 0.5 * len(labels) * ncols, 4.2), squeeze=False)
    ax = axes[0][0]
    bottom = [0.0] * len(labels)
    for key, values in stacks.items():
        values = [0.0 if v is None or math.isnan(v) else v for v in values]
        ax.bar(labels, values, bottom=bottom, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    if side:
        ax2 = axes[0][1]
        ax2.bar(labels, [0.0 if v is None else v for v in side[1]], color="tab:gray")
        ax2.set_ylabel(side[0])
        ax2.tick_params(axis="x", rotation=45, labelsize=8)
    return _save_figure(plt, fig, path)


def _save_figure(plt, fig, path: Path) -> Path:
    r"""Lays out, writes (creating the folder) and closes :obj:`fig`; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loglog_plot(path: Path, series: Dict[str, Tuple[Sequence[float], Sequence[float]]],
                xlabel: str, ylabel: str, title: str,
                hline: Optional[Tuple[float, str]] = None) -> Path:
    r"""One log-log line per series ``name -> (x, y)``, its fitted slope in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, (x, y) in series.items():
        pts = [(a, b) for a, b in zip(x, y) if b is not None and b > 0 and not math.isnan(b)]
        if not pts:
            continue
        slope, _ = loglog_fit([p[0] for p in pts], [p[1] for p in pts])
        label = f"{name} (slope {slope:.2f})" if not math.isnan(slope) else name
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if hline:
        ax.axhline(hline[0], color="k", linestyle="--", linewidth=1, label=hline[1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save_figure(plt, fig, path)
