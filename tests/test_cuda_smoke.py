r"""The prepared GPU smoke run (benchmarks/cuda_smoke.sh) in its CPU mode, so that it does not rot
before a GPU is lent: every step must run and pass on the CPU."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cuda_smoke.sh"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils' timeout")
def test_cuda_smoke_script_runs_in_cpu_mode(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--device", "cpu", "--quick"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "cuda_smoke.json").read_text())
    steps = {k: v for k, v in results.items() if isinstance(v, dict) and "seconds" in v}
    assert set(steps) == {"csr_product", "cpu_vs_device", "host_syncs", "train_resume_evaluate"}
    assert all(v["ok"] for v in steps.values()), steps
    assert steps["cpu_vs_device"]["max_weight_difference"] == 0.0  # CPU against CPU
    assert steps["train_resume_evaluate"]["epochs_run"] == 5
    assert (tmp_path / "cuda_smoke.log").read_text().count("---") == 4
