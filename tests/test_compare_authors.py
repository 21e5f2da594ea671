r"""``benchmarks/compare_authors.py`` without FreeRec: the MMRec -> FreeRec conversion on a tiny
synthetic folder, the parser of the authors' run output on a literal sample, the wrapper's
option aliases, and the skip path where the FreeRec side is absent."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

# user, item, timestamp, x_label: 3 users, 4 items, every id used; user 1's rows out of order
ROWS = [(0, 0, 0, 0), (0, 1, 1, 0), (0, 2, 2, 1), (0, 3, 3, 2),
        (1, 3, 2, 0), (1, 0, 0, 0), (1, 2, 1, 1), (1, 1, 3, 2),
        (2, 1, 0, 0), (2, 2, 1, 0), (2, 0, 2, 2)]


@pytest.fixture
def ca(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(BENCH))  # as `python benchmarks/compare_authors.py` runs
    return importlib.import_module("compare_authors")


def _mmrec(folder: Path, rows=ROWS, num_items: int = 4) -> Path:
    folder.mkdir(parents=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t1\t{t}\t{x}" for u, i, t, x in rows]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")
    feats = np.arange(num_items * 6, dtype=np.float32).reshape(num_items, 6)
    np.save(folder / "text_feat.npy", feats)
    return folder


def _read(path: Path):
    lines = path.read_text().splitlines()
    return lines[0], [tuple(int(v) for v in line.split("\t")) for line in lines[1:]]


def test_conversion_keeps_ids_and_split(ca, tmp_path):
    src = _mmrec(tmp_path / "tiny")
    out = ca.convert_dataset(src, tmp_path / "root")
    assert out == tmp_path / "root" / "Processed" / "tiny"
    assert sorted(p.name for p in out.iterdir()) == [
        "converted_from.json", "test.txt", "textual_modality.pkl", "train.txt", "valid.txt"]
    for mode, label in (("train", 0), ("valid", 1), ("test", 2)):
        header, rows = _read(out / f"{mode}.txt")
        assert header == "USER\tITEM\tTIMESTAMP"
        want = sorted(((u, i, t) for u, i, t, x in ROWS if x == label),
                      key=lambda r: (r[0], r[2]))
        assert rows == want  # same ids and split, by user then time
    with open(out / "textual_modality.pkl", "rb") as f:
        feats = pickle.load(f)
    assert isinstance(feats, torch.Tensor) and feats.dtype == torch.float32
    assert torch.equal(feats, torch.from_numpy(np.load(src / "text_feat.npy")))


def test_conversion_is_reused_and_redone_when_the_source_changes(ca, tmp_path):
    src = _mmrec(tmp_path / "tiny")
    out = ca.convert_dataset(src, tmp_path / "root")
    (out / "schema.pkl").write_text("FreeRec's cache")
    ca.convert_dataset(src, tmp_path / "root")
    assert (out / "schema.pkl").exists()  # same source: kept
    rows = ROWS + [(2, 3, 3, 1)]
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t1\t{t}\t{x}" for u, i, t, x in rows]
    (src / "tiny.inter").write_text("\n".join(lines) + "\n")
    os.utime(src / "tiny.inter", ns=(1, 1))
    ca.convert_dataset(src, tmp_path / "root")
    assert not (out / "schema.pkl").exists()  # a stale cache would outlive the new files
    assert (2, 3, 3) in _read(out / "valid.txt")[1]


def test_conversion_refuses_ids_freerec_would_recount(ca, tmp_path):
    src = _mmrec(tmp_path / "gap", num_items=5)  # item 4 has features but no interaction
    with pytest.raises(ValueError, match="item ids"):
        ca.convert_dataset(src, tmp_path / "root")


SAMPLE = """\
\x1b[1;31m[Warning] FreeRec version of 1.0.1 is required but current version is 0.9.7 \x1b[0m
[compare_authors] threads=1 freerec=0.9.7
[Coach] >>> VALID @Epoch: 0 >>>  || RECALL@1 Avg: 0.0336 || RECALL@10 Avg: 0.1151 || \
RECALL@20 Avg: 0.1518 || NDCG@10 Avg: 0.0706 || NDCG@20 Avg: 0.0799
[Wall TIME] >>> Coach.valid takes 2.183527 seconds ...
[compare_authors] train_per_epoch epoch=2 seconds=1.750000
[compare_authors] train_per_epoch epoch=1 seconds=2.966255
[Wall TIME] >>> Coach.train takes 2.968834 seconds ...
[Coach] >>> TRAIN @Epoch: 1 >>>  || LOSS Avg: 0.57050
[Coach] >>> VALID @Epoch: 2 >>>  || RECALL@1 Avg: 0.0374 || RECALL@10 Avg: 0.1194 || \
RECALL@20 Avg: 0.1571 || NDCG@10 Avg: 0.0746 || NDCG@20 Avg: 0.0842
[Coach] >>> TEST  @Epoch: 2 >>>  || RECALL@20 Avg: 0.1521 || NDCG@20 Avg: 0.0861
[Coach] >>> VALID @Epoch: 2 >>>  || RECALL@20 Avg: 0.9 || NDCG@20 Avg: 0.9
"""


def test_parse_authors_log(ca):
    parsed = ca.parse_authors_log(SAMPLE)
    assert parsed["train_seconds"] == [2.966255, 1.75]  # in epoch order
    assert set(parsed["valid"]) == {0, 2}  # TEST lines are not validation
    assert parsed["valid"][0]["NDCG@20"] == 0.0799
    assert parsed["valid"][2] == {"RECALL@1": 0.0374, "RECALL@10": 0.1194, "RECALL@20": 0.1571,
                                  "NDCG@10": 0.0746, "NDCG@20": 0.0842}  # the first, not the repeat


def test_authors_command_uses_the_shared_settings(ca, tmp_path):
    cmd = ca.authors_command("py", tmp_path / "w.py", tmp_path / "src", tmp_path, "scientific",
                             3, 0, "r0")
    opts = dict(zip(cmd[3::2], cmd[4::2]))
    assert opts["--dataset"] == "scientific" and opts["--tasktag"] == "MATCHING"
    assert opts["--mfiles"] == "textual_modality.pkl" and opts["--num-neighbors"] == "5"
    assert (opts["--batch-size"], float(opts["--lr"]), float(opts["--weight-decay"]),
            float(opts["--gamma"]), opts["--num-layers"], opts["--embedding-dim"]) == (
        "1024", 1e-3, 0.3, 0.1, "3", "64")
    assert opts["--epochs"] == "3" and int(opts["--eval-freq"]) > 3


def test_wrapper_aliases_the_renamed_beta_options(ca):
    code = ca.WRAPPER.split("import torch")[0]  # the argument rewriting only
    ns = {"__name__": "wrapper"}
    argv = sys.argv
    try:
        sys.argv = ["w.py", "/src", "--beta1", "0.8", "--beta2=0.99", "--lr", "1"]
        exec(code, ns)
        assert sys.argv == ["/src/main.py", "--optim-first-moment-decay", "0.8",
                            "--optim-second-moment-decay=0.99", "--lr", "1"]
    finally:
        sys.argv = argv


def test_our_config_matches_the_shared_settings(ca, tmp_path):
    cfg = ca.our_config(tmp_path, 3)
    ca.check_config(cfg)  # raises on a difference
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["eval_every"] == 3
    assert cfg["train"]["checkpoint_every"] == 0 and cfg["train"]["device"] == "cpu"


def test_skips_with_instructions_where_freerec_is_absent(tmp_path):
    env = dict(os.environ)
    env.pop("FREEREC_PYTHON", None)
    env.pop("STAIR_AUTHORS_SRC", None)
    proc = subprocess.run([sys.executable, str(BENCH / "compare_authors.py"),
                           "--freerec-python", str(tmp_path / "no-python"),
                           "--authors-src", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped" in proc.stdout and "does not exist" in proc.stdout
    assert "pip install -c" in proc.stdout and "freerec[all]==0.9.7" in proc.stdout
    assert "--no-deps torchdata==0.7.0" in proc.stdout
    proc = subprocess.run([sys.executable, str(BENCH / "compare_authors.py")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "no FreeRec interpreter" in proc.stdout


def test_summary_and_report(ca):
    rounds = [{"authors": {"train_seconds": [3.0, 2.0, 4.0], "valid_ndcg20": 0.08},
               "ours": {"train_seconds": [1.0, 1.0, 2.0], "valid_ndcg20": 0.0801}},
              {"authors": {"train_seconds": [3.0, 3.0, 3.0], "valid_ndcg20": 0.081},
               "ours": {"train_seconds": [0.5, 1.0, 1.0], "valid_ndcg20": None}}]
    summary = ca.summarise(rounds)
    assert summary["authors"]["median_train_seconds"] == 3.0
    assert summary["ours"]["median_train_seconds"] == 1.0 and summary["ratio"] == 3.0
    assert summary["ours"]["epochs_timed"] == 6 and summary["ours"]["valid_ndcg20"] == [0.0801]
    result = {"summary": summary, "epochs": 3, "rounds": 2, "threads": 1,
              "freerec_version": "0.9.7"}
    assert "3.000 (2.000-4.000)" in ca.report(result)
    relative = ca.report(result, absolute=False)
    assert "3.00x (2.00-4.00)" in relative and "1.00x (0.50-2.00)" in relative
    assert "**3.00x** faster" in relative
