r"""``benchmarks/compare_models.py``: the pipeline end to end at a tiny size, and its summaries."""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def compare(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # as `python benchmarks/compare_models.py` runs
    return importlib.import_module("compare_models")


def test_mean_std_and_summary(compare):
    s = compare.mean_std([0.1, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(math.sqrt(0.02))
    assert compare.mean_std([0.5])["std"] == 0.0
    runs = [{"test": {"Recall@10": 0.1, "Recall@20": 0.2, "NDCG@10": 0.05, "NDCG@20": 0.07},
             "epoch_seconds": 2.0, "peak_memory_bytes": 10, "best_epoch": 3},
            {"test": {"Recall@10": 0.3, "Recall@20": 0.4, "NDCG@10": 0.15, "NDCG@20": 0.17},
             "epoch_seconds": 4.0, "peak_memory_bytes": 30, "best_epoch": 5},
            {"seed": 3, "error": "RuntimeError: boom"}]
    summary = compare.summarise(runs)
    assert summary["failed"] == 1 and summary["runs"] == 3
    assert summary["Recall@20"]["mean"] == pytest.approx(0.3)
    assert summary["epoch_seconds"]["mean"] == pytest.approx(3.0)
    assert summary["peak_memory_bytes"] == 30
    assert compare.parse_seeds("3") == [1, 2, 3] and compare.parse_seeds("4,7") == [4, 7]


def test_quick_run_prints_a_table(compare, capsys):
    code = compare.main(["--quick", "--models", "lightgcn,content", "--seeds", "1",
                         "--epochs", "1", "--device", "cpu", "--no-write"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| lightgcn")
            or line.startswith("| content")]
    assert len(rows) == 2 and all("±" in row for row in rows)
