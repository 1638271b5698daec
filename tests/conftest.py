"""Shared fixtures: the official reference bundle and deterministic torch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: its tensors are small, and on a shared 2-core machine
    waking a second thread costs more than the work (a test took 27 s with 2 threads, 0.6 s with 1)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(autouse=True, scope="session")
def _no_weights_downloads(tmp_path_factory):
    """No test reads or writes the user's weights cache, and none downloads weights: ``IFAN_HOME`` is a
    fresh folder and ``IFAN_OFFLINE=1`` for the whole session (subprocesses inherit both); the tests of
    fetching set their own, and reach only a server on 127.0.0.1 (``NO_PROXY``)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("IFAN_HOME", str(tmp_path_factory.mktemp("ifan-home")))
    patch.setenv("IFAN_OFFLINE", "1")
    patch.setenv("NO_PROXY", "127.0.0.1,localhost")
    patch.setenv("no_proxy", "127.0.0.1,localhost")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def ref_small() -> dict:
    """Inputs and outputs of the official code, small config (see tests/fixtures/README.md)."""
    return torch.load(FIXTURES / "ref_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def official_small_path() -> Path:
    return FIXTURES / "official_small.pytorch"


@pytest.fixture(scope="session")
def official_small_state(official_small_path) -> dict:
    return torch.load(official_small_path, weights_only=True)


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """A tiny random model (2 channels, 2 iterations) saved as ifan safetensors."""
    from ifan import create_model
    from ifan.models.serialization import save_weights

    torch.manual_seed(0)
    model = create_model("ifan", channels=2, iterations=2)
    return str(save_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", model.config, model.state_dict()))


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint in the authors' layout of the paper's ``ifan`` (network only: 42 MB) with random
    weights, made once per session (tests/test_weights.py, tests/test_notebook.py)."""
    from ifan.models.ifan import IFAN, IFANConfig
    from ifan.models.official import to_official

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("full") / "IFAN.pytorch"
    torch.save(to_official(IFAN(IFANConfig(iac_form="official")).state_dict()), path)
    return path
