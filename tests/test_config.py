from pathlib import Path

import pytest
import yaml

from stair_pyg.configs import config_names, config_path, model_config_path, model_names
from stair_pyg.train import ConfigError, apply_overrides, load_config, resolve_config, save_config
from stair_pyg.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def base():
    return {"dataset": {"format": "synthetic", "num_users": 50},
            "model": {"name": "bpr", "embedding_dim": 8},
            "train": {"epochs": 3}}


def test_defaults_are_filled_and_values_normalised():
    cfg = resolve_config(base())
    assert cfg["train"]["epochs"] == 3
    for key, value in TrainConfig().to_dict().items():
        if key not in ("epochs", "ks"):
            assert cfg["train"][key] == value
    assert cfg["train"]["ks"] == [10, 20, 50]
    raw = base()
    raw["train"].update(lr="1e-3", metric="recall@5", ks=[20, 10])  # YAML 1.1 leaves 1e-3 a str
    cfg = resolve_config(raw)
    assert cfg["train"]["lr"] == pytest.approx(1e-3)
    assert cfg["train"]["metric"] == "Recall@5"
    assert cfg["train"]["ks"] == [5, 10, 20]  # the selection cut-off is always evaluated


def test_overrides_dotted_keys_yaml_values():
    cfg = apply_overrides(base(), ["train.lr=1.0e-4", "model.knn_k={text: 3, image: 1}",
                                   "train.ks=[5, 10]", "dataset.seed=7", "train.patience=null"])
    assert cfg["train"]["lr"] == pytest.approx(1e-4)
    assert cfg["model"]["knn_k"] == {"text": 3, "image": 1}
    assert cfg["train"]["ks"] == [5, 10]
    assert cfg["dataset"]["seed"] == 7 and cfg["train"]["patience"] is None
    assert base()["train"] == {"epochs": 3}  # the input is not modified
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(base(), ["train.lr"])
    with pytest.raises(ConfigError, match="'train.epochs' is not a section"):
        apply_overrides(base(), ["train.epochs.x=1"])


def _with(section, value, replace=False):
    cfg = base()
    if replace or section not in cfg:
        cfg[section] = value
    else:
        cfg[section].update(value)
    return cfg


@pytest.mark.parametrize("cfg, message", [
    (_with("optimizer", {}), "unknown top-level key 'optimizer'"),
    (_with("train", {"epoch": 3}), "unknown key 'train.epoch'"),
    (_with("train", {"epochs": "ten"}), "'train.epochs' must be an integer"),
    (_with("train", {"epochs": 0}), "'train.epochs' must be >= 1"),
    (_with("train", {"lr": "fast"}), "'train.lr' must be a number"),
    (_with("train", {"lr": 0}), "'train.lr' must be > 0"),
    (_with("train", {"metric": "AUC@10"}), "'train.metric'"),
    (_with("train", {"device": "tpu"}), "'train.device'"),
    (_with("train", {"ks": "ten"}), "'train.ks'"),
    (_with("model", {"name": "nosuchmodel"}), "'model.name' must be one of"),
    (_with("model", {"embeding_dim": 8}), "unknown key 'model.embeding_dim'"),
    (_with("model", {}, replace=True), "'model.name' is required"),
    (_with("dataset", {"num_users": 5}, replace=True), "'dataset.format' is required"),
    (_with("dataset", {"format": "parquet"}, replace=True), "'dataset.format' must be one of"),
    (_with("dataset", {"num_user": 5}), "unknown key 'dataset.num_user'"),
    (_with("dataset", {"format": "mmrec"}, replace=True), "'dataset.path' is required"),
    (_with("dataset", {"format": "mmrec", "path": "no/such/folder"}, replace=True),
     "'dataset.path'.*does not exist"),
])
def test_bad_configs_name_the_key(cfg, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(cfg)


def test_load_save_round_trip_and_relative_paths(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    conf_dir = tmp_path / "configs"
    conf_dir.mkdir()
    path = conf_dir / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"format": "mmrec", "path": "../data/mine"},
                                    "model": {"name": "bpr"}, "train": {"epochs": 2}}))
    monkeypatch.chdir(tmp_path)  # "../data/mine" does not exist from here: the config's folder
    cfg = load_config(path, ["train.seed=9"])
    assert cfg["dataset"]["path"] == str(folder.resolve())
    assert cfg["train"]["seed"] == 9
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


@pytest.mark.parametrize("name", ["synthetic", "scientific", "ml100k"])
def test_shipped_configs_are_valid(name, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(config_path(name), resolve=False)
    check = name == "synthetic" or (REPO.parent / "shared" / "data" / name).is_dir()
    cfg = resolve_config(cfg, check_paths=check)
    assert cfg["model"]["name"] == "stair"
    assert (cfg["model"]["embedding_dim"], cfg["model"]["num_layers"]) == (64, 3)
    assert cfg["model"]["gamma"] == pytest.approx(0.1)
    assert cfg["model"]["knn_k"]["text"] == 5
    train = cfg["train"]
    assert (train["batch_size"], train["lr"], train["weight_decay"]) == (1024, 1e-3, 0.3)
    assert train["metric"] == "NDCG@20"


def test_tuned_ml100k_overlay_changes_only_the_selected_settings(monkeypatch):
    monkeypatch.chdir(REPO)
    base = load_config(config_path("ml100k"), resolve=False)
    tuned = load_config([config_path("ml100k"), config_path("ml100k-tuned")], resolve=False)
    assert (tuned["model"]["gamma"], tuned["train"]["weight_decay"]) == (1.0, 0.1)
    assert tuned["model"]["knn_k"] == base["model"]["knn_k"]  # merged, not replaced
    assert tuned["dataset"] == base["dataset"]
    for key in ("batch_size", "lr", "metric"):
        assert tuned["train"][key] == base["train"][key]


def test_merge_configs_replaces_a_model_section_that_names_another_model():
    from stair_pyg.train.config import merge_configs

    stair = {"dataset": {"format": "synthetic", "num_users": 50},
             "model": {"name": "stair", "gamma": 0.2, "knn_k": {"text": 5}},
             "train": {"epochs": 3, "weight_decay": 0.3}}
    other = merge_configs(stair, {"model": {"name": "bpr", "embedding_dim": 8},
                                  "train": {"weight_decay": 0.0, "batch_size": 2048}})
    assert other["model"] == {"name": "bpr", "embedding_dim": 8}  # no STAIR keys left over
    assert other["train"] == {"epochs": 3, "weight_decay": 0.0, "batch_size": 2048}
    assert other["dataset"] == stair["dataset"]
    same = merge_configs(stair, {"model": {"name": "STAIR", "gamma": 0.5}})
    assert same["model"] == {"name": "STAIR", "gamma": 0.5, "knn_k": {"text": 5}}
    assert stair["model"]["gamma"] == 0.2  # inputs untouched
    resolve_config(other)


@pytest.mark.parametrize("model", model_names())
def test_every_model_config_composes_with_every_dataset_config(model, monkeypatch):
    monkeypatch.chdir(REPO)
    model_file = model_config_path(model)
    cfg = load_config([config_path("synthetic"), model_file], resolve=False)
    assert cfg["model"]["name"] == model_file.stem
    cfg = resolve_config(cfg)
    assert cfg["dataset"]["format"] == "synthetic"


def test_packaged_configs_cover_every_model_and_example():
    from stair_pyg.models import MODELS

    assert model_names() == sorted(MODELS)  # every registered model has packaged defaults
    assert config_names() == ["ml100k", "ml100k-tuned", "scientific", "synthetic"]
    assert model_config_path("LightGCN.yaml") == model_config_path("lightgcn")
    assert model_config_path("nosuchmodel") is None
    with pytest.raises(KeyError, match="packaged: ml100k"):
        config_path("nosuch")


def test_load_config_needs_a_file():
    with pytest.raises(ConfigError, match="no config file"):
        load_config([])
