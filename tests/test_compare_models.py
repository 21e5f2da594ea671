r"""``benchmarks/sweep.py`` as the model comparison (several models, no grid): the pipeline end
to end at a tiny size, and its summaries."""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def sweep(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # as `python benchmarks/sweep.py` runs
    return importlib.import_module("sweep")


def test_mean_std_and_summary(sweep):
    s = sweep.mean_std([0.1, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert sweep.mean_std([0.5])["std"] == 0.0
    runs = [{"seed": 1, "epoch_seconds": 2.0, "peak_memory_bytes": 10, "best_epoch": 3,
             "fresh_process": True,
             "test": {"Recall@10": 0.1, "Recall@20": 0.2, "NDCG@10": 0.05, "NDCG@20": 0.07}},
            {"seed": 2, "epoch_seconds": 4.0, "peak_memory_bytes": 30, "best_epoch": 5,
             "fresh_process": True,
             "test": {"Recall@10": 0.3, "Recall@20": 0.4, "NDCG@10": 0.15, "NDCG@20": 0.17}},
            {"seed": 3, "error": "RuntimeError: boom"}]
    summary = sweep.summarise(runs)
    assert summary["failed"] == 1 and summary["runs"] == 3 and summary["seeds"] == [1, 2]
    assert summary["Recall@20"]["mean"] == pytest.approx(0.3)
    assert summary["epoch_seconds"]["mean"] == pytest.approx(3.0)
    assert summary["peak_memory_bytes"] == 30
    # A run that shared its worker process with earlier runs has no memory figure of its own.
    shared = [{**runs[1], "peak_memory_bytes": 500, "fresh_process": False}, runs[0]]
    assert sweep.summarise(shared)["peak_memory_bytes"] == 10


def test_quick_comparison_prints_a_table(sweep, capsys):
    code = sweep.main(["--quick", "--models", "lightgcn,content", "--final-seeds", "2",
                       "--set", "train.epochs=1", "--no-write"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| lightgcn")
            or line.startswith("| content")]
    # One row per model: its packaged settings (no grid), mean ± std over seeds 1 and 2.
    assert len(rows) == 2 and all(row.count("±") == 4 and "packaged" in row for row in rows)
    assert "model.gamma" not in out  # the quick grid is STAIR's, not applied to --models
