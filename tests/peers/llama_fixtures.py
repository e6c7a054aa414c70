"""Fixtures for the real llama-server peer, shared by the integration and e2e tiers.

The llama-server peer (shared DESIGN §7) is skipped with a reason when its binary is
missing locally, but that is a failure in CI (``CI=true``): CI must never silently skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.llama_server import BINARY_ENV, LlamaServer, cached_binary, find_llama_server
from tests.peers.tiny_model import write_tiny_model


def _missing_peer(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the llama-server tests must run in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The llama-server binary built by ``.ci/build-llama-server``."""
    binary = find_llama_server()
    if binary is None:
        configured = os.environ.get(BINARY_ENV)
        where = (
            f"{BINARY_ENV}={configured} is not an executable file"
            if configured
            else (f"{BINARY_ENV} is unset and {cached_binary()} does not exist")
        )
        _missing_peer(f"llama-server not available: {where}; run .ci/build-llama-server")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight GGUF, written once per session."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def llama_server(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """One llama-server for the session, serving the tiny model on 127.0.0.1."""
    log_path = tmp_path_factory.mktemp("llama-server") / "llama-server.log"
    with LlamaServer(llama_server_binary, tiny_model_path, log_path) as server:
        yield server


@pytest.fixture
def dedicated_llama_server(
    llama_server_binary: Path, tiny_model_path: Path, tmp_path: Path
) -> Iterator[LlamaServer]:
    """A llama-server of this test's own, for tests that kill or otherwise break it."""
    with LlamaServer(llama_server_binary, tiny_model_path, tmp_path / "llama-server.log") as server:
        yield server
