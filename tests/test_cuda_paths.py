r"""CUDA code paths that can be checked without a GPU (issue 18): device resolution, RNG states
and checkpoint loading. Nothing here needs or touches a GPU."""
import numpy as np
import pytest
import torch

from stair_pyg.data import make_synthetic
from stair_pyg.train import Trainer, build_model, resolve_device
from stair_pyg.train import checkpoint as ckpt


class DeviceTensor:
    r"""Stands for a tensor on an accelerator: usable only through ``.cpu()``."""

    def __init__(self, tensor):
        self.tensor = tensor

    def cpu(self):
        return self.tensor

    def numpy(self):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


def test_rng_states_are_restored_from_cpu_copies_whatever_the_map_location():
    gen = torch.Generator().manual_seed(5)
    np.random.seed(3)
    state = ckpt.rng_state(gen)
    expected = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=gen))
    moved = dict(state, torch=DeviceTensor(state["torch"]),
                 numpy=dict(state["numpy"], keys=DeviceTensor(state["numpy"]["keys"])),
                 generator=DeviceTensor(state["generator"]))
    ckpt.set_rng_state(moved, gen)
    again = (torch.rand(3), np.random.rand(3), torch.rand(3, generator=gen))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert torch.equal(expected[2], again[2])


def test_resume_loads_the_checkpoint_to_the_cpu(tmp_path, monkeypatch):
    ds = make_synthetic(num_users=40, num_items=30, seed=0)
    cfg = {"epochs": 2, "device": "cpu", "checkpoint_every": 1}
    Trainer(build_model({"name": "bpr"}, ds.data), ds, dict(cfg, epochs=1), out_dir=tmp_path,
            progress=False, model_name="bpr").fit()
    seen = []
    original = ckpt.load_checkpoint

    def spy(path, map_location="cpu"):
        seen.append(map_location)
        return original(path, map_location)

    monkeypatch.setattr(ckpt, "load_checkpoint", spy)
    Trainer(build_model({"name": "bpr"}, ds.data), ds, cfg, out_dir=tmp_path, progress=False,
            model_name="bpr").fit(resume=True)
    assert seen == ["cpu"]


def test_cpu_runs_never_touch_cuda_state(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("CUDA state touched on a CPU run")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state", fail)
    monkeypatch.setattr(torch.cuda, "set_rng_state", fail)
    state = ckpt.rng_state()
    assert state["cuda"] == []
    ckpt.set_rng_state(dict(state, cuda=[torch.zeros(4, dtype=torch.uint8)]))


def test_several_ranks_take_their_gpu_from_the_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        resolve_device("cuda:1", world_size=2)
    assert resolve_device("cuda", world_size=2) == torch.device("cuda", 3)
    assert resolve_device("cuda:1", world_size=1) == torch.device("cuda", 1)


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
