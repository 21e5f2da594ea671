r"""glibc malloc tuning: large temporaries are reused instead of mapped afresh (measured by the
page faults of repeated allocations, in a fresh process so the setting does not leak)."""
import subprocess
import sys

import pytest

from stair_pyg.train.allocator import MAX_MMAP_THRESHOLD, _glibc, tune_cpu_allocator

SCRIPT = r"""
import resource, sys, torch
from stair_pyg.train.allocator import tune_cpu_allocator
tuned = tune_cpu_allocator() if sys.argv[1] == "1" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # three 8 MB temporaries, every page touched, then freed: a training step's pattern
    a = torch.empty(2_000_000).fill_(1.0)
    b = torch.empty(2_000_000).fill_(1.0)
    c = torch.empty(2_000_000).fill_(1.0)
    del a, b, c
step()
before = faults()
for _ in range(20):
    step()
print(tuned, faults() - before)
"""


def run(tune):
    out = subprocess.run([sys.executable, "-c", SCRIPT, "1" if tune else "0"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(_glibc() is None, reason="glibc's mallopt is needed (Linux with glibc)")
def test_tuned_process_reuses_large_blocks():
    flag, tuned_faults = run(True)
    assert flag == "True"
    # Mapped afresh, the 60 blocks of 8 MB cost 60 x 1953 page faults (glibc's own thresholds
    # give exactly that here: its heap top is trimmed after every step). Reused, a block or two
    # is faulted in once while the heap settles, then none.
    assert tuned_faults < 5 * 1953
    _, plain_faults = run(False)
    assert plain_faults >= tuned_faults


def test_bad_thresholds():
    import stair_pyg.train.allocator as A

    saved = A._tuned
    A._tuned = None
    try:
        with pytest.raises(ValueError, match="mmap_threshold"):
            tune_cpu_allocator(mmap_threshold=MAX_MMAP_THRESHOLD + 1)
        with pytest.raises(ValueError, match="trim_threshold"):
            tune_cpu_allocator(trim_threshold=-1)
    finally:
        A._tuned = saved


def test_config_checks_tune_malloc():
    from stair_pyg.train.config import ConfigError, resolve_config

    cfg = {"dataset": {"format": "synthetic"}, "model": {"name": "stair"},
           "train": {"tune_malloc": "yes"}}
    with pytest.raises(ConfigError, match="tune_malloc"):
        resolve_config(cfg)
