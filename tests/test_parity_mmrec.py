r"""The MMRec parity script without MMRec: its log parser on a sample of MMRec's real output, the
config it gives MMRec, the comparison, and the skip path when no MMRec is configured."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import parity_mmrec as P  # noqa: E402

# MMRec's log lines as its trainer writes them (logger format "%(asctime)-15s %(levelname)s
# %(message)s"; the metric lines follow "valid result: " / "test result: " on their own line),
# shortened to a few metrics, ending with an early stop and the run's summary lines.
SAMPLE = """\
01 Dec 11:40    INFO epoch 0 training [time: 0.98s, train loss: 14.5420]
01 Dec 11:40    INFO epoch 0 evaluating [time: 1.62s, valid_score: 0.101700]
01 Dec 11:40    INFO valid result: 
recall@10: 0.0792    recall@20: 0.1017    ndcg@20: 0.0560    precision@20: 0.0051    map@20: 0.0400    
01 Dec 11:40    INFO test result: 
recall@10: 0.0774    recall@20: 0.1012    ndcg@20: 0.0569    precision@20: 0.0050    map@20: 0.0410    
01 Dec 11:40    INFO ██ LightGCN--Best validation results updated!!!
01 Dec 11:40    INFO epoch 1 training [time: 0.94s, train loss: 14.4856]
01 Dec 11:40    INFO epoch 1 evaluating [time: 1.37s, valid_score: 0.133800]
01 Dec 11:40    INFO valid result: 
recall@10: 0.0962    recall@20: 0.1338    ndcg@20: 0.0682    precision@20: 0.0067    map@20: 0.0480    
01 Dec 11:40    INFO test result: 
recall@10: 0.1012    recall@20: 0.1367    ndcg@20: 0.0706    precision@20: 0.0068    map@20: 0.0490    
01 Dec 11:40    INFO epoch 2 training [time: 0.95s, train loss: 14.4011]
01 Dec 11:40    INFO epoch 2 evaluating [time: 1.40s, valid_score: 0.120000]
01 Dec 11:40    INFO valid result: 
recall@10: 0.0900    recall@20: 0.1200    ndcg@20: 0.0600    precision@20: 0.0060    map@20: 0.0450    
01 Dec 11:40    INFO test result: 
recall@10: 0.0950    recall@20: 0.1250    ndcg@20: 0.0650    precision@20: 0.0062    map@20: 0.0460    
01 Dec 11:40    INFO +++++Finished training, best eval result in epoch 1
01 Dec 11:40    INFO best valid result: recall@10: 0.0962    recall@20: 0.1338    ndcg@20: 0.0682    
01 Dec 11:40    INFO test result: recall@10: 0.1012    recall@20: 0.1367    ndcg@20: 0.0706    
01 Dec 11:40    INFO ████Current BEST████:
Parameters: ['seed', 'n_layers', 'reg_weight']=(999, 3, 0.0001),
Valid: recall@10: 0.0962    recall@20: 0.1338    ndcg@20: 0.0682    ,
Test: recall@10: 0.1012    recall@20: 0.1367    ndcg@20: 0.0706    
"""


def test_parse_mmrec_log():
    parsed = P.parse_mmrec_log(SAMPLE)
    hist = parsed["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]  # MMRec's 0-based epochs, shifted
    assert hist[0]["valid"] == {"Recall@10": 0.0792, "Recall@20": 0.1017, "NDCG@20": 0.0560,
                                "Precision@20": 0.0051, "MAP@20": 0.0400}
    assert hist[0]["test"]["Recall@20"] == 0.1012
    # The summary after the stop ("best valid result: ...") does not overwrite the last epoch.
    assert hist[2]["valid"]["Recall@20"] == 0.1200 and hist[2]["test"]["NDCG@20"] == 0.0650
    assert parsed["best_epoch"] == 2
    assert parsed["train_seconds"] == [0.98, 0.94, 0.95]
    assert P.best(hist) == {"epoch": 2, "Recall@20": 0.1338, "NDCG@20": 0.0682}


def test_parse_mmrec_log_metrics_on_the_same_line_and_no_stop():
    text = ("x INFO epoch 4 evaluating [time: 1s, valid_score: 0.2]\n"
            "x INFO valid result: recall@20: 0.2000    ndcg@20: 0.1000    \n")
    parsed = P.parse_mmrec_log(text)
    assert parsed["history"] == [{"epoch": 5, "valid": {"Recall@20": 0.2, "NDCG@20": 0.1}}]
    assert parsed["best_epoch"] is None and parsed["train_seconds"] == []
    assert P.parse_mmrec_log("") == {"history": [], "best_epoch": None, "train_seconds": []}


def test_compare_aligns_epochs_and_summarises():
    def curve(values):
        return {"history": [{"epoch": e, "valid": {"Recall@20": r, "NDCG@20": r / 2}}
                            for e, r in values]}

    mmrec = curve([(e, 0.1) for e in range(1, 13)])
    ours = curve([(e, 0.1 * (1.02 if e >= 10 else 0.9)) for e in range(1, 12)])
    cmp = P.compare(mmrec, ours)
    assert [r["epoch"] for r in cmp["rows"]] == list(range(1, 12))
    s = cmp["summary"]
    assert s["Recall@20"]["max_abs_rel"] == pytest.approx(0.1)
    assert s["Recall@20"]["mean_rel_10_40"] == pytest.approx(0.02)
    assert s["epochs_run"] == {"mmrec": 12, "ours": 11}
    assert s["best"]["ours"]["epoch"] == 10 and s["best"]["mmrec"]["epoch"] == 1
    assert s["best"]["rel"]["Recall@20"] == pytest.approx(0.02)
    table = P.curve_table("x", cmp, every=5, mark=[10])
    assert any(line.startswith("| 10 * |") for line in table)
    assert not any(line.startswith("| 7 |") for line in table)


def test_mmrec_config_runs_one_grid_point(tmp_path):
    class Args:
        seed, epochs, patience = 999, 200, 20

    hp = P.our_hparams("bm3")
    cfg = P.mmrec_config("bm3", hp, tmp_path, "scientific", Args)
    assert cfg["model"] == "BM3" and cfg["seed"] == [999] and cfg["stopping_step"] == 20
    for key in P.MMREC_GRID["bm3"]:  # list-valued: MMRec's grid search has one combination
        assert isinstance(cfg[key], list) and len(cfg[key]) == 1
    assert cfg["n_layers"] == [hp["num_layers"]] and cfg["cl_weight"] == hp["cl_weight"]
    assert cfg["embedding_size"] == cfg["feat_embed_dim"] == hp["embedding_dim"]
    assert cfg["valid_metric"] == "Recall@20" and cfg["use_gpu"] is False
    assert cfg["data_path"].endswith(os.sep)
    for model in P.MMREC_NAME:
        P.check_ours_matches(model, P.our_hparams(model))


def test_skips_without_mmrec(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MMREC_PYTHON", "MMREC_SRC")}
    env.setdefault("TMPDIR", str(ROOT / "build" / "tmp"))
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "parity_mmrec.py"), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "MMREC_PYTHON" in proc.stdout
    assert not out.exists()
    # A source folder that is not MMRec's is refused the same way.
    proc = subprocess.run([sys.executable, str(BENCH / "parity_mmrec.py"), "--mmrec-python",
                           sys.executable, "--mmrec-src", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "not an MMRec checkout" in proc.stdout


def test_reproduce_line_names_the_dataset_read(tmp_path):
    # The default dataset is left out (whatever spelling reaches it); any other folder is given
    # relative to the repository root, wherever it lies.
    assert P.dataset_option(P.DEFAULT_DATASET) == ""
    assert P.dataset_option(P.DEFAULT_DATASET / ".." / "scientific") == ""
    assert P.dataset_option(P.DATA_ROOT / "ml100k") == "--dataset ../shared/data/ml100k "
    elsewhere = tmp_path / "shop"
    assert P.dataset_option(elsewhere) == (
        f"--dataset {os.path.relpath(elsewhere.resolve(), P.REPO_ROOT)} ")
