import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stair_pyg.cli import main
from stair_pyg.configs import config_path
from stair_pyg.data import load_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_config(tmp_path):
    r"""The packaged synthetic config shrunk to seconds: fewer users, items and epochs."""
    cfg = yaml.safe_load(config_path("synthetic").read_text())
    cfg["dataset"].update(num_users=120, num_items=80, interactions_per_user=10,
                          modalities={"text": 16, "image": 8})
    cfg["model"]["embedding_dim"] = 16
    cfg["train"].update(epochs=3, batch_size=256, device="cpu", checkpoint_every=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_evaluate_recommend_end_to_end(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", str(tiny_config), "--out", str(out), "--no-progress",
                 "--set", "train.epochs=2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| NDCG@20 |" in captured.out
    for name in ("config.yaml", "history.jsonl", "checkpoint.pt", "best.pt", "metrics.json",
                 "metrics.md", "curves.png"):
        assert (out / name).is_file(), name
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["train"]["device"] == "cpu"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= 2
    assert "cold/NDCG@20" in metrics["test"]  # the synthetic default has cold items

    # evaluate reproduces the test figures of the best weights
    code = main(["evaluate", "--checkpoint", str(out / "best.pt"), "--device", "cpu",
                 "--json", str(tmp_path / "new" / "eval.json")])  # the folder is created
    assert code == 0
    evaluated = json.loads((tmp_path / "new" / "eval.json").read_text())
    assert evaluated["test"]["NDCG@20"] == pytest.approx(metrics["test"]["NDCG@20"], abs=1e-9)
    assert evaluated["valid"]["Recall@20"] == pytest.approx(metrics["valid"]["Recall@20"],
                                                            abs=1e-9)
    capsys.readouterr()

    # recommend: listed users, seen items excluded
    code = main(["recommend", "--checkpoint", str(out / "best.pt"), "--users", "3,17",
                 "--k", "5", "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and [line.split("\t")[0] for line in lines] == ["3", "17"]
    dataset = load_dataset(resolved["dataset"])
    seen = {tuple(p) for split in dataset.splits for p in split.t().tolist()}
    for line in lines:
        user, items = line.split("\t")
        items = [int(i) for i in items.split()]
        assert len(items) == 5 and len(set(items)) == 5
        assert not any((int(user), i) in seen for i in items)

    recs = tmp_path / "recs" / "all" / "recs.tsv"  # missing parent folders are created
    assert main(["recommend", "--checkpoint", str(out / "checkpoint.pt"), "--all", "--k", "4",
                 "--output", str(recs), "--device", "cpu"]) == 0
    rows = recs.read_text().strip().splitlines()
    assert rows[0] == "userID\titemID\trank\tscore"
    assert len(rows) - 1 == 120 * 4
    train = {tuple(p) for p in dataset.splits.train.t().tolist()}
    assert not any((int(r.split("\t")[0]), int(r.split("\t")[1])) in train for r in rows[1:])

    # resume of the finished run (config taken from the output folder)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0


def test_cli_errors_are_clear(tiny_config, tmp_path, capsys):
    assert main(["train", "--config", str(tiny_config), "--set", "train.epoch=3",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown key 'train.epoch'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(tmp_path / "nope.yaml")])
    assert exit_info.value.code == 2
    assert "argument --config: no file" in capsys.readouterr().err
    assert main(["train", "--config", str(tiny_config), "--resume",
                 "--out", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["recommend", "--checkpoint", str(bad), "--users", "1"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_console_script_subprocess(tiny_config, tmp_path):
    exe = Path(sys.executable).parent / "stair-pyg"
    if not exe.exists():
        exe = shutil.which("stair-pyg")
        if exe is None:
            pytest.skip("the stair-pyg console script is not installed (pip install -e .)")
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([str(exe), "train", "--config", str(tiny_config), "--out", str(out),
                           "--set", "model={name: bpr, embedding_dim: 16}",
                           "--set", "train.lr=0.01", "--no-progress"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "bpr" and metrics["epochs_run"] == 3


def test_train_with_model_option_uses_the_model_config(tiny_config, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.chdir(tmp_path)  # the packaged model defaults do not depend on the directory
    out = tmp_path / "lightgcn"
    code = main(["train", "--config", str(tiny_config), "--model", "lightgcn", "--out", str(out),
                 "--no-progress", "--set", "train.epochs=1", "--set", "model.embedding_dim=8"])
    assert code == 0, capsys.readouterr().err
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"] == {"name": "lightgcn", "embedding_dim": 8}  # STAIR's keys replaced
    assert resolved["train"]["batch_size"] == 2048  # from stair_pyg/configs/models/lightgcn.yaml
    assert main(["train", "--config", str(tiny_config), "--model", "nosuchmodel"]) == 2
    err = capsys.readouterr().err
    assert "--model nosuchmodel: no packaged defaults" in err and "lightgcn" in err


def test_config_by_name_is_the_packaged_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "named"
    code = main(["train", "--config", "synthetic", "--model", "bpr", "--out", str(out),
                 "--no-progress", "--device", "cpu", "--set", "dataset.num_users=60",
                 "--set", "dataset.num_items=40", "--set", "dataset.interactions_per_user=8",
                 "--set", "train.epochs=1", "--set", "model.embedding_dim=8"])
    assert code == 0, capsys.readouterr().err
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["dataset"]["format"] == "synthetic" and resolved["model"]["name"] == "bpr"
    # a file of that name in the current directory wins over the packaged config
    mine = yaml.safe_load(config_path("synthetic").read_text())
    mine["train"]["epochs"] = 7
    (tmp_path / "synthetic.yaml").write_text(yaml.safe_dump(mine))
    from stair_pyg.cli._args import config_file
    assert config_file("synthetic.yaml") == Path("synthetic.yaml")
    assert config_file("synthetic") == config_path("synthetic")  # bare name: packaged
    assert config_file("ml100k.yaml") == config_path("ml100k")
