from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    r"""``../shared/data`` beside the repository; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def bench_script(monkeypatch):
    r"""Imports ``benchmarks/<name>.py`` as ``python benchmarks/<name>.py`` sees its siblings."""
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))

    def load(name: str):
        return importlib.import_module(name)

    return load


@pytest.fixture(params=["torch", "numba"])
def each_cpu_kernel(request):
    r"""Runs a test once with torch's CSR product and once with the numba kernel (skipped where
    numba is not installed), restoring the automatic choice afterwards."""
    from stair_pyg.nn.cpu_kernel import numba_available, set_cpu_kernel

    if request.param == "numba" and not numba_available():
        pytest.skip("numba is not installed (pip install 'stair-pyg[numba]')")
    previous = set_cpu_kernel(request.param)
    yield request.param
    set_cpu_kernel(previous)
