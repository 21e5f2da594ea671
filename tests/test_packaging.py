r"""A pip-installed package is complete: a wheel built from the project's files, installed away
from the checkout, trains with ``--config NAME --model NAME`` from an unrelated directory (the
configs it reads ship inside the package)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _setuptools_builds_here() -> bool:
    r"""The build backend is importable here at the version ``pyproject.toml`` asks for, so the
    wheel can be built without build isolation (no index needed)."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    r"""``pip wheel`` of a copy of the project's files, ``pip install --target`` of the wheel:
    ``(site folder, pip's build output)``."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "stair_pyg", src / "stair_pyg",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist, site = tmp / "dist", tmp / "site"
    pip = [sys.executable, "-m", "pip"]
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    build = subprocess.run(pip + ["wheel", "-v", "--no-deps", *isolation, "-w", str(dist),
                                  str(src)], capture_output=True, text=True, timeout=300,
                           env=env, cwd=tmp)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = sorted(dist.glob("stair_pyg-*.whl"))
    assert len(wheels) == 1, wheels
    install = subprocess.run(pip + ["install", "-q", "--no-deps", "--no-compile", "--target",
                                    str(site), str(wheels[0])], capture_output=True, text=True,
                             timeout=300, env=env, cwd=tmp)
    assert install.returncode == 0, install.stderr[-3000:]
    return site, build.stdout + build.stderr


def test_wheel_build_prints_no_deprecation(installed):
    r"""No setuptools deprecation (a ``license = {text = ...}`` table printed one per build)."""
    _, log = installed
    assert "deprecat" not in log.lower(), log[-3000:]


def test_wheel_ships_the_configs_and_the_license(installed):
    site, _ = installed
    dist_info = next(site.glob("stair_pyg-*.dist-info"))
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata
    assert "MIT License" in (dist_info / "licenses" / "LICENSE").read_text()
    configs = site / "stair_pyg" / "configs"
    assert sorted(p.stem for p in configs.glob("*.yaml")) == ["ml100k", "ml100k-tuned",
                                                              "scientific", "synthetic"]
    packaged = sorted(p.name for p in (REPO / "stair_pyg" / "configs" / "models").glob("*.yaml"))
    assert sorted(p.name for p in (configs / "models").glob("*.yaml")) == packaged
    assert "lightgcn.yaml" in packaged


def test_installed_cli_trains_from_another_directory(installed, tmp_path):
    site, _ = installed
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the installed copy, not the checkout
    where = subprocess.run([sys.executable, "-c", "import stair_pyg, stair_pyg.configs as c; "
                            "print(stair_pyg.__file__); print(c.model_config_path('lightgcn'))"],
                           capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert where.returncode == 0, where.stderr[-3000:]
    module_file, model_file = where.stdout.split()
    assert Path(module_file).resolve().is_relative_to(site.resolve()), module_file
    assert Path(model_file).resolve().is_relative_to(site.resolve()), model_file

    script = site / "bin" / "stair-pyg"  # the console script pip wrote for the wheel
    command = ([str(script)] if script.is_file() else [sys.executable, "-m", "stair_pyg.cli"])
    proc = subprocess.run(
        command + ["train", "--config", "synthetic", "--model", "lightgcn", "--no-progress",
                   "--device", "cpu", "--set", "dataset.num_users=80",
                   "--set", "dataset.num_items=50", "--set", "dataset.interactions_per_user=8",
                   "--set", "train.epochs=1", "--set", "model.embedding_dim=8"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = cwd / "runs" / "synthetic-lightgcn"  # the default output folder, in the cwd
    assert "| NDCG@20 |" in proc.stdout
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"] == {"name": "lightgcn", "embedding_dim": 8}
    assert resolved["train"]["batch_size"] == 2048  # from the packaged lightgcn.yaml
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
