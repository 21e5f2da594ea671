r"""Issue 16, class 1: every config value is checked when the config is resolved or the model
is built, and a bad one ends in one ``error:`` line naming the key (exit 2, no traceback)."""
import pytest

from stair_pyg.cli import main

SMALL = ["--set", "dataset.num_users=60", "--set", "dataset.num_items=40",
         "--set", "train.epochs=1"]

CASES = [
    ("train.lr=.nan", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.lr=1e9", "train.lr"),
    ("train.weight_decay=-1", "train.weight_decay"),
    ("train.seed=99999999999999999999999", "train.seed"),
    ("train.batch_size=16.5", "train.batch_size"),
    ("train.device=tpu", "train.device"),
    ("model.embedding_dim=0", "embedding_dim"),
    ("model.embedding_dim=-3", "model.embedding_dim"),
    ("model.embedding_dim=16.5", "model.embedding_dim"),
    ("model.embedding_dim=big", "model.embedding_dim"),
    ("model.num_layers=-1", "model.num_layers"),
    ("model.gamma=-0.5", "model.gamma"),
    ("model.gamma=.nan", "model.gamma"),
    ("model.knn_k={text: 100000}", "knn_k.text"),
    ("model.knn_method=annoy", "knn_method"),
    ("dataset.num_users=-5", "dataset.num_users"),
    ("dataset.content_weight=2", "content_weight"),
    ("dataset.ratios=[0.5,0.5]", "ratios"),
    ("dataset.seed=1.5", "dataset.seed"),
    ("grid.gamma=[0.1]", "grid.gamma"),  # a grid key is a --set key (model.gamma)
]


@pytest.mark.parametrize("override,key", CASES)
def test_bad_values_name_the_key(override, key, tmp_path, capsys):
    code = main(["train", "--config", "synthetic", *SMALL, "--set", override,
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and key in lines[0], err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_cuda_without_cuda_is_refused(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--config", "synthetic", *SMALL, "--set", "train.device=cuda",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "cuda" in err.lower()


def test_knn_k_for_a_missing_modality_is_a_note_naming_the_modalities(tmp_path, capsys):
    code = main(["train", "--config", "synthetic", *SMALL, "--set", "model.knn_k={audio: 3}",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:") and "audio" in line]
    assert len(notes) == 1 and "image" in notes[0] and "text" in notes[0], err
