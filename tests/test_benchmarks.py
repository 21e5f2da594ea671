r"""Smoke tests of the benchmark scripts: each quick mode runs in a subprocess on tiny synthetic
data and writes JSON with the expected fields and sane values. No timing is asserted."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("TMPDIR", str(ROOT / "build" / "tmp"))
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x) and x > 0


def test_profile_quick(tmp_path):
    out = tmp_path / "profile"
    _run("profile.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    assert (out / "table.md").read_text().startswith("Dataset")
    assert (out / "profile.png").stat().st_size > 0
    assert result["dataset"]["timing_only_features"] is True
    names = [r["model"] for r in result["models"]]
    # Ours, the reference and PyG's LightGCN as shipped run side by side in the same run.
    for required in ("stair", "lightgcn", "pyg_lightgcn"):
        assert required in names
    for rec in result["models"]:
        assert "error" not in rec, rec.get("error")
        assert set(rec["phase_s"]) == {"sampling", "forward", "backward", "step"}
        assert all(v >= 0 for v in rec["phase_s"].values())
        assert _positive(rec["epoch_s"]) and _positive(rec["eval_s"])
        assert rec["epoch_s"] >= sum(rec["phase_s"].values())
        assert rec["extrapolated"] is True and rec["timed_batches"] < rec["num_batches"]
        assert rec["parameters"] > 0
        assert rec["memory"]["peak_rss"] > 0 and rec["peak_bytes"] is not None
        assert rec["ratio"]["epoch"] > 0
    ref = next(r for r in result["models"] if r["model"] == "lightgcn")
    assert ref["ratio"]["epoch"] == pytest.approx(1.0)
    # PyG's LightGCN has the same parameters as ours: one embedding table for users and items.
    pyg = next(r for r in result["models"] if r["model"] == "pyg_lightgcn")
    assert pyg["parameters"] == ref["parameters"]


def test_scaling_quick(tmp_path):
    out = tmp_path / "scaling"
    _run("scaling.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    points = [p for p in result["points"] if "models" in p]
    assert len(points) == 2
    assert points[1]["num_train"] > points[0]["num_train"]
    assert points[1]["num_users"] > points[0]["num_users"]
    for p in points:
        for rec in p["models"].values():
            assert "error" not in rec, rec
            assert _positive(rec["epoch_s"]) and _positive(rec["process_peak_bytes"])
    for fit in result["fits"].values():
        assert "time_slope" in fit and "memory_slope" in fit and "max_interactions_how" in fit
    assert (out / "scaling_time.png").stat().st_size > 0
    assert (out / "scaling_memory.png").stat().st_size > 0


def test_propagation_quick(tmp_path):
    out = tmp_path / "prop"
    _run("bench_propagation.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    assert _positive(result["copy"]["bandwidth"])
    assert _positive(result["bytes_needed_per_pass"])
    formats = {r["format"]: r for r in result["results"]}
    for fmt in ("SparseAdj", "torch CSR", "EdgeIndex", "edge_index"):
        assert _positive(formats[fmt]["forward_s"]) and _positive(formats[fmt]["backward_s"])
        assert _positive(formats[fmt]["forward_of_ceiling"])
    assert "SparseTensor" in formats  # measured, or skipped with the reason


def test_modality_quick(tmp_path):
    out = tmp_path / "mod"
    _run("bench_modality.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    assert [r["items"] for r in result["results"]] == [2000, 4000]
    for r in result["results"]:
        assert _positive(r["whiten"]["seconds"]) and _positive(r["graph"]["seconds"])
        assert r["whiten"]["peak_bytes"] is not None and r["graph"]["how"] == "measured"


def test_results_section_is_replaced_in_place(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks._common import update_results_section
    finally:
        sys.path.remove(str(ROOT))
    path = tmp_path / "RESULTS.md"
    update_results_section("profile", "a", "first", path)
    update_results_section("compare_models", "x", "other script", path)
    update_results_section("profile", "a", "second", path)
    text = path.read_text()
    assert "first" not in text and "second" in text and "other script" in text
    assert text.count("<!-- profile:a:begin -->") == 1
    assert text.index("profile:a:begin") < text.index("compare_models:x:begin")


def test_cli_bench_help():
    proc = subprocess.run([sys.executable, "-c",
                           "import sys; from stair_pyg.cli import main; "
                           "sys.exit(main(['bench', '--help']))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--max-batches" in proc.stdout and "--quick" in proc.stdout


def test_sweep_selects_on_validation_and_resumes(tmp_path):
    args = ("--quick", "--grid", "model.gamma=0.1,1.0", "--grid", "train.lr=1e-3,1e-2",
            "--final-seeds", "2", "--out", str(tmp_path))
    first = _run("sweep.py", *args)
    result = json.loads((tmp_path / "sweep_quick.json").read_text())
    assert len(result["points"]) == 4
    seed1 = [r for r in result["runs"].values() if r["seed"] == 1]
    best = max(seed1, key=lambda r: r["valid"]["NDCG@20"])
    assert result["selected"] == best["overrides"]  # chosen on validation, never on test
    assert result["final"]["seeds"] == [1, 2]
    assert any(r["seed"] == 2 and r["overrides"] == best["overrides"]
               for r in result["runs"].values())
    assert "selected" in first.stdout
    # A restart with the same arguments reuses every finished run and trains nothing.
    again = _run("sweep.py", *args)
    assert "reusing 5 finished run(s)" in again.stdout
    assert "run(s) on" not in again.stdout


def test_sweep_grid_values_split_outside_brackets():
    import importlib.util
    spec = importlib.util.spec_from_file_location("sweep_script", BENCH / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    assert sweep.split_values("1,{text: 5, genre: 1},[1, 2]") == [
        "1", "{text: 5, genre: 1}", "[1, 2]"]
    axes = sweep.parse_grid(["model.gamma=0.1,1", "train.lr=1e-3"])
    assert sweep.grid_points(axes) == [["model.gamma=0.1", "train.lr=1e-3"],
                                       ["model.gamma=1", "train.lr=1e-3"]]
