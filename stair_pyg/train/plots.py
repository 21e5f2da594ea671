r"""Training curves as a PNG (matplotlib, non-interactive ``Agg`` backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union


def plot_history(history: List[Dict[str, Any]], path: Union[str, Path],
                 metric: str = "NDCG@20", best_epoch: Optional[int] = None) -> Path:
    r"""Draws the mean training loss per epoch (left) and the validation metrics ``Recall@K`` /
    ``NDCG@K`` of the selection cut-off :math:`K` per evaluated epoch (right), marking the best
    epoch, and saves the figure to :obj:`path`.

    Args:
        history (list): Per-epoch records as written to ``history.jsonl``.
        path (str or Path): Output PNG file.
        metric (str, optional): The model-selection metric (drawn bold). (default: ``"NDCG@20"``)
        best_epoch (int, optional): Epoch to mark with a vertical line.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [r["epoch"] for r in history]
    losses = [r["loss"] for r in history]
    evaluated = [r for r in history if "valid" in r]
    k = metric.partition("@")[2]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, losses, color="tab:blue")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss")
    names = [metric] + [n for n in (f"Recall@{k}", f"NDCG@{k}") if n != metric]
    for name in names:
        points = [(r["epoch"], r["valid"][name]) for r in evaluated if name in r["valid"]]
        if points:
            xs, ys = zip(*points)
            ax_metric.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3,
                           linewidth=2.0 if name == metric else 1.0, label=f"valid {name}")
    if best_epoch:
        for ax in (ax_loss, ax_metric):
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=0.8)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title(f"Validation (best epoch {best_epoch})")
    if evaluated:
        ax_metric.legend(loc="lower right")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
