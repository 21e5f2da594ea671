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
