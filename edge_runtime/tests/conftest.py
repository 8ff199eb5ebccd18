"""Fixtures for the runtime's tests; the artifacts themselves are built by `edge_runtime.tests.support`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.tensorrt import versions
from edge_runtime.tests.fakes.tensorrt import install
from edge_runtime.tests.support import SIZE, THRESHOLD, build_brightness_model, gray, make_bundle, write_video

__all__ = ["SIZE", "THRESHOLD", "build_brightness_model", "gray", "make_bundle", "write_video"]


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "model.slsg")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    """`fake_trt(release, binding=..., gpu=..., driver_ok=...)` installs fake NVIDIA bindings (see
    edge_runtime.tests.fakes); the runtime's cached TensorRT probe is cleared before and after."""

    def _install(release: str, binding: str = "cuda-python-12", **kwargs):
        return install(monkeypatch, release, binding, **kwargs)

    yield _install
    monkeypatch.undo()
    versions._cached_probe.cache_clear()


def pytest_configure(config: pytest.Config) -> None:
    """The markers pyproject.toml declares, again: scripts/test_py38.sh runs the installed package outside
    the repository, where pyproject's pytest settings are not read."""
    for line in ("tensorrt: needs a real TensorRT install", "cuda: needs a CUDA GPU", "slow: takes more than a few s"):
        config.addinivalue_line("markers", line)
