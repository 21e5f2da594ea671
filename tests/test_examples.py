import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args):
    env = dict(os.environ)
    env.setdefault("TMPDIR", str(ROOT / "build" / "tmp"))
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_compose_stepwise_conv_example():
    proc = run_example("compose_stepwise_conv.py", "--users", "120", "--items", "80",
                       "--steps", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "homogeneous, stepwise" in proc.stdout
    assert "heterogeneous, stepwise" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("ogb") is None,
                    reason="ogb is not installed (pip install ogb)")
def test_ogbl_collab_example_synthetic_path():
    proc = run_example("ogbl_collab.py", "--synthetic", "--epochs", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best valid Hits@50" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("ogb") is None,
                    reason="ogb is not installed (pip install ogb)")
def test_ogbl_collab_example_explains_missing_dataset(tmp_path):
    proc = run_example("ogbl_collab.py", "--root", str(tmp_path))
    assert proc.returncode == 2
    assert "collab.zip" in proc.stderr and "ogbl_collab" in proc.stderr


def test_quickstart_example_trains_and_ranks():
    proc = run_example("quickstart.py", "--epochs", "10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    ndcg = [float(line.split()[-1]) for line in lines]
    assert len(ndcg) == 2 and ndcg[-1] > ndcg[0] > 0  # learning, not just running
    assert "top-5 for users 0 and 1" in proc.stdout
