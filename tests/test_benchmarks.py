r"""Smoke tests of the benchmark scripts: each quick mode runs in a subprocess on tiny synthetic
data and writes JSON with the expected fields and sane values. No timing is asserted.

The scaling sweep's memory safety is tested on fake points (skip by prediction, fits and report
with killed/skipped cells), with a child process that outgrows a small limit (the watchdog), and
on tiny runs (featureless workers load no features; a sweep whose only model is killed stops)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stair_pyg.profiling import bench as P
from stair_pyg.profiling.report import update_results_section
from stair_pyg.profiling.watchdog import run_watched, worker_record

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
    _run("profile_models.py", "--quick", "--out", str(out))
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
    # Every model of the registry (but the content-only ablation) is compared.
    assert set(names) == set(P.COMPARED) | set(P.PYG_MODELS)
    assert {r["model"] for r in result["models"] if r["multimodal"]} == P.MULTIMODAL - {"content"}


def _package_only(tmp_path) -> dict:
    r"""An environment in which only a copy of the ``stair_pyg`` package is importable (as after
    ``pip install``): not the checkout, not its ``benchmarks/``."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(ROOT / "stair_pyg", site / "stair_pyg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
    env.setdefault("TMPDIR", str(ROOT / "build" / "tmp"))
    return env


def test_cli_bench_runs_without_the_checkout(tmp_path):
    env = _package_only(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # -I would drop PYTHONPATH; -P keeps the current folder off sys.path. An editable install of
    # the checkout may still be on the path: the copy comes first, and is the one that runs.
    code = ("import sys, runpy; import stair_pyg; assert stair_pyg.__file__.startswith("
            f"{str(tmp_path / 'site')!r}), stair_pyg.__file__; "
            "assert not any(m == 'benchmarks' or m.startswith('benchmarks.') for m in "
            "sys.modules); from stair_pyg.cli import main; "
            "sys.exit(main(['bench', '--quick', '--isolate', '--models', 'stair,lightgcn', "
            "'--out', 'out']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((work / "out" / "results.json").read_text())
    assert [r["model"] for r in result["models"]] == ["stair", "lightgcn"]
    assert all("error" not in r and r["epoch_s"] > 0 for r in result["models"])
    assert result["settings"]["isolate"] is True  # the workers ran from the package too


def test_package_never_imports_the_checkout_and_no_script_edits_sys_path():
    for path in (ROOT / "stair_pyg").rglob("*.py"):
        text = path.read_text()
        assert "import benchmarks" not in text and "from benchmarks" not in text, path
    for path in BENCH.glob("*.py"):
        assert "sys.path" not in path.read_text(), path
    assert not (BENCH / "profile.py").exists()  # would shadow the standard library's profile


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


def test_gather_rows_reads_the_rows_in_order(bench_script, monkeypatch):
    # Every column index is fetched, once per layer, in CSR order, and only those rows.
    gather_rows = bench_script("bench_propagation").gather_rows
    fetched = []
    real = torch.index_select

    def spy(x, dim, index, out=None):
        fetched.append(index.clone())
        return real(x, dim, index, out=out)

    monkeypatch.setattr(torch, "index_select", spy)
    x, columns = torch.randn(50, 4), torch.randint(50, (23,))
    gather_rows(x, columns, layers=2, chunk=10)
    assert [i.numel() for i in fetched] == [10, 10, 3] * 2
    assert torch.equal(torch.cat(fetched), columns.repeat(2))


def test_propagation_quick(tmp_path):
    out = tmp_path / "prop"
    _run("bench_propagation.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    assert _positive(result["copy"]["bandwidth"])
    assert _positive(result["bytes_needed_per_pass"])
    copy = result["copy"]  # the ceiling, in rounds alternated with the products alone
    assert copy["rounds"] == 2
    assert copy["bandwidth_range"][0] <= copy["bandwidth"] <= copy["bandwidth_range"][1]
    low, high = copy["product_fraction_range"]
    assert _positive(low) and low <= copy["product_fraction"] <= high
    from stair_pyg.nn.cpu_kernel import numba_available

    formats = {r["format"]: r for r in result["results"]}
    kernels = ["numba", "torch"] if numba_available() else ["torch"]
    sparse_adj = [f"SparseAdj, {k} kernel" for k in kernels]  # the SparseAdj path per kernel
    for fmt in sparse_adj + ["torch CSR", "EdgeIndex", "edge_index"]:
        assert _positive(formats[fmt]["forward_s"]) and _positive(formats[fmt]["backward_s"])
        assert _positive(formats[fmt]["forward_of_ceiling"])
    for k in kernels:
        assert _positive(formats[f"csr_mm alone (3x, {k} kernel)"]["forward_of_ceiling"])
    gather = next(r for r in result["results"] if r.get("gather"))  # the second reference
    assert _positive(gather["forward_s"]) and _positive(gather["forward_of_ceiling"])
    table = (out / "table.md").read_text()
    assert f"in those rounds the products with the {result['default_kernel']} kernel ran at " \
        f"{100 * copy['product_fraction']:.1f}% of the copy of the same round" in table
    assert "in multiples of the gather's time: " + (
        "numba kernel " if numba_available() else "torch's product ") in table
    if numba_available():  # the numba kernel once more, its prefetching switched off
        assert _positive(formats["csr_mm alone (3x, numba kernel, no prefetch)"]["forward_s"])
        assert "numba kernel without prefetching" in table
    for fmt in ("torch CSR", "EdgeIndex", "edge_index"):  # PyG's LGConv on the same format
        assert _positive(formats[fmt]["lgconv_s"]) and _positive(formats[fmt]["vs_lgconv"])
    assert all("vs_lgconv" not in formats[fmt] for fmt in sparse_adj)  # LGConv does not take it
    assert "SparseTensor" in formats  # measured, or skipped with the reason
    # Training steps with each kernel, alternated (only where there are two kernels).
    steps = {r["model"]: r for r in result["steps"]}
    assert set(steps) == ({"stair", "lightgcn"} if numba_available() else set())
    for r in steps.values():
        assert len(r["numba_rounds"]) == len(r["torch_rounds"]) == result["step_rounds"]
        assert len(r["numba_no_prefetch_rounds"]) == result["step_rounds"]
        assert _positive(r["numba_s"]) and _positive(r["torch_s"]) and _positive(r["speedup"])
        assert _positive(r["numba_no_prefetch_s"]) and _positive(r["prefetch_speedup"])


def test_profile_stepper_draws_an_epoch_at_once_as_the_trainer_does():
    # The profile times what training runs: one draw of the negatives for a whole epoch, each
    # batch a slice of it; a step past the last batch draws the next epoch first.
    from stair_pyg.profiling.bench import Stepper, synthetic_graph
    from stair_pyg.train import Trainer, build_model

    ds = synthetic_graph(1500, seed=0)
    model = build_model({"name": "bpr", "embedding_dim": 8}, ds.data, device="cpu")
    trainer = Trainer(model, ds, {"device": "cpu", "batch_size": 256, "seed": 0},
                      progress=False, model_name="bpr")
    draws, batches = [], []
    sample, train_step = trainer.sampler.sample, trainer.train_step
    trainer.sampler.sample = lambda users, gen=None: draws.append(users.numel()) or sample(
        users, gen)
    trainer.train_step = lambda u, p, n: batches.append((u, p)) or train_step(u, p, n)
    step = Stepper(trainer, 256)
    pairs = trainer.train_pairs
    num_batches = -(-pairs.size(1) // 256)
    step.new_epoch()
    for _ in range(num_batches):
        step()
    assert draws == [pairs.size(1)]  # one draw for the whole epoch
    assert [u.numel() for u, _ in batches[:-1]] == [256] * (num_batches - 1)
    drawn = torch.stack([torch.cat([u for u, _ in batches]), torch.cat([p for _, p in batches])])
    key = lambda e: sorted((e[0] * 10 ** 6 + e[1]).tolist())  # noqa: E731
    assert key(drawn) == key(pairs)  # every training pair once
    step()
    assert draws == [pairs.size(1)] * 2


def test_modality_quick(tmp_path):
    out = tmp_path / "mod"
    _run("bench_modality.py", "--quick", "--out", str(out))
    result = json.loads((out / "results.json").read_text())
    assert [r["items"] for r in result["results"]] == [2000, 4000]
    for r in result["results"]:
        assert _positive(r["whiten"]["seconds"]) and _positive(r["graph"]["seconds"])
        assert r["whiten"]["peak_bytes"] is not None and r["graph"]["how"] == "measured"


def test_results_section_is_replaced_in_place(tmp_path):
    path = tmp_path / "RESULTS.md"
    update_results_section(path, "profile", "a", "first")
    update_results_section(path, "compare_models", "x", "other script")
    update_results_section(path, "profile", "a", "second")
    text = path.read_text()
    assert "first" not in text and "second" in text and "other script" in text
    assert text.count("<!-- profile:a:begin -->") == 1
    assert text.index("profile:a:begin") < text.index("compare_models:x:begin")


def test_benchmark_scripts_show_data_notices_as_note_lines():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _results; "
            "from stair_pyg.data.errors import warn_data; warn_data('3 items repeat a row')")
    proc = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True,
                          text=True, check=True)
    assert proc.stderr == "note: 3 items repeat a row\n"  # no "DataWarning", no source line


def test_cli_bench_help(capsys):
    from stair_pyg.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--max-batches" in out and "--quick" in out and "--memory-limit-gib" in out


def _sweep_here(sweep, capsys, *args: str) -> str:
    r"""``sweep.main(args)`` in this process, its output: for the runs that train nothing, which
    need none of the 5 s of imports a new process costs. The lock a sweep holds "for the rest of
    the process" is let go after it, as the end of its process would."""
    capsys.readouterr()
    try:
        assert sweep.main(list(args)) == 0
    finally:
        while sweep._LOCKS:
            sweep._LOCKS.pop().close()
    return capsys.readouterr().out


def test_sweep_selects_on_validation_and_resumes(tmp_path, bench_script, capsys):
    args = ("--quick", "--grid", "model.gamma=0.1,1.0", "--set", "train.epochs=3",
            "--final-seeds", "2", "--out", str(tmp_path))
    first = _run("sweep.py", *args)
    result = json.loads((tmp_path / "sweep_quick-stair.json").read_text())
    assert len(result["models"]["stair"]["points"]) == 2
    seed1 = [r for r in result["runs"].values() if r["seed"] == 1]
    best = max(seed1, key=lambda r: r["valid"]["NDCG@20"])
    stair = result["models"]["stair"]
    assert stair["selected"] == best["overrides"]  # chosen on validation, never on test
    assert stair["final"]["seeds"] == [1, 2]
    assert any(r["seed"] == 2 and r["overrides"] == best["overrides"]
               for r in result["runs"].values())
    assert "selected" in first.stdout
    # A restart with the same arguments reuses every finished run and trains nothing.
    again = _sweep_here(bench_script("sweep"), capsys, *args)
    assert "reusing 3 finished run(s)" in again
    assert "run(s) on" not in again


def test_sweep_keeps_runs_of_changed_model_code_only_once_one_reproduces(tmp_path):
    args = ("--quick", "--grid", "model.gamma=0.1,1.0", "--set", "train.epochs=3",
            "--final-seeds", "2", "--out", str(tmp_path))
    path = tmp_path / "sweep_quick-stair.json"
    _run("sweep.py", *args)
    original = json.loads(path.read_text())
    first_point = json.dumps(["stair", original["models"]["stair"]["points"][0], 1])

    def stored_with(**changes):
        result = json.loads(json.dumps(original))
        result["models"]["stair"]["code"] = "0123456789ab"  # as if stair.py had been edited
        for key, value in changes.items():
            result["runs"][first_point]["valid"][key] = value
        path.write_text(json.dumps(result))

    # A refactoring: the changed code reproduces the first run, so the other two are kept.
    stored_with()
    kept = _run("sweep.py", *args)
    assert "its code changed since its 3 finished run(s)" in kept.stdout
    assert "reproduced that run exactly; keeping its other 2" in kept.stdout
    trained = [line for line in kept.stdout.splitlines() if line.startswith("[sweep] stair ")]
    assert len(trained) == 1 and "model.gamma=0.1 seed 1" in trained[0]
    result = json.loads(path.read_text())
    assert result["runs"] == original["runs"] or all(
        result["runs"][k]["valid"] == v["valid"] for k, v in original["runs"].items())
    assert result["models"]["stair"]["reproduced"]["code_before"] == "0123456789ab"
    # A change of results: the stored first run differs from what the code gives now, so every
    # run is trained again.
    stored_with(**{"NDCG@20": 0.5})
    again = _run("sweep.py", *args)
    assert "gives different results; its other 2 run(s) are run again" in again.stdout
    assert len([line for line in again.stdout.splitlines()
                if line.startswith("[sweep] stair ")]) == 3


def test_sweep_fingerprint_covers_the_code_a_models_runs_execute(bench_script, monkeypatch):
    sweep = bench_script("sweep")
    stair, bpr = set(sweep.code_modules("stair")), set(sweep.code_modules("bpr"))
    # The model, its layers and kernels (the numba ones are imported inside a function, by
    # name), its optimizer, the trainer, data loading and evaluation; no other model, no CLI.
    assert {"stair_pyg.models.stair", "stair_pyg.nn.sparse", "stair_pyg.nn._numba_kernels",
            "stair_pyg.optim.stepwise_adamw", "stair_pyg.train.trainer",
            "stair_pyg.data.mmrec", "stair_pyg.eval.metrics", "stair_pyg.nn"} <= stair
    assert not {"stair_pyg.models.bpr", "stair_pyg.models.freedom", "stair_pyg.cli",
                "stair_pyg.profiling.bench"} & stair
    assert "stair_pyg.models.bpr" in bpr and "stair_pyg.models.stair" not in bpr
    before = {m: sweep.code_version(m) for m in ("stair", "bpr")}
    real = sweep._source
    for module, changed in (("stair_pyg.optim.stepwise_adamw", {"stair"}),  # STAIR's optimizer
                            ("stair_pyg.nn._numba_kernels", {"stair", "bpr"})):  # shared code
        monkeypatch.setattr(sweep, "_source", lambda m, edited=module: real(m) + (
            b"# edited" if m == edited else b""))
        after = {m: sweep.code_version(m) for m in ("stair", "bpr")}
        assert {m for m in after if after[m] != before[m]} == changed, module
    monkeypatch.setattr(sweep, "_source", real)
    assert sweep.code_version("stair") == before["stair"]


def test_sweep_grid_values_split_outside_brackets(bench_script):
    sweep = bench_script("sweep")
    assert sweep.split_values("1,{text: 5, genre: 1},[1, 2]") == [
        "1", "{text: 5, genre: 1}", "[1, 2]"]
    axes = sweep.parse_grid(["model.gamma=0.1,1", "train.lr=1e-3"])
    assert sweep.grid_points(axes) == [["model.gamma=0.1", "train.lr=1e-3"],
                                       ["model.gamma=1", "train.lr=1e-3"]]


def test_sweep_needs_further_seeds_after_selection_except_for_a_one_point_grid(bench_script):
    sweep = bench_script("sweep")
    key = sweep.run_key
    points = [["model.gamma=0.1"], ["model.gamma=1.0"]]
    # A grid: first every point with the selection seed, then the selected point's other seeds.
    assert sweep.runs_needed("stair", points, {}, 1, [1, 2, 3], "NDCG@20") == ([
        ["stair", points[0], 1], ["stair", points[1], 1]], None)
    runs = {key("stair", points[0], 1): {"valid": {"NDCG@20": 0.2}},
            key("stair", points[1], 1): {"valid": {"NDCG@20": 0.3}}}
    assert sweep.runs_needed("stair", points, runs, 1, [1, 2, 3], "NDCG@20") == ([
        ["stair", points[1], 2], ["stair", points[1], 3]], points[1])
    # One point selects nothing: every seed is needed at once, so workers can run them together.
    assert sweep.runs_needed("lgmrec", [[]], {}, 1, [1, 2, 3], "NDCG@20") == ([
        ["lgmrec", [], 1], ["lgmrec", [], 2], ["lgmrec", [], 3]], None)
    # ... unless the point's first run failed: then nothing is selected and nothing more runs.
    failed = {key("lgmrec", [], 1): {"error": "RuntimeError: boom"}}
    assert sweep.runs_needed("lgmrec", [[]], failed, 1, [1, 2, 3], "NDCG@20") == ([], None)


def test_packaged_grids_resolve_and_name_their_source(bench_script):
    import yaml

    from stair_pyg.configs import model_config_path
    from stair_pyg.models import MODELS
    from stair_pyg.train.config import apply_overrides, resolve_config

    sweep = bench_script("sweep")
    for model in MODELS:
        text = model_config_path(model).read_text()
        assert "Source" in text.split("grid:")[0], f"{model}: the grid does not say its source"
        config = {**sweep.QUICK_CONFIG, "model": yaml.safe_load(text)["model"]}
        for point in sweep.grid_points(sweep.packaged_grid(model)):
            resolved = resolve_config(apply_overrides(config, point), check_paths=False)
            for override in point:  # each value reaches the run with its YAML type (1.0e-05)
                node = resolved
                for part in override.split("=", 1)[0].split("."):
                    node = node[part]
                assert isinstance(node, (int, float)), (model, override, node)


def test_leaderboard_runs_model_by_model_and_report_rebuilds_it(tmp_path, bench_script, capsys):
    # content: the smallest packaged grid (3 points); lgmrec: none (one point). Every run trains
    # in a process of its own (about 5 s of imports each), so the grids are kept small.
    args = ("--quick", "--leaderboard", "--models", "content,lgmrec", "--set", "train.epochs=2",
            "--set", "train.patience=1", "--final-seeds", "2", "--out", str(tmp_path))
    first = _run("sweep.py", *args)
    result = json.loads((tmp_path / "sweep_leaderboard-quick.json").read_text())
    content = result["models"]["content"]
    assert len(content["points"]) == 3 and result["models"]["lgmrec"]["points"] == [[]]
    assert content["final"]["seeds"] == [1, 2]
    assert result["models"]["lgmrec"]["final"]["seeds"] == [1, 2]
    order = [line.split()[1] for line in first.stdout.splitlines()
             if line.startswith("[sweep] content") or line.startswith("[sweep] lgmrec")]
    assert order == ["content"] * 4 + ["lgmrec"] * 2  # one model's grid and seeds, the next
    assert "### Leaderboard: quick" in first.stdout and "2 †" in first.stdout
    # Every run had a process of its own, so each has a memory figure of its own.
    assert all(r["fresh_process"] and r["peak_memory_bytes"] > 0 for r in result["runs"].values())
    sweep = bench_script("sweep")
    report = lambda: _sweep_here(sweep, capsys, *args, "--report")  # noqa: E731
    # The figure beside the JSON: both models finished, so both have a score and a curve.
    scores, curves = sweep.figure_data(result)
    assert set(scores) == set(curves) == {"content", "lgmrec"}
    assert list(scores) == sorted(scores, key=lambda m: -scores[m][0])  # best first
    assert scores["content"] == (content["final"]["NDCG@20"]["mean"],
                                 content["final"]["NDCG@20"]["std"])
    selected = result["runs"][json.dumps(["content", content["selected"], 1])]
    assert curves["content"] == ([e for e, *_ in selected["curve"]],
                                 [v for _, v, *_ in selected["curve"]])
    figure = tmp_path / "sweep_leaderboard-quick.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    rebuilt = report()
    assert "run(s) ahead" not in rebuilt  # nothing trained
    assert figure.is_file()  # rebuilt from the JSON
    table = lambda out: out[out.index("### Leaderboard"):out.index("Produced by")]  # noqa
    assert table(rebuilt) == table(first.stdout)
    # An unfinished grid says how far it got and its best point so far (on validation).
    path = tmp_path / "sweep_leaderboard-quick.json"
    partial = json.loads(path.read_text())
    dropped = json.dumps(["content", content["points"][-1], 1])
    del partial["runs"][dropped]
    path.write_text(json.dumps(partial))
    kept = [r for k, r in partial["runs"].items() if k.startswith('["content"') and r["seed"] == 1]
    best = max(kept, key=lambda r: r["valid"]["NDCG@20"])
    line = next(x for x in report().splitlines() if x.startswith("| content |"))
    assert "2 of 3 grid points run; best so far " + " ".join(best["overrides"]) in line
    assert f"valid NDCG@20 {best['valid']['NDCG@20']:.4f}" in line
    # A selected point with seeds still to run is not a finished row, and not a failed one.
    first_seed = partial["runs"][json.dumps(["lgmrec", [], 1])]
    del partial["runs"][json.dumps(["lgmrec", [], 2])]
    path.write_text(json.dumps(partial))
    line = next(x for x in report().splitlines() if x.startswith("| lgmrec |"))
    assert "1 of 2 seeds run; selected packaged: valid NDCG@20 " in line
    assert f"test {first_seed['test']['NDCG@20']:.4f} (seed 1)" in line
    assert "failed" not in line and "±" not in line
    # Unfinished rows have no score in the figure; their curve is the best point's so far.
    partial["models"]["lgmrec"]["final"] = sweep.summarise(
        [first_seed, sweep.NOT_RUN])
    partial["models"]["content"]["selected"] = None
    scores, curves = sweep.figure_data(partial)
    assert "lgmrec" not in scores and curves["lgmrec"][1] == [v for _, v, *_ in
                                                              first_seed["curve"]]
    assert curves["content"][1] == [v for _, v, *_ in best["curve"]]


def test_a_second_sweep_into_the_same_json_is_refused(bench_script, tmp_path):
    import fcntl

    sweep = bench_script("sweep")
    with open(tmp_path / "sweep_quick-stair.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running sweep holds it
        with pytest.raises(SystemExit, match="another sweep is writing"):
            sweep.main(["--quick", "--set", "train.epochs=1", "--out", str(tmp_path)])
    assert not (tmp_path / "sweep_quick-stair.json").exists()  # nothing ran, nothing written


def test_at_cap_marks_runs_the_epoch_cap_stopped(bench_script):
    at_cap = bench_script("sweep").at_cap
    train = {"epochs": 100, "patience": 20, "eval_every": 1}
    assert at_cap({"best_epoch": 81}, train) and not at_cap({"best_epoch": 80}, train)
    # Patience counts evaluations: every second epoch, 20 of them span 40 epochs.
    assert at_cap({"best_epoch": 61}, {**train, "eval_every": 2})
    assert not at_cap({"best_epoch": 60}, {**train, "eval_every": 2})


# --------------------------------------------------------------------------------------------
# Memory safety of the scaling sweep: skip by prediction, memory watchdog, featureless workers
# --------------------------------------------------------------------------------------------

GIB = 2**30


def _done(peak_gib: float, epoch_s: float = 1.0, ratio: float = 1.0) -> dict:
    peak = peak_gib * GIB
    return {"epoch_s": epoch_s, "build_s": 0.1, "peak_bytes": peak / 2, "host_peak_bytes": peak,
            "process_peak_bytes": peak, "parameters": 10, "epoch_ratio": ratio}


def _point(size: int, knn: str = "exact", **models) -> dict:
    return {"size": size, "num_train": size, "num_users": size // 6, "num_items": size // 12,
            "knn_method": knn, "models": models}


def test_scaling_plan_skips_by_prediction_and_after_a_failure(bench_script):
    S = bench_script("scaling")
    killed = {"error": "exceeded the memory limit", "memory_failure": "limit",
              "memory_exceeded_bytes": 5 * GIB}
    points = [_point(1000, a=_done(1.0), b=_done(1.0), c=killed, d=_done(0.5)),
              _point(2000, a=_done(2.1), b=_done(1.1), c={"skipped": "x"}),
              _point(3000, a=_done(2.9), b=_done(1.2))]
    models = ["a", "b", "c", "d"]
    to_run, skipped = S.plan_size(points, models, 10_000, 8 * GIB)
    # a: the least-squares line through its three peaks predicts ~9.5 GiB at 10^4 > 8 GiB.
    fit = np.polyfit([1000, 2000, 3000], [2.0**30 * v for v in (1.0, 2.1, 2.9)], 1)
    assert skipped["a"]["predicted_bytes"] == pytest.approx(np.polyval(fit, 10_000))
    assert skipped["a"]["skipped"] == (f"predicted {np.polyval(fit, 10_000) / GIB:.1f} GiB > "
                                       "8 GiB limit")
    # c was killed at the smallest size: skipped ever after, whatever its fit.
    assert skipped["c"]["skipped"] == "exceeded the memory limit at 1,000 interactions"
    # b is predicted ~1.9 GiB; d has a single measured point: no fit, so it runs.
    assert to_run == ["b", "d"] and set(skipped) == {"a", "c"}
    # At a size where a is predicted below the limit it runs.
    assert "a" in S.plan_size(points, models, 5000, 8 * GIB)[0]
    # Skipped once, skipped at every larger size, with the first reason.
    points.append(_point(10_000, b=_done(1.9), d=_done(0.6), **skipped))
    to_run, later = S.plan_size(points, models, 30_000, 1e6 * GIB)
    assert to_run == ["b", "d"]
    assert later["a"]["skipped"].startswith("skipped at 10,000 interactions (predicted")
    assert later["c"] == skipped["c"]
    # Without a limit nothing is skipped.
    assert S.plan_size(points, models, 30_000, None) == (models, {})


def test_scaling_fits_and_report_with_killed_and_skipped_cells(tmp_path, bench_script):
    S = bench_script("scaling")
    killed = {"error": "exceeded the memory limit of 22 GiB (killed at 22.1 GiB after 9.0 s)",
              "memory_failure": "limit", "memory_exceeded_bytes": 22.1 * GIB}
    points = [_point(1000, a=_done(1.0, 0.1, 2.0), b=_done(1.0, 0.2, 1.0)),
              _point(2000, a=_done(2.0, 0.4, 2.5), b=_done(1.5, 0.8, 1.0)),
              _point(4000, "ivf", a=killed, b=_done(2.5, 3.0, 1.0),
                     c={"skipped": "predicted 31.2 GiB > 22 GiB limit",
                        "short": "predicted 31 GiB", "predicted_bytes": 31.2 * GIB}),
              {"size": 8000, "skipped": "no model left within the memory limit",
               "knn_method": "ivf", "models": {}}]
    fits = S.fit_all(points, ["a", "b", "c"], 24 * GIB)
    # a: measured, from its completed runs and the kill.
    assert fits["a"]["max_interactions"] == 2000
    assert fits["a"]["max_interactions_how"] == ("measured: fits at 2,000, not at 4,000 "
                                                 "(killed at 22 GiB)")
    assert fits["a"]["largest_run"] == 2000
    assert fits["a"]["process_peak_at_largest_run"] == pytest.approx(2.0 * GIB)
    # b: estimated from the linear fit of its peaks (1, 1.5, 2.5 GiB), checked against numpy.
    per, base = np.polyfit([1000, 2000, 4000], [GIB * v for v in (1.0, 1.5, 2.5)], 1)
    assert fits["b"]["bytes_per_interaction"] == pytest.approx(per)
    assert fits["b"]["max_interactions"] == pytest.approx((24 * GIB - base) / per)
    assert fits["b"]["max_interactions_how"].startswith("estimated")
    # c never ran: nothing to fit or to claim.
    assert "max_interactions" not in fits["c"] and "largest_run" not in fits["c"]
    result = {"fits": fits, "points": points, "budget_bytes": 24 * GIB,
              "memory_limit_bytes": 22 * GIB, "device_name": "test CPU"}
    table = S.report(result, absolute=False)
    row4000 = next(line for line in table.splitlines() if line.startswith("| 4,000 "))
    assert row4000.split(" | ")[3:] == ["killed at 22 GiB", "1.00×",
                                        "skipped (predicted 31 GiB) |"]
    row1000 = next(line for line in table.splitlines() if line.startswith("| 1,000 "))
    assert "2.00×" in row1000
    assert "| 8,000 |  |  | no model left within the memory limit |" in table
    assert "2.0 GiB at 2,000" in table and "2.5 GiB at 4,000" in table
    assert ("exact kNN up to 2,000 interactions, IVF approximate above, from 4,000 (its own "
            "accuracy is measured in bench_modality)") in table
    assert "killed above 22 GiB" in table
    # The plots leave out what did not run.
    S.plots(result, tmp_path)
    assert (tmp_path / "scaling_time.png").stat().st_size > 0
    assert (tmp_path / "scaling_memory.png").stat().st_size > 0


def test_memory_watchdog_kills_and_reports(tmp_path):
    grow = [sys.executable, "-c", "import time; b = b'x' * (300 << 20); time.sleep(20)"]
    out = run_watched(grow, 0.1 * GIB, poll_s=0.05)
    assert out["returncode"] == -9 and out["seconds"] < 10
    assert 0.1 * GIB < out["killed_at_bytes"] <= out["peak_seen_bytes"]
    rec = worker_record("lightgcn", out, tmp_path / "none.json", 0.1 * GIB)
    assert rec["memory_failure"] == "limit"
    assert rec["memory_exceeded_bytes"] == out["killed_at_bytes"]
    assert rec["error"].startswith("exceeded the memory limit of 0.1 GiB (killed at ")
    # Below the limit: untouched, output kept.
    out = run_watched([sys.executable, "-c", "print('fine')"], 1 * GIB, poll_s=0.05)
    assert out["returncode"] == 0 and out["killed_at_bytes"] is None
    assert out["stdout"].strip() == "fine"
    # A SIGKILL the watchdog did not send is the kernel's OOM killer: a memory failure too.
    oom = {"returncode": -9, "killed_at_bytes": None, "peak_seen_bytes": 3 * GIB,
           "seconds": 4.0, "stdout": "", "stderr": ""}
    rec = worker_record("vbpr", oom, tmp_path / "none.json", 22 * GIB)
    assert rec["memory_failure"] == "oom" and rec["memory_exceeded_bytes"] == 3 * GIB
    assert "out-of-memory killer" in rec["error"]
    # So is an allocation that raised inside the worker; any other error is not.
    path = tmp_path / "w.json"
    ok = dict(oom, returncode=0, peak_seen_bytes=GIB)
    path.write_text(json.dumps({"model": "m", "error": "RuntimeError: [enforce fail at "
                                "alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"}))
    assert worker_record("m", ok, path)["memory_failure"] == "allocation"
    path.write_text(json.dumps({"model": "m", "error": "ValueError: bad"}))
    assert "memory_failure" not in worker_record("m", ok, path)


def test_featureless_worker_and_isolated_parent_hold_no_features(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    common = ["--dataset", "synthetic", "--num-interactions", "600", "--max-batches", "1",
              "--warmup", "0", "--repeats", "1", "--skip-eval", "--no-trace",
              "--out", str(tmp_path)]
    args = P.finalize_args(parser.parse_args(common))
    full, info_full = P.load_bench_dataset(args, features=True)
    bare, info_bare = P.load_bench_dataset(args, features=False)
    # The parent of isolated workers: same graph, the workers' feature shapes, no features.
    assert torch.equal(full.splits.train, bare.splits.train)
    assert info_full["features_loaded"] and not info_bare["features_loaded"]
    assert info_bare["features"] == info_full["features"] == {
        "image": [info_full["num_items"], 4096], "text": [info_full["num_items"], 384]}
    assert "image_feat" not in bare.data["item"] and "image_feat" in full.data["item"]
    # Workers: a featureless model's loads none, a multimodal one's does.
    recs = {}
    for model in ("lightgcn", "stair"):
        path = tmp_path / f"{model}.json"
        assert P.main(common + ["--worker", model, "--worker-out", str(path)]) == 0
        recs[model] = json.loads(path.read_text())
        assert "error" not in recs[model], recs[model].get("error")
        assert recs[model]["process_peak_bytes"] >= recs[model]["memory"]["peak_rss"]
    assert recs["lightgcn"]["features_loaded"] is False
    assert recs["stair"]["features_loaded"] is True


def test_scaling_kills_over_the_limit_and_stops(tmp_path):
    # A limit below what Python + torch take: the only model is killed at the first size, the
    # sweep has no model left at the second and stops; nothing crashes.
    out = tmp_path / "scaling"
    _run("scaling.py", "--sizes", "600,1200", "--models", "lightgcn", "--memory-limit-gib", "0.05",
         "--max-batches", "1", "--threads", "1", "--out", str(out), timeout=300)
    result = json.loads((out / "results.json").read_text())
    first, second = result["points"]
    rec = first["models"]["lightgcn"]
    assert rec["memory_failure"] == "limit" and rec["memory_exceeded_bytes"] > 0.05 * GIB
    assert second["skipped"] == "no model left within the memory limit"
    assert second["models"]["lightgcn"]["skipped"].startswith("exceeded the memory limit at 600")
    assert result["fits"]["lightgcn"]["max_interactions"] is None
    assert "| 600 | 100 | 50 | killed at" in (out / "table.md").read_text()
    # The profile's parent of the killed worker held no item features.
    profile = json.loads((out / "n600" / "results.json").read_text())
    assert profile["dataset"]["features_loaded"] is False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_timeout_kills_the_profile_and_its_workers(tmp_path):
    pid_file = tmp_path / "worker.pid"
    worker = (f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
              "time.sleep(60)")
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {worker!r}])"
    out = run_watched([sys.executable, "-c", parent], timeout=1.5)
    assert out["timed_out"] and out["killed_at_bytes"] is None
    assert worker_record("m", out, tmp_path / "none.json").get("memory_failure") is None
    pid = int(pid_file.read_text())
    for _ in range(50):  # the grandchild was killed with its process group
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {pid} outlived the timed-out profile")


def test_scaling_resume_reuses_finished_sizes(tmp_path, monkeypatch, bench_script):
    S = bench_script("scaling")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "scaling"
    assert S.main(["--quick", "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    # Interrupted at the second size: its results are gone, the first size's remain.
    (out / "n3000" / "results.json").unlink()
    calls = []
    real_main = P.main

    def counting_main(argv=None):
        calls.append(list(argv))
        return real_main(argv)

    monkeypatch.setattr(P, "main", counting_main)
    assert S.main(["--quick", "--resume", "--out", str(out)]) == 0
    assert len(calls) == 1 and calls[0][calls[0].index("--num-interactions") + 1] == "3000"
    second = json.loads((out / "results.json").read_text())
    assert second["points"][0]["models"] == first["points"][0]["models"]  # reused as it was
    # Everything finished and the same commands: nothing runs.
    calls.clear()
    assert S.main(["--quick", "--resume", "--out", str(out)]) == 0
    assert calls == []
    # A different command for the finished sizes (STAIR's graph now by IVF) runs them again.
    assert S.main(["--quick", "--resume", "--out", str(out), "--approx-knn-from", "1000"]) == 0
    assert len(calls) == 2
