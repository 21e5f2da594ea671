r"""Writers of benchmark results: JSON, Markdown tables, sections of a results file, plots, fits.

:func:`update_results_section` replaces only the text between ``<!-- <script>:<name>:begin -->``
and ``<!-- <script>:<name>:end -->`` of a Markdown file (creating the file or appending the
section when missing); the plots are PNGs through matplotlib's Agg backend.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch


def write_json(path: Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    default = lambda o: o.tolist() if isinstance(o, torch.Tensor) else str(o)  # noqa: E731
    path.write_text(json.dumps(obj, indent=2, default=default) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Optional[Sequence[str]] = None) -> str:
    r"""A GitHub Markdown table; :obj:`align` per column ``"l"`` or ``"r"`` (default: the first
    column left, the rest right)."""
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    lines = ["| " + " | ".join(str(h) for h in headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def ratio(x: Optional[float]) -> str:
    return f"{x:.2f}×" if x is not None and not math.isnan(x) else "n/a"


RESULTS_HEADER = """# Benchmark results

Every section below is written by the script named in its markers
(`<!-- script:name:begin -->` ... `<!-- script:name:end -->`); re-running a script replaces its
own section only. How to reproduce: see `benchmarks/README.md`.
"""


def update_results_section(path: Path, script: str, name: str, body: str) -> Path:
    r"""Replaces the section ``script:name`` of the Markdown file :obj:`path` by :obj:`body`,
    leaving the rest untouched (atomically: a concurrent reader never sees half a file)."""
    path = Path(path)
    begin, end = f"<!-- {script}:{name}:begin -->", f"<!-- {script}:{name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else RESULTS_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def mean_std(values: Sequence[Optional[float]]) -> Dict[str, float]:
    r"""Mean, sample standard deviation (0 for one value) and count; NaNs and Nones left out."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": statistics.fmean(values), "n": len(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def linear_fit(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    r"""Least squares :math:`y = c x + b`; returns ``(c, b)`` (NaN slope without spread)."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    c = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx if sxx else float("nan")
    return c, my - c * mx


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> Tuple[float, float]:
    r"""Least squares :math:`\log y = a + b \log x`; returns ``(b, a)``. Non-positive or NaN
    points are left out; ``(nan, nan)`` with fewer than two."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pts) < 2:
        return float("nan"), float("nan")
    return linear_fit(*zip(*pts))


def _axes(ncols: int = 1, figsize=(6.4, 4.4)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize, squeeze=False)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def stacked_bar_plot(path: Path, labels: Sequence[str], stacks: Dict[str, Sequence[float]],
                     ylabel: str, title: str, side: Tuple[str, Sequence[float]]) -> Path:
    r"""Stacked bars, one stack per key of :obj:`stacks`; beside them :obj:`side` =
    ``(ylabel, values)``."""
    fig, axes = _axes(2, (6 + len(labels), 4.2))
    ax, bottom = axes[0][0], [0.0] * len(labels)
    for key, values in stacks.items():
        values = [0.0 if v is None or math.isnan(v) else v for v in values]
        ax.bar(labels, values, bottom=bottom, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    axes[0][1].bar(labels, [v or 0.0 for v in side[1]], color="tab:gray")
    axes[0][1].set_ylabel(side[0])
    for a in axes[0]:
        a.tick_params(axis="x", rotation=45, labelsize=8)
    return _save(fig, path)


def loglog_plot(path: Path, series: Dict[str, Tuple[Sequence[float], Sequence[float]]],
                xlabel: str, ylabel: str, title: str) -> Path:
    r"""One log-log line per series ``name -> (x, y)``, its fitted slope in the legend."""
    fig, axes = _axes()
    ax = axes[0][0]
    for name, (x, y) in series.items():
        pts = [(a, b) for a, b in zip(x, y) if b is not None and b > 0]
        if pts:
            slope = loglog_fit(*zip(*pts))[0]
            ax.plot(*zip(*pts), marker="o",
                    label=name if math.isnan(slope) else f"{name} (slope {slope:.2f})")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def scores_and_curves_plot(path: Path, scores: Dict[str, Tuple[float, float]],
                           curves: Dict[str, Tuple[Sequence[float], Sequence[float]]],
                           score_label: str, curve_label: str, title: str) -> Path:
    r"""Left, one bar per ``name -> (mean, std)`` of :obj:`scores` with its standard deviation as
    an error bar; right, one line per ``name -> (epochs, values)`` of :obj:`curves` over a
    logarithmic epoch axis, its best value marked. A name keeps its colour in both panels (the
    colours follow the order of :obj:`curves`)."""
    fig, axes = _axes(2, (11.5, 4.4))
    names = list(dict.fromkeys([*curves, *scores]))
    colour = {n: f"C{i % 10}" for i, n in enumerate(names)}
    ax = axes[0][0]
    labels = list(scores)
    ax.bar(labels, [scores[n][0] for n in labels], yerr=[scores[n][1] for n in labels],
           capsize=4, color=[colour[n] for n in labels])
    for i, n in enumerate(labels):
        ax.annotate(f"{scores[n][0]:.4f}", (i, sum(scores[n])), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7)
    ax.set_ylabel(score_label)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.set_title(title, fontsize=9)
    ax = axes[0][1]
    for n, (x, y) in curves.items():
        ax.plot(x, y, color=colour[n], label=n, linewidth=1.2)
        best = max(range(len(y)), key=lambda i: y[i])
        ax.plot([x[best]], [y[best]], "o", color=colour[n], markersize=4)
    ax.set(xscale="log", xlabel="epoch", ylabel=curve_label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
